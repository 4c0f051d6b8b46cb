"""Compute dtype, rematerialisation and fused attention of both models (tiny settings):
bfloat16 agrees with float32 within a stated tolerance with float32 parameters and optimiser state;
remat gives the same loss and gradients; jax.nn.dot_product_attention gives the einsum logits, and
the KV-cache path (autoregressive baseline) the full-sequence causal logits."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magvit import precision, xla_cpu
from magvit.configs import get_config
from magvit.tokenizer.train_step import Models, to_unit, train_step
from magvit.transformer import autoregressive, tasks
from magvit.transformer.model import attend, attend_with_dropout, build_model
from magvit.transformer.train_step import init_state, make_optimizer, make_train_step
from tests.test_tokenizer_model import micro_config

# bfloat16 keeps 8 mantissa bits (relative rounding 2^-9 ~ 0.2% per op); through the tiny models'
# depth the RMS difference from float32 stays within these fractions of the float32 outputs'
# standard deviation (measured: ~1% for the tokenizer, ~0.5% for the transformer).
TOKENIZER_BF16_TOLERANCE = 0.03
TRANSFORMER_BF16_TOLERANCE = 0.03


def _tokenizer_config(dtype="float32", remat=False):
    """The tiny tokenizer, smaller still (tests.test_tokenizer_model.micro_config), in `dtype`."""
    config = micro_config()
    config.dtype, config.remat = dtype, remat
    return config


def _video(config, batch=2, seed=0):
    shape = (batch, *tuple(config.clip_shape), 3)
    return np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8)


def _transformer(dtype="float32", remat=False, causal=False, length=34):
    config = get_config("tiny").transformer
    config.dtype, config.remat = dtype, remat
    config.model.num_layers, config.model.hidden_size, config.model.mlp_dim = 2, 32, 64
    vocab = tasks.Vocabulary(64, 4, tuple(config.tasks))
    return config, vocab, build_model(config, vocab.size, length, causal=causal)


def _relative_error(a, b):
    """RMS difference of `a` from the reference `b`, over the standard deviation of `b`."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    error = float(np.sqrt(np.mean(np.square(a - b))) / np.std(b))
    print(f"relative RMS error {error:.4f}")
    return error


def test_dtype_names_are_checked():
    assert precision.compute_dtype("bfloat16") == jnp.bfloat16
    with pytest.raises(ValueError, match=r"--config.tokenizer.dtype='float16': expected one of "
                                         r"float32, bfloat16"):
        precision.compute_dtype("float16", "tokenizer.dtype")
    # Config sections written before the fields existed mean float32, no remat.
    assert precision.model_options({}, "x") == {"dtype": jnp.float32, "remat": False}


@pytest.mark.slow   # ~45 s on 2 cores; the bfloat16 train step below stays in the default suite
def test_tokenizer_bfloat16_forward_within_tolerance_of_float32():
    f32, bf16 = Models(_tokenizer_config()), Models(_tokenizer_config("bfloat16"))
    params = f32.init(jax.random.PRNGKey(0)).params
    x = to_unit(_video(f32.config))
    latents = {}
    for name, models in (("f32", f32), ("bf16", bf16)):
        latents[name] = models.generator.apply({"params": params}, x,
                                               method=lambda m, v: m.encoder(v))
        assert latents[name].dtype == jnp.float32       # the quantizer sees float32
    assert _relative_error(latents["bf16"], latents["f32"]) < TOKENIZER_BF16_TOLERANCE
    z = latents["f32"]
    decoded = {name: models.generator.apply({"params": params}, z, method=lambda m, q: m.decode(q))
               for name, models in (("f32", f32), ("bf16", bf16))}
    assert decoded["bf16"].dtype == jnp.float32
    error = _relative_error(decoded["bf16"], decoded["f32"])
    assert 0 < error < TOKENIZER_BF16_TOLERANCE        # bfloat16 did compute something different


def test_tokenizer_bfloat16_train_step_keeps_float32_state():
    models = Models(_tokenizer_config("bfloat16"))
    state = models.init(jax.random.PRNGKey(0))
    new_state, metrics = jax.jit(lambda s, b: train_step(models, s, b, gan=False))(
        state, {"frames": _video(models.config)})
    for tree in (new_state.params, new_state.ema_params, new_state.opt_state):
        floats = [x.dtype for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
        assert floats and set(floats) == {jnp.dtype(jnp.float32)}
    assert metrics["generator_loss"].dtype == jnp.float32 and np.isfinite(metrics["generator_loss"])


def test_tokenizer_remat_same_loss_and_gradients():
    plain, remat = Models(_tokenizer_config()), Models(_tokenizer_config(remat=True))
    params = plain.init(jax.random.PRNGKey(0)).params
    x = to_unit(_video(plain.config))

    def loss_and_grads(models):
        def loss(p):
            recon, _, aux = models.generator.apply({"params": p}, x)
            return jnp.mean(jnp.square(recon - x)) + aux["quantizer_loss"]
        return jax.jit(jax.value_and_grad(loss))(params)
    (loss_a, grads_a), (loss_b, grads_b) = loss_and_grads(plain), loss_and_grads(remat)
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    assert jax.tree.structure(grads_a) == jax.tree.structure(grads_b)


def test_transformer_bfloat16_logits_within_tolerance_of_float32():
    _, vocab, f32 = _transformer()
    _, _, bf16 = _transformer("bfloat16")
    tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 34), 0, vocab.size)
    params = f32.init(jax.random.PRNGKey(1), tokens)["params"]
    a = f32.apply({"params": params}, tokens)
    b = bf16.apply({"params": params}, tokens)
    assert b.dtype == jnp.float32
    error = _relative_error(b, a)
    assert 0 < error < TRANSFORMER_BF16_TOLERANCE


