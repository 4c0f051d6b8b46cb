"""The autoregressive baseline: left-to-right sampling of the same token sequence with a KV cache.

The same network as the bidirectional model (model.Transformer with `causal=True`), reading the
prefix (task token, class token) then producing the N visual tokens one at a time; each step runs
one position against the cached keys and values. Known (condition) tokens, if given, are forced.
It exists to measure the speed claim of the paper on our own code (bench/bench_train.py).
"""
import functools

import jax
import jax.numpy as jnp


def init_cache(model, batch: int, length: int):
    """A zero key/value cache for sequences of `length` (shapes only; no parameters computed)."""
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((batch, length), jnp.int32),
                           decode=True))["cache"]
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


@functools.partial(jax.jit, static_argnames=("model", "num_tokens", "codebook_size"))
def sample(model, params, prefix, rng, *, num_tokens: int, codebook_size: int,
           known_tokens=None, known_mask=None, temperature: float = 1.0):
    """prefix int [B, P] -> int32 [B, num_tokens] sampled left to right (1 + num_tokens - 1 passes)."""
    batch, prefix_len = prefix.shape
    cache = init_cache(model, batch, prefix_len + num_tokens)
    if known_tokens is None:
        known_tokens = jnp.zeros((batch, num_tokens), jnp.int32)
        known_mask = jnp.zeros((batch, num_tokens), bool)

    def step(logits, cache, i, rng):
        rng, key = jax.random.split(rng)
        token = jax.random.categorical(key, logits[:, -1, :codebook_size] / temperature)
        token = jnp.where(known_mask[:, i], known_tokens[:, i], token).astype(jnp.int32)
        return token, rng

    logits, state = model.apply({"params": params, "cache": cache}, prefix, decode=True,
                                mutable=["cache"])
    logits = logits[:, -1:]
    out = jnp.zeros((batch, num_tokens), jnp.int32)

    def body(i, carry):
        out, logits, cache, rng = carry
        token, rng = step(logits, cache, i, rng)
        logits, state = model.apply({"params": params, "cache": cache}, token[:, None],
                                    decode=True, mutable=["cache"])
        return out.at[:, i].set(token), logits, state["cache"], rng

    out, logits, cache, rng = jax.lax.fori_loop(0, num_tokens - 1, body,
                                                (out, logits, state["cache"], rng))
    token, _ = step(logits, cache, num_tokens - 1, rng)
    return out.at[:, num_tokens - 1].set(token)
