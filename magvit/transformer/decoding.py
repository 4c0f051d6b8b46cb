"""Non-autoregressive (MaskGIT / MAGVIT) decoding of a token grid, conditioned by COMMIT.

Official rule (`condition_mode="refine"`, google-research/magvit `parallel_decode.py` with weight
mode `mask+refine`): every one of the N positions starts unknown. An unknown position inside the
task's condition region carries the condition token (segment 1), elsewhere it is [MASK]. Each of
`num_steps` steps runs the transformer once, samples a token for every unknown position (the
condition region included) and keeps the most confident; the number left unknown for the next
step is floor(N * schedule((s+1)/S)), clipped to [1, unknown - 1]. Re-masked positions in the
condition region get the condition token back. Confidence = log p(sampled) + choice_temperature *
(1 - (s+1)/S) * Gumbel noise. The output is the model's prediction at every position, the
condition positions included.

`condition_mode="fixed"` (a departure, not official) holds the condition tokens fixed: only the
non-condition positions are unknown, the schedule counts them alone, and the output keeps the
condition tokens.

Options of the official code, off by default: sampling temperature, top-k or top-p (nucleus)
sampling, and classifier-free guidance (logits + scale * (logits - unconditional logits), the
unconditional input having [MASK] at every unknown position and the unconditional prefix).
"""
from typing import Callable

import jax
import jax.numpy as jnp

from magvit.transformer.masking import schedule

# (tokens, segments, unconditional tokens) -> codebook logits [B, N, K]
LogitsFn = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray], jnp.ndarray]
CONDITION_MODES = ("refine", "fixed")


def sample_logits(rng, logits, temperature: float = 1.0, top_k: int = 0, top_p: float = 0.0):
    """int32 token ids sampled from logits [..., K] (official `sampling.sampling` rules)."""
    if top_k < 0 or top_p < 0:
        raise ValueError(f"decoding.top_k={top_k} and decoding.top_p={top_p} must be >= 0")
    if top_k and top_p:
        raise ValueError("decoding.top_k and decoding.top_p: at most one may be non-zero")
    if temperature <= 0:
        raise ValueError(f"decoding.temperature={temperature} must be > 0")
    if top_p > 0:
        ordered = jnp.sort(logits, axis=-1)[..., ::-1]
        cumulative = jnp.cumsum(jax.nn.softmax(ordered, axis=-1), axis=-1)
        cut = jnp.take_along_axis(ordered, jnp.sum(cumulative < top_p, -1, keepdims=True), -1)
        logits = jnp.where(logits < cut, -1e7, logits)
    if top_k > 0:
        top_logits, top_ids = jax.lax.top_k(logits, top_k)
        pick = jax.random.categorical(rng, top_logits / temperature)[..., None]
        return jnp.take_along_axis(top_ids, pick, axis=-1)[..., 0].astype(jnp.int32)
    return jax.random.categorical(rng, logits / temperature).astype(jnp.int32)


def decode(logits_fn: LogitsFn, rng, cond_tokens, cond_mask, *, mask_id: int, num_steps: int = 12,
           choice_temperature: float = 4.5, mask_schedule: str = "cosine",
           condition_mode: str = "refine", temperature: float = 1.0, top_k: int = 0,
           top_p: float = 0.0):
    """int [B, N] condition tokens + bool [B, N] condition mask -> int32 [B, N] decoded tokens.

    Calls `logits_fn` once per step, in a `jax.lax.fori_loop` (as the official code loops with
    `lax.while_loop`): the step is traced once, so a sampler compiles about 3x faster than
    with the loop unrolled (tiny, batch 8: 1.6 s against 4.8 s) and decodes the same tokens.
    """
    if num_steps < 1:
        raise ValueError(f"decoding.num_steps must be >= 1, got {num_steps}")
    if condition_mode not in CONDITION_MODES:
        raise ValueError(f"decoding.condition_mode={condition_mode!r}: expected one of "
                         f"{', '.join(CONDITION_MODES)}")
    cond_mask = jnp.asarray(cond_mask, bool)
    cond_tokens = jnp.asarray(cond_tokens, jnp.int32)
    batch, length = cond_mask.shape
    refine = condition_mode == "refine"
    # refine: N positions are counted; fixed: only the non-condition ones.
    total = jnp.full((batch,), length) if refine else jnp.sum(~cond_mask, axis=-1)

    def step_fn(step, carry):
        # `current`: the known / last sampled token of each position
        rng, current, unknown = carry
        tokens = jnp.where(unknown, jnp.where(cond_mask, cond_tokens, mask_id), current)
        segments = (unknown & cond_mask).astype(jnp.int32)
        uncond_tokens = jnp.where(unknown, mask_id, current)
        logits = logits_fn(tokens, segments, uncond_tokens)
        rng, sample_rng, gumbel_rng = jax.random.split(rng, 3)
        sampled = sample_logits(sample_rng, logits, temperature, top_k, top_p)
        current = jnp.where(unknown, sampled, current)
        # The positions left unknown for the next step (unused after the last one).
        progress = (step + 1) / num_steps
        num_masked = jnp.floor(total * schedule(progress, mask_schedule, length)).astype(jnp.int32)
        num_masked = jnp.clip(num_masked, 1, jnp.sum(unknown, axis=-1) - 1)
        log_p = jnp.take_along_axis(jax.nn.log_softmax(logits), current[..., None], -1)[..., 0]
        confidence = log_p + choice_temperature * (1.0 - progress) * jax.random.gumbel(
            gumbel_rng, log_p.shape)
        confidence = jnp.where(unknown, confidence, jnp.inf)
        cutoff = jnp.take_along_axis(jnp.sort(confidence, axis=-1),
                                     jnp.maximum(num_masked - 1, 0)[:, None], axis=-1)
        unknown = (confidence <= cutoff) & (num_masked[:, None] > 0)
        return rng, current, unknown

    unknown = jnp.ones_like(cond_mask) if refine else ~cond_mask
    return jax.lax.fori_loop(0, num_steps, step_fn, (rng, cond_tokens, unknown))[1]


def model_logits_fn(model, params, prefix, codebook_size: int, uncond_prefix=None,
                    guidance_scale: float = 0.0) -> LogitsFn:
    """The transformer as a LogitsFn: prefix tokens prepended, codebook logits of the grid
    returned; with `guidance_scale` > 0, classifier-free guidance against `uncond_prefix` +
    the unconditional tokens (a second pass per step)."""
    if guidance_scale and uncond_prefix is None:
        raise ValueError("decoding.guidance_scale > 0 needs the unconditional prefix")

    def run(pre, tokens, segments):
        inputs = jnp.concatenate([pre, tokens], axis=1)
        segment_ids = jnp.concatenate([jnp.zeros_like(pre), segments], axis=1)
        return model.apply({"params": params}, inputs, segment_ids, deterministic=True,
                           logits_from=pre.shape[1], num_logits=codebook_size)

    def logits_fn(tokens, segments, uncond_tokens=None):
        logits = run(prefix, tokens, segments)
        if guidance_scale:
            uncond = run(uncond_prefix, uncond_tokens, segments)
            logits = logits + guidance_scale * (logits - uncond)
        return logits
    return logits_fn
