"""MAGVIT's 3D-CNN VQ autoencoder (encoder, quantizer, decoder) in Flax linen.

The same modules build the 2D image VQGAN (`spatial_dims=2`, inputs [B, H, W, C]) and the 3D video
one (`spatial_dims=3`, inputs [B, T, H, W, C]); `magvit.tokenizer.inflation` turns the former's
parameters into the latter's. Structure (official configs): 3x3(x3) convs, GroupNorm and swish,
`num_res_blocks` residual blocks per level, spatial downsampling by 2x average pooling between
levels (time pooled too at the levels flagged by `temporal_downsample`), upsampling by
nearest-neighbour repetition followed by a 3x3(x3) conv. `patch_size` p > 1 (not official; the
`tiny` setting) folds p x p pixel patches into channels before the encoder's first conv and
unfolds the decoder's last conv output, so no level runs at full resolution.

`Conv` holds a standard [kt, kh, kw, in, out] kernel; on CPU a 3D convolution runs as one 2D
convolution over the kt time-shifted copies of the input stacked along channels (XLA's CPU 3D
convolution is ~8x slower than its 2D one), with the kernel gradient as matmuls (`conv2d_cpu`);
elsewhere it is lax's native N-D convolution.

Precision and memory (magvit/precision.py): convolutions compute in `dtype` (float32 | bfloat16)
on float32 parameters; GroupNorm, the quantizer and the decoder's output are float32. `remat`
recomputes each residual block in the backward pass instead of storing its activations.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from magvit.tokenizer import quantizers


_NHWC = ("NHWC", "HWIO", "NHWC")
# `conv2d_cpu` pays from this width on (bench/bench_train.py --config=bair_b, 2 cores: tokenizer
# training step 16.4 -> 14.7 s at 16 instead of 64); layers narrower than 16 keep lax's gradient
MATMUL_GRAD_MIN_WIDTH = 16


def _conv2d(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_NHWC)


@jax.custom_vjp
def conv2d_cpu(x, kernel):
    """'SAME' stride-1 2D convolution whose kernel gradient is kh matmuls (for CPU).

    XLA's CPU convolution computes the kernel gradient (a convolution contracting over batch and
    space) at about a quarter of its matmul rate; here kernel row i is one matmul of the input
    rows shifted by i (padded width) with the output gradient placed at each of the kw column
    offsets (3x faster for the bair_b layers; it also multiplies the zero columns of the padding,
    (W + kw - 1) / W of the exact FLOPs). Forward and input gradient are lax's convolutions; the
    kernel gradient equals lax's up to float summation order (tests/test_conv_grad.py)."""
    return _conv2d(x, kernel)


def _conv2d_cpu_fwd(x, kernel):
    return _conv2d(x, kernel), (x, kernel)


def _conv2d_cpu_bwd(residuals, dy):
    x, kernel = residuals
    kh, kw, c, out = kernel.shape
    h = x.shape[1]
    _, input_vjp = jax.vjp(lambda x_: _conv2d(x_, kernel), x)
    ph, pw = (kh - 1) // 2, (kw - 1) // 2         # 'SAME' at stride 1: low pad (k - 1) // 2
    padded = jnp.pad(x, ((0, 0), (ph, kh - 1 - ph), (pw, kw - 1 - pw), (0, 0)))
    # dy placed at each horizontal tap offset j of the padded width, stacked along channels:
    # the kernel row i is then one [C, N] x [N, kw * out] product with the rows i.. of `padded`
    shifted = jnp.concatenate([jnp.pad(dy, ((0, 0), (0, 0), (j, kw - 1 - j), (0, 0)))
                               for j in range(kw)], axis=-1).reshape(-1, kw * out)
    rows = [jnp.dot(padded[:, i:i + h].reshape(-1, c).T, shifted).reshape(c, kw, out)
            for i in range(kh)]
    grad_kernel = jnp.transpose(jnp.asarray(rows), (0, 2, 1, 3))
    return input_vjp(dy)[0], grad_kernel.astype(kernel.dtype)


conv2d_cpu.defvjp(_conv2d_cpu_fwd, _conv2d_cpu_bwd)


def convolve(x, kernel):
    """'SAME' stride-1 convolution of [B, (T,) H, W, C] with a [(kt,) kh, kw, C, out] kernel."""
    if kernel.ndim == 5 and kernel.shape[0] > 1 and jax.default_backend() == "cpu":
        kt, kh, kw, c, out = kernel.shape
        b, t, h, w, _ = x.shape
        pad = kt // 2
        x = jnp.pad(x, ((0, 0), (pad, kt - 1 - pad), (0, 0), (0, 0), (0, 0)))
        stacked = jnp.concatenate([x[:, i:i + t] for i in range(kt)], axis=-1)
        kernel2d = jnp.transpose(kernel, (1, 2, 0, 3, 4)).reshape(kh, kw, kt * c, out)
        conv2d = conv2d_cpu if w >= MATMUL_GRAD_MIN_WIDTH else _conv2d
        y = conv2d(stacked.reshape(b * t, h, w, kt * c), kernel2d)
        return y.reshape(b, t, h, w, out)
    spatial = "DHW"[-(kernel.ndim - 2):]
    dims = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
    return jax.lax.conv_general_dilated(x, kernel, (1,) * (kernel.ndim - 2), "SAME",
                                        dimension_numbers=dims)


