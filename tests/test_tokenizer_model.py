"""3D-VQ model, quantizers, inflation, GAN losses and one GAN train step, on hand-made inputs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magvit import train_utils
from magvit.configs import get_config
from magvit.tokenizer import discriminator, inflation, losses, quantizers
from magvit.tokenizer.api import Tokenizer
from magvit.tokenizer.model import VQModel, depth_to_space, grid_shape, space_to_depth
from magvit.tokenizer.train_step import Models, train_step


def micro_config():
    """The tiny tokenizer, smaller still: 4x16x16 clips -> 2x8x8 tokens."""
    config = get_config("tiny").tokenizer
    config.clip_shape = (4, 16, 16)
    m = config.model
    m.filters, m.channel_multipliers, m.temporal_downsample = 8, (1, 2), (True,)
    m.patch_size = 1
    m.num_groups, m.embedding_dim, m.codebook_size = 4, 8, 16
    config.discriminator.filters, config.discriminator.channel_multipliers = 8, (2, 2)
    config.training.batch_size = 2
    return config


@pytest.mark.parametrize("name, clip, grid", [
    ("bair_b", (16, 64, 64), (4, 16, 16)), ("bair_l", (16, 64, 64), (4, 16, 16)),
    ("ucf101_b", (16, 128, 128), (4, 16, 16)), ("ucf101_l", (16, 128, 128), (4, 16, 16)),
    ("tiny", (8, 32, 32), (4, 8, 8))])
def test_paper_config_shapes(name, clip, grid):
    config = get_config(name).tokenizer
    assert tuple(config.clip_shape) == clip and grid_shape(config.model, clip) == grid
    model = VQModel(config.model)
    video = jax.ShapeDtypeStruct((1, *clip, 3), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), video)["params"]
    recon, ids, _ = jax.eval_shape(model.apply, {"params": params}, video)
    assert ids.shape == (1, *grid) and recon.shape == (1, *clip, 3)
    logits = jax.eval_shape(discriminator.build(config.discriminator).init_with_output,
                            jax.random.PRNGKey(0), video)[0]
    assert logits.shape == (1,)
    print(f"{name}: tokenizer {train_utils.param_count(params) / 1e6:.1f}M parameters")


def test_patch_size_stem_shapes_and_round_trip():
    """patch_size=2: the encoder sees 2x2 pixel patches as channels, the decoder gives pixels
    back; the token grid counts the patch as one more 2x spatial factor."""
    x = jnp.arange(2 * 3 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 3, 4, 6, 3)
    patches = space_to_depth(x, 2)
    assert patches.shape == (2, 3, 2, 3, 12)
    # channel block (row r, column c) of patch (i, j) is pixel (2i + r, 2j + c)
    np.testing.assert_array_equal(patches[0, 1, 1, 2, 3:6], x[0, 1, 2, 5])
    np.testing.assert_array_equal(patches[0, 1, 1, 2, 6:9], x[0, 1, 3, 4])
    np.testing.assert_array_equal(depth_to_space(patches, 2), x)
    config = micro_config()
    config.model.patch_size = 2
    config.model.channel_multipliers = (1,)
    config.model.temporal_downsample = ()
    assert grid_shape(config.model, (4, 16, 16)) == (4, 8, 8)
    model = VQModel(config.model)
    video = jax.ShapeDtypeStruct((1, 4, 16, 16, 3), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), video)["params"]
    assert params["encoder"]["conv_in"]["kernel"].shape[-2] == 12
    assert params["decoder"]["conv_out"]["kernel"].shape[-1] == 12
    recon, ids, _ = jax.eval_shape(model.apply, {"params": params}, video)
    assert recon.shape == (1, 4, 16, 16, 3) and ids.shape == (1, 4, 8, 8)
    with pytest.raises(ValueError, match="side 15x16 is not divisible by "
                                         "tokenizer.model.patch_size=2"):
        jax.eval_shape(model.apply, {"params": params},
                       jax.ShapeDtypeStruct((1, 4, 15, 16, 3), jnp.float32))


def test_vector_quantizer_losses_and_straight_through():
    vq = quantizers.VectorQuantizer(codebook_size=3, embedding_dim=2, commitment_cost=0.25,
                                    entropy_loss_ratio=0.1, entropy_temperature=0.01)
    codebook = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    z = jnp.array([[[0.9, 0.1], [0.1, 0.2], [0.2, 0.7]]])  # [1, 3, 2]
    quantized, ids, aux = vq.apply({"params": {"codebook": codebook}}, z)
    np.testing.assert_array_equal(ids, [[1, 0, 2]])
    expected_q = np.array([[[1, 0], [0, 0], [0, 1]]], np.float32)
    np.testing.assert_allclose(quantized, expected_q, atol=1e-6)
    mse = np.mean((expected_q - np.asarray(z)) ** 2)
    np.testing.assert_allclose(aux["commitment_loss"], mse, rtol=1e-5)
    np.testing.assert_allclose(aux["codebook_loss"], mse, rtol=1e-5)
    # Entropy loss by hand: softmax of minus squared distances / temperature.
    d = ((np.asarray(z)[0, :, None, :] - np.asarray(codebook)[None]) ** 2).sum(-1)
    p = np.exp(-(d - d.min(1, keepdims=True)) / 0.01)
    p /= p.sum(1, keepdims=True)
    sample = -np.mean(np.sum(p * np.log(np.maximum(p, 1e-30)), 1))
    avg = p.mean(0)
    entropy = sample + np.sum(avg * np.log(avg))
    np.testing.assert_allclose(aux["entropy_loss"], entropy, atol=1e-4)
    np.testing.assert_allclose(aux["quantizer_loss"], 1.25 * mse + 0.1 * entropy, atol=1e-4)
    assert float(aux["perplexity"]) == pytest.approx(3.0) and float(aux["codebook_usage"]) == 1.0
    # Straight-through: the gradient of f(quantized) flows to z unchanged.
    weights = jnp.arange(6.0).reshape(1, 3, 2)
    grad = jax.grad(lambda z: jnp.sum(vq.apply({"params": {"codebook": codebook}}, z)[0]
                                      * weights))(z)
    np.testing.assert_allclose(grad, weights)
    # The commitment loss pulls z towards its code, the codebook loss the code towards z.
    g_z = jax.grad(lambda z: vq.apply({"params": {"codebook": codebook}}, z)[2]
                   ["commitment_loss"])(z)
    np.testing.assert_allclose(g_z, 2 * (np.asarray(z) - expected_q) / z.size, atol=1e-6)


def test_entropy_loss_rewards_confident_spread_assignments():
    k = 4
    spread = 10.0 * jnp.eye(k)              # each sample sure of a different code
    collapsed = 10.0 * jnp.tile(jnp.eye(k)[:1], (k, 1))   # all sure of code 0
    assert float(quantizers.entropy_loss(spread, 0.01)) == pytest.approx(-np.log(k), abs=1e-4)
    assert float(quantizers.entropy_loss(collapsed, 0.01)) == pytest.approx(0.0, abs=1e-4)
    uncertain = jnp.zeros((k, k))            # uniform per sample: high per-sample entropy
    assert float(quantizers.entropy_loss(uncertain, 0.01)) == pytest.approx(0.0, abs=1e-4)


def test_lookup_free_quantizer():
    lfq = quantizers.LookupFreeQuantizer(bits=3, commitment_cost=0.25, entropy_weight=0.1)
    z = jnp.array([[0.5, -0.2, 0.3], [-1.0, 2.0, -0.1]])
    quantized, ids, aux = lfq.apply({}, z)
    np.testing.assert_array_equal(ids, [5, 2])
    np.testing.assert_allclose(quantized, [[1, -1, 1], [-1, 1, -1]])
    np.testing.assert_allclose(lfq.apply({}, ids, method=lfq.embed), quantized)
    np.testing.assert_allclose(aux["commitment_loss"], np.mean((np.asarray(z) - quantized) ** 2),
                               rtol=1e-6)
    assert np.isfinite(float(aux["entropy_loss"]))
    grad = jax.grad(lambda z: jnp.sum(lfq.apply({}, z)[0] * jnp.arange(6.0).reshape(2, 3)))(z)
    np.testing.assert_allclose(grad, np.arange(6.0).reshape(2, 3))
    config = get_config("tiny").tokenizer.model
    config.quantizer, config.lfq_bits = "lfq", 6
    assert quantizers.codebook_size(config) == 64 and quantizers.latent_dim(config) == 6


def test_central_inflation_reproduces_the_2d_model_on_static_video():
    config = micro_config().model
    frame = jnp.asarray(np.random.RandomState(0).rand(1, 16, 16, 3), jnp.float32)
    video = jnp.repeat(frame[:, None], 4, axis=1)
    model2d, model3d = VQModel(config, spatial_dims=2), VQModel(config)
    # jitted: one compile per model instead of one per eager op (about half the time here)
    params2d = jax.jit(model2d.init)(jax.random.PRNGKey(1), frame)["params"]
    template = jax.eval_shape(model3d.init, jax.random.PRNGKey(2), video)["params"]
    params3d = inflation.inflate_params(params2d, template, "central")
    z2 = model2d.apply({"params": params2d}, frame, method=VQModel.encode)[0]
    z3 = model3d.apply({"params": params3d}, video, method=VQModel.encode)[0]
    for t in range(z3.shape[1]):
        np.testing.assert_allclose(z3[:, t], z2, atol=1e-4)
    recon2, ids2, _ = model2d.apply({"params": params2d}, frame)
    recon3, ids3, _ = model3d.apply({"params": params3d}, video)
    for t in range(4):
        np.testing.assert_allclose(recon3[:, t], recon2, atol=1e-4)
    np.testing.assert_array_equal(ids3[:, 0], ids2)
    kernel = np.asarray(params2d["encoder"]["conv_in"]["kernel"])
    average = inflation.inflate_kernel(kernel, 3, "average")
    np.testing.assert_allclose(np.asarray(average).sum(0), kernel, atol=1e-6)
    with pytest.raises(ValueError, match="cannot inflate quantizer/codebook"):
        inflation.inflate_params(params2d, {**template, "quantizer": {"codebook": jnp.zeros((3, 3))}})


def test_r1_and_lecam_by_hand():
    w = jnp.array([[1.0, -2.0], [0.5, 3.0]])
    real = jnp.ones((3, 2, 2))
    # grad_x D = w for every clip: ||w||^2 = 1 + 4 + 0.25 + 9 = 14.25; official 10 * 14.25
    penalty, logits = losses.r1_penalty(lambda x: jnp.sum(x * w, axis=(1, 2)), real, gamma=10.0)
    assert float(penalty) == pytest.approx(142.5)
    half, _ = losses.r1_penalty(lambda x: jnp.sum(x * w, axis=(1, 2)), real, 10.0, "stylegan")
    assert float(half) == pytest.approx(71.25)
    np.testing.assert_allclose(logits, [2.5] * 3)
    # official LeCam on batch means: mean D(x) = 0, mean D(G(z)) = 1:
    # relu(0 - 0)^2 + relu(0.5 - 1)^2 = 0
    real_logits, fake_logits = jnp.array([1.0, -1.0]), jnp.array([0.0, 2.0])
    lecam = losses.lecam_regularization(real_logits, fake_logits, ema_real=0.5, ema_fake=0.0)
    assert float(lecam) == pytest.approx(0.0)
    lecam = losses.lecam_regularization(real_logits, fake_logits, ema_real=2.0, ema_fake=-1.0)
    assert float(lecam) == pytest.approx((0 + 1) ** 2 + (2 - 1) ** 2)
    per_sample = losses.lecam_regularization(real_logits, fake_logits, 0.5, 0.0, "per_sample")
    assert float(per_sample) == pytest.approx((1.0 + 0.0) / 2 + (0.25 + 0.0) / 2)
    with pytest.raises(ValueError, match="lecam_mode='mean'"):
        losses.lecam_regularization(real_logits, fake_logits, 0.5, 0.0, "mean")
    ema = losses.lecam_ema_update({"real": 0.0, "fake": 1.0}, jnp.array([2.0]), jnp.array([-2.0]),
                                  0.9)
    assert float(ema["real"]) == pytest.approx(0.2) and float(ema["fake"]) == pytest.approx(0.7)
    assert float(losses.discriminator_loss(jnp.array([0.0]), jnp.array([0.0]))) == \
        pytest.approx(2 * np.log(2))


def test_models_init_is_the_jitted_init_with_its_own_ema_buffers():
    # Models.init builds the whole train state as one program (train_utils.run_once: cheap XLA
    # options on CPU): the generator and discriminator parameters of the plain jitted init, up
    # to float32 round-off; EMA equal to the parameters but in buffers of its own (the train
    # step donates the state); abstract under jax.eval_shape.
    config = micro_config()
    models = Models(config)
    state = models.init(jax.random.PRNGKey(3))
    g_rng, d_rng, _ = jax.random.split(jax.random.PRNGKey(3), 3)
    clip = jnp.zeros((1, *config.clip_shape, 3), jnp.float32)
    want = jax.jit(lambda g, d: (models.generator.init(g, clip)["params"],
                                 models.discriminator.init(d, clip)["params"]))(g_rng, d_rng)
    for got, ref in zip(jax.tree.leaves((state.params, state.disc_params)), jax.tree.leaves(want)):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
    for p, e in zip(jax.tree.leaves(state.params), jax.tree.leaves(state.ema_params)):
        np.testing.assert_array_equal(p, e)
        assert p.unsafe_buffer_pointer() != e.unsafe_buffer_pointer()
    assert int(state.step) == 0
    shapes = jax.eval_shape(models.init, jax.random.PRNGKey(3))
    assert jax.tree.map(lambda x: (x.shape, x.dtype), shapes) == \
        jax.tree.map(lambda x: (x.shape, x.dtype), state)


def test_gan_train_step_updates_discriminator_and_lecam():
    config = micro_config()
    models = Models(config)
    state = models.init(jax.random.PRNGKey(0))
    frames = np.random.RandomState(0).randint(0, 256, (2, 4, 16, 16, 3)).astype(np.uint8)
    step = jax.jit(lambda s, b: train_step(models, s, b, gan=True))
    state, _ = step(state, {"frames": frames})     # the warm-up's learning rate is 0 at step 0
    new, metrics = step(state, {"frames": frames})
    assert int(new.step) == 2
    for key in ("r1_penalty", "lecam_loss", "generator_adversarial_loss", "discriminator_loss"):
        assert np.isfinite(float(metrics[key])), key
    assert float(metrics["r1_penalty"]) > 0
    decay = config.loss.lecam_ema_decay
    assert float(new.lecam["real"]) == pytest.approx(
        decay * float(state.lecam["real"]) + (1 - decay) * float(metrics["logits_real"]), rel=1e-4)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.disc_params, new.disc_params)
    assert all(jax.tree.leaves(changed))
    assert not np.array_equal(new.ema_params["decoder"]["conv_out"]["kernel"],
                              state.ema_params["decoder"]["conv_out"]["kernel"])


def test_tokenizer_api_round_trip_and_errors():
    config = micro_config()
    params = Models(config).init(jax.random.PRNGKey(0)).params
    tok = Tokenizer.from_params(config, params)
    assert tok.grid_shape == (2, 8, 8) and tok.clip_shape == (4, 16, 16)
    assert tok.codebook_size == 16 and len(tok.checkpoint_id) == 16
    video = np.random.RandomState(0).randint(0, 256, (3, 4, 16, 16, 3)).astype(np.uint8)
    tokens = tok.encode(video)
    assert tokens.shape == (3, 2, 8, 8) and tokens.dtype == np.int32
    assert tokens.min() >= 0 and tokens.max() < 16
    out = tok.decode(tokens)
    assert out.shape == video.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(tok.encode(video[:1]), tokens[:1])
    with pytest.raises(TypeError, match="uint8"):
        tok.encode(video.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[B, T, H, W, 3\]"):
        tok.encode(video[0])
    with pytest.raises(ValueError, match="H=17 .*not divisible"):
        tok.encode(np.zeros((1, 4, 17, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="outside"):
        tok.decode(np.full((1, 2, 8, 8), 16))
    assert Tokenizer.from_params(config, params).checkpoint_id == tok.checkpoint_id
