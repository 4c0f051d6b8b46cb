"""The 2D image tokenizer and the official 2D->3D initialisation: the same trainer trains it on
clip frames; the video trainer inflates its generator, EMA and discriminator; discriminator
initialiser and pooling."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magvit import train_tokenizer
from magvit.configs import NAMES, get_config
from magvit.tokenizer import discriminator, inflation
from magvit.tokenizer.api import Tokenizer
from magvit.tokenizer.model import VQModel
from magvit.tokenizer.train_step import Models, sample_frames
from tests.test_tokenizer_training import write_demo_clips


def _image_config(steps=2):
    config = get_config("tiny_image")
    training = config.tokenizer.training
    training.batch_size, training.num_train_steps = 2, steps
    training.checkpoint_every_steps = training.log_every_steps = steps
    config.tokenizer.loss.gan_start_step = 0           # train the discriminator too
    return config


def test_image_settings_are_config_choices():
    assert {"tiny_image", "ucf101_b_image", "bair_l_image"} <= set(NAMES)
    config = get_config("ucf101_b_image")
    assert config.tokenizer.model.spatial_dims == 2 and config.name == "ucf101_b_image"
    assert get_config("ucf101_b").tokenizer.model.spatial_dims == 3
    state = jax.eval_shape(Models(config.tokenizer).init, jax.random.PRNGKey(0))
    assert state.params["encoder"]["conv_in"]["kernel"].shape == (3, 3, 3, 64)    # 2D kernels
    assert state.disc_params["conv_in"]["kernel"].shape == (3, 3, 3, 64)


def test_sample_frames_takes_distinct_frames_of_each_clip():
    clips = jnp.arange(2 * 8, dtype=jnp.float32).reshape(2, 8, 1, 1, 1) * jnp.ones((1, 1, 4, 4, 3))
    images = np.asarray(sample_frames(jax.random.PRNGKey(0), clips, 3))
    assert images.shape == (6, 4, 4, 3)
    values = images[:, 0, 0, 0].reshape(2, 3)
    assert ((values[0] >= 0) & (values[0] < 8)).all()
    assert ((values[1] >= 8) & (values[1] < 16)).all()
    assert len(set(values[0])) == 3 and len(set(values[1])) == 3
    with pytest.raises(ValueError, match="frames_per_clip=9"):
        sample_frames(jax.random.PRNGKey(0), clips, 9)


def test_video_trainer_inflates_generator_ema_and_discriminator(tmp_path):
    data = write_demo_clips(str(tmp_path / "clips.tfrecord"), seed=0, videos_per_class=1)
    image_config = _image_config()
    image_dir = str(tmp_path / "image")
    result = train_tokenizer.train(image_config, data, image_dir, eval_pattern=data)
    assert result["step"] == 2 and np.isfinite(result["eval_psnr"])
    with pytest.raises(ValueError, match="2D image tokenizer"):
        Tokenizer.load(image_dir)
    params2d, ema2d, disc2d = inflation._load_2d_state(image_dir)
    # after 2 steps the three sets differ: EMA lags the generator
    assert not np.allclose(params2d["encoder"]["conv_in"]["kernel"],
                           ema2d["encoder"]["conv_in"]["kernel"])

    video_config = get_config("tiny")
    video_config.tokenizer.model.init_from_2d = image_dir
    models = Models(video_config.tokenizer)
    state = train_tokenizer._initial_state(models, video_config, train_tokenizer._setup(
        video_config.tokenizer)[1])
    for inflated, source in ((state.params, params2d), (state.ema_params, ema2d),
                             (state.disc_params, disc2d)):
        kernel = np.asarray(inflated["conv_in"]["kernel"] if "conv_in" in inflated
                            else inflated["encoder"]["conv_in"]["kernel"])
        original = np.asarray(source["conv_in"]["kernel"] if "conv_in" in source
                              else source["encoder"]["conv_in"]["kernel"])
        assert kernel.shape == (3, *original.shape)
        # central inflation: the 2D kernel at the middle time tap, zeros at the others
        np.testing.assert_array_equal(kernel[1], original)
        assert not kernel[0].any() and not kernel[2].any()
    np.testing.assert_array_equal(state.disc_params["dense"]["kernel"], disc2d["dense"]["kernel"])
    np.testing.assert_array_equal(state.params["quantizer"]["codebook"],
                                  params2d["quantizer"]["codebook"])
    assert int(state.step) == 0


def test_inflated_discriminator_scores_a_static_clip_like_the_image():
    config = get_config("tiny").tokenizer
    disc = discriminator.build(config.discriminator)
    image = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 3))
    params2d = disc.init(jax.random.PRNGKey(1), image)["params"]
    template = disc.init(jax.random.PRNGKey(2), jnp.zeros((1, 8, 32, 32, 3)))["params"]
    params3d = inflation.inflate_params(params2d, template, "central")
    # A one-frame clip: central taps see the frame, the others zero padding -> the 2D logits.
    clip = image[:, None]
    np.testing.assert_allclose(disc.apply({"params": params3d}, clip),
                               disc.apply({"params": params2d}, image), rtol=1e-4, atol=1e-5)


def test_discriminator_initialiser_is_xavier_uniform_and_pooling_is_same():
    config = get_config("tiny").tokenizer
    disc = discriminator.build(config.discriminator)
    params = disc.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 32, 32, 3)))["params"]
    kernel = np.asarray(params["down0"]["conv2"]["kernel"])        # [3, 3, 3, 16, 32]
    fan_in, fan_out = 27 * 16, 27 * 32
    limit = np.sqrt(6 / (fan_in + fan_out))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.95 * limit
    assert kernel.std() == pytest.approx(limit / np.sqrt(3), rel=0.05)
    # TF SAME pooling: T = 1 stays 1, an odd T = 3 gives 2 (the last window averages 1 frame)
    x = jnp.arange(3.0).reshape(1, 3, 1, 1, 1) * jnp.ones((1, 3, 2, 2, 1))
    pooled = discriminator.pool_same(x)
    assert pooled.shape == (1, 2, 1, 1, 1)
    np.testing.assert_allclose(pooled[0, :, 0, 0, 0], [0.5, 2.0])
    assert discriminator.pool_same(jnp.ones((1, 1, 4, 4, 1))).shape == (1, 1, 2, 2, 1)
    logits = disc.apply({"params": params}, jnp.zeros((2, 3, 32, 32, 3)))   # odd T is fine
    assert logits.shape == (2,)


def test_tokenizer_names_a_time_length_that_does_not_divide():
    config = get_config("tiny").tokenizer
    model = VQModel(config.model)
    with pytest.raises(ValueError, match="not divisible by 2"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 5, 32, 32, 3)))