class Conv(nn.Module):
    """Like flax's nn.Conv (same parameter names, shapes and initialisers), stride 1, 'SAME';
    float32 parameters, computed in `dtype`."""
    features: int
    kernel_size: Sequence[int]
    use_bias: bool = True
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init,
                            (*self.kernel_size, x.shape[-1], self.features))
        y = convolve(x.astype(self.dtype), kernel.astype(self.dtype))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(self.dtype)
        return y


def _norm(num_groups: int, name: str):
    """GroupNorm computed and returned in float32 (whatever the compute dtype)."""
    return nn.GroupNorm(num_groups, dtype=jnp.float32, name=name)


def _kernel(spatial_dims: int, size: int = 3) -> tuple[int, ...]:
    return (size,) * spatial_dims


class ResBlock(nn.Module):
    filters: int
    num_groups: int
    spatial_dims: int = 3
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        k = _kernel(self.spatial_dims)
        h = nn.swish(_norm(self.num_groups, "norm1")(x))
        h = Conv(self.filters, k, use_bias=False, dtype=self.dtype, name="conv1")(h)
        h = nn.swish(_norm(self.num_groups, "norm2")(h))
        h = Conv(self.filters, k, use_bias=False, dtype=self.dtype, name="conv2")(h)
        if x.shape[-1] != self.filters:
            x = Conv(self.filters, _kernel(self.spatial_dims, 1), use_bias=False,
                     dtype=self.dtype, name="shortcut")(x)
        return x.astype(self.dtype) + h


def _res_block(remat: bool):
    return nn.remat(ResBlock) if remat else ResBlock


def _window(spatial_dims: int, temporal: bool) -> tuple[int, ...]:
    return ((2 if temporal else 1), 2, 2) if spatial_dims == 3 else (2, 2)


def downsample(x, spatial_dims: int, temporal: bool):
    window = _window(spatial_dims, temporal)
    odd = [n for n, w in zip(x.shape[1:-1], window) if n % w]
    if odd:
        raise ValueError(f"tokenizer input of shape {list(x.shape[1:-1])} reaches a 2x "
                         f"downsampling with a dimension not divisible by 2 ({odd}): the clip's "
                         "frames and side must be divisible by the tokenizer's downsampling "
                         "factors")
    return nn.avg_pool(x, window, strides=window)


