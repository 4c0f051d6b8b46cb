"""Non-autoregressive (MaskGIT-style) decoding with fixed condition tokens.

Start from the condition tokens at the interior condition positions and [MASK] everywhere else.
Each of `num_steps` steps runs the transformer once, samples a token for every [MASK], and keeps
the most confident ones; the schedule says how many stay masked: floor(unknown * schedule((s+1)/S)).
Confidence = log p(sampled) + temperature * (1 - (s+1)/S) * Gumbel noise, so the choice
temperature anneals to 0. Condition tokens never change; the last step leaves no [MASK].
"""
from typing import Callable

import jax
import jax.numpy as jnp

from magvit.transformer.masking import schedule

LogitsFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]  # (tokens, segments) -> [B, N, K]


def decode(logits_fn: LogitsFn, rng, cond_tokens, cond_mask, *, mask_id: int, num_steps: int = 12,
           choice_temperature: float = 4.5, mask_schedule: str = "cosine"):
    """int [B, N] condition tokens + bool [B, N] condition mask -> int32 [B, N] decoded tokens.

    Calls `logits_fn` exactly `num_steps` times (the loop is unrolled when traced under jit).
    """
    cond_mask = jnp.asarray(cond_mask, bool)
    tokens = jnp.where(cond_mask, cond_tokens, mask_id).astype(jnp.int32)
    segments = cond_mask.astype(jnp.int32)
    unknown = jnp.sum(~cond_mask, axis=-1)                       # [B] positions to generate
    length = tokens.shape[1]
    for step in range(num_steps):
        logits = logits_fn(tokens, segments)
        rng, sample_rng, gumbel_rng = jax.random.split(rng, 3)
        is_masked = tokens == mask_id
        sampled = jax.random.categorical(sample_rng, logits).astype(jnp.int32)
        sampled = jnp.where(is_masked, sampled, tokens)
        if step == num_steps - 1:
            return sampled
        ratio = (step + 1) / num_steps
        still_masked = jnp.floor(unknown * schedule(ratio, mask_schedule, length)).astype(jnp.int32)
        # MaskGIT: keep at least one masked for the next step, unmask at least one now.
        num_unknown_now = jnp.sum(is_masked, axis=-1)
        still_masked = jnp.maximum(1, jnp.minimum(num_unknown_now - 1, still_masked))
        log_p = jnp.take_along_axis(jax.nn.log_softmax(logits), sampled[..., None], axis=-1)[..., 0]
        gumbel = -jnp.log(-jnp.log(jax.random.uniform(gumbel_rng, log_p.shape, minval=1e-20,
                                                      maxval=1.0)))
        confidence = log_p + choice_temperature * (1.0 - ratio) * gumbel
        confidence = jnp.where(is_masked, confidence, jnp.inf)
        cutoff = jnp.take_along_axis(jnp.sort(confidence, axis=-1), still_masked[:, None], axis=-1)
        tokens = jnp.where(confidence < cutoff, mask_id, sampled)
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")


def model_logits_fn(model, params, prefix, codebook_size: int) -> LogitsFn:
    """The transformer as a LogitsFn: prefix tokens prepended, codebook logits of the grid returned."""
    def logits_fn(tokens, segments):
        inputs = jnp.concatenate([prefix, tokens], axis=1)
        segment_ids = jnp.concatenate([jnp.zeros_like(prefix), segments], axis=1)
        logits = model.apply({"params": params}, inputs, segment_ids, deterministic=True)
        return logits[:, prefix.shape[1]:, :codebook_size]
    return logits_fn
