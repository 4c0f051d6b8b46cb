"""Training plumbing shared by the tokenizer and transformer trainers.

- Data parallelism through `jax.sharding`: one 1-D mesh over all devices (axis "data"); the state
  is replicated, batches are split along their first axis. The same code runs on 1 CPU, 8 GPUs or
  a TPU slice (`make_mesh`, `replicate`, `shard_batch`).
- The optax learning-rate schedule: linear warm-up then cosine decay (`learning_rate_schedule`).
- EMA of parameters (`ema_update`), parameter counts and a stable parameter hash.
- One-off programs such as parameter init compiled cheaply (`run_once`).
- TensorBoard scalars through tf.summary (`MetricWriter`), a tqdm progress bar with steps/s and
  ETA (`progress_bar`).
"""
import hashlib
import os

import jax
import numpy as np
import optax
import tqdm
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from magvit import host_memory

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """A 1-D data-parallel mesh over `devices` (default: all devices of all processes)."""
    devices = np.asarray(devices if devices is not None else jax.devices())
    return Mesh(devices.reshape(-1), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicate(tree, mesh: Mesh):
    """Places every array of `tree` on all devices of the mesh."""
    return jax.device_put(tree, replicated(mesh))


def check_batch_size(batch_size: int, mesh: Mesh, flag: str = "batch_size") -> None:
    if batch_size % mesh.size:
        raise ValueError(f"{flag}={batch_size} is not divisible by the {mesh.size} devices")


def shard_batch(batch, mesh: Mesh):
    """Global jax.Arrays split along axis 0 from this process's numpy batch (a pytree), copied
    in before a CPU step runs on the calling thread (host_memory.inputs_ready)."""
    sharding = batch_sharding(mesh)
    return host_memory.inputs_ready(jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch))


def run_once(fn, *args):
    """fn(*args) as one XLA program, for programs run once (parameter init).

    Run eagerly, flax's init compiles each initialiser op on its own; jitted with the default
    optimisation, XLA:CPU spends seconds optimising a program that runs in milliseconds (tiny's
    tokenizer init: 10.8 s to compile, 1.5 s at backend optimisation level 0; values equal to
    within float32 round-off). Other backends keep their default compile options.
    """
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(args)):
        return jax.jit(fn)(*args)   # inside a transformation (e.g. jax.eval_shape): no compile
    lowered = jax.jit(fn).lower(*args)
    options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
    return lowered.compile(compiler_options=options)(*args)


def learning_rate_schedule(learning_rate: float, warmup_steps: int, total_steps: int,
                           end_value: float = 0.0) -> optax.Schedule:
    """Linear warm-up from 0 over `warmup_steps`, then cosine decay to `end_value` at `total_steps`."""
    warmup_steps = max(int(warmup_steps), 0)
    decay_steps = max(int(total_steps), warmup_steps + 1)
    return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, decay_steps,
                                              end_value=end_value)


def ema_update(ema, params, decay: float):
    """ema <- decay * ema + (1 - decay) * params, leaf by leaf."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def param_count(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def tree_hash(tree, length: int = 16) -> str:
    """A stable hex digest of a pytree's structure, shapes, dtypes and values."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        leaf = np.asarray(jax.device_get(leaf))
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(f"{leaf.dtype}{leaf.shape}".encode())
        digest.update(np.ascontiguousarray(leaf).tobytes())
    return digest.hexdigest()[:length]


def to_scalars(metrics) -> dict[str, float]:
    """Device metrics (a dict of scalars) to Python floats."""
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


class MetricWriter:
    """TensorBoard scalars under `logdir` (written by process 0 only)."""

    def __init__(self, logdir: str):
        import tensorflow as tf  # local: keeps TF out of pure-model imports
        self._tf = tf
        self._writer = None
        if jax.process_index() == 0:
            tf.io.gfile.makedirs(logdir)
            self._writer = tf.summary.create_file_writer(logdir)

    def write_scalars(self, step: int, scalars: dict) -> None:
        if self._writer is None:
            return
        with self._writer.as_default():
            for name, value in scalars.items():
                self._tf.summary.scalar(name, float(value), step=int(step))
        self._writer.flush()

    def write_images(self, step: int, images: dict, max_outputs: int = 8) -> None:
        """TensorBoard image summaries: name -> uint8 [N, H, W, 3] (or one [H, W, 3] image)."""
        if self._writer is None:
            return
        with self._writer.as_default():
            for name, value in images.items():
                value = np.asarray(value, np.uint8)
                self._tf.summary.image(name, value[None] if value.ndim == 3 else value,
                                       step=int(step), max_outputs=max_outputs)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def video_strips(*videos: np.ndarray) -> np.ndarray:
    """uint8 [N, k*H, T*W, 3]: per clip, its frames left to right, one row per given video
    (e.g. truth above reconstruction), for `MetricWriter.write_images`."""
    rows = [np.concatenate(list(np.moveaxis(np.asarray(v, np.uint8), 1, 0)), axis=2)
            for v in videos]  # each [N, H, T*W, 3]
    return np.concatenate(rows, axis=1)


def progress_bar(total_steps: int, initial_step: int = 0, desc: str = "train") -> tqdm.tqdm:
    """A tqdm bar over steps showing steps/s and ETA (silent on processes other than 0)."""
    return tqdm.tqdm(total=total_steps, initial=initial_step, desc=desc, unit="step",
                     dynamic_ncols=True, disable=jax.process_index() != 0 or
                     os.environ.get("MAGVIT_NO_PROGRESS") == "1")
