"""StyleGAN-style 3D discriminator (official MAGVIT configs: channel multipliers (2, 4, 4, 4) at
64x64, (2, 4, 4, 4, 4) at 128x128).

conv 3x3x3 -> per multiplier a residual down block (two 3x3x3 convs with leaky ReLU, 2x average
pooling in time and space, a pooled 1x1x1 shortcut, sum scaled by 1/sqrt 2) -> conv 3x3x3 ->
dense -> dense(1). No normalisation, as in StyleGAN. Returns one logit per clip.

As the official code: Xavier-uniform weights, and TF-style SAME average pooling (ceil(n / 2)
outputs, the mean over the in-range entries), so an odd or single frame count stays valid
(T = 1 stays 1). With `spatial_dims=2` the same network runs on images [B, H, W, 3] (the 2D
tokenizer's discriminator; its kernels inflate to this one's, see `inflation`).
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from magvit.tokenizer.model import Conv


def _leaky(x):
    return nn.leaky_relu(x, negative_slope=0.2)


_init = nn.initializers.xavier_uniform()


def pool_same(x):
    """2x average pooling over every spatial (and time) axis, TF 'SAME': ceil(n / 2) outputs, each
    the mean of its in-range entries (an odd axis is zero-padded at its end, the padding not
    counted)."""
    spatial = x.shape[1:-1]
    pads = [(0, 0)] + [(0, n % 2) for n in spatial] + [(0, 0)]

    def pairs_summed(v):
        grouped = v.shape[:1] + tuple(d for n in v.shape[1:-1] for d in (n // 2, 2)) + v.shape[-1:]
        return jnp.sum(v.reshape(grouped), axis=tuple(range(2, 2 * len(spatial) + 1, 2)))
    counts = pairs_summed(jnp.pad(jnp.ones((1, *spatial, 1), x.dtype), pads))
    return pairs_summed(jnp.pad(x, pads)) / counts


class DownBlock(nn.Module):
    filters: int

    @nn.compact
    def __call__(self, x):
        k = (3,) * (x.ndim - 2)
        h = _leaky(Conv(x.shape[-1], k, kernel_init=_init, name="conv1")(x))
        h = pool_same(h)
        h = _leaky(Conv(self.filters, k, kernel_init=_init, name="conv2")(h))
        skip = pool_same(x)
        skip = Conv(self.filters, (1,) * (x.ndim - 2), use_bias=False, kernel_init=_init,
                    name="shortcut")(skip)
        return (h + skip) / np.sqrt(2.0)


class Discriminator(nn.Module):
    filters: int
    channel_multipliers: Sequence[int]

    @nn.compact
    def __call__(self, x):
        """x: [B, T, H, W, 3] (or [B, H, W, 3]) in [0, 1] -> logits [B]."""
        k = (3,) * (x.ndim - 2)
        x = _leaky(Conv(self.filters, k, kernel_init=_init, name="conv_in")(x))
        for i, multiplier in enumerate(self.channel_multipliers):
            x = DownBlock(self.filters * multiplier, name=f"down{i}")(x)
        top = self.filters * self.channel_multipliers[-1]
        x = _leaky(Conv(top, k, kernel_init=_init, name="conv_out")(x))
        x = _leaky(nn.Dense(top, kernel_init=_init, name="dense")(x.reshape(x.shape[0], -1)))
        return jnp.squeeze(nn.Dense(1, kernel_init=_init, name="logit")(x), axis=-1)


def build(config) -> Discriminator:
    """From the tokenizer `discriminator` section."""
    return Discriminator(config.filters, tuple(config.channel_multipliers))
