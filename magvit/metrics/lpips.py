"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric"), version 0.1 with the VGG16 backbone, in Flax, and its weights from a local `.npz` file.

The distance between images x and y (RGB in [-1, 1]) is, as in the `lpips` package (v0.1, "vgg"):

    z = (x - SHIFT) / SCALE                                # lpips' ScalingLayer
    f_l = VGG16 features at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3      (l = 0..4)
    n_l = f_l / (sqrt(sum_c f_l^2) + 1e-10)                # unit norm over channels, per pixel
    LPIPS(x, y) = sum_l mean_{h,w} sum_c w_l[c] * (n_l(x) - n_l(y))^2

with w_l the learned non-negative 1x1 "lin" weights. VGG16 is torchvision's `features`: 3x3
convolutions (padding 1, with bias) + ReLU, 2x2/2 max-pools between the five blocks. Images must be
at least 16x16 (relu5_3 is then 1x1). `LPIPS` scores uint8 or [0, 1] float images like
`reconstruction.psnr` / `ssim`: one value per image.

Weights file: an uncompressed `.npz` holding float32 arrays in PyTorch layout, named as in the two
published PyTorch files it is converted from (torch is not a dependency of this project):

  * torchvision's `vgg16-397923af.pth` (ImageNet VGG16): `features.{i}.weight` [out, in, 3, 3]
    (OIHW) and `features.{i}.bias` [out] for the 13 convolutions, i in CONV_INDICES =
    0 2 5 7 10 12 14 17 19 21 24 26 28; its `classifier.*` weights are not used and not stored;
  * lpips' `weights/v0.1/vgg.pth`: `lin{l}.model.1.weight` [1, C_l, 1, 1], l = 0..4,
    C = 64 128 256 512 512.

The mapping is complete and strict: a missing, extra or mis-shaped array is an error naming it.
Convert once, on a machine with PyTorch (`pip install torch`, CPU build is enough):

    python -m magvit.metrics.lpips --convert --vgg=vgg16-397923af.pth \
        --lin=lpips/weights/v0.1/vgg.pth --out=lpips_vgg.npz
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import sys
import zipfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from absl import flags

from magvit import cli, xla_cpu
from magvit.metrics import weight_mapping
from magvit.metrics.reconstruction import to_unit_range

SHIFT = (-0.030, -0.088, -0.188)  # lpips ScalingLayer, applied to images in [-1, 1]
SCALE = (0.458, 0.448, 0.450)
NORM_EPSILON = 1e-10
# Output channels of VGG16's convolutions, block by block; LPIPS taps each block's last ReLU.
BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
LAYER_CHANNELS = tuple(widths[-1] for widths in BLOCKS)
MIN_SIZE = 2 ** (len(BLOCKS) - 1)


def _conv_layers() -> tuple[tuple[int, int, int, int], ...]:
    """(torchvision `features` index, in channels, out channels, block) of the 13 convolutions.

    In torchvision's `features` each convolution is followed by its ReLU (two indices) and each
    block but the first is preceded by a max-pool (one index)."""
    layers, index, channels = [], 0, 3
    for block, widths in enumerate(BLOCKS):
        index += 1 if block else 0
        for width in widths:
            layers.append((index, channels, width, block))
            index, channels = index + 2, width
    return tuple(layers)


CONV_LAYERS = _conv_layers()
CONV_INDICES = tuple(layer[0] for layer in CONV_LAYERS)


class LPIPSWeightsError(ValueError):
    """LPIPS weights that cannot be used: wrong path or format, missing/extra/mis-shaped arrays."""


def weight_shapes() -> dict[str, tuple[int, ...]]:
    """Every array of the weights file: name -> shape (PyTorch layout)."""
    shapes = {}
    for index, cin, cout, _ in CONV_LAYERS:
        shapes[f"features.{index}.weight"] = (cout, cin, 3, 3)
        shapes[f"features.{index}.bias"] = (cout,)
    for layer, channels in enumerate(LAYER_CHANNELS):
        shapes[f"lin{layer}.model.1.weight"] = (1, channels, 1, 1)
    return shapes


