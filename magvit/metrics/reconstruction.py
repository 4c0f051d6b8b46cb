"""Reconstruction metrics: PSNR, SSIM and codebook usage / perplexity.

`psnr` and `ssim` take images or videos whose last three axes are [H, W, C], either uint8 in
[0, 255] or floats in [0, 1] (numpy or jax), and return one value per image: shape `x.shape[:-3]`
(e.g. [B, T] for videos [B, T, H, W, 3]); average them as the protocol requires. SSIM follows
Wang et al. 2004 with tf.image.ssim's choices (11x11 Gaussian window, sigma 1.5, k1 0.01, k2 0.03,
valid filtering, averaged over pixels and channels).

`generated_psnr` / `generated_ssim` score only what a model generated: given a bool mask [T, H, W]
of the generated pixels (the complement of a task's known region, `generated_mask`), PSNR comes
from each frame's MSE over exactly its generated pixels and SSIM from the SSIM map's windows
centred on them; frames without generated pixels (pasted-back condition frames) are left out.
With every pixel generated (a tokenizer reconstruction) they equal `psnr` / `ssim`.
"""
import jax
import jax.numpy as jnp
import numpy as np


def to_unit_range(x) -> jnp.ndarray:
    """uint8 [0, 255] -> float32 [0, 1]; floats are taken to be in [0, 1] already."""
    x = jnp.asarray(x)
    if x.dtype == jnp.uint8:
        return x.astype(jnp.float32) / 255.0
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"expected uint8 or float images, got {x.dtype}")
    return x.astype(jnp.float32)


def _check_pair(a, b):
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim < 3:
        raise ValueError(f"expected [..., H, W, C] images, got shape {a.shape}")


@jax.jit
def _psnr(a, b):
    mse = jnp.mean(jnp.square(a - b), axis=(-3, -2, -1))
    return 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-10))


def psnr(x, y) -> np.ndarray:
    """Peak signal-to-noise ratio in dB per image (max value 1 after scaling); capped at 100 dB."""
    a, b = to_unit_range(x), to_unit_range(y)
    _check_pair(a, b)
    return np.asarray(_psnr(a, b))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> jnp.ndarray:
    coords = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2.0
    g = jnp.exp(-0.5 * jnp.square(coords / sigma))
    return g / jnp.sum(g)


def _filter(x, window):
    """Valid separable filtering of [N, H, W, C] with a 1-D window, channel by channel."""
    n, h, w, c = x.shape
    x = jnp.moveaxis(x, -1, 1).reshape(n * c, 1, h, w)
    k = window.shape[0]
    dn = ("NCHW", "OIHW", "NCHW")
    x = jax.lax.conv_general_dilated(x, window.reshape(1, 1, k, 1), (1, 1), "VALID",
                                     dimension_numbers=dn)
    x = jax.lax.conv_general_dilated(x, window.reshape(1, 1, 1, k), (1, 1), "VALID",
                                     dimension_numbers=dn)
    return jnp.moveaxis(x.reshape(n, c, h - k + 1, w - k + 1), 1, -1)


@jax.jit
def _ssim(a, b):
    return jnp.mean(_ssim_map(a, b), axis=(-3, -2, -1))


def _ssim_map(a, b):
    """Per-window SSIM [..., H - 10, W - 10, C] (window centres offset by 5 pixels)."""
    lead = a.shape[:-3]
    a = a.reshape((-1,) + a.shape[-3:])
    b = b.reshape((-1,) + b.shape[-3:])
    window = _gaussian_window()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = _filter(a, window), _filter(b, window)
    var_a = _filter(a * a, window) - mu_a ** 2
    var_b = _filter(b * b, window) - mu_b ** 2
    cov = _filter(a * b, window) - mu_a * mu_b
    luminance = (2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1)
    contrast_structure = (2 * cov + c2) / (var_a + var_b + c2)
    out = luminance * contrast_structure
    return out.reshape(lead + out.shape[1:])


