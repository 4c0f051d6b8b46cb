"""Orbax CheckpointManager wrappers: a train state pytree plus JSON metadata per step, and the
run's config saved beside the checkpoints.

Layout of a work directory:
  <workdir>/config.json              the full run config (`save_config` / `load_config`)
  <workdir>/checkpoints/<step>/      orbax: item "state" (any pytree of arrays) and item "meta"
                                     (JSON: e.g. the data iterator position, metrics)

`Checkpointer.restore(template)` restores onto the shardings of `template` (arrays or
`jax.ShapeDtypeStruct`s, e.g. from `jax.eval_shape`); leaves without a sharding go to
`default_sharding` (replicated on a mesh, see `magvit.train_utils.replicated`).

`workdir` may be remote: orbax writes `gs://` itself; other `tf.io.gfile` schemes go through a
local mirror (`magvit.remote.LocalMirror`) that `wait()` and `close()` upload.
"""
import json
import os

import jax
import ml_collections
import orbax.checkpoint as ocp
import tensorflow as tf

from magvit import remote

CONFIG_FILE = "config.json"
CHECKPOINT_SUBDIR = "checkpoints"


def save_config(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Writes the config as JSON to <workdir>/config.json (process 0 only); returns the path."""
    path = os.path.join(workdir, CONFIG_FILE)
    if jax.process_index() == 0:
        tf.io.gfile.makedirs(workdir)
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(config.to_json(indent=2, sort_keys=True))
    return path


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """Reads <workdir>/config.json; a clear error if it is missing."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} not found: {workdir!r} is not a training work directory "
                                "(expected config.json beside checkpoints/)")
    with tf.io.gfile.GFile(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(remote.absolute(workdir), CHECKPOINT_SUBDIR)


class Checkpointer:
    """Periodic and final checkpoints of (state pytree, JSON meta) under <workdir>/checkpoints."""

    def __init__(self, workdir: str, max_to_keep: int = 3, save_every_steps: int = 1):
        self.directory = checkpoint_dir(workdir)
        self.save_every_steps = max(int(save_every_steps), 1)
        self._mirror = (None if remote.orbax_can_write(self.directory)
                        else remote.LocalMirror(self.directory))
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self._manager = ocp.CheckpointManager(self._mirror.local if self._mirror else self.directory,
                                              options=options,
                                              item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state, meta: dict | None = None, force: bool = False) -> bool:
        """Saves if `step` is a multiple of `save_every_steps` (or `force`); returns whether it
        saved. Saving is asynchronous after the arrays are copied to the host; see `wait`."""
        if not force and step % self.save_every_steps:
            return False
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  meta=ocp.args.JsonSave(meta or {}))
        return self._manager.save(int(step), args=args, force=True)

    def restore(self, template, step: int | None = None, default_sharding=None):
        """Returns (state, meta) of `step` (default: the latest) shaped like `template`."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")

        def abstract(x):
            sharding = getattr(x, "sharding", None) or default_sharding
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
        target = jax.tree.map(abstract, template)
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        return restored["state"], dict(restored["meta"] or {})

    def wait(self) -> None:
        """Blocks until asynchronous saves are on disk (and, through a mirror, uploaded)."""
        self._manager.wait_until_finished()
        if self._mirror and jax.process_index() == 0:
            self._mirror.upload()

    def close(self) -> None:
        self.wait()
        self._manager.close()
        if self._mirror:
            self._mirror.close()
