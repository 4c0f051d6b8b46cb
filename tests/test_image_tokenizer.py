"""The 2D image tokenizer and the official 2D->3D initialisation: the same trainer trains it on
clip frames or a folder of images; the video trainer inflates its generator, EMA and discriminator; discriminator
initialiser and pooling."""
import json
import uuid

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from magvit import image_data, train_tokenizer, video_io
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


@pytest.mark.slow   # ~110 s on 2 cores (compiling the 2D GAN step); the default suite keeps
# test_inflated_discriminator_scores_a_static_clip_like_the_image and the tokenizer model's inflation tests
def test_video_trainer_inflates_generator_ema_and_discriminator(tmp_path):
    data = write_demo_clips(str(tmp_path / "clips.tfrecord"), seed=0, videos_per_class=1)
    image_config = _image_config()
    image_dir = str(tmp_path / "image")
    result = train_tokenizer.train(image_config, data, image_dir, eval_pattern=data)
    assert result["step"] == 2 and np.isfinite(result["eval_psnr"])
    with pytest.raises(ValueError, match="2D image tokenizer"):
        Tokenizer.load(image_dir)
    params2d, ema2d, disc2d = inflation.load_2d_state(image_dir)
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
    params2d = jax.jit(disc.init)(jax.random.PRNGKey(1), image)["params"]   # one compile
    template = jax.eval_shape(disc.init, jax.random.PRNGKey(2),
                              jnp.zeros((1, 8, 32, 32, 3)))["params"]
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


# --- training from a folder of images (tokenizer.training.image_folder) ---

def _write(path, pixels, fmt="png"):
    tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
    encoded = tf.io.encode_png(pixels) if fmt == "png" else tf.io.encode_jpeg(pixels, quality=95)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(encoded.numpy())


def _smooth(rng, height, width):
    """A gradient with mild noise (resampling filters agree on it to ~1 grey level)."""
    ramp = np.linspace(0, 255, width)[None, :, None] * np.linspace(0, 1, height)[:, None, None]
    return np.clip(ramp + rng.normal(0, 10, (height, width, 3)), 0, 255).astype(np.uint8)


def _image_folder(name="imgs"):
    """A ram:// folder: nested png / jpeg files of several sizes, and a file that is no image."""
    root = f"ram://images-{uuid.uuid4().hex}/{name}"
    rng = np.random.default_rng(0)
    pixels = {"a/b/wide.png": rng.integers(0, 256, (32, 48, 3), dtype=np.uint8),
              "big.png": _smooth(rng, 64, 96),
              "c/photo.JPG": rng.integers(0, 256, (40, 32, 3), dtype=np.uint8)}
    for relative, image in pixels.items():
        _write(f"{root}/{relative}", image, "jpeg" if relative.endswith("JPG") else "png")
    with tf.io.gfile.GFile(f"{root}/c/notes.txt", "w") as f:
        f.write("not an image")
    return root, pixels


def _folder_config(root, steps=2, fraction=0.0):
    config = _image_config(steps)
    config.tokenizer.training.image_folder = root
    config.tokenizer.training.image_eval_fraction = fraction
    config.tokenizer.training.random_flip = False
    return config


def test_image_folder_images_are_the_files_pixels_resized_and_cropped_as_clips():
    root, pixels = _image_folder()
    folder = image_data.ImageFolder.from_config(_folder_config(root).tokenizer.training)
    assert folder.train_files == tuple(f"{root}/{p}" for p in ("a/b/wide.png", "big.png",
                                                                "c/photo.JPG"))
    assert folder.eval_files == ()
    batch = next(folder.iterator(32, "bilinear", 3, held_out=False, train=False))
    frames = batch["frames"]
    assert frames.shape == (3, 1, 32, 32, 3) and frames.dtype == np.uint8
    # 32x48, shorter side already 32: no resampling, the central 32 columns of the file
    np.testing.assert_array_equal(frames[0, 0], pixels["a/b/wide.png"][:, 8:40])
    # 64x96 -> 32x48 by the clips' resize (FFmpeg antialiased bilinear), then the central crop;
    # within ~1 grey level of PIL's antialiased bilinear, an independent implementation
    big = pixels["big.png"]
    np.testing.assert_array_equal(frames[1, 0], video_io.resize_shorter(big, 32)[:, 8:40])
    pil = np.asarray(Image.fromarray(big).resize((48, 32), Image.BILINEAR))[:, 8:40]
    assert np.abs(frames[1, 0].astype(int) - pil).mean() < 1.5
    # 40x32 jpeg: the decoded file's central 32 rows
    with tf.io.gfile.GFile(f"{root}/c/photo.JPG", "rb") as f:
        decoded = tf.io.decode_jpeg(f.read()).numpy()
    np.testing.assert_array_equal(frames[2, 0], decoded[4:36])
    assert (batch["label"] == 0).all()


