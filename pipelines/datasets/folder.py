"""Any folder of videos: `<root>/<class>/**/<video>` (label = first sub-folder) or unlabelled
videos directly in `<root>` (label -1).

Split `all` reads `<root>` itself; any other split name reads the sub-folder `<root>/<split>/`
(e.g. `train`, `test`). Class indices are the sorted class-folder names over all requested splits,
so the same class has the same index in every split. A video's id is its path under the split
folder without the extension, or with it where two files differ only by extension (`video_ids`).
Links to folders are followed without loops (`common.walk`).
"""
import collections
import os
from typing import Iterator

from pipelines.datasets import common

SPLITS = None   # `all` or any sub-folder name


def split_root(root: str, split: str) -> str:
    return root if split == "all" else common.join(root, split)


def check(config) -> None:
    for split in common.split_names(config):
        common.require(split_root(config.root, split), f"the folder of split {split!r}")


def class_names(config) -> list[str]:
    """Sorted names of the class folders (those holding videos) over the requested splits."""
    names = set()
    for split in common.split_names(config):
        base = split_root(config.root, split)
        for path in common.list_files(base):
            relative = path[len(base):].lstrip("/").split("/")
            if len(relative) > 1:
                names.add(relative[0])
    return sorted(names)


def video_ids(relative_paths: list[str]) -> dict[str, str]:
    """{relative path: video id}: the path without its extension (`c/x.mp4` -> `c/x`), or the whole
    relative path where that would not be unique (`c/x.mp4` and `c/x.mkv` keep their extensions).
    Relative paths are unique, so the ids are too."""
    ids = {path: os.path.splitext(path)[0] for path in relative_paths}
    while True:
        owners = collections.Counter(ids.values())
        clashing = [path for path, video_id in ids.items()
                    if owners[video_id] > 1 and video_id != path]
        if not clashing:
            return ids
        ids.update({path: path for path in clashing})


def list_folder(base: str, split: str, classes: list[str] | None,
                paths: list[str] | None = None) -> Iterator[common.Video | common.Failure]:
    """The videos under `base`; a class folder not in `classes` gives an unknown_label Failure."""
    index = {name: i for i, name in enumerate(classes or [])}
    paths = common.list_files(base) if paths is None else paths
    relatives = {path: path[len(base):].lstrip("/") for path in paths}
    ids = video_ids(list(relatives.values()))
    for path in paths:
        relative = relatives[path]
        parts = relative.split("/")
        video_id = ids[relative]
        if len(parts) == 1:
            yield common.Video(path, split, -1, "", video_id)
        elif parts[0] in index:
            yield common.Video(path, split, index[parts[0]], parts[0], video_id)
        else:
            yield common.Failure(path, split, "list", "unknown_label",
                                 f"class folder {parts[0]!r} is not one of the {len(index)} "
                                 f"known classes")


def list_videos(config, split: str) -> Iterator[common.Video | common.Failure]:
    yield from list_folder(split_root(config.root, split), split, class_names(config))


read = common.read_file