def test_transformer_remat_same_loss_and_gradients_and_bf16_state_float32():
    results = []
    for remat in (False, True):
        config, vocab, model = _transformer(remat=remat)
        optimizer = make_optimizer(config.optimizer, 100)
        state = init_state(model, optimizer, jax.random.PRNGKey(0), 34)
        rng = np.random.default_rng(0)
        batch = dict(tokens=rng.integers(0, 64, (4, 32)).astype(np.int32),
                     cond_tokens=np.zeros((4, 32), np.int32), cond_mask=np.zeros((4, 32), bool),
                     prefix=np.full((4, 2), vocab.size - 1, np.int32))
        step = make_train_step(model, optimizer, config, 64, vocab.mask_id)
        new_state, metrics = step(state, batch)
        results.append((metrics["loss"], metrics["grad_norm"], new_state.params))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)   # dropout on: same rngs
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(results[0][2]), jax.tree.leaves(results[1][2])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def _einsum_attention(q, k, v, mask=None):
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    if mask is not None:
        logits = jnp.where(mask, logits, -1e9)
    return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, -1), v)


def test_dot_product_attention_equals_the_einsum_path():
    q, k, v = jax.random.normal(jax.random.PRNGKey(0), (3, 2, 10, 4, 8))
    np.testing.assert_allclose(attend(q, k, v), _einsum_attention(q, k, v), rtol=1e-5, atol=1e-6)
    causal = jnp.tril(jnp.ones((10, 10), bool))
    np.testing.assert_allclose(attend(q, k, v, causal=True), _einsum_attention(q, k, v, causal),
                               rtol=1e-5, atol=1e-6)
    # One cached query against the keys written so far.
    mask = (jnp.arange(10) <= 6)[None, None, None, :]
    np.testing.assert_allclose(attend(q[:, 6:7], k, v, mask), _einsum_attention(q[:, 6:7], k, v, mask),
                               rtol=1e-5, atol=1e-6)
    # The unfused path (used for attention dropout) with the identity dropout.
    np.testing.assert_allclose(attend_with_dropout(q, k, v, None, True, lambda w: w),
                               _einsum_attention(q, k, v, causal), rtol=1e-5, atol=1e-6)
    assert not np.allclose(attend(q, k, v), attend(q, k, v, causal=True))


def test_attention_with_dropout_trains_without_transposing_the_weights():
    """On a CPU, the gradient program of training attention copies no [L, L] array into
    transposed order (with [B, L, H, D] operands XLA made three such copies per layer)."""
    length, heads = 65, 4
    q = jnp.ones((1, length, heads, 16))
    bits = jax.random.bits(jax.random.PRNGKey(0), (1, heads, length, length), jnp.uint16)

    def loss(q, k, v):
        drop = lambda w: jnp.where(bits < 58982, w / 0.9, 0.0)  # noqa: E731
        return jnp.sum(attend_with_dropout(q, k, v, None, False, drop) ** 2)
    program = xla_cpu.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, q, q).compile().as_text()
    square = rf"\[1,{heads},{length},{length}\]\{{[0-9,]+\}}"
    assert re.search(rf"= f32{square} fusion\(", program)          # the weights are there
    assert not re.search(rf"= f32{square} transpose\(", program)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_kv_cache_decoding_reproduces_full_causal_logits(dtype):
    _, vocab, model = _transformer(dtype, causal=True)
    tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 34), 0, vocab.size)
    params = model.init(jax.random.PRNGKey(1), tokens)["params"]
    full = model.apply({"params": params}, tokens)
    cache = autoregressive.init_cache(model, 2, 34)
    logits, state = model.apply({"params": params, "cache": cache}, tokens[:, :2], decode=True,
                                mutable=["cache"])
    steps = [logits]
    for i in range(2, 34):
        logits, state = model.apply({"params": params, "cache": state["cache"]},
                                    tokens[:, i:i + 1], decode=True, mutable=["cache"])
        steps.append(logits)
    tolerance = 1e-4 if dtype == "float32" else 5e-2
    np.testing.assert_allclose(jnp.concatenate(steps, 1), full, atol=tolerance * np.std(full))
    # The causal model ignores the future: changing the last token leaves earlier logits.
    changed = model.apply({"params": params}, tokens.at[:, -1].set((tokens[:, -1] + 1) % 64))
    np.testing.assert_allclose(changed[:, :-1], full[:, :-1], atol=1e-6)


def test_attention_implementation_choice():
    from magvit.transformer.model import attention_implementation
    assert attention_implementation("auto", jnp.float32) == "xla"
    assert attention_implementation("cudnn", jnp.bfloat16) == "cudnn"
    with pytest.raises(ValueError, match=r"--config.transformer.attention='flash': expected auto"):
        attention_implementation("flash", jnp.float32)
