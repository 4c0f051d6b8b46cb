"""MAGVIT's BERT-style transformer: word + position (+ segment) embeddings, post-LN layers, and an
output head tied to the word embeddings (logits = MLM-transform(h) @ E^T + bias).

Weights start from BERT's truncated normal (sigma 0.02, cut at +-2 sigma), as the official code.
Segment embeddings exist only with `num_segments` > 0 (official: `use_condition_segment`, which no
released config sets; then 2 segments, 1 marking condition tokens); without them the segment ids
are ignored.

`causal=True` gives the same network as a left-to-right language model; with `decode=True` it runs
one (or a few) positions at a time against a key/value cache (flax "cache" collection), which is
what the autoregressive baseline (autoregressive.py) uses.

Attention runs through `jax.nn.dot_product_attention` (cuDNN flash attention on a GPU in
bfloat16, `attention="auto"`), except in training with attention dropout, which the fused kernels
lack (`attend_with_dropout`, the same computation written out). `dtype` is the compute dtype of the
dense layers and attention; embeddings, LayerNorms, the residual stream and the logits are float32
(magvit/precision.py). `remat` recomputes each layer in the backward pass.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from magvit import precision, random_bits

_init = nn.initializers.truncated_normal(stddev=0.02)  # +-2 sigma


def attend(q, k, v, mask=None, *, causal: bool = False, implementation=None):
    """softmax(q k^T / sqrt(d) [masked]) v through jax.nn.dot_product_attention (cuDNN flash
    attention when `implementation="cudnn"`); q [B, Lq, H, D], k/v [B, Lk, H, D], mask bool
    broadcastable to [B, H, Lq, Lk] (True = attend). Logits and softmax are float32.
    `implementation="cudnn-or-xla"`: cuDNN where it takes these shapes and dtypes, else XLA."""
    if implementation == "cudnn-or-xla":
        try:
            return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=causal,
                                                implementation="cudnn")
        except (ValueError, NotImplementedError, RuntimeError, TypeError):
            implementation = "xla"       # raised while tracing: a shape cuDNN does not support
    return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=causal,
                                        implementation=implementation)


def attend_with_dropout(q, k, v, mask, causal: bool, dropout):
    """The same attention written out, with dropout on the attention weights (training with
    `attention_dropout_rate` > 0, which the fused kernels do not support).

    Heads come first ([B, H, L, D]), so that both products and their gradients are plain
    batched matrix products: from [B, L, H, D] operands XLA on a CPU copied the [L, L] weights
    or their gradient into transposed order two or three times per layer (0.06-0.1 s each at
    bair_b's 12 x 1025 x 1025, 2 cores).
    The query is scaled before the product, as flax's attention (the official code's) does."""
    q, k, v = (x.swapaxes(1, 2) for x in (q, k, v))
    q = q / jnp.sqrt(q.shape[-1]).astype(q.dtype)
    logits = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32)
    if causal:
        lower = jnp.tril(jnp.ones((q.shape[2], k.shape[2]), bool))
        mask = lower if mask is None else mask & lower
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    weights = dropout(jax.nn.softmax(logits, axis=-1)).astype(v.dtype)
    return jnp.einsum("bhqk,bhkd->bhqd", weights, v).swapaxes(1, 2)


class Dropout(nn.Module):
    """flax's nn.Dropout, as the official code uses it: the same keep mask, bit for bit
    (jax.random.bernoulli's), and the same scaling, with the mask's random words hashed in one
    fused loop (magvit/random_bits.py) instead of JAX's CPU while loop: on 2 CPU cores the bair_b
    training step takes 6.6 s instead of 9.2 s with flax's own (README, Benchmarks)."""
    rate: float

    @nn.compact
    def __call__(self, x, deterministic: bool):
        if deterministic or self.rate == 0.0:
            return x
        if self.rate == 1.0:
            return jnp.zeros_like(x)
        keep = 1.0 - self.rate
        kept = random_bits.bernoulli(self.make_rng("dropout"), keep, x.shape)
        return jax.lax.select(kept, x / keep, jnp.zeros_like(x))


def attention_implementation(name: str, dtype) -> str | None:
    """`transformer.attention`: auto -> cuDNN flash attention on a GPU in bfloat16, else XLA."""
    if name == "auto":
        use_cudnn = jax.default_backend() == "gpu" and jnp.dtype(dtype) == jnp.bfloat16
        return "cudnn-or-xla" if use_cudnn else "xla"
    if name not in ("xla", "cudnn"):
        raise ValueError(f"--config.transformer.attention={name!r}: expected auto, xla or cudnn")
    return name


class SelfAttention(nn.Module):
    num_heads: int
    dropout_rate: float
    causal: bool = False
    dtype: Any = jnp.float32
    implementation: str = "xla"

    @nn.compact
    def __call__(self, x, deterministic: bool, decode: bool = False):
        batch, length, hidden = x.shape
        head_dim = hidden // self.num_heads
        qkv = nn.DenseGeneral((3, self.num_heads, head_dim), kernel_init=_init, dtype=self.dtype,
                              name="qkv")(x)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]          # [B, L, heads, head_dim]
        causal, mask, implementation = self.causal, None, self.implementation
        if decode:
            # The cache is sized by the first (initialising) call, made with the full length.
            initialised = self.has_variable("cache", "key")
            key = self.variable("cache", "key", jnp.zeros, k.shape, k.dtype)
            value = self.variable("cache", "value", jnp.zeros, v.shape, v.dtype)
            index = self.variable("cache", "index", lambda: jnp.array(0, jnp.int32))
            if initialised:
                start = index.value
                key.value = jax.lax.dynamic_update_slice(key.value, k, (0, start, 0, 0))
                value.value = jax.lax.dynamic_update_slice(value.value, v, (0, start, 0, 0))
                index.value = start + length
                k, v = key.value, value.value
                # Query i (at start + i) sees the cache up to itself; unwritten slots lie after
                # every query, so this causal mask also hides them.
                mask = (jnp.arange(k.shape[1])[None, :]
                        <= start + jnp.arange(length)[:, None])[None, None]
                causal, implementation = False, "xla"    # a cached step is a matrix-vector product
        if deterministic or self.dropout_rate == 0.0:
            out = attend(q, k, v, mask, causal=causal, implementation=implementation)
        else:
            dropout = Dropout(self.dropout_rate)
            out = attend_with_dropout(q, k, v, mask, causal,
                                      lambda w: dropout(w, deterministic=False))
        return nn.DenseGeneral(hidden, axis=(-2, -1), kernel_init=_init, dtype=self.dtype,
                               name="out")(out)


