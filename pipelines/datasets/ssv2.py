"""Something-Something-v2 as published: `<id>.webm` videos (in `20bn-something-something-v2/` or
directly under root) and the label files `labels.json` (template -> index, as strings),
`train.json` / `validation.json` (lists of {"id", "label", "template", "placeholders"}) and
`test.json` (ids only, label -1).

A video's class is its template with the `[` `]` around `something` removed, looked up in
labels.json, exactly as the dataset's publishers map them.
"""
import json
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


def list_videos(config, split: str) -> Iterator[common.Video | common.Failure]:
    labels = {name: int(index) for name, index in
              json.loads(common.read_text(common.join(config.root, "labels.json"))).items()}
    entries_path = common.join(config.root, f"{split}.json")
    base = videos_dir(config.root)
    videos = common.index_by_stem(base)
    for entry in json.loads(common.read_text(entries_path)):
        video_id = str(entry["id"])
        path = videos.get(video_id, common.join(base, video_id + ".webm"))
        name = template_class(entry["template"]) if "template" in entry else ""
        if name and name not in labels:
            yield common.Failure(path, split, "list", "unknown_label",
                                 f"template {entry['template']!r} ({entries_path}) is not in "
                                 f"labels.json")
        elif video_id not in videos:
            yield common.Failure(path, split, "list", "missing_video",
                                 f"listed in {entries_path} but not found under {base}")
        else:
            yield common.Video(path, split, labels[name] if name else -1, name, video_id)


read = common.read_file
