"""Tokenizer training on the demo clips: PSNR improves, resume is exact, Tokenizer.load works."""
import json
import os
import shutil

import jax
import numpy as np
import pytest
import tensorflow as tf

from magvit import checkpoints, train_tokenizer, train_utils
from magvit.configs import get_config
from magvit.tokenizer.api import Tokenizer
from magvit.tokenizer.train_step import Models
from pipelines.datasets import demo
from tfrecords_schemas.clip import Clip, build_clip

STEPS = 160
MID = 140   # the mid-run checkpoint that resume starts from: 20 steps short of the end


def write_demo_clips(path: str, seed: int, videos_per_class: int, clip_shape=(8, 32, 32)):
    """Demo videos rendered in memory, cut into clip records (the prepare job's output format)."""
    t, size, _ = clip_shape
    with tf.io.TFRecordWriter(path) as writer:
        for label_index, label in enumerate(demo.CLASSES):
            for i in range(videos_per_class):
                frames = demo.render(label, np.random.RandomState([seed, label_index, i]),
                                     2 * t, size)
                for start in (0, t):
                    clip = Clip(frames[start:start + t], 8.0, label_index, label,
                                f"{label}_{i:03d}", start, "demo")
                    writer.write(build_clip(clip).SerializeToString())
    return path


def tiny_config():
    config = get_config("tiny")
    training = config.tokenizer.training
    training.batch_size = 2
    training.num_train_steps = STEPS
    training.checkpoint_every_steps = MID
    training.log_every_steps = STEPS // 4
    return config


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    return (write_demo_clips(str(root / "train.tfrecord"), seed=0, videos_per_class=3),
            write_demo_clips(str(root / "test.tfrecord"), seed=1, videos_per_class=1))


def test_training_improves_psnr_and_resume_is_exact(clips, tmp_path):
    train_data, test_data = clips
    config = tiny_config()
    untrained = Models(config.tokenizer).init(jax.random.PRNGKey(config.seed)).params
    before = train_tokenizer.evaluate(config.tokenizer, untrained, test_data)

    workdir = str(tmp_path / "run")
    result = train_tokenizer.train(config, train_data, workdir, eval_pattern=test_data)
    assert result["step"] == STEPS
    assert result["eval_psnr"] > before["psnr"] + 4.0, (before, result)
    assert result["eval_codebook_usage"] > 0
    with open(os.path.join(workdir, train_tokenizer.EVAL_METRICS_FILE)) as f:
        written = json.load(f)
    assert written["step"] == STEPS and written["psnr"] == pytest.approx(result["eval_psnr"])
    # The trivial baseline beside it: each clip's mean frame held still, computed here by hand.
    from magvit.data import clip_parser, ResumableIterator
    from magvit.metrics.reconstruction import psnr
    test_clips = np.concatenate([b["frames"] for b in ResumableIterator(
        test_data, clip_parser(config.tokenizer.clip_shape), 4, train=False)])
    still = np.broadcast_to(np.round(test_clips.mean(axis=1, keepdims=True)).astype(np.uint8),
                            test_clips.shape)
    assert before["psnr_baseline"] == pytest.approx(psnr(test_clips, still).mean(), rel=1e-5)
    assert written["psnr_baseline"] > 0 and 0 < written["ssim_baseline"] < 1
    assert set(checkpoints.Checkpointer(workdir).all_steps()) == {MID, STEPS}

    # Resume: a work directory holding only the mid-run checkpoint (as if the run had been
    # killed after it) continues to the same final parameters as the uninterrupted run.
    resumed = str(tmp_path / "resumed")
    os.makedirs(os.path.join(resumed, checkpoints.CHECKPOINT_SUBDIR))
    shutil.copy(os.path.join(workdir, checkpoints.CONFIG_FILE), resumed)
    shutil.copytree(os.path.join(checkpoints.checkpoint_dir(workdir), str(MID)),
                    os.path.join(checkpoints.checkpoint_dir(resumed), str(MID)))
    train_tokenizer.train(config, train_data, resumed)

    full, resumed_tok = Tokenizer.load(workdir), Tokenizer.load(resumed)
    assert full.checkpoint_id == resumed_tok.checkpoint_id
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed_tok.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    # The loaded tokenizer: EMA parameters, configured shapes, and reconstructions as evaluated.
    assert full.grid_shape == (4, 8, 8) and full.clip_shape == (8, 32, 32)
    assert full.codebook_size == 1024
    video = next(iter(tf.data.TFRecordDataset(test_data).take(1)))
    from tfrecords_schemas.clip import parse_clip
    frames = parse_clip(video, shape=(8, 32, 32))["frames"].numpy()[None]
    tokens = full.encode(frames)
    assert tokens.shape == (1, 4, 8, 8) and tokens.dtype == np.int32
    recon = full.decode(tokens)
    assert recon.shape == frames.shape and recon.dtype == np.uint8
    from magvit.metrics.reconstruction import psnr
    assert psnr(frames, recon).mean() > before["psnr"] + 4.0
    assert train_utils.tree_hash(full.params) == full.checkpoint_id


def test_train_names_a_missing_data_flag(tmp_path):
    with pytest.raises(FileNotFoundError, match="--data='/nonexistent/\\*.tfrecord' matches no"):
        train_tokenizer.train(tiny_config(), "/nonexistent/*.tfrecord", str(tmp_path / "w"))


def test_load_names_a_directory_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        Tokenizer.load(str(tmp_path))
