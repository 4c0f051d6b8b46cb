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

Integrity. Once orbax has finalized a step, `<step>/checksums.json` records the SHA-256 and size
of every file of the step. `restore` verifies them first: a step whose files were truncated,
emptied or changed is skipped with a warning and the newest intact step is restored instead; when
no step is intact the error names every step directory and what is wrong with it. A step without
checksums.json (a run killed between orbax's commit and the checksum write, or an older run) is
restored unverified, with a warning.
"""
import hashlib
import json
import os

import jax
import ml_collections
from absl import logging
import orbax.checkpoint as ocp
import tensorflow as tf

from magvit import remote

CONFIG_FILE = "config.json"
CHECKPOINT_SUBDIR = "checkpoints"
CHECKSUM_FILE = "checksums.json"
_READ_CHUNK = 8 << 20


class CheckpointError(RuntimeError):
    """No checkpoint of a work directory can be restored (each step's problem is in the message)."""


def _step_files(step_dir: str) -> list[str]:
    """Paths (relative to `step_dir`) of every file of a step, sorted; the checksum file excluded."""
    found = []
    for directory, _, files in tf.io.gfile.walk(step_dir):
        relative = directory[len(step_dir):].strip("/")
        found.extend(os.path.join(relative, name) if relative else name for name in files)
    return sorted(f for f in found if f != CHECKSUM_FILE)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_checksums(step_dir: str) -> dict:
    """{relative path: {"sha256", "size"}} of the files of a step directory."""
    return {name: {"sha256": _sha256(os.path.join(step_dir, name)),
                   "size": int(tf.io.gfile.stat(os.path.join(step_dir, name)).length)}
            for name in _step_files(step_dir)}


def write_checksums(step_dir: str) -> None:
    """Writes <step_dir>/checksums.json (via a temporary file renamed into place)."""
    path = os.path.join(step_dir, CHECKSUM_FILE)
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        json.dump(file_checksums(step_dir), f, indent=1, sort_keys=True)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def verify_checksums(step_dir: str) -> str | None:
    """None if the step's files match its checksums.json; else what is wrong (a short sentence).
    A step without checksums.json gives "unverified" (see the module docstring)."""
    path = os.path.join(step_dir, CHECKSUM_FILE)
    if not tf.io.gfile.exists(path):
        return "unverified"
    try:
        with tf.io.gfile.GFile(path) as f:
            expected = json.load(f)
    except ValueError as e:
        return f"{CHECKSUM_FILE} is unreadable ({e})"
    present = set(_step_files(step_dir))
    for name, want in sorted(expected.items()):
        file = os.path.join(step_dir, name)
        if name not in present:
            return f"{file} is missing"
        size = int(tf.io.gfile.stat(file).length)
        if size != want["size"]:
            return f"{file} has {size} bytes, {want['size']} when saved"
        if _sha256(file) != want["sha256"]:
            return f"{file} differs from the saved file (SHA-256 mismatch)"
    extra = sorted(present - set(expected))
    return f"{os.path.join(step_dir, extra[0])} was not part of the saved step" if extra else None


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


def _leaves(value, prefix: str) -> dict:
    if isinstance(value, dict):
        out = {}
        for key in sorted(value):
            out.update(_leaves(value[key], f"{prefix}.{key}"))
        return out
    return {prefix: list(value) if isinstance(value, (list, tuple)) else value}


def _section(config: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(config, dict) or part not in config:
            return None
        config = config[part]
    return config


def check_resume(config: ml_collections.ConfigDict, workdir: str, keys: tuple[str, ...]) -> None:
    """Before a run resumes in `workdir`: raises ValueError naming every `--config.<key>` (or
    leaf under it) whose value differs from the work directory's config.json, since its
    checkpoints were made with that config. Nothing to check in a fresh work directory."""
    if not tf.io.gfile.exists(os.path.join(workdir, CONFIG_FILE)) or not tf.io.gfile.exists(
            checkpoint_dir(workdir)):
        return
    saved, current = load_config(workdir).to_dict(), config.to_dict()
    changed = []
    for key in keys:
        before, after = _leaves(_section(saved, key), key), _leaves(_section(current, key), key)
        for name in sorted(set(before) | set(after)):
            if before.get(name) != after.get(name):
                changed.append(f"--config.{name} was {before.get(name)!r}, now {after.get(name)!r}")
    if changed:
        raise ValueError(
            f"--workdir={workdir} holds checkpoints of another model config, so it cannot resume: "
            + "; ".join(changed) + f". Resume with the config in {os.path.join(workdir, CONFIG_FILE)}"
            " or give a new --workdir (the work directory is left unchanged).")


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
        self._unsummed: list[int] = []     # saved steps whose checksums are not written yet

    def step_dir(self, step: int) -> str:
        """A step's folder where orbax writes it (the local mirror's copy for a mirrored root)."""
        return os.path.join(self._mirror.local if self._mirror else self.directory, str(int(step)))

    def _write_pending_checksums(self) -> None:
        """Checksums of the steps orbax finished saving (process 0 writes them)."""
        self._manager.wait_until_finished()
        pending, self._unsummed = self._unsummed, []
        if jax.process_index() != 0:
            return
        kept = set(self._manager.all_steps())
        for step in pending:
            if step in kept:
                write_checksums(self.step_dir(step))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def read_meta(self, step: int) -> dict | None:
        """The JSON meta of `step` read straight from its file (no restore); None if unreadable."""
        path = os.path.join(self.step_dir(step), "meta", "metadata")
        try:
            with tf.io.gfile.GFile(path) as f:
                return json.load(f)
        except (tf.errors.OpError, ValueError):
            return None

    def save(self, step: int, state, meta: dict | None = None, force: bool = False) -> bool:
        """Saves if `step` is a multiple of `save_every_steps` (or `force`); returns whether it
        saved. Saving is asynchronous after the arrays are copied to the host; see `wait`."""
        if not force and step % self.save_every_steps:
            return False
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  meta=ocp.args.JsonSave(meta or {}))
        self._write_pending_checksums()   # orbax waits for the previous save here anyway
        saved = self._manager.save(int(step), args=args, force=True)
        if saved:
            self._unsummed.append(int(step))
        return saved

    def restore(self, template, step: int | None = None, default_sharding=None):
        """Returns (state, meta) of `step` (default: the newest intact step) shaped like
        `template`. A step that fails its checksums (or, unverified, fails to restore) is skipped
        with a warning; `CheckpointError` when no step can be restored."""
        if step is None:
            candidates = sorted(self.all_steps(), reverse=True)
        else:
            if int(step) not in self.all_steps():
                raise FileNotFoundError(f"no checkpoint step {step} in {self.directory} "
                                        f"(steps: {self.all_steps()})")
            candidates = [int(step)]
        if not candidates:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")

        def abstract(x):
            sharding = getattr(x, "sharding", None) or default_sharding
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
        target = jax.tree.map(abstract, template)
        problems = []
        for candidate in candidates:
            step_dir = self.step_dir(candidate)
            problem = verify_checksums(step_dir)
            if problem not in (None, "unverified"):
                problems.append(f"{step_dir}: {problem}")
                logging.warning("checkpoint %s is damaged (%s); trying an older step", step_dir,
                                problem)
                continue
            if problem == "unverified":
                logging.warning("checkpoint %s has no %s: restoring it unverified", step_dir,
                                CHECKSUM_FILE)
            try:
                restored = self._manager.restore(candidate, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
            except Exception as e:  # pylint: disable=broad-except  (orbax raises many kinds)
                first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
                if problem is None:   # intact files that do not fit: not damage, no fallback
                    raise CheckpointError(
                        f"{step_dir} is intact but does not fit this run's model "
                        f"({type(e).__name__}: {first_line})") from e
                problems.append(f"{step_dir}: unverified and unreadable "
                                f"({type(e).__name__}: {first_line})")
                logging.warning("checkpoint %s cannot be restored (%s); trying an older step",
                                step_dir, first_line)
                continue
            if problems:
                logging.warning("restored checkpoint %s instead of the newer damaged step(s): %s",
                                step_dir, "; ".join(problems))
            return restored["state"], dict(restored["meta"] or {})
        raise CheckpointError(f"no intact checkpoint in {self.directory}: " + "; ".join(problems))

    def wait(self) -> None:
        """Blocks until asynchronous saves are on disk with their checksums (and, through a
        mirror, uploaded)."""
        self._write_pending_checksums()
        if self._mirror and jax.process_index() == 0:
            self._mirror.upload()

    def close(self) -> None:
        self.wait()
        self._manager.close()
        if self._mirror:
            self._mirror.close()
