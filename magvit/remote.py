"""Local folders and remote URLs (gs://, ...) alike: every pipeline path goes through here or
`tf.io.gfile`, never `open` / `os.path.abspath` / `os.makedirs` on a path that may be remote.

Orbax writes checkpoints itself (through tensorstore) to local folders and `gs://` only. For any
other scheme that `tf.io.gfile` knows (`ram://` in tests, a filesystem plugin), `LocalMirror`
lets orbax write to a local temporary folder and copies finished checkpoints to the remote one.
"""
import os
import shutil
import tempfile
import weakref

import tensorflow as tf

ORBAX_SCHEMES = ("gs://",)


def is_remote(path: str) -> bool:
    """Whether `path` is a URL (gs://bucket/x, ram://x) rather than a local file name."""
    return "://" in str(path)


def absolute(path: str) -> str:
    """A local path made absolute (workers may run in another directory); a URL as is."""
    return str(path) if is_remote(path) else os.path.abspath(path)  # local-only


def relative(path: str, start: str) -> str:
    """`path` relative to the folder `start` it lies under (local or remote, compared as text)."""
    start = absolute(start).rstrip("/") + "/"
    path = absolute(path)
    if not path.startswith(start):
        raise ValueError(f"{path} is not under {start}")
    return path[len(start):]


def orbax_can_write(path: str) -> bool:
    return not is_remote(path) or str(path).startswith(ORBAX_SCHEMES)


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path` (creating its folder), local or remote."""
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)


def copy_tree(source: str, target: str, overwrite: bool = True) -> None:
    """Copies every file under `source` to the same place under `target` (either may be remote)."""
    for directory, _, files in tf.io.gfile.walk(source):
        relative = os.path.relpath(directory, source) if directory != source else ""
        destination = os.path.join(target, relative) if relative else target
        tf.io.gfile.makedirs(destination)
        for name in files:
            tf.io.gfile.copy(os.path.join(directory, name), os.path.join(destination, name),
                             overwrite=overwrite)


class LocalMirror:
    """A local temporary copy of the remote folder `remote`: `local` starts with its content,
    `upload()` makes `remote` hold exactly the top-level entries of `local` (new entries are
    copied, vanished ones removed; entries are orbax step folders, written once)."""

    def __init__(self, remote: str):
        self.remote = remote
        self.local = tempfile.mkdtemp(prefix="magvit-mirror-")  # local-only
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.local, True)  # local-only
        if tf.io.gfile.isdir(remote):
            copy_tree(remote, self.local)

    def upload(self) -> None:
        tf.io.gfile.makedirs(self.remote)
        local_entries = set(os.listdir(self.local))  # local-only
        for name in sorted(local_entries):
            target = os.path.join(self.remote, name)
            if tf.io.gfile.exists(target):
                continue
            source = os.path.join(self.local, name)
            if os.path.isdir(source):  # local-only
                copy_tree(source, target)
            else:
                tf.io.gfile.copy(source, target, overwrite=True)
        for name in tf.io.gfile.listdir(self.remote):
            name = name.rstrip("/")
            if name not in local_entries:
                path = os.path.join(self.remote, name)
                if tf.io.gfile.isdir(path):
                    tf.io.gfile.rmtree(path)
                else:
                    tf.io.gfile.remove(path)

    def close(self) -> None:
        self._cleanup()