def random_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """He-initialised VGG16 and random non-negative lin weights, in the file layout (tests)."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in weight_shapes().items():
        if name.startswith("lin"):
            value = np.abs(rng.normal(0.0, 1.0 / shape[1], shape))
        elif name.endswith(".bias"):
            value = rng.normal(0.0, 0.01, shape)
        else:
            value = rng.normal(0.0, np.sqrt(2.0 / (shape[1] * 9)), shape)
        weights[name] = value.astype(np.float32)
    return weights


def check_weights(weights: dict, source: str) -> None:
    """Raises LPIPSWeightsError naming `source` and every missing, extra, mis-shaped array, and
    every lin layer with negative weights (lpips clamps them at 0: such a file is not LPIPS)."""
    expected = weight_shapes()
    shapes = {name: np.shape(value) for name, value in weights.items()}
    problems = weight_mapping.mapping_problems(expected, shapes, "array")
    for name in sorted(expected):
        if (name.startswith("lin") and tuple(shapes.get(name, ())) == expected[name]
                and np.min(weights[name]) < 0):
            problems.append(f"array {name} has negative weights (LPIPS lin weights are >= 0)")
    if problems:
        raise LPIPSWeightsError(f"LPIPS weights {source!r}: " + "; ".join(problems))


def save_weights(weights: dict[str, np.ndarray], path: str) -> None:
    """Writes checked `weights` (file layout, float32) as an uncompressed `.npz` at `path`."""
    check_weights(weights, path)
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(value, np.float32) for name, value in weights.items()})
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())


def _read(path: str) -> bytes:
    if not path or not tf.io.gfile.exists(path):
        raise LPIPSWeightsError(f"LPIPS weights {path!r}: no such file")
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def load_weights(path: str) -> dict[str, np.ndarray]:
    """The checked float32 arrays of the `.npz` weights file at `path` (local or gs://)."""
    try:
        with np.load(io.BytesIO(_read(path)), allow_pickle=False) as stored:
            weights = {name: stored[name] for name in stored.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise LPIPSWeightsError(f"LPIPS weights {path!r}: not a .npz file of arrays ({e}); "
                                f"convert the .pth files with `python -m magvit.metrics.lpips "
                                f"--convert`") from e
    check_weights(weights, path)
    return {name: value.astype(np.float32) for name, value in weights.items()}


def weights_id(path: str) -> str:
    """Identity of a weights file, recorded with every LPIPS value: its name and content hash."""
    digest = hashlib.sha256(_read(path)).hexdigest()[:16]
    return f"{os.path.basename(path)}:sha256:{digest}"


def to_flax_params(weights: dict[str, np.ndarray]) -> dict:
    """File layout -> `LPIPSNetwork` params: conv OIHW -> HWIO kernels, lin [1, C, 1, 1] -> [C]."""
    params = {}
    for index, *_ in CONV_LAYERS:
        params[f"features_{index}"] = {
            "kernel": jnp.asarray(np.transpose(weights[f"features.{index}.weight"], (2, 3, 1, 0))),
            "bias": jnp.asarray(weights[f"features.{index}.bias"])}
    for layer in range(len(LAYER_CHANNELS)):
        params[f"lin{layer}"] = jnp.asarray(weights[f"lin{layer}.model.1.weight"].reshape(-1))
    return params


def normalize_channels(features):
    """Features [..., C] divided by their L2 norm over channels (+ 1e-10), pixel by pixel."""
    norm = jnp.sqrt(jnp.sum(jnp.square(features), axis=-1, keepdims=True))
    return features / (norm + NORM_EPSILON)


def layer_distance(features_x, features_y, lin_weight):
    """One layer's LPIPS term for features [N, H, W, C] and lin weights [C]: shape [N]."""
    diff = jnp.square(normalize_channels(features_x) - normalize_channels(features_y))
    return jnp.mean(jnp.sum(diff * lin_weight, axis=-1), axis=(1, 2))


class LPIPSNetwork(nn.Module):
    """Images x, y [N, H, W, 3] in [-1, 1] (H, W >= 16) -> LPIPS distances [N]."""

    @nn.compact
    def __call__(self, x, y):
        n = x.shape[0]
        h = (jnp.concatenate([x, y]) - jnp.asarray(SHIFT)) / jnp.asarray(SCALE)
        taps = []
        for block in range(len(BLOCKS)):
            if block:
                h = nn.max_pool(h, (2, 2), strides=(2, 2))
            for index, _, width, _ in (layer for layer in CONV_LAYERS if layer[3] == block):
                h = nn.relu(nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)),
                                    precision=jax.lax.Precision.HIGHEST,
                                    name=f"features_{index}")(h))
            taps.append(h)  # the block's last ReLU: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
        total = 0.0
        for layer, features in enumerate(taps):
            lin = self.param(f"lin{layer}", nn.initializers.zeros, (features.shape[-1],))
            total = total + layer_distance(features[:n], features[n:], lin)
        return total


