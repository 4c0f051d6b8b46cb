"""Kinetics-600 as published: annotation CSVs `label,youtube_id,time_start,time_end,split` and
clips `<youtube_id>_<start:06d>_<end:06d>.mp4` in a flat or per-class folder anywhere under root.

The CSV of split S is `<root>/annotations/S.csv` or `<root>/S.csv` (`validation` also finds
`validate.csv` / `val.csv`). Class indices are the sorted label names of the train CSV (of the
split's own CSV when there is no train CSV). Listed clips without a video file are dead letters
(`missing_video`, counted in stats.json), never fatal. A test CSV without labels gives label -1.
"""
import csv
import io
from typing import Iterator

from pipelines.datasets import common

SPLITS = ("train", "validation", "test")
_ALIASES = {"validation": ("validation", "validate", "val"), "train": ("train",), "test": ("test",)}


def csv_path(root: str, split: str) -> str | None:
    for name in _ALIASES[split]:
        for path in (common.join(root, "annotations", f"{name}.csv"), common.join(root, f"{name}.csv")):
            if common.exists(path):
                return path
    return None


def check(config) -> None:
    for split in common.split_names(config):
        if csv_path(config.root, split) is None:
            raise ValueError(f"{config.root}: no annotation CSV for split {split!r} (looked for "
                             f"annotations/<{'|'.join(_ALIASES[split])}>.csv; check "
                             f"--config.dataset.root)")


def read_rows(path: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(common.read_text(path))))


def clip_name(row: dict) -> str:
    return f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"


def class_names(root: str, split: str) -> list[str]:
    path = csv_path(root, "train") or csv_path(root, split)
    return sorted({row["label"] for row in read_rows(path) if row.get("label")})


def list_videos(config, split: str) -> Iterator[common.Video | common.Failure]:
    annotations = csv_path(config.root, split)
    index = {name: i for i, name in enumerate(class_names(config.root, split))}
    videos = common.index_by_stem(config.root)
    for row in read_rows(annotations):
        name = clip_name(row)
        path = videos.get(name, common.join(config.root, split, name + ".mp4"))
        label_name = row.get("label") or ""
        if label_name and label_name not in index:
            yield common.Failure(path, split, "list", "unknown_label",
                                 f"label {label_name!r} ({annotations}) is not a known class")
        elif name not in videos:
            yield common.Failure(path, split, "list", "missing_video",
                                 f"listed in {annotations} but no file {name}.* under {config.root}")
        else:
            yield common.Video(path, split, index.get(label_name, -1), label_name, name)


read = common.read_file
