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


class _RankedLogits:
    """A stub model: at position i the logits are [a_i, 0, ..., 0] with a_i = 1 + rank_i / N and
    rank_i = 37 i mod N (a permutation), so with top_k=1 every draw is token 0 and its confidence
    log p = a_i - log(e^a_i + K - 1) orders the positions by rank. Records every call's input
    through a debug callback, since decoding traces its loop body once and runs it step by step."""

    def __init__(self, batch, n):
        self.rank = (37 * np.arange(n)) % n
        logits = np.zeros((batch, n, K), np.float32)
        logits[:, :, 0] = 1.0 + self.rank / n
        self.logits = jnp.asarray(logits)
        self._calls = []

    def __call__(self, tokens, segments, uncond_tokens=None):
        jax.debug.callback(self._record, tokens, segments, uncond_tokens, ordered=True)
        return self.logits

    def _record(self, *inputs):
        self._calls.append(tuple(np.asarray(x) for x in inputs))

    @property
    def calls(self):
        jax.effects_barrier()   # every step's callback has run
        return self._calls


# floor(1024 * cos(pi/2 * s/12)) in float32 (as the official code computes it: s=8 gives 511,
# not 512), s = 0..11: the number of unknown positions in the input of each step.
_TOTALS = [1024, 1015, 989, 946, 886, 812, 724, 623, 511, 391, 265, 133]


def _frame_prediction_grid(batch=1):
    """A 4x16x16 grid whose first latent frame (256 tokens) is the condition (token 5)."""
    n = 4 * 16 * 16
    cond_mask = jnp.zeros((batch, n), bool).at[:, :256].set(True)
    return n, jnp.full((batch, n), 5, jnp.int32), cond_mask


def test_official_decoding_refines_the_condition_region():
    n, cond_tokens, cond_mask = _frame_prediction_grid()
    fn = _RankedLogits(1, n)
    out = np.asarray(decoding.decode(fn, jax.random.PRNGKey(0), cond_tokens, cond_mask,
                                     mask_id=MASK, num_steps=12, choice_temperature=0.0, top_k=1))
    assert len(fn.calls) == 12
    counts = [(int((t == MASK).sum()), int((t[0, :256] == 5).sum())) for t, _, _ in fn.calls]
    # The unknown positions of each step: the `total` lowest ranks, split by region by hand.
    expected = []
    for total in _TOTALS:
        in_condition = int((fn.rank[:256] < total).sum())
        expected.append((total - in_condition, in_condition))
    assert counts == expected
    assert counts[:2] == [(768, 256), (762, 253)] and counts[-1] == (99, 34)
    for tokens, segments, uncond in fn.calls:
        unknown = (tokens == MASK) | (tokens == 5)
        # unknown condition positions carry the condition token, segment 1; the rest segment 0
        np.testing.assert_array_equal(segments[0], (unknown[0] & (np.arange(n) < 256)))
        assert (tokens[~unknown] == 0).all()                    # kept: the sampled token
        # unconditional input: [MASK] at every unknown position
        np.testing.assert_array_equal(uncond == MASK, unknown)
    # The output at condition positions is the model's prediction (token 0), not the condition.
    assert (out == 0).all()


def test_fixed_condition_mode_keeps_the_old_rule():
    n, cond_tokens, cond_mask = _frame_prediction_grid()
    fn = _RankedLogits(1, n)
    out = np.asarray(decoding.decode(fn, jax.random.PRNGKey(0), cond_tokens, cond_mask,
                                     mask_id=MASK, num_steps=12, choice_temperature=0.0, top_k=1,
                                     condition_mode="fixed"))
    counts = [(int((t == MASK).sum()), int((t[0, :256] == 5).sum())) for t, _, _ in fn.calls]
    # floor(768 * cos(pi/2 * s/12)): (768, 256) -> (761, 256) -> ... -> (100, 256)
    assert [c[0] for c in counts] == [768, 761, 741, 709, 665, 609, 543, 467, 383, 293, 198, 100]
    assert {c[1] for c in counts} == {256}
    assert (out[0, :256] == 5).all() and (out[0, 256:] == 0).all()
    with pytest.raises(ValueError, match="condition_mode='keep'"):
        decoding.decode(fn, jax.random.PRNGKey(0), cond_tokens, cond_mask, mask_id=MASK,
                        condition_mode="keep")


