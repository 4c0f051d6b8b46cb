"""The bidirectional transformer, its tied head and the COMMIT training step (tiny sizes)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from magvit.configs import get_config
from magvit.transformer import tasks
from magvit.transformer.model import add_bias, build_model
from magvit.transformer.train_step import (init_state, make_optimizer, make_train_step,
                                           mask_ratios, token_losses)

K, N = 16, 32


def _setup():
    config = get_config("tiny").transformer
    config.model.num_layers, config.model.hidden_size, config.model.mlp_dim = 1, 32, 64
    config.model.dropout_rate = config.model.attention_dropout_rate = 0.1  # the official rates
    vocab = tasks.Vocabulary(K, 4, tuple(config.tasks))
    model = build_model(config, vocab.size, vocab.prefix_length + N)
    return config, vocab, model


def test_paper_sizes_build_with_the_official_shapes():
    config = get_config("bair_b").transformer
    model = build_model(config, 1024 + 1 + 1 + 1, 2 + 1024)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 1026), jnp.int32)))
    params = shapes["params"]
    assert len([k for k in params if k.startswith("layer_")]) == 12
    assert params["word"]["embedding"].shape == (1027, 768)
    assert params["position"]["embedding"].shape == (1026, 768)
    assert params["layer_0"]["mlp_in"]["kernel"].shape == (768, 3072)
    assert params["layer_0"]["attention"]["qkv"]["kernel"].shape == (768, 3, 12, 64)
    total = sum(np.prod(x.shape) for x in jax.tree.leaves(params))
    assert 85e6 < total < 90e6          # BERT-base body + 1024-code vocabulary


def test_init_state_equals_the_jitted_init_and_traces_abstractly():
    # init_state compiles the init as a one-off program (train_utils.run_once: cheap XLA
    # options on CPU); its parameters are the plain jitted init's, up to float32 round-off.
    _, vocab, model = _setup()
    length = vocab.prefix_length + N
    state = init_state(model, make_optimizer(_setup()[0].optimizer, 10), jax.random.PRNGKey(4),
                       length)
    init_rng = jax.random.split(jax.random.PRNGKey(4))[0]
    want = jax.jit(lambda r: model.init(r, jnp.zeros((1, length), jnp.int32))["params"])(init_rng)
    for got, ref in zip(jax.tree.leaves(state.params), jax.tree.leaves(want)):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
    assert not all(np.all(x == 0) for x in jax.tree.leaves(state.params))
    shapes = jax.eval_shape(lambda r: init_state(model, make_optimizer(_setup()[0].optimizer, 10),
                                                 r, length), jax.random.PRNGKey(4))
    assert jax.tree.map(lambda x: (x.shape, x.dtype), shapes.params) == \
        jax.tree.map(lambda x: (x.shape, x.dtype), state.params)


def test_output_head_is_tied_to_the_word_embeddings():
    _, vocab, model = _setup()
    tokens = jax.random.randint(jax.random.PRNGKey(0), (2, N + vocab.prefix_length), 0, vocab.size)
    params = model.init(jax.random.PRNGKey(1), tokens)["params"]
    leaves = jax.tree.leaves(params)
    assert not any(x.ndim == 2 and x.shape[1] == vocab.size for x in leaves)  # no separate output matrix
    # Zeroing the embedding of id 5 (unused in the input) leaves only the bias in its logit.
    tokens = jnp.where(tokens == 5, 6, tokens)
    params["word"]["embedding"] = params["word"]["embedding"].at[5].set(0.0)
    params["head_bias"] = params["head_bias"].at[5].set(0.25)
    logits = model.apply({"params": params}, tokens)
    assert logits.shape == (2, N + vocab.prefix_length, vocab.size)
    np.testing.assert_allclose(logits[..., 5], 0.25, atol=1e-6)


def test_head_computes_only_the_asked_logits_with_the_same_values_and_gradients():
    # logits_from / num_logits give the slice of the full logits; the gradients of a loss on
    # that slice (the head bias's one included) are the same through either path.
    _, vocab, model = _setup()
    tokens = jax.random.randint(jax.random.PRNGKey(0), (2, N + vocab.prefix_length), 0, vocab.size)
    params = model.init(jax.random.PRNGKey(1), tokens)["params"]
    params["head_bias"] = jax.random.normal(jax.random.PRNGKey(2), params["head_bias"].shape)
    weights = jax.random.normal(jax.random.PRNGKey(3), (2, N, K))
    start = vocab.prefix_length

    def full(p):
        return model.apply({"params": p}, tokens)[:, start:, :K]

    def sliced(p):
        return model.apply({"params": p}, tokens, logits_from=start, num_logits=K)
    np.testing.assert_allclose(sliced(params), full(params), rtol=1e-5, atol=1e-5)
    grads = [jax.grad(lambda p, f=f: jnp.sum(jnp.tanh(f(p)) * weights))(params)
             for f in (full, sliced)]
    assert float(jnp.abs(grads[0]["head_bias"][:K]).min()) > 0
    for path, got in jax.tree_util.tree_leaves_with_path(grads[1]):
        want = dict(jax.tree_util.tree_leaves_with_path(grads[0]))[path]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, err_msg=str(path))
    # The head's bias add (its own backward pass) has the gradients of a plain x + bias.
    x, bias = jax.random.normal(jax.random.PRNGKey(4), (2, N, K)), params["head_bias"][:K]
    for got, want in zip(jax.grad(lambda a, b: jnp.sum(jnp.tanh(add_bias(a, b)) * weights),
                                  (0, 1))(x, bias),
                         jax.grad(lambda a, b: jnp.sum(jnp.tanh(a + b) * weights), (0, 1))(x, bias)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_token_losses_equal_optax_smoothed_and_plain_cross_entropy_and_argmax():
    logits = 3 * jax.random.normal(jax.random.PRNGKey(0), (4, 50, K))
    targets = jax.random.randint(jax.random.PRNGKey(1), (4, 50), 0, K)
    for smoothing in (0.0, 0.1):
        smoothed, plain, correct = token_losses(logits, targets, smoothing)
        labels = optax.smooth_labels(jax.nn.one_hot(targets, K), smoothing)
        np.testing.assert_allclose(smoothed, optax.softmax_cross_entropy(logits, labels),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            plain, optax.softmax_cross_entropy_with_integer_labels(logits, targets), rtol=1e-5)
        np.testing.assert_array_equal(correct, jnp.argmax(logits, -1) == targets)
    assert 0 < float(jnp.mean(correct)) < 1


def test_attention_is_bidirectional_and_dropout_only_in_training():
    _, vocab, model = _setup()
    tokens = jax.random.randint(jax.random.PRNGKey(0), (1, N + vocab.prefix_length), 0, K)
    params = model.init(jax.random.PRNGKey(1), tokens)["params"]
    before = model.apply({"params": params}, tokens)
    after = model.apply({"params": params}, tokens.at[0, -1].set((tokens[0, -1] + 1) % K))
    assert not np.allclose(before[0, 0], after[0, 0])           # the first position sees the last
    again = model.apply({"params": params}, tokens)
    np.testing.assert_array_equal(before, again)
    dropped = model.apply({"params": params}, tokens, deterministic=False,
                          rngs={"dropout": jax.random.PRNGKey(2)})
    assert not np.allclose(before, dropped)


def test_dropout_is_flax_dropout_bit_for_bit():
    """The transformer's Dropout is flax's nn.Dropout (the official code's): the same kept
    elements and scaled values for the same rng, in float32 and bfloat16, for raw and typed keys;
    the identity when deterministic; a new mask per rng; all zeros at rate 1."""
    import flax.linen as nn
    from magvit.transformer.model import Dropout
    for shape in ((999, 1001), (1, 12, 65, 65), (3,)):
        x = jax.random.normal(jax.random.PRNGKey(3), shape)
        for rate in (0.1, 0.5):
            for dtype in (jnp.float32, jnp.bfloat16):
                for key in (jax.random.PRNGKey(0), jax.random.key(9)):
                    ours = Dropout(rate).apply({}, x.astype(dtype), False, rngs={"dropout": key})
                    flax = nn.Dropout(rate).apply({}, x.astype(dtype), False,
                                                  rngs={"dropout": key})
                    assert ours.dtype == flax.dtype == dtype
                    np.testing.assert_array_equal(np.asarray(ours, np.float32),
                                                  np.asarray(flax, np.float32))
    x = jnp.ones((999, 1001))
    out = np.asarray(Dropout(0.1).apply({}, x, False, rngs={"dropout": jax.random.PRNGKey(0)}))
    kept = out != 0
    assert kept.mean() == pytest.approx(0.9, abs=0.002)
    np.testing.assert_allclose(out[kept], 1 / 0.9, rtol=1e-6)
    other = np.asarray(Dropout(0.1).apply({}, x, False, rngs={"dropout": jax.random.PRNGKey(1)}))
    assert ((other != 0) != kept).mean() > 0.1
    np.testing.assert_array_equal(Dropout(0.1).apply({}, x, True), x)
    assert not np.asarray(Dropout(1.0).apply({}, x, False,
                                             rngs={"dropout": jax.random.PRNGKey(0)})).any()


def test_optimizer_decays_kernels_only_and_train_step_learns_a_fixed_batch():
    config, vocab, model = _setup()
    config.optimizer.warmup_steps, config.optimizer.learning_rate = 0, 3e-3
    optimizer = make_optimizer(config.optimizer, 100)
    state = init_state(model, optimizer, jax.random.PRNGKey(0), vocab.prefix_length + N)
    step = make_train_step(model, optimizer, config, K, vocab.mask_id)
    rng = np.random.default_rng(0)
    task = tasks.get_task("frame_prediction")
    # Every example the same clip: masked tokens are predictable from their positions.
    batch = dict(tokens=np.tile(rng.integers(0, K, (1, N)), (8, 1)).astype(np.int32),
                 cond_tokens=rng.integers(0, K, (8, N)).astype(np.int32),
                 cond_mask=np.broadcast_to(np.arange(N) < 8, (8, N)).copy(),
                 prefix=vocab.prefix(task, np.zeros(8, int)))
    losses = []
    for _ in range(40):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert int(state.step) == 40
    assert losses[0] > 0.9 * np.log(K) and losses[-1] < 0.5 * losses[0]
    for key in ("masked_loss", "masked_accuracy", "mask_ratio", "grad_norm"):
        assert np.isfinite(float(metrics[key]))
    # AdamW's weight decay: with zero gradients only kernels move (biases, norms, embeddings not).
    zeros = jax.tree.map(jnp.zeros_like, state.params)
    updates, _ = optimizer.update(zeros, optimizer.init(state.params), state.params)
    assert np.abs(updates["layer_0"]["mlp_in"]["kernel"]).max() > 0
    for leaf in (updates["word"]["embedding"], updates["layer_0"]["mlp_in"]["bias"],
                 updates["head_bias"], updates["embedding_norm"]["scale"]):
        assert np.abs(leaf).max() == 0


def test_official_initialisers_and_no_segment_embedding_by_default():
    config, vocab, model = _setup()
    params = model.init(jax.random.PRNGKey(1), jnp.zeros((1, N + vocab.prefix_length), jnp.int32))
    params = params["params"]
    assert "segment" not in params                     # official: use_condition_segment off
    # BERT truncated normal: sigma 0.02 before truncation at +-2 sigma
    word = np.asarray(params["word"]["embedding"])
    assert np.abs(word).max() <= 0.04 + 1e-7 and 0.012 < word.std() < 0.02
    config.model.use_condition_segment = True
    with_segments = build_model(config, vocab.size, vocab.prefix_length + N)
    params = with_segments.init(jax.random.PRNGKey(1), jnp.zeros((1, N + 2), jnp.int32))["params"]
    assert params["segment"]["embedding"].shape == (2, config.model.hidden_size)


def test_one_mask_ratio_per_batch_by_default():
    ratio = np.asarray(mask_ratios(jax.random.PRNGKey(3), 8, 1024))
    assert ratio.shape == (8,) and len(set(ratio.tolist())) == 1
    u = float(jax.random.uniform(jax.random.PRNGKey(3), (1,))[0])
    assert ratio[0] == pytest.approx(np.cos(np.pi / 2 * u), rel=1e-5)   # cosine schedule of u
    per_example = np.asarray(mask_ratios(jax.random.PRNGKey(3), 8, 1024, sampling="per_example"))
    assert len(set(per_example.tolist())) == 8
    with pytest.raises(ValueError, match="mask_ratio_sampling='each'"):
        mask_ratios(jax.random.PRNGKey(3), 8, 1024, sampling="each")
