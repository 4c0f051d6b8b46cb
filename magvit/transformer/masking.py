"""The mask schedule and COMMIT training inputs (conditional masked modelling by interior tokens).

Per token position of a training example (official `cond->input` mode):
  masked and inside the condition region   -> the condition token   (segment 1)  "refine"
  masked and outside it                     -> [MASK]                (segment 0)  "mask"
  not masked                                -> the original token    (segment 0)  "recons"
The target is always the original token. The loss weight of each kind comes from the config
(`mask_weight`, `refine_weight`, `recons_weight`); `loss_mode="mask+refine+recons"` (the official
setting) weights all three, `"mask+refine"` drops the unmasked positions.
"""
import math

import jax
import jax.numpy as jnp


SCHEDULES = "cosine, linear (= uniform), square (= pow2), powX, exp, log, poly:c0,c1,..."


def schedule(ratio, method: str = "cosine", total_unknown: int = 1024):
    """Mask ratio in [1e-6, 1] for a progress `ratio` in [0, 1] (the official `mask_schedule`).

    cosine cos(pi/2 r); linear / uniform 1 - r; square 1 - r^2; powX 1 - r^X (e.g. pow2.5);
    exp 1 - 2^(-log2(total_unknown) (1 - r)); log -log2(r) / log2(total_unknown);
    poly:c0,c1,... the polynomial c0 r^(n-1) + ... + c(n-1) (numpy polyval order).
    """
    ratio = jnp.asarray(ratio, jnp.float32)
    if method.startswith("poly:"):
        try:
            coefficients = [float(c) for c in method[5:].split(",")]
        except ValueError:
            raise ValueError(f"mask schedule {method!r}: poly: takes comma-separated numbers, "
                             "e.g. poly:-1,0,1") from None
        mask_ratio = jnp.polyval(jnp.asarray(coefficients, jnp.float32), ratio)
    elif method == "cosine":
        mask_ratio = jnp.cos(math.pi / 2 * ratio)
    elif method in ("linear", "uniform"):
        mask_ratio = 1.0 - ratio
    elif method == "square":
        mask_ratio = 1.0 - ratio ** 2
    elif method.startswith("pow"):
        try:
            exponent = float(method[3:])
        except ValueError:
            raise ValueError(f"mask schedule {method!r}: powX takes a number, e.g. pow2.5") from None
        mask_ratio = 1.0 - ratio ** exponent
    elif method == "exp":
        mask_ratio = 1.0 - jnp.exp2(-math.log2(total_unknown) * (1.0 - ratio))
    elif method == "log":
        mask_ratio = -jnp.log2(ratio) / math.log2(total_unknown)
    else:
        raise ValueError(f"unknown mask schedule {method!r}; expected {SCHEDULES}")
    return jnp.clip(mask_ratio, 1e-6, 1.0)


def loss_weights(config) -> tuple[float, float, float]:
    """(mask, refine, recons) weights of `config.transformer`'s loss mode."""
    mode = config.loss_mode
    if mode not in ("mask+refine+recons", "mask+refine"):
        raise ValueError(f"transformer.loss_mode {mode!r}: expected mask+refine+recons or mask+refine")
    recons = config.recons_weight if mode == "mask+refine+recons" else 0.0
    return float(config.mask_weight), float(config.refine_weight), float(recons)


def commit_inputs(rng, tokens, cond_tokens, cond_mask, mask_ratio, mask_id: int,
                  weights=(1.0, 1.0, 1.0)) -> dict:
    """COMMIT inputs of a batch of token grids.

    tokens, cond_tokens: int [B, N]; cond_mask: bool [B, N] (interior condition tokens);
    mask_ratio: float [B]. Masks floor(N * ratio) positions (at least 1) chosen uniformly at random.
    Returns inputs, segment_ids (int32 [B, N]), targets, weights (float32 [B, N]) and masked (bool).
    """
    batch, length = tokens.shape
    score = jax.random.uniform(rng, (batch, length))
    num_masked = jnp.clip(jnp.floor(length * mask_ratio).astype(jnp.int32), 1, length)
    cutoff = jnp.take_along_axis(jnp.sort(score, axis=-1), (num_masked - 1)[:, None], axis=-1)
    masked = score <= cutoff
    refine = masked & cond_mask
    inputs = jnp.where(masked, jnp.where(cond_mask, cond_tokens, mask_id), tokens)
    mask_w, refine_w, recons_w = weights
    weight = jnp.where(refine, refine_w, jnp.where(masked, mask_w, recons_w))
    return dict(inputs=inputs.astype(jnp.int32), segment_ids=refine.astype(jnp.int32),
                targets=tokens.astype(jnp.int32), weights=weight.astype(jnp.float32),
                masked=masked)