class Layer(nn.Module):
    num_heads: int
    mlp_dim: int
    dropout_rate: float
    attention_dropout_rate: float
    causal: bool = False
    dtype: Any = jnp.float32
    attention: str = "xla"

    @nn.compact
    def __call__(self, x, deterministic: bool, decode: bool = False):
        """x float32 [B, L, hidden] -> float32 (the post-LN residual stream stays float32)."""
        y = SelfAttention(self.num_heads, self.attention_dropout_rate, self.causal, self.dtype,
                          self.attention, name="attention")(x, deterministic, decode)
        y = Dropout(self.dropout_rate)(y, deterministic=deterministic)
        x = nn.LayerNorm(epsilon=1e-12, dtype=jnp.float32, name="attention_norm")(x + y)
        y = nn.Dense(self.mlp_dim, kernel_init=_init, dtype=self.dtype, name="mlp_in")(x)
        y = nn.Dense(x.shape[-1], kernel_init=_init, dtype=self.dtype, name="mlp_out")(nn.gelu(y))
        y = Dropout(self.dropout_rate)(y, deterministic=deterministic)
        return nn.LayerNorm(epsilon=1e-12, dtype=jnp.float32, name="mlp_norm")(x + y)


class Transformer(nn.Module):
    vocab_size: int
    max_length: int
    num_layers: int
    hidden_size: int
    mlp_dim: int
    num_heads: int
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    num_segments: int = 0
    causal: bool = False
    dtype: Any = jnp.float32       # compute dtype of the layers (parameters stay float32)
    remat: bool = False            # recompute each layer in the backward pass (training)
    attention: str = "auto"        # auto | xla | cudnn (attention_implementation)

    @nn.compact
    def __call__(self, tokens, segment_ids=None, deterministic: bool = True, decode: bool = False,
                 logits_from: int = 0, num_logits: int | None = None):
        """tokens int [B, L] -> logits float32 [B, L - logits_from, num_logits or vocab_size]:
        the logits of positions `logits_from`.. over the first `num_logits` vocabulary entries
        (the same values as slicing the full logits, without computing the rest)."""
        length = tokens.shape[1]
        positions = jnp.arange(length)
        if decode:
            initialised = self.has_variable("cache", "next_position")
            position = self.variable("cache", "next_position", lambda: jnp.array(0, jnp.int32))
            if initialised:
                positions = position.value + positions
                position.value = position.value + length
        if segment_ids is None:
            segment_ids = jnp.zeros_like(tokens)
        word = nn.Embed(self.vocab_size, self.hidden_size, embedding_init=_init, name="word")
        x = (word(tokens)
             + nn.Embed(self.max_length, self.hidden_size, embedding_init=_init,
                        name="position")(positions)[None])
        if self.num_segments:
            x = x + nn.Embed(self.num_segments, self.hidden_size, embedding_init=_init,
                             name="segment")(segment_ids)
        x = nn.LayerNorm(epsilon=1e-12, name="embedding_norm")(x)
        x = Dropout(self.dropout_rate)(x, deterministic=deterministic)
        layer = nn.remat(Layer, static_argnums=(2, 3)) if self.remat and not decode else Layer
        implementation = attention_implementation(self.attention, self.dtype)
        for i in range(self.num_layers):
            x = layer(self.num_heads, self.mlp_dim, self.dropout_rate, self.attention_dropout_rate,
                      self.causal, self.dtype, implementation, name=f"layer_{i}")(
                          x, deterministic, decode)
        # Tied output head (BERT MLM): transform, then project on the word embeddings.
        x = nn.Dense(self.hidden_size, kernel_init=_init, dtype=self.dtype,
                     name="head_transform")(x)
        x = nn.LayerNorm(epsilon=1e-12, dtype=jnp.float32, name="head_norm")(nn.gelu(x))
        bias = self.param("head_bias", nn.initializers.zeros, (self.vocab_size,))
        table = word.embedding[:num_logits].astype(jnp.float32)
        return add_bias(x[:, logits_from:] @ table.T, bias[:num_logits])


@jax.custom_vjp
def add_bias(x, bias):
    """x + bias over the last axis, whose bias gradient (the sum of the incoming gradient over
    every other axis) is a vector-matrix product: XLA on CPU runs that column-wise sum as a
    windowed reduction several times slower."""
    return x + bias


def _add_bias_fwd(x, bias):
    return x + bias, None


def _add_bias_bwd(_, grad):
    rows = grad.reshape(-1, grad.shape[-1])
    return grad, jnp.ones((rows.shape[0],), rows.dtype) @ rows


add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


def build_model(transformer_config, vocab_size: int, max_length: int, causal: bool = False):
    """The transformer of `config.transformer.model` over sequences up to `max_length`."""
    m = transformer_config.model
    return Transformer(vocab_size=vocab_size, max_length=max_length, num_layers=m.num_layers,
                       hidden_size=m.hidden_size, mlp_dim=m.mlp_dim, num_heads=m.num_heads,
                       dropout_rate=m.dropout_rate,
                       attention_dropout_rate=m.attention_dropout_rate,
                       num_segments=2 if m.get("use_condition_segment", False) else 0,
                       causal=causal, attention=transformer_config.get("attention", "auto"),
                       **precision.model_options(transformer_config, "transformer"))
