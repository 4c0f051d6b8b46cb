"""Any folder of videos: `<root>/<class>/**/<video>` (label = first sub-folder) or unlabelled
videos directly in `<root>` (label -1).

Split `all` reads `<root>` itself; any other split name reads the sub-folder `<root>/<split>/`
(e.g. `train`, `test`). Class indices are the sorted class-folder names over all requested splits,
so the same class has the same index in every split. A video's id is its path under the split
folder without the extension, or with it where two files differ only by extension (`video_ids`).
Links to folders are followed without loops (`common.walk`).

Listing fans out (`partitions`, `list_partition`, `partition_classes`, `label_partition`:
pipelines/listing.py runs them on workers): one listdir per split finds its class folders, each
class folder is then listed on its own, and the class indices come from the folders that hold videos. A video id only clashes
with one in its own folder, so the ids are those of `list_videos`. (Two class-folder links to one
folder outside the root list its videos under each link; `list_videos` lists them once.)
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


def partitions(config) -> list[tuple[str, str, str]]:
    """Listing's units of work, found with one listdir per split: (split, split folder, class
    folder name) per class folder, and (split, split folder, "") for the loose (unlabelled)
    videos directly in the split folder."""
    units = []
    for split in common.split_names(config):
        base = split_root(config.root, split)
        units.append((split, base, ""))
        if not common.is_remote(base):
            _, folders = common.entries(base, os.path.realpath(base))  # local-only
            units.extend((split, base, os.path.basename(folder)) for folder in folders)
        else:
            units.extend((split, base, name) for name in _remote_entries(base)[1])
    return units


def _remote_entries(base: str) -> tuple[list[str], list[str]]:
    """(file names, folder names) directly in a remote folder (`common.level`: is_directory is
    asked of this level's extension-less names only, never of a video)."""
    files, folders = common.level(base)
    return [os.path.basename(p) for p in files], [os.path.basename(p) for p in folders]


def list_partition(config, unit: tuple[str, str, str]) -> tuple[str, str, str, list[str]]:
    """A unit of `partitions` -> (split, split folder, class name, sorted video paths)."""
    split, base, name = unit
    if name:
        paths = common.list_files(common.join(base, name), within=base)
    elif common.is_remote(base):
        paths = [common.join(base, entry) for entry in _remote_entries(base)[0]
                 if entry.lower().endswith(common.VIDEO_EXTENSIONS)]
    else:
        files, _ = common.entries(base, os.path.realpath(base))  # local-only
        paths = [common.join(base, entry) for entry in files
                 if entry.lower().endswith(common.VIDEO_EXTENSIONS)]
    return split, base, name, paths


def partition_classes(listed: tuple[str, str, str, list[str]]) -> list[str]:
    """The class a listed unit holds: its class folder's name, when it holds videos."""
    _, _, name, paths = listed
    return [name] if name and paths else []


def label_partition(listed: tuple[str, str, str, list[str]],
                    classes: list[str]) -> Iterator[common.Video | common.Failure]:
    """A listed unit -> its Videos (and Failures), given the sorted class names of all units."""
    split, base, _, paths = listed
    yield from list_folder(base, split, classes, paths)


read = common.read_file
