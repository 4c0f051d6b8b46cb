"""MAGVIT's BERT-style transformer: word + position (+ segment) embeddings, post-LN layers, and an
output head tied to the word embeddings (logits = MLM-transform(h) @ E^T + bias).

Weights start from BERT's truncated normal (sigma 0.02, cut at +-2 sigma), as the official code.
Segment embeddings exist only with `num_segments` > 0 (official: `use_condition_segment`, which no
released config sets; then 2 segments, 1 marking condition tokens); without them the segment ids
are ignored.

`causal=True` gives the same network as a left-to-right language model; with `decode=True` it runs
one (or a few) positions at a time against a key/value cache (flax "cache" collection), which is
what the autoregressive baseline (autoregressive.py) uses.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

_init = nn.initializers.truncated_normal(stddev=0.02)  # +-2 sigma


class SelfAttention(nn.Module):
    num_heads: int
    dropout_rate: float
    causal: bool = False

    @nn.compact
    def __call__(self, x, deterministic: bool, decode: bool = False):
        batch, length, hidden = x.shape
        head_dim = hidden // self.num_heads
        qkv = nn.DenseGeneral((3, self.num_heads, head_dim), kernel_init=_init, name="qkv")(x)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]          # [B, L, heads, head_dim]
        query_pos = jnp.arange(length)
        key_pos = jnp.arange(length)
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
                query_pos = start + query_pos
                key_pos = jnp.arange(k.shape[1])
                # Unwritten cache slots lie after every query: the causal mask hides them.
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(head_dim).astype(q.dtype)
        if self.causal:
            logits = jnp.where(key_pos[None, :] <= query_pos[:, None], logits, -1e9)
        weights = jax.nn.softmax(logits, axis=-1)
        weights = nn.Dropout(self.dropout_rate)(weights, deterministic=deterministic)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        return nn.DenseGeneral(hidden, axis=(-2, -1), kernel_init=_init, name="out")(out)


class Layer(nn.Module):
    num_heads: int
    mlp_dim: int
    dropout_rate: float
    attention_dropout_rate: float
    causal: bool = False

    @nn.compact
    def __call__(self, x, deterministic: bool, decode: bool = False):
        y = SelfAttention(self.num_heads, self.attention_dropout_rate, self.causal,
                          name="attention")(x, deterministic, decode)
        y = nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)
        x = nn.LayerNorm(epsilon=1e-12, name="attention_norm")(x + y)
        y = nn.Dense(self.mlp_dim, kernel_init=_init, name="mlp_in")(x)
        y = nn.Dense(x.shape[-1], kernel_init=_init, name="mlp_out")(nn.gelu(y))
        y = nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)
        return nn.LayerNorm(epsilon=1e-12, name="mlp_norm")(x + y)


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

    @nn.compact
    def __call__(self, tokens, segment_ids=None, deterministic: bool = True, decode: bool = False):
        """tokens int [B, L] -> logits float32 [B, L, vocab_size]."""
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
        x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
        for i in range(self.num_layers):
            x = Layer(self.num_heads, self.mlp_dim, self.dropout_rate, self.attention_dropout_rate,
                      self.causal, name=f"layer_{i}")(x, deterministic, decode)
        # Tied output head (BERT MLM): transform, then project on the word embeddings.
        x = nn.Dense(self.hidden_size, kernel_init=_init, name="head_transform")(x)
        x = nn.LayerNorm(epsilon=1e-12, name="head_norm")(nn.gelu(x))
        bias = self.param("head_bias", nn.initializers.zeros, (self.vocab_size,))
        return (word.attend(x) + bias).astype(jnp.float32)


def build_model(transformer_config, vocab_size: int, max_length: int, causal: bool = False):
    """The transformer of `config.transformer.model` over sequences up to `max_length`."""
    m = transformer_config.model
    return Transformer(vocab_size=vocab_size, max_length=max_length, num_layers=m.num_layers,
                       hidden_size=m.hidden_size, mlp_dim=m.mlp_dim, num_heads=m.num_heads,
                       dropout_rate=m.dropout_rate,
                       attention_dropout_rate=m.attention_dropout_rate,
                       num_segments=2 if m.get("use_condition_segment", False) else 0,
                       causal=causal)