@pytest.mark.parametrize("steps", [12, 5])
def test_decoding_under_jit_fills_every_position(steps):
    n = 64
    cond_tokens = jax.random.randint(jax.random.PRNGKey(1), (2, n), 0, K)
    cond_mask = jnp.zeros((2, n), bool).at[0, :16].set(True)
    logits = jax.random.normal(jax.random.PRNGKey(7), (2, n, K))
    run = jax.jit(lambda rng: decoding.decode(lambda t, s, u: logits, rng, cond_tokens, cond_mask,
                                              mask_id=MASK, num_steps=steps))
    out = np.asarray(run(jax.random.PRNGKey(0)))
    assert out.shape == (2, n) and (out != MASK).all() and out.max() < K


def test_sampling_top_k_top_p_and_temperature():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    draws = jax.vmap(lambda r: decoding.sample_logits(r, logits, top_k=2))(
        jax.random.split(jax.random.PRNGKey(0), 2000))
    assert set(np.unique(draws)) == {0, 1}
    # top-p 0.7: cumulative probabilities 0.5, 0.8 -> the two most likely tokens are kept
    draws = jax.vmap(lambda r: decoding.sample_logits(r, logits, top_p=0.7))(
        jax.random.split(jax.random.PRNGKey(1), 2000))
    assert set(np.unique(draws)) == {0, 1}
    frequency = float(np.mean(np.asarray(draws) == 0))
    assert abs(frequency - 0.5 / 0.8) < 0.04
    cold = jax.vmap(lambda r: decoding.sample_logits(r, logits, temperature=1e-3))(
        jax.random.split(jax.random.PRNGKey(2), 200))
    assert (np.asarray(cold) == 0).all()
    with pytest.raises(ValueError, match="at most one"):
        decoding.sample_logits(jax.random.PRNGKey(0), logits, top_k=2, top_p=0.5)


def test_classifier_free_guidance_combines_the_two_passes():
    class Model:
        def apply(self, variables, inputs, segments, deterministic, logits_from, num_logits):
            # logits: 2 for a conditional prefix (class token 7), 1 for "no class" (8)
            value = jnp.where(inputs[:, :1] == 7, 2.0, 1.0)[..., None]
            return jnp.broadcast_to(value, (inputs.shape[0], inputs.shape[1] - logits_from,
                                           num_logits))
    prefix, uncond = jnp.array([[7]]), jnp.array([[8]])
    tokens = jnp.zeros((1, 4), jnp.int32)
    plain = decoding.model_logits_fn(Model(), None, prefix, K)(tokens, tokens, tokens)
    guided = decoding.model_logits_fn(Model(), None, prefix, K, uncond, 3.0)(tokens, tokens, tokens)
    assert plain.shape == (1, 4, K)
    np.testing.assert_allclose(plain, 2.0)
    np.testing.assert_allclose(guided, 2.0 + 3.0 * (2.0 - 1.0))


def test_official_schedules():
    r = jnp.array([0.25, 0.5])
    np.testing.assert_allclose(masking.schedule(r, "pow2"), [1 - 0.0625, 0.75], rtol=1e-6)
    np.testing.assert_allclose(masking.schedule(r, "pow2.5"), [1 - 0.25 ** 2.5, 1 - 0.5 ** 2.5],
                               rtol=1e-6)
    np.testing.assert_allclose(masking.schedule(r, "uniform"), [0.75, 0.5])
    np.testing.assert_allclose(masking.schedule(r, "log", 1024), [0.2, 0.1], rtol=1e-6)
    np.testing.assert_allclose(masking.schedule(r, "poly:-1,0,1"), [1 - 0.0625, 0.75], rtol=1e-6)
    np.testing.assert_allclose(masking.schedule(r, "exp", 1024),
                               [1 - 2 ** (-10 * 0.75), 1 - 2 ** (-5)], rtol=1e-6)
    with pytest.raises(ValueError, match="poly: takes comma-separated numbers"):
        masking.schedule(0.5, "poly:a,b")


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
