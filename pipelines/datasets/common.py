"""What every dataset reader shares: the listed video, the dead letter, the decodable source.

A reader module (one per native layout) provides
  SPLITS                          the split names it knows (None: any sub-folder name)
  check(config)                   launch-time checks (root and label files exist); raises ValueError
  list_videos(config, split)      yields `Video` (to decode) or `Failure` (missing file, unknown label)
  read(video, config)             yields `Source`s: one per video file (`read_file`), or one per
                                  trajectory of a BAIR tfrecord file (and a `Failure` for a bad
                                  record inside it); raises VideoError for an unreadable file
Files are found and read through tf.io.gfile, so a root on GCS works as well as a local one.

Listing fans out over workers (pipelines/listing.py) in one of two ways:
  by partition (folder, bair): `partitions(config)` (cheap units: class folders, split folders),
    `list_partition(config, unit)` (on a worker), `partition_classes(listed)` (class names a
    listed unit holds) and `label_partition(listed, classes)` -> Videos and Failures;
  by label rows (ucf101, kinetics600, ssv2: the splits come from label files): `file_roots(config)`
    [(folder, levels to expand before listing each sub-folder on its own)], `file_key(base, path)`
    (the key a found file joins on, None: not a video), `row_units(config, split)` (the
    split's label files: tuples (split, label file, ...)), the rows of a label file: either
    `read_rows(config, unit)` -> (key, Row) (a whole file on one worker, e.g. a JSON list) or,
    for a file of one row per line, `row_header(unit)` (its header's fields, None: no header)
    and `parse_row_line(config, unit, header, line)` -> (key, Row) or None (listing then reads
    the file with Beam's ReadFromText, split by byte ranges over workers), `class_index(config,
    splits)` (small, built once) and `label_row(row, path or None, classes)` -> Video or
    Failure. The found files and the rows are joined on their key, for all splits in one pass. Such a reader's `list_videos` runs the
    same rows and labelling in one process (`list_by_rows`), one split at a time.
"""
import dataclasses
import json
import os
import re
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf

from magvit import video_io

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".gif")


class BadInput(video_io.VideoError):
    """An input that cannot make clips, with the dead-letter `reason` (see `Failure`)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Video:
    """One listed input: a video file (or, for BAIR, a file of trajectories)."""
    path: str
    split: str
    label: int            # class index, -1 when unlabelled
    label_name: str
    video_id: str


@dataclasses.dataclass(frozen=True)
class Failure:
    """A dead letter: an input that was skipped, with why."""
    path: str
    split: str
    stage: str            # list | decode | clip
    reason: str           # missing_video | unknown_label | empty_file | broken_link | not_a_file |
                          # decode_error | bad_record | too_short | truncated
    detail: str

    def to_json(self) -> str:
        return json.dumps(dict(path=self.path, stage=self.stage, reason=self.reason,
                               detail=self.detail))


@dataclasses.dataclass(frozen=True)
class Row:
    """One entry of a label file (a line of a split list, a CSV row, a JSON entry)."""
    split: str
    label_name: str       # as the label file spells it; "" when it gives none
    video_id: str
    default_path: str     # the path a dead letter names when no file was found
    source: str           # the label file


def list_by_rows(reader, config, split: str) -> Iterator[Video | Failure]:
    """A row-listed reader's `list_videos` in one process: its files found by a walk of each file
    root, the split's rows, and `label_row` of each with the first (sorted) path of its key."""
    found = {}
    for base, _ in reader.file_roots(config):
        for path in list_files(base, getattr(reader, "EXTENSIONS", VIDEO_EXTENSIONS)):
            key = reader.file_key(base, path)
            if key is not None and (key not in found or path < found[key]):
                found[key] = path
    classes = reader.class_index(config, [split])
    for unit in reader.row_units(config, split):
        for key, row in rows_of(reader, config, unit):
            yield reader.label_row(row, found.get(key), classes)


