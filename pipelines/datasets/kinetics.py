"""Kinetics-600 as published: annotation CSVs `label,youtube_id,time_start,time_end,split` and
clips `<youtube_id>_<start:06d>_<end:06d>.mp4` in a flat or per-class folder anywhere under root.

The CSV of split S is `<root>/annotations/S.csv` or `<root>/S.csv` (`validation` also finds
`validate.csv` / `val.csv`). Class indices are the sorted label names of the train CSV (of the
split's own CSV when there is no train CSV). Listed clips without a video file are dead letters
(`missing_video`, counted in stats.json), never fatal. A test CSV without labels gives label -1.
A clip joins the first (sorted) path of a video file named after it (any video extension).

Listed by label rows (see `common`), all splits in one pass: the root is expanded two folder
levels (`<root>/<split>/<class>/`), each folder below is listed on its own worker, and the CSV
rows (each CSV read by Beam's ReadFromText, split by byte ranges over workers) join the found
files on the clip name.
"""
import csv
import sys
from typing import Iterator

import tensorflow as tf

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


def iter_rows(path: str) -> Iterator[dict]:
    """The CSV's rows as dicts, streamed (a worker never holds the whole file)."""
    with tf.io.gfile.GFile(path, "r") as f:
        yield from csv.DictReader(f)


def clip_name(row: dict) -> str:
    return f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"


def class_names(root: str, split: str) -> list[str]:
    path = csv_path(root, "train") or csv_path(root, split)
    return sorted({row["label"] for row in iter_rows(path) if row.get("label")})


# ---------------------------------------------------------------- listing by rows (see common)
def file_roots(config) -> list[tuple[str, int]]:
    return [(config.root, 2)]     # <root>/<split>/<class>/: each class folder on its own


def file_key(base: str, path: str) -> str | None:
    return common.stem(path) if path.lower().endswith(common.VIDEO_EXTENSIONS) else None


def row_units(config, split: str) -> list[tuple[str, str]]:
    return [(split, csv_path(config.root, split))]


def row_header(unit: tuple[str, str]) -> list[str]:
    """The CSV's field names (its first line: one small read)."""
    with tf.io.gfile.GFile(unit[1], "r") as f:
        return next(csv.reader([f.readline()]))


def parse_row_line(config, unit: tuple[str, str], header: list[str],
                   line: str) -> tuple[str, common.Row] | None:
    """One CSV line (Kinetics' CSVs have no line breaks inside a field) -> (clip name, Row)."""
    values = next(csv.reader([line]), None)
    if not values:
        return None
    row = dict(zip(header, values))
    split, path = unit
    name = clip_name(row)
    return name, common.Row(split, row.get("label") or "", name,
                            common.join(config.root, split, name + ".mp4"), path)


def class_index(config, splits) -> dict[str, dict[str, int]]:
    """{split: {label: index}}; the train CSV is read once for all splits."""
    by_path, out = {}, {}
    for split in splits:
        path = csv_path(config.root, "train") or csv_path(config.root, split)
        if path not in by_path:
            by_path[path] = {name: i for i, name in enumerate(class_names(config.root, split))}
        out[split] = by_path[path]
    return out


def label_row(row: common.Row, path: str | None,
              classes: dict[str, dict[str, int]]) -> common.Video | common.Failure:
    index = classes[row.split]
    if row.label_name and row.label_name not in index:
        return common.Failure(path or row.default_path, row.split, "list", "unknown_label",
                              f"label {row.label_name!r} ({row.source}) is not a known class")
    if path is None:
        return common.Failure(row.default_path, row.split, "list", "missing_video",
                              f"listed in {row.source} but no file {row.video_id}.* under the "
                              f"dataset root")
    return common.Video(path, row.split, index.get(row.label_name, -1), row.label_name,
                        row.video_id)


def list_videos(config, split: str) -> Iterator[common.Video | common.Failure]:
    yield from common.list_by_rows(sys.modules[__name__], config, split)


read = common.read_file
