"""Something-Something-v2 as published: `<id>.webm` videos (in `20bn-something-something-v2/` or
directly under root) and the label files `labels.json` (template -> index, as strings),
`train.json` / `validation.json` (lists of {"id", "label", "template", "placeholders"}) and
`test.json` (ids only, label -1).

A video's class is its template with the `[` `]` around `something` removed, looked up in
labels.json, exactly as the dataset's publishers map them. An entry joins the first (sorted) path
of a video file named after its id (any video extension, anywhere under the videos folder).

Listed by label rows (see `common`): the label files' entries become rows and join the files
found under the videos folder (its sub-folders each listed on their own worker; the published
flat folder is one paged listing, no request per file).
"""
import json
import sys
from typing import Iterator

from pipelines.datasets import common

SPLITS = ("train", "validation", "test")
VIDEOS = "20bn-something-something-v2"


def videos_dir(root: str) -> str:
    nested = common.join(root, VIDEOS)
    return nested if common.isdir(nested) else root


def check(config) -> None:
    common.require(common.join(config.root, "labels.json"), "SSv2's labels.json")
    for split in common.split_names(config):
        common.require(common.join(config.root, f"{split}.json"), f"SSv2's {split}.json")


def template_class(template: str) -> str:
    return template.replace("[", "").replace("]", "")


# ---------------------------------------------------------------- listing by rows (see common)
def file_roots(config) -> list[tuple[str, int]]:
    return [(videos_dir(config.root), 1)]


def file_key(base: str, path: str) -> str | None:
    return common.stem(path) if path.lower().endswith(common.VIDEO_EXTENSIONS) else None


def row_units(config, split: str) -> list[tuple[str, str]]:
    return [(split, common.join(config.root, f"{split}.json"))]


def read_rows(config, unit: tuple[str, str]) -> Iterator[tuple[str, common.Row]]:
    split, path = unit
    base = videos_dir(config.root)
    for entry in json.loads(common.read_text(path)):
        video_id = str(entry["id"])
        yield video_id, common.Row(split, entry.get("template", ""), video_id,
                                   common.join(base, video_id + ".webm"), path)


def class_index(config, splits) -> dict[str, int]:
    return {name: int(index) for name, index in
            json.loads(common.read_text(common.join(config.root, "labels.json"))).items()}


def label_row(row: common.Row, path: str | None,
              labels: dict[str, int]) -> common.Video | common.Failure:
    name = template_class(row.label_name)
    if name and name not in labels:
        return common.Failure(path or row.default_path, row.split, "list", "unknown_label",
                              f"template {row.label_name!r} ({row.source}) is not in labels.json")
    if path is None:
        return common.Failure(row.default_path, row.split, "list", "missing_video",
                              f"listed in {row.source} but not found under "
                              f"{row.default_path.rsplit('/', 1)[0]}")
    return common.Video(path, row.split, labels[name] if name else -1, name, row.video_id)


def list_videos(config, split: str) -> Iterator[common.Video | common.Failure]:
    yield from common.list_by_rows(sys.modules[__name__], config, split)


read = common.read_file