def rows_of(reader, config, unit) -> Iterator[tuple[str, Row]]:
    """The (key, Row)s of one label file, in one process (streamed line by line where it can)."""
    if not hasattr(reader, "parse_row_line"):
        yield from reader.read_rows(config, unit)
        return
    header = reader.row_header(unit)
    with tf.io.gfile.GFile(unit[1], "r") as f:
        lines = iter(f)
        if header is not None:
            next(lines, None)
        for line in lines:
            parsed = reader.parse_row_line(config, unit, header, line.rstrip("\r\n"))
            if parsed is not None:
                yield parsed


@dataclasses.dataclass
class Source:
    """One decodable video. `frames()` streams (a generator of) RGB uint8 frames already scaled
    so that their shorter side is `dataset.resolution`; `count_frames()` counts them without
    decoding; `declared_frames` is the count the container declares (0: unknown) and
    `duration_frames` the count its declared duration implies (0: unknown), for containers such as
    Matroska that state a duration but no frame count."""
    video: Video
    fps: float
    frames: Callable[[], Iterator[np.ndarray]]
    count_frames: Callable[[], int]
    declared_frames: int = 0
    duration_frames: int = 0


def split_names(config) -> list[str]:
    """The comma-separated `dataset.split` as a list (order kept, duplicates dropped)."""
    names = [s.strip() for s in config.split.split(",") if s.strip()]
    if not names:
        raise ValueError(f"dataset.split is empty ({config.split!r}); name at least one split")
    for name in names:   # a split name becomes a folder under --out_dir: never a path
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) or ".." in name:
            raise ValueError(f"--config.dataset.split: {name!r} is not a split name (letters, "
                             "digits, '_', '-', '.'; no '/' or '..': it names a folder under "
                             "--out_dir)")
    return list(dict.fromkeys(names))


def is_remote(path: str) -> bool:
    return "://" in path


def exists(path: str) -> bool:
    return tf.io.gfile.exists(path)


def isdir(path: str) -> bool:
    return tf.io.gfile.isdir(path)


def join(*parts: str) -> str:
    return os.path.join(*parts)


def require(path: str, what: str) -> None:
    """Raises ValueError naming `path` (and what it should be) if it does not exist."""
    if not exists(path):
        raise ValueError(f"{path}: not found; expected {what} (check --config.dataset.root)")


def read_text(path: str) -> str:
    with tf.io.gfile.GFile(path, "r") as f:
        return f.read()


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def entries(directory: str, real_root: str) -> tuple[list[str], list[str]]:
    """(names of the non-folder entries, paths of the folders to walk) of a local `directory`:
    links to folders count unless the target lies inside `real_root` (its files are listed
    under their own path already) or contains it (a loop such as `up -> ..`). One scandir, and a
    stat per link only: no call per file."""
    folders, files = [], []
    with os.scandir(directory) as listing:  # local-only: the entry types come with the listing
        found = sorted(listing, key=lambda entry: entry.name)
    for entry in found:
        path = join(directory, entry.name)
        if not _is_dir(entry):   # follows a link (a stat for links only): a dangling one is a file
            files.append(entry.name)
        elif not entry.is_symlink():
            folders.append(path)
        else:
            target = os.path.realpath(path)  # local-only
            if not (_inside(target, real_root) or _inside(real_root, target)):
                folders.append(path)
    return files, folders