def test_image_folder_training_stream_resumes_where_it_stopped():
    root, _ = _image_folder()
    folder = image_data.ImageFolder.from_config(_folder_config(root).tokenizer.training)
    stream = folder.iterator(32, "bilinear", 2, held_out=False, train=True, seed=3)
    straight = [next(stream)["frames"] for _ in range(4)]          # crosses epoch boundaries
    first = folder.iterator(32, "bilinear", 2, held_out=False, train=True, seed=3)
    next(first)
    resumed = folder.iterator(32, "bilinear", 2, held_out=False, train=True, seed=3,
                              position=first.position.to_dict())
    for expected in straight[1:]:
        np.testing.assert_array_equal(next(resumed)["frames"], expected)
    # every epoch shows each training image once, in a seeded order
    seen = np.concatenate(straight[:3])[:, 0]
    sums = sorted(int(x.astype(np.int64).sum()) for x in seen[:3])
    assert sums == sorted(int(x.astype(np.int64).sum()) for x in seen[3:6])


def test_image_folder_held_out_split_depends_on_the_names_only():
    names = [f"n{i:03d}.png" for i in range(200)]
    held = [n for n in names if image_data.is_held_out(n, 0.25)]
    assert 30 < len(held) < 70                                  # ~a quarter
    assert held == [n for n in reversed(names) if image_data.is_held_out(n, 0.25)][::-1]
    assert not any(image_data.is_held_out(n, 0.0) for n in names)
    root, _ = _image_folder()
    training = _folder_config(root, fraction=0.999999).tokenizer.training
    with pytest.raises(ValueError, match=r"all 3 image\(s\) fall in the held-out share"):
        image_data.ImageFolder.from_config(training)


def test_image_folder_errors_name_the_folder_the_file_and_the_flag(tmp_path):
    root, _ = _image_folder()
    config = _folder_config(root)
    with pytest.raises(FileNotFoundError, match=r"image_folder='ram://nowhere/x': no such folder"):
        image_data.list_images("ram://nowhere/x")
    empty = f"{root}/c"          # holds notes.txt and photo.JPG -> remove the image first
    tf.io.gfile.remove(f"{empty}/photo.JPG")
    with pytest.raises(FileNotFoundError, match=r"holds no image \(.png / .jpg / .jpeg files\)"):
        image_data.list_images(empty)
    tf.io.gfile.makedirs(f"{root}/z")  # not under a/: ram:// lists a/b/ by bare prefix (a/broken)
    with tf.io.gfile.GFile(f"{root}/z/broken.png", "wb") as f:
        f.write(b"\x89PNG truncated")
    folder = image_data.ImageFolder.from_config(config.tokenizer.training)
    with pytest.raises(ValueError, match=rf"{root}/z/broken.png: cannot be decoded as a png"):
        list(folder.iterator(32, "bilinear", 4, held_out=False, train=False))
    with pytest.raises(ValueError, match="give no --data / --eval_data with it"):
        train_tokenizer.train(config, "clips-*", str(tmp_path / "w"))
    video = get_config("tiny")
    video.tokenizer.training.image_folder = root
    with pytest.raises(ValueError, match="trains the 2D image tokenizer"):
        train_tokenizer.train(video, None, str(tmp_path / "w"))
    with pytest.raises(ValueError, match="image_resize_filter='cubic'"):
        image_data.image_parser(32, "cubic")


@pytest.mark.slow   # ~40-90 s on 2 cores: compiles the 2D tokenizer's GAN step
def test_the_2d_tokenizer_trains_on_an_image_folder_from_the_command_line(tmp_path, capsys):
    root, _ = _image_folder()
    for i in range(5):        # enough images for a held-out share at image_eval_fraction=0.5
        _write(f"{root}/more/{i}.png", np.full((36, 36, 3), 40 * i, np.uint8))
    workdir = f"{root}-runs/image"
    assert train_tokenizer.main(
        ["--config=tiny_image", f"--workdir={workdir}", f"--config.tokenizer.training.image_folder"
         f"={root}", "--config.tokenizer.training.image_eval_fraction=0.5",
         "--config.tokenizer.training.batch_size=2", "--config.tokenizer.training.num_train_steps=2",
         "--config.tokenizer.training.eval_batches=0", "--config.tokenizer.loss.gan_start_step=0"]) == 0
    result = json.loads(capsys.readouterr().out)
    folder = image_data.ImageFolder.from_config(_folder_config(root, fraction=0.5).tokenizer.training)
    assert result["step"] == 2 and result["eval_num_clips"] == len(folder.eval_files) > 0
    assert np.isfinite(result["eval_psnr"]) and np.isfinite(result["eval_psnr_baseline"])
    params2d, ema2d, _ = inflation.load_2d_state(workdir)
    assert params2d["encoder"]["conv_in"]["kernel"].shape == (3, 3, 3, 16)
    assert train_tokenizer.main(["--config=tiny_image", f"--workdir={workdir}"]) == 2
    assert "--data is required" in capsys.readouterr().err