class LPIPS:
    """LPIPS distances of image pairs with one set of weights, batched and jitted once per size
    (`xla_cpu.jit`: on a CPU without XLA's YNNPACK fusions, which run VGG16 slower;
    bench/bench_perceptual.py measures both builds)."""

    def __init__(self, weights: dict[str, np.ndarray], weights_id: str, batch_size: int = 16):
        check_weights(weights, weights_id)
        if batch_size < 1:
            raise ValueError(f"LPIPS batch_size must be >= 1, got {batch_size}")
        self.weights_id = weights_id
        self.batch_size = batch_size
        self._params = to_flax_params(weights)
        self._apply = xla_cpu.jit(LPIPSNetwork().apply)

    @classmethod
    def from_file(cls, path: str, batch_size: int = 16) -> "LPIPS":
        """The scorer for the `.npz` at `path`; one instance per file content and batch size is
        shared by the calls of a process (weights loaded and network compiled once)."""
        return _shared_lpips(path, weights_id(path), batch_size)

    def __call__(self, x, y) -> np.ndarray:
        """LPIPS per image of images [..., H, W, 3], uint8 or floats in [0, 1]: shape [...]."""
        a, b = to_unit_range(x), to_unit_range(y)
        if a.shape != b.shape:
            raise ValueError(f"LPIPS: images differ in shape: {a.shape} vs {b.shape}")
        if a.ndim < 3 or a.shape[-1] != 3 or min(a.shape[-3:-1]) < MIN_SIZE:
            raise ValueError(f"LPIPS needs RGB images [..., H, W, 3] of at least {MIN_SIZE}x"
                             f"{MIN_SIZE} pixels, got shape {a.shape}")
        lead, image = a.shape[:-3], a.shape[-3:]
        a, b = 2.0 * a.reshape((-1,) + image) - 1.0, 2.0 * b.reshape((-1,) + image) - 1.0
        out = []
        for start in range(0, a.shape[0], self.batch_size):
            batch_a, batch_b = a[start:start + self.batch_size], b[start:start + self.batch_size]
            pad = self.batch_size - batch_a.shape[0]
            if pad:  # a full batch: one compilation per image size
                padding = jnp.zeros((pad,) + image, a.dtype)
                batch_a = jnp.concatenate([batch_a, padding])
                batch_b = jnp.concatenate([batch_b, padding])
            distances = self._apply({"params": self._params}, batch_a, batch_b)
            out.append(np.asarray(distances)[:self.batch_size - pad])
        return np.concatenate(out).reshape(lead) if out else np.zeros(lead, np.float32)


@functools.lru_cache(maxsize=2)
def _shared_lpips(path: str, content_id: str, batch_size: int) -> LPIPS:
    return LPIPS(load_weights(path), content_id, batch_size)


# ----------------------------------------------------------------------------------------------
# Converting the published PyTorch files.

def convert_state_dicts(vgg_state: dict, lin_state: dict) -> dict[str, np.ndarray]:
    """torchvision VGG16 and lpips v0.1 vgg state dicts (name -> array) -> the `.npz` layout.

    The VGG16 `classifier.*` arrays are dropped; any other name not in the layout is an error, as
    is a missing or mis-shaped array."""
    weights, unexpected = {}, []
    for source, state, prefix in (("vgg", vgg_state, "features."), ("lin", lin_state, "lin")):
        for name, value in state.items():
            if name.startswith(prefix):
                weights[name] = np.asarray(value, np.float32)
            elif not (source == "vgg" and name.startswith("classifier.")):
                unexpected.append(f"{name} (--{source})")
    if unexpected:
        raise LPIPSWeightsError(f"LPIPS conversion: unexpected array(s): {weight_mapping.list_names(unexpected)}")
    check_weights(weights, "converted --vgg + --lin")
    return weights


def read_torch_state_dict(path: str) -> dict[str, np.ndarray]:
    """name -> float32 array of a PyTorch state-dict file. Needs torch (imported here only)."""
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise LPIPSWeightsError(
            f"reading {path!r} needs PyTorch, which this project does not depend on: run "
            f"`pip install torch` (the CPU build is enough) and convert again") from e
    if not os.path.isfile(path):  # local-only (torch.load reads local files)
        raise LPIPSWeightsError(f"{path!r}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several unrelated types for unreadable files
        raise LPIPSWeightsError(f"{path!r}: not a PyTorch state-dict file ({e})") from e
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise LPIPSWeightsError(f"{path!r}: expected a state dict (name -> tensor), got "
                                f"{type(state).__name__}")
    return {name: value.detach().cpu().float().numpy() for name, value in state.items()}


def convert(vgg_path: str, lin_path: str, out_path: str) -> str:
    """Writes the `.npz` weights file from the two `.pth` files; returns its weights id."""
    weights = convert_state_dicts(read_torch_state_dict(vgg_path), read_torch_state_dict(lin_path))
    save_weights(weights, out_path)
    return weights_id(out_path)


def _define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_bool("convert", False, "Convert the PyTorch weights to the LPIPS .npz layout.",
                      flag_values=fv)
    flags.DEFINE_string("vgg", None, "torchvision's vgg16-397923af.pth (ImageNet VGG16).",
                        flag_values=fv)
    flags.DEFINE_string("lin", None, "lpips' weights/v0.1/vgg.pth (the lin layers).",
                        flag_values=fv)
    flags.DEFINE_string("out", None, "Output .npz path.", flag_values=fv)


def _main(values: flags.FlagValues, _) -> None:
    if not values.convert:
        raise cli.UsageError("nothing to do: pass --convert --vgg=... --lin=... --out=...")
    for name in ("vgg", "lin", "out"):
        if not values[name].value:
            raise cli.UsageError(f"--{name} is required with --convert: {values[name].help}")
    try:
        content_id = convert(values.vgg, values.lin, values.out)
    except LPIPSWeightsError as e:
        raise cli.UsageError(str(e)) from e
    print(f"wrote {values.out} ({len(weight_shapes())} arrays, id {content_id}); use it with "
          f"--lpips_weights={values.out} or --config.eval.lpips_weights={values.out}")


PROGRAM = cli.Program("magvit.metrics.lpips", __doc__, _define_flags, config_default=None)


def main(argv: list[str] | None = None) -> int:
    return PROGRAM.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
