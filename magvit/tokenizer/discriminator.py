"""StyleGAN-style 3D discriminator (official MAGVIT configs: channel multipliers (2, 4, 4, 4) at
64x64, (2, 4, 4, 4, 4) at 128x128).

conv 3x3x3 -> per multiplier a residual down block (two 3x3x3 convs with leaky ReLU, 2x average
pooling in space and in time while more than one frame is left, a pooled 1x1x1 shortcut, sum
scaled by 1/sqrt 2) -> conv 3x3x3 -> dense -> dense(1). No normalisation, as in StyleGAN. Returns
one logit per clip.
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from magvit.tokenizer.model import Conv


def _leaky(x):
    return nn.leaky_relu(x, negative_slope=0.2)


class DownBlock(nn.Module):
    filters: int

    @nn.compact
    def __call__(self, x):
        window = (2 if x.shape[1] > 1 else 1, 2, 2)
        h = _leaky(Conv(x.shape[-1], (3, 3, 3), name="conv1")(x))
        h = nn.avg_pool(h, window, strides=window)
        h = _leaky(Conv(self.filters, (3, 3, 3), name="conv2")(h))
        skip = nn.avg_pool(x, window, strides=window)
        skip = Conv(self.filters, (1, 1, 1), use_bias=False, name="shortcut")(skip)
        return (h + skip) / np.sqrt(2.0)


class Discriminator(nn.Module):
    filters: int
    channel_multipliers: Sequence[int]

    @nn.compact
    def __call__(self, x):
        """x: [B, T, H, W, 3] in [0, 1] -> logits [B]."""
        x = _leaky(Conv(self.filters, (3, 3, 3), name="conv_in")(x))
        for i, multiplier in enumerate(self.channel_multipliers):
            x = DownBlock(self.filters * multiplier, name=f"down{i}")(x)
        top = self.filters * self.channel_multipliers[-1]
        x = _leaky(Conv(top, (3, 3, 3), name="conv_out")(x))
        x = _leaky(nn.Dense(top, name="dense")(x.reshape(x.shape[0], -1)))
        return jnp.squeeze(nn.Dense(1, name="logit")(x), axis=-1)


def build(config) -> Discriminator:
    """From the tokenizer `discriminator` section."""
    return Discriminator(config.filters, tuple(config.channel_multipliers))