def ssim(x, y) -> np.ndarray:
    """Structural similarity per image; images must be at least 11x11."""
    a, b = to_unit_range(x), to_unit_range(y)
    _check_pair(a, b)
    if min(a.shape[-3:-1]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {a.shape[-3:-1]}")
    return np.asarray(_ssim(a, b))


_ssim_map_jit = jax.jit(_ssim_map)


def generated_mask(task, shape) -> np.ndarray:
    """bool [T, H, W]: the pixels `task` (magvit.transformer.tasks.Task, or None for a whole-clip
    reconstruction) generates in clips of `shape` [T, H, W]: all but its known region."""
    shape = tuple(int(n) for n in shape)
    if task is None or not task.has_condition:
        return np.ones(shape, bool)
    return ~task.known_mask(shape, shape[0])


def _check_mask(a, mask) -> np.ndarray:
    mask = np.asarray(mask, bool)
    if mask.shape != a.shape[-4:-1]:
        raise ValueError(f"mask of generated pixels {mask.shape} does not match the clips "
                         f"{a.shape[-4:-1]} ([T, H, W])")
    if not mask.any():
        raise ValueError("no generated pixels to score (the mask is all False)")
    return mask


@jax.jit
def _masked_frame_mse(a, b, weights):
    """Per frame: MSE over the pixels with weight 1 (weights [T, H, W, 1])."""
    sq = jnp.square(a - b) * weights
    count = jnp.sum(weights, axis=(-3, -2, -1)) * a.shape[-1]
    return jnp.sum(sq, axis=(-3, -2, -1)) / jnp.maximum(count, 1.0)


def generated_psnr(x, y, mask) -> np.ndarray:
    """PSNR (dB, capped at 100) of videos [..., T, H, W, C] over their generated pixels `mask`
    [T, H, W]: per frame from the MSE over that frame's generated pixels, averaged over the frames
    that have any. One value per video, shape x.shape[:-4]."""
    a, b = to_unit_range(x), to_unit_range(y)
    _check_pair(a, b)
    mask = _check_mask(a, mask)
    mse = np.asarray(_masked_frame_mse(a, b, jnp.asarray(mask, jnp.float32)[..., None]))
    frame_psnr = 10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))
    frames = mask.any(axis=(1, 2))
    return frame_psnr[..., frames].mean(axis=-1)


def generated_ssim(x, y, mask) -> np.ndarray:
    """SSIM of videos [..., T, H, W, C] over their generated pixels `mask` [T, H, W]: the mean of
    the SSIM map over the windows centred on generated pixels, per frame, averaged over the
    frames that have any. One value per video, shape x.shape[:-4]."""
    a, b = to_unit_range(x), to_unit_range(y)
    _check_pair(a, b)
    mask = _check_mask(a, mask)
    if min(a.shape[-3:-1]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {a.shape[-3:-1]}")
    centres = mask[:, 5:mask.shape[1] - 5, 5:mask.shape[2] - 5]
    if not centres.any():  # a generated region thinner than the window: use every window
        centres = np.ones_like(centres)
    values = np.asarray(_ssim_map_jit(a, b)).mean(axis=-1)  # [..., T, H - 10, W - 10]
    weights = centres.astype(np.float64)
    per_frame = (values * weights).sum(axis=(-2, -1)) / np.maximum(weights.sum(axis=(1, 2)), 1)
    frames = mask.any(axis=(1, 2)) & centres.any(axis=(1, 2))
    return per_frame[..., frames].mean(axis=-1)


def mean_frame_baseline(frames) -> np.ndarray:
    """The trivial baseline of a reconstruction: each clip's mean frame held still (uint8, the
    shape of `frames` [B, T, H, W, 3]); for one-frame clips (images) each image's mean colour."""
    frames = np.asarray(frames)
    axes = (1,) if frames.shape[1] > 1 else (1, 2, 3)
    return np.broadcast_to(np.round(frames.mean(axis=axes, keepdims=True)).astype(np.uint8),
                           frames.shape)


def codebook_usage(ids, codebook_size: int) -> dict[str, float]:
    """Fraction of the codebook used by `ids` and the perplexity of their code distribution."""
    ids = np.asarray(ids).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= codebook_size):
        raise ValueError(f"token ids outside [0, {codebook_size}): min {ids.min()}, max {ids.max()}")
    counts = np.bincount(ids, minlength=codebook_size).astype(np.float64)
    probs = counts / max(counts.sum(), 1.0)
    nonzero = probs[probs > 0]
    return {"codebook_usage": float(np.count_nonzero(counts) / codebook_size),
            "codebook_perplexity": float(np.exp(-np.sum(nonzero * np.log(nonzero))))}
