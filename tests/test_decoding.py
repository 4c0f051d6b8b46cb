"""Mask schedule, COMMIT inputs, 12-step non-autoregressive decoding and the AR baseline."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magvit.transformer import autoregressive, decoding, masking
from magvit.transformer.model import Transformer

K, MASK = 16, 20


def test_cosine_schedule_values():
    ratios = jnp.array([0.0, 0.25, 0.5, 0.75, 1.0])
    expected = [1.0, math.cos(math.pi / 8), math.sqrt(0.5), math.cos(3 * math.pi / 8), 1e-6]
    np.testing.assert_allclose(masking.schedule(ratios, "cosine"), expected, rtol=1e-5)
    np.testing.assert_allclose(masking.schedule(jnp.array([0.0, 0.5]), "linear"), [1.0, 0.5])
    with pytest.raises(ValueError, match="unknown mask schedule 'zigzag'"):
        masking.schedule(0.5, "zigzag")


def test_commit_inputs_mix_condition_mask_and_original_tokens():
    tokens = jnp.arange(32).reshape(2, 16) % K
    cond_tokens = (tokens + 1) % K
    cond_mask = jnp.zeros((2, 16), bool).at[:, :4].set(True)
    ratio = jnp.array([0.5, 1.0])
    out = masking.commit_inputs(jax.random.PRNGKey(0), tokens, cond_tokens, cond_mask, ratio,
                                MASK, weights=(1.0, 2.0, 3.0))
    masked, inputs = np.asarray(out["masked"]), np.asarray(out["inputs"])
    assert masked.sum(axis=1).tolist() == [8, 16]                       # floor(16 * ratio)
    cm = np.asarray(cond_mask)
    # masked in the condition region -> condition token (segment 1); elsewhere -> [MASK]
    np.testing.assert_array_equal(inputs[masked & cm], np.asarray(cond_tokens)[masked & cm])
    assert (inputs[masked & ~cm] == MASK).all()
    np.testing.assert_array_equal(inputs[~masked], np.asarray(tokens)[~masked])
    np.testing.assert_array_equal(np.asarray(out["segment_ids"]), (masked & cm).astype(int))
    np.testing.assert_array_equal(np.asarray(out["targets"]), np.asarray(tokens))
    w = np.asarray(out["weights"])
    assert set(w[masked & cm]) == {2.0} and set(w[masked & ~cm]) == {1.0} and set(w[~masked]) == {3.0}


def test_loss_modes_from_config():
    from magvit.configs import get_config
    config = get_config("tiny").transformer
    assert masking.loss_weights(config) == (1.0, 1.0, 1.0)
    config.loss_mode = "mask+refine"
    assert masking.loss_weights(config) == (1.0, 1.0, 0.0)


class _CountingLogits:
    """A fake model: fixed random logits; records every call's input."""

    def __init__(self, n):
        self.logits = jax.random.normal(jax.random.PRNGKey(7), (2, n, K))
        self.calls = []

    def __call__(self, tokens, segments):
        self.calls.append((np.asarray(tokens), np.asarray(segments)))
        return self.logits


@pytest.mark.parametrize("steps", [12, 5])
def test_decoding_keeps_conditions_follows_schedule_and_fills_every_mask(steps):
    n = 64
    cond_tokens = jax.random.randint(jax.random.PRNGKey(1), (2, n), 0, K)
    cond_mask = jnp.zeros((2, n), bool).at[0, :16].set(True)            # example 1: no condition
    fn = _CountingLogits(n)
    out = np.asarray(decoding.decode(fn, jax.random.PRNGKey(2), cond_tokens, cond_mask,
                                     mask_id=MASK, num_steps=steps))
    assert len(fn.calls) == steps                                        # one pass per step
    assert (out != MASK).all() and out.max() < K
    np.testing.assert_array_equal(out[0, :16], np.asarray(cond_tokens)[0, :16])
    unknown = np.array([n - 16, n])
    for step, (tokens, segments) in enumerate(fn.calls):
        np.testing.assert_array_equal(tokens[0, :16], np.asarray(cond_tokens)[0, :16])
        assert (segments[0, :16] == 1).all() and (segments[:, 16:] == 0).all()
        # (schedule values are checked above; float32 as in decoding)
        expected = unknown if step == 0 else np.maximum(1, np.floor(
            unknown * np.asarray(masking.schedule(step / steps))).astype(int))
        np.testing.assert_array_equal((tokens == MASK).sum(axis=1), expected)


def test_decoding_under_jit_with_an_all_condition_example():
    n = 8
    cond_tokens = jnp.arange(2 * n).reshape(2, n) % K
    cond_mask = jnp.ones((2, n), bool).at[1, 3:].set(False)
    fn = _CountingLogits(n)
    run = jax.jit(lambda rng: decoding.decode(lambda t, s: fn.logits[:, :n], rng, cond_tokens,
                                              cond_mask, mask_id=MASK, num_steps=12))
    out = np.asarray(run(jax.random.PRNGKey(0)))
    np.testing.assert_array_equal(out[0], np.asarray(cond_tokens)[0])
    np.testing.assert_array_equal(out[1, :3], np.asarray(cond_tokens)[1, :3])
    assert (out != MASK).all()


def _causal_model():
    return Transformer(vocab_size=24, max_length=12, num_layers=2, hidden_size=32, mlp_dim=64,
                       num_heads=2, causal=True)


def test_kv_cache_decoding_matches_the_full_causal_pass():
    model = _causal_model()
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 12), 0, 24)
    params = model.init(jax.random.PRNGKey(0), tokens)["params"]
    full = model.apply({"params": params}, tokens)
    apply = jax.jit(lambda cache, t: model.apply({"params": params, "cache": cache}, t,
                                                 decode=True, mutable=["cache"]))
    logits, state = apply(autoregressive.init_cache(model, 2, 12), tokens[:, :2])
    steps = [logits]
    for i in range(2, 12):
        logits, state = apply(state["cache"], tokens[:, i:i + 1])
        steps.append(logits)
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=1e-5)
    # Bidirectional differs from causal on the same weights: the causal mask is doing something.
    bidirectional = model.clone(causal=False)
    assert not np.allclose(bidirectional.apply({"params": params}, tokens), full, atol=1e-3)


def test_autoregressive_sampling_forces_known_tokens():
    model = _causal_model()
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 12), jnp.int32))["params"]
    known = jnp.full((2, 10), 3, jnp.int32)
    known_mask = jnp.zeros((2, 10), bool).at[:, :4].set(True)
    out = autoregressive.sample(model, params, jnp.array([[20, 21], [20, 22]]),
                                jax.random.PRNGKey(3), num_tokens=10, codebook_size=K,
                                known_tokens=known, known_mask=known_mask)
    assert out.shape == (2, 10) and int(out.max()) < K
    assert (np.asarray(out)[:, :4] == 3).all()
