"""UCF-101 as published: `<root>/UCF-101/<Class>/v_<Class>_gXX_cYY.avi` and
`<root>/ucfTrainTestlist/` (`classInd.txt`, `trainlist0N.txt`, `testlist0N.txt`).

`dataset.ucf101_split_number` picks N (1-3). Splits: `train`, `test`, and `all` (train + test, as
MAGVIT trains class-conditional UCF-101). Labels are classInd's 1-based indices minus one; class
names are matched case-insensitively (the lists spell `HandstandPushups`, the files
`v_HandStandPushups_...`).
"""
from typing import Iterator

from pipelines.datasets import common

SPLITS = ("train", "test", "all")
LISTS = "ucfTrainTestlist"


def videos_dir(root: str) -> str:
    nested = common.join(root, "UCF-101")
    return nested if common.isdir(nested) else root


def list_file(root: str, split: str, number: int) -> str:
    return common.join(root, LISTS, f"{split}list{number:02d}.txt")


def check(config) -> None:
    common.require(common.join(config.root, LISTS, "classInd.txt"), "UCF-101's classInd.txt")
    for split in common.split_names(config):
        for part in ("train", "test") if split == "all" else (split,):
            common.require(list_file(config.root, part, config.ucf101_split_number),
                           f"the {part} list of split {config.ucf101_split_number}")


def classes(root: str) -> dict[str, tuple[int, str]]:
    """{lower-case class name: (0-based index, class name)} from classInd.txt."""
    out = {}
    for line in common.read_text(common.join(root, LISTS, "classInd.txt")).splitlines():
        if line.strip():
            index, name = line.split()
            out[name.lower()] = (int(index) - 1, name)
    return out


def list_videos(config, split: str) -> Iterator[common.Video | common.Failure]:
    class_index = classes(config.root)
    base = videos_dir(config.root)
    found = {path[len(base):].lstrip("/").lower(): path for path in common.list_files(base)}
    for part in ("train", "test") if split == "all" else (split,):
        list_path = list_file(config.root, part, config.ucf101_split_number)
        for line in common.read_text(list_path).splitlines():
            if not line.strip():
                continue
            relative = line.split()[0]
            path = found.get(relative.lower(), common.join(base, relative))
            class_name = relative.split("/")[0]
            if class_name.lower() not in class_index:
                yield common.Failure(path, split, "list", "unknown_label",
                                     f"class {class_name!r} ({list_path}) is not in classInd.txt")
            elif relative.lower() not in found:
                yield common.Failure(path, split, "list", "missing_video",
                                     f"listed in {list_path} but not found under {base}")
            else:
                index, name = class_index[class_name.lower()]
                yield common.Video(path, split, index, name, common.stem(relative))


read = common.read_file
