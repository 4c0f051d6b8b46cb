"""UCF-101 as published: `<root>/UCF-101/<Class>/v_<Class>_gXX_cYY.avi` and
`<root>/ucfTrainTestlist/` (`classInd.txt`, `trainlist0N.txt`, `testlist0N.txt`).

`dataset.ucf101_split_number` picks N (1-3). Splits: `train`, `test`, and `all` (train + test, as
MAGVIT trains class-conditional UCF-101). Labels are classInd's 1-based indices minus one; class
names are matched case-insensitively (the lists spell `HandstandPushups`, the files
`v_HandStandPushups_...`), and so are the listed paths (the first found path of a spelling wins).

Listed by label rows (see `common`): each class folder is listed on its own worker, each split
list's lines become rows (read by Beam's ReadFromText), and a line joins the file whose path
under the videos folder it names.
"""
import sys
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


# ---------------------------------------------------------------- listing by rows (see common)
def file_roots(config) -> list[tuple[str, int]]:
    return [(videos_dir(config.root), 1)]     # the class folders, each listed on its own


def file_key(base: str, path: str) -> str | None:
    if not path.lower().endswith(common.VIDEO_EXTENSIONS):
        return None
    return path[len(base):].lstrip("/").lower()


def row_units(config, split: str) -> list[tuple[str, str, str]]:
    """(split, list file, videos folder) per list the split reads (`all`: train and test)."""
    base = videos_dir(config.root)
    return [(split, list_file(config.root, part, config.ucf101_split_number), base)
            for part in (("train", "test") if split == "all" else (split,))]


def row_header(unit) -> None:
    return None      # a list has no header line


def parse_row_line(config, unit: tuple[str, str, str], header,
                   line: str) -> tuple[str, common.Row] | None:
    """`<Class>/<file>.avi[ <label>]` -> (its lower-case path, Row); None for a blank line."""
    if not line.strip():
        return None
    split, list_path, base = unit
    relative = line.split()[0]
    return relative.lower(), common.Row(split, relative.split("/")[0], common.stem(relative),
                                        common.join(base, relative), list_path)


def class_index(config, splits) -> dict[str, tuple[int, str]]:
    return classes(config.root)


def label_row(row: common.Row, path: str | None,
              class_index_: dict[str, tuple[int, str]]) -> common.Video | common.Failure:
    if row.label_name.lower() not in class_index_:
        return common.Failure(path or row.default_path, row.split, "list", "unknown_label",
                              f"class {row.label_name!r} ({row.source}) is not in classInd.txt")
    if path is None:
        return common.Failure(row.default_path, row.split, "list", "missing_video",
                              f"listed in {row.source} but not found (looked for "
                              f"{row.default_path}, in any case)")
    index, name = class_index_[row.label_name.lower()]
    return common.Video(path, row.split, index, name, row.video_id)


def list_videos(config, split: str) -> Iterator[common.Video | common.Failure]:
    yield from common.list_by_rows(sys.modules[__name__], config, split)


read = common.read_file
