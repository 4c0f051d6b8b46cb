"""All-or-nothing file writes for the Beam jobs (`atomic_path`), local or remote.

A module of its own, not `pipelines.prepare`: the DoFns that use it are unpickled by Beam workers,
so it must live in a module every worker process can import (never the `__main__` of
`python -m pipelines.prepare`).
"""
import contextlib
import os
import uuid

import tensorflow as tf


@contextlib.contextmanager
def atomic_path(path: str):
    """A temporary path beside `path` to write to. When the block ends without an error, what was
    written there is renamed to `path` (nothing happens if nothing was written); when it raises,
    it is removed. So `path` is never half-written, and a retried attempt rewrites it whole."""
    tf.io.gfile.makedirs(os.path.dirname(path))
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    with removed_on_error(temporary):
        yield temporary
    if tf.io.gfile.exists(temporary):
        tf.io.gfile.rename(temporary, path, overwrite=True)


@contextlib.contextmanager
def removed_on_error(path: str):
    """Removes what was written at `path` when the block raises (then re-raises)."""
    try:
        yield
    except BaseException:
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
        raise