def space_to_depth(x, patch: int):
    """[..., H, W, C] -> [..., H/p, W/p, p*p*C]: each p x p pixel patch stacked along channels."""
    if patch == 1:
        return x
    *lead, h, w, c = x.shape
    if h % patch or w % patch:
        raise ValueError(f"tokenizer input of side {h}x{w} is not divisible by "
                         f"tokenizer.model.patch_size={patch}")
    x = x.reshape(*lead, h // patch, patch, w // patch, patch, c)
    x = jnp.moveaxis(x, -4, -3)           # [..., H/p, W/p, p (rows), p (cols), C]
    return x.reshape(*lead, h // patch, w // patch, patch * patch * c)


def depth_to_space(x, patch: int):
    """The inverse of `space_to_depth`."""
    if patch == 1:
        return x
    *lead, h, w, c = x.shape
    x = x.reshape(*lead, h, w, patch, patch, c // (patch * patch))
    x = jnp.moveaxis(x, -3, -4)           # [..., H, p (rows), W, p (cols), C]
    return x.reshape(*lead, h * patch, w * patch, c // (patch * patch))


def upsample(x, spatial_dims: int, temporal: bool):
    for axis, factor in enumerate(_window(spatial_dims, temporal), start=1):
        if factor > 1:
            x = jnp.repeat(x, factor, axis=axis)
    return x


class Encoder(nn.Module):
    filters: int
    channel_multipliers: Sequence[int]
    temporal_downsample: Sequence[bool]
    num_res_blocks: int
    num_groups: int
    latent_dim: int
    spatial_dims: int = 3
    dtype: Any = jnp.float32
    remat: bool = False
    patch_size: int = 1

    @nn.compact
    def __call__(self, x):
        """-> float32 latents."""
        d, dtype, block = self.spatial_dims, self.dtype, _res_block(self.remat)
        x = space_to_depth(x, self.patch_size)
        x = Conv(self.filters, _kernel(d), use_bias=False, dtype=dtype, name="conv_in")(x)
        for level, multiplier in enumerate(self.channel_multipliers):
            for i in range(self.num_res_blocks):
                x = block(self.filters * multiplier, self.num_groups, d, dtype,
                          name=f"down{level}_block{i}")(x)
            if level < len(self.channel_multipliers) - 1:
                x = downsample(x, d, bool(self.temporal_downsample[level]))
        for i in range(self.num_res_blocks):
            x = block(x.shape[-1], self.num_groups, d, dtype, name=f"mid_block{i}")(x)
        x = nn.swish(_norm(self.num_groups, "norm_out")(x))
        return Conv(self.latent_dim, _kernel(d, 1), dtype=dtype, name="conv_out")(x).astype(
            jnp.float32)


class Decoder(nn.Module):
    filters: int
    channel_multipliers: Sequence[int]
    temporal_downsample: Sequence[bool]
    num_res_blocks: int
    num_groups: int
    out_channels: int = 3
    spatial_dims: int = 3
    dtype: Any = jnp.float32
    remat: bool = False
    patch_size: int = 1

    @nn.compact
    def __call__(self, z):
        """-> float32 pixels."""
        d, dtype, block = self.spatial_dims, self.dtype, _res_block(self.remat)
        top = self.filters * self.channel_multipliers[-1]
        x = Conv(top, _kernel(d), dtype=dtype, name="conv_in")(z)
        for i in range(self.num_res_blocks):
            x = block(top, self.num_groups, d, dtype, name=f"mid_block{i}")(x)
        for level in reversed(range(len(self.channel_multipliers))):
            filters = self.filters * self.channel_multipliers[level]
            for i in range(self.num_res_blocks):
                x = block(filters, self.num_groups, d, dtype, name=f"up{level}_block{i}")(x)
            if level > 0:
                x = upsample(x, d, bool(self.temporal_downsample[level - 1]))
                x = Conv(filters, _kernel(d), dtype=dtype, name=f"up{level}_conv")(x)
        x = nn.swish(_norm(self.num_groups, "norm_out")(x))
        x = Conv(self.out_channels * self.patch_size ** 2, _kernel(d), dtype=dtype,
                 name="conv_out")(x)
        return depth_to_space(x.astype(jnp.float32), self.patch_size)


class VQModel(nn.Module):
    """Encoder -> quantizer -> decoder. Pixels in [0, 1]; `spatial_dims` 3 (video) or 2 (image).

    `dtype` / `remat`: see the module docstring (`precision.model_options(config.tokenizer)`).
    """
    config: ml_collections.ConfigDict   # the tokenizer `model` section
    spatial_dims: int = 3
    dtype: Any = jnp.float32
    remat: bool = False

    def setup(self):
        c = self.config
        common = dict(filters=c.filters, channel_multipliers=tuple(c.channel_multipliers),
                      temporal_downsample=tuple(c.temporal_downsample),
                      num_res_blocks=c.num_res_blocks, num_groups=c.num_groups,
                      spatial_dims=self.spatial_dims, dtype=self.dtype, remat=self.remat,
                      patch_size=c.get("patch_size", 1))
        self.encoder = Encoder(latent_dim=quantizers.latent_dim(c), **common)
        self.quantizer = quantizers.build(c)
        self.decoder = Decoder(**common)

    def encode(self, x):
        """Returns (quantized latents, ids, quantizer losses/metrics dict)."""
        return self.quantizer(self.encoder(x))

    def decode(self, quantized):
        return self.decoder(quantized)

    def decode_ids(self, ids):
        return self.decoder(self.quantizer.embed(ids))

    def __call__(self, x):
        quantized, ids, aux = self.encode(x)
        return self.decode(quantized), ids, aux


def downsampling_factors(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    """(time, height, width) factors from the clip to the token grid."""
    levels = len(config.channel_multipliers) - 1
    temporal = 2 ** sum(bool(t) for t in tuple(config.temporal_downsample)[:levels])
    spatial = 2 ** levels * config.get("patch_size", 1)
    return temporal, spatial, spatial


def grid_shape(config: ml_collections.ConfigDict, clip_shape) -> tuple[int, int, int]:
    factors = downsampling_factors(config)
    return tuple(int(s) // f for s, f in zip(clip_shape, factors))


def init_params(config: ml_collections.ConfigDict, clip_shape, rng, spatial_dims: int = 3):
    """Parameters of the VQ model for one clip (or frame, spatial_dims=2) of the given shape."""
    shape = (1, *clip_shape, 3) if spatial_dims == 3 else (1, *clip_shape[-2:], 3)
    return VQModel(config, spatial_dims).init(rng, jnp.zeros(shape, jnp.float32))["params"]


def abstract_params(config, clip_shape, spatial_dims: int = 3):
    return jax.eval_shape(lambda: init_params(config, clip_shape, jax.random.PRNGKey(0),
                                              spatial_dims))