def _is_dir(entry: os.DirEntry) -> bool:
    """os.path.isdir's answer: False for a link that loops (ELOOP) or dangles."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def walk(root: str, within: str | None = None) -> Iterator[tuple[str, list[str]]]:
    """(folder, names of the non-folder entries in it) for `root` and every folder below it.

    A remote root is walked by tf.io.gfile (object stores have no links). Locally, links to
    folders are followed unless the target lies inside `within` (default: `root`; a part of a
    larger tree passes the tree's root) or contains it (see `entries`), and each real folder is
    walked once: a link loop can neither multiply the files nor relabel them."""
    if is_remote(root):
        for directory, _, files in tf.io.gfile.walk(root):
            yield directory, files
        return
    real_root = os.path.realpath(within or root)  # local-only
    seen, stack = set(), [root]
    while stack:
        directory = stack.pop()
        real = os.path.realpath(directory)  # local-only
        if real in seen:
            continue
        seen.add(real)
        files, folders = entries(directory, real_root)
        yield directory, files
        stack.extend(reversed(folders))


# Names that are files whatever the store says (no is_directory request needed to tell).
FILE_EXTENSIONS = VIDEO_EXTENSIONS + (".tfrecord", ".tfrecords", ".csv", ".json", ".jsonl", ".txt")


def level(folder: str, within: str | None = None) -> tuple[list[str], list[str]]:
    """(sorted paths of the files, sorted paths of the folders) directly in `folder`: the one
    level that listing fan-out expands before it lists each folder below on its own.

    Locally one scandir (links as `entries` treats them, relative to `within`, default `folder`).
    On an object store one listdir (a paged listing of the level): a name GCS marks with a
    trailing '/' is a folder and a name with a known file extension a file, so is_directory is
    asked only of the other names of this level (class folders), never of each video."""
    if not is_remote(folder):
        files, folders = entries(folder, os.path.realpath(within or folder))  # local-only
        return [join(folder, name) for name in files], folders
    files, folders = [], []
    for name in sorted(tf.io.gfile.listdir(folder)):
        path = join(folder, name.rstrip("/"))
        if name.endswith("/"):
            folders.append(path)
        elif name.lower().endswith(FILE_EXTENSIONS) or not tf.io.gfile.isdir(path):
            files.append(path)
        else:
            folders.append(path)
    return files, folders


def list_files(root: str, extensions=VIDEO_EXTENSIONS, within: str | None = None) -> list[str]:
    """Every file under `root` (recursively, see `walk`) whose name ends with one of
    `extensions`, sorted. A remote root is listed by prefix (`FileSystems.match` of `root/**`:
    one listing request per page of objects, no request per file)."""
    if is_remote(root):
        return sorted(path for path in _match_all(root) if path.lower().endswith(extensions))
    found = []
    for directory, files in walk(root, within):
        found.extend(join(directory, name) for name in files if name.lower().endswith(extensions))
    return sorted(found)


def _match_all(root: str) -> list[str]:
    from apache_beam.io.filesystems import FileSystems   # pylint: disable=import-outside-toplevel
    from pipelines import gfile_filesystem  # noqa: F401  pylint: disable=import-outside-toplevel
    (result,) = FileSystems.match([root.rstrip("/") + "/**"])
    return [metadata.path for metadata in result.metadata_list]


def check_regular_file(path: str) -> None:
    """Raises BadInput for a local path that is a dangling or looping link (broken_link) or not
    a regular file, e.g. a FIFO, which would block the reader forever (not_a_file)."""
    if is_remote(path):
        return
    if not os.path.exists(path):  # local-only
        if os.path.islink(path):  # local-only
            raise BadInput("broken_link", f"{path}: a symbolic link to nothing readable "
                                          f"(dangling, or a loop of links)")
        raise BadInput("missing_video", f"{path}: not found")
    if not os.path.isfile(path):  # local-only
        raise BadInput("not_a_file", f"{path}: not a regular file (a FIFO, socket or device?)")


def stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def index_by_stem(root: str, extensions=VIDEO_EXTENSIONS) -> dict[str, str]:
    """{file name without extension: path} of the videos under `root` (first path wins)."""
    index = {}
    for path in list_files(root, extensions):
        index.setdefault(stem(path), path)
    return index


def _open(path: str):
    """A local path as is (PyAV opens it); a remote one as a binary file object."""
    return tf.io.gfile.GFile(path, "rb") if is_remote(path) else path


def read_file(video: Video, config) -> Iterator[Source]:
    """The `read` of the file-based readers: one Source per video file, whose `frames()` decodes
    (once) with PyAV from the file opened here to read its frame rate."""
    check_regular_file(video.path)
    try:
        opened = video_io.VideoFile(_open(video.path))
    except video_io.VideoError as e:
        if tf.io.gfile.stat(video.path).length == 0:
            raise BadInput("empty_file", f"{video.path}: empty file (0 bytes)") from e
        raise
    yield Source(
        video=video, fps=opened.fps or config.fps_when_unknown,
        frames=lambda: opened.frames(config.resolution, config.resize_filter),
        count_frames=lambda: video_io.count_frames(_open(video.path)),
        declared_frames=opened.declared_frames,
        duration_frames=int(round(opened.declared_seconds * opened.fps)) if opened.fps else 0)
