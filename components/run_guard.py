"""One local pipeline run per pipeline root, and what a killed run left behind cleaned up.

`hold_root(pipeline_root, lock_dir)` takes `<lock_dir>/.run.lock` (the MLMD store's folder) (created exclusively; it names the
process holding it) for the length of a run. A second run on the same root while the first is
alive is refused with `RunInProgress` naming the holder, instead of both computing everything.
A lock whose process is gone (the run was killed) is taken over.

`recover_interrupted(metadata_path)`, called while holding the lock, marks every execution a
killed run left RUNNING (or NEW) as FAILED in MLMD, with a `failure` property saying so, and
removes the partial output folders of those executions (artifacts still PENDING), which it marks
ABANDONED. The next run then computes those stages afresh.
"""
import contextlib
import json
import os
import socket
import time

import ml_metadata as mlmd
import tensorflow as tf
from absl import logging
from ml_metadata.proto import metadata_store_pb2

LOCK_FILE = ".run.lock"
INTERRUPTED = "interrupted: its run ended without finishing it (killed?); marked failed by " \
              "the next run on this pipeline root"
_UNFINISHED = (metadata_store_pb2.Execution.RUNNING, metadata_store_pb2.Execution.NEW)


class RunInProgress(RuntimeError):
    """Another live run holds the pipeline root."""


def _alive(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return True   # cannot tell: a run on another machine is assumed alive
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError):
        return True
    return True


def _read_holder(path: str) -> dict:
    try:
        with open(path) as f:  # local-only
            return json.load(f)
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def hold_root(pipeline_root: str, lock_dir: str | None = None):
    """Holds `<lock_dir>/.run.lock` for the `with` block; `lock_dir` (default: the pipeline root)
    must be local: the folder of the run's MLMD store, which stays local for a remote root."""
    path = os.path.join(lock_dir or pipeline_root, LOCK_FILE)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # local-only
        except FileExistsError:
            holder = _read_holder(path)
            if holder and _alive(holder):
                raise RunInProgress(
                    f"--pipeline_root={pipeline_root} is in use by another run (pid "
                    f"{holder.get('pid')} on {holder.get('host')}, lock {path}): wait for it "
                    "to finish or use another --pipeline_root") from None
            logging.warning("taking over %s from run %s, which is gone", path, holder or "?")
            os.remove(path)  # local-only
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise RunInProgress(f"could not take {path}")
    try:
        yield
    finally:
        if _read_holder(path).get("pid") == me["pid"]:
            os.remove(path)  # local-only


def recover_interrupted(metadata_path: str) -> list[str]:
    """Marks the unfinished executions of the MLMD store FAILED and removes their partial
    outputs; returns one line per execution recovered (empty when nothing was left behind)."""
    if not os.path.exists(metadata_path):  # local-only
        return []
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE
    store = mlmd.MetadataStore(config)
    recovered = []
    for execution in store.get_executions():
        if execution.last_known_state not in _UNFINISHED:
            continue
        execution.last_known_state = metadata_store_pb2.Execution.FAILED
        execution.custom_properties["failure"].string_value = INTERRUPTED
        events = [e for e in store.get_events_by_execution_ids([execution.id])
                  if e.type in (metadata_store_pb2.Event.OUTPUT,
                                metadata_store_pb2.Event.PENDING_OUTPUT,
                                metadata_store_pb2.Event.DECLARED_OUTPUT)]
        artifacts = store.get_artifacts_by_id([e.artifact_id for e in events]) if events else []
        removed = []
        for artifact in artifacts:
            if artifact.state != metadata_store_pb2.Artifact.PENDING:
                continue
            if artifact.uri and tf.io.gfile.exists(artifact.uri):
                tf.io.gfile.rmtree(artifact.uri)
                removed.append(artifact.uri)
            artifact.state = metadata_store_pb2.Artifact.ABANDONED
        if artifacts:
            store.put_artifacts(artifacts)
        store.put_executions([execution])
        recovered.append(f"execution {execution.id} ({execution.name or 'unnamed'}) marked FAILED"
                         + (f", removed {', '.join(removed)}" if removed else ""))
    for line in recovered:
        logging.warning("recovered an interrupted run: %s", line)
    return recovered
