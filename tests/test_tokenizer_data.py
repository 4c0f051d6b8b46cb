"""Generic training plumbing: resumable tf.data input, orbax checkpoints, reconstruction metrics."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from magvit import checkpoints, data, train_utils
from magvit.configs import get_config
from magvit.metrics import reconstruction
from tfrecords_schemas.clip import Clip, build_clip


def _write_clips(path, n, start=0):
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(start, start + n):
            frames = np.full((2, 8, 8, 3), i, np.uint8)
            writer.write(build_clip(Clip(frames, 8.0, i, "c", f"v{i}", 0, "demo")).SerializeToString())


def test_resumed_iterator_yields_the_same_batches(tmp_path):
    _write_clips(str(tmp_path / "a.tfrecord"), 4)
    _write_clips(str(tmp_path / "b.tfrecord"), 3, start=4)
    pattern = str(tmp_path / "*.tfrecord")
    kwargs = dict(seed=3, shuffle_buffer=5)
    parse = data.clip_parser((2, 8, 8))
    full = data.ResumableIterator(pattern, parse, 3, **kwargs)
    batches, positions = [], []
    for _ in range(6):                       # 18 records: crosses two epoch boundaries
        batches.append(next(full)["label"])
        positions.append(full.position)
    epoch0 = np.concatenate(batches)[:7]
    assert sorted(epoch0) == list(range(7))          # each epoch sees every record once
    assert not np.array_equal(np.concatenate(batches)[7:14], epoch0)  # and reshuffles
    assert positions[2] == data.Position(1, 2) and positions[-1] == data.Position(2, 4)
    resumed = data.ResumableIterator(pattern, parse, 3, position=positions[1].to_dict(), **kwargs)
    for expected in batches[2:]:
        np.testing.assert_array_equal(next(resumed)["label"], expected)
    evaluation = list(data.ResumableIterator(pattern, parse, 3, train=False))
    assert [len(b["label"]) for b in evaluation] == [3, 3, 1]
    assert evaluation[0]["frames"].shape == (3, 2, 8, 8, 3)
    with pytest.raises(FileNotFoundError, match="--eval_data='nowhere/\\*' matches no file"):
        data.ResumableIterator("nowhere/*", parse, 3, flag="eval_data")


def test_datasets_run_without_the_autotune_thread(tmp_path):
    # Its optimiser thread blocked the iterator's destructor for up to a minute at the end of
    # the pipeline's transformer stage (magvit/data.py).
    _write_clips(str(tmp_path / "a.tfrecord"), 3)
    ds = data.make_dataset(str(tmp_path / "*.tfrecord"), data.clip_parser((2, 8, 8)), 2)
    assert ds.options().autotune.enabled is False
    assert next(iter(ds))["frames"].shape == (2, 2, 8, 8, 3)


def test_checkpointer_round_trip_and_config(tmp_path):
    mesh = train_utils.make_mesh()
    state = train_utils.replicate({"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.int32(7),
                                   "rng": jax.random.PRNGKey(3)}, mesh)
    ckpt = checkpoints.Checkpointer(str(tmp_path), max_to_keep=2, save_every_steps=5)
    assert not ckpt.save(3, state)
    for step in (5, 10, 15):
        assert ckpt.save(step, state, {"data_position": {"epoch": 1, "offset": step}})
    ckpt.wait()
    assert ckpt.all_steps() == [10, 15]
    template = jax.tree.map(jnp.zeros_like, state)
    restored, meta = ckpt.restore(template)
    assert meta == {"data_position": {"epoch": 1, "offset": 15}}
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(a, b)
    abstract = jax.eval_shape(lambda: state)
    restored, _ = ckpt.restore(abstract, step=10, default_sharding=train_utils.replicated(mesh))
    np.testing.assert_array_equal(restored["w"], state["w"])
    ckpt.close()
    config = get_config("tiny")
    checkpoints.save_config(config, str(tmp_path))
    loaded = checkpoints.load_config(str(tmp_path))
    assert loaded.tokenizer.model.filters == config.tokenizer.model.filters
    assert list(loaded.tokenizer.clip_shape) == list(config.tokenizer.clip_shape)


def test_schedule_and_ema():
    schedule = train_utils.learning_rate_schedule(1e-3, warmup_steps=10, total_steps=110)
    assert float(schedule(0)) == 0.0 and float(schedule(5)) == pytest.approx(5e-4)
    assert float(schedule(10)) == pytest.approx(1e-3)
    assert float(schedule(60)) == pytest.approx(5e-4, rel=1e-3)
    assert float(schedule(110)) == pytest.approx(0.0, abs=1e-9)
    ema = train_utils.ema_update({"a": jnp.array(1.0)}, {"a": jnp.array(3.0)}, 0.75)
    assert float(ema["a"]) == pytest.approx(1.5)


def test_psnr_ssim_match_tensorflow():
    rng = np.random.RandomState(0)
    a = rng.randint(0, 256, (2, 3, 16, 16, 3)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.randint(-20, 21, a.shape), 0, 255).astype(np.uint8)
    ours = reconstruction.psnr(a, b)
    assert ours.shape == (2, 3)
    np.testing.assert_allclose(ours, tf.image.psnr(a, b, 255).numpy(), rtol=1e-4)
    np.testing.assert_allclose(reconstruction.psnr(a / 255.0, b / 255.0), ours, rtol=1e-4)
    np.testing.assert_allclose(reconstruction.ssim(a, b), tf.image.ssim(a, b, 255).numpy(),
                               atol=1e-4)
    assert np.allclose(reconstruction.ssim(a, a), 1.0)
    assert reconstruction.psnr(a, a).min() == pytest.approx(100.0)
    with pytest.raises(ValueError, match="differ in shape"):
        reconstruction.psnr(a, b[:1])
    usage = reconstruction.codebook_usage(np.array([0, 0, 1, 1]), 4)
    assert usage == {"codebook_usage": 0.5, "codebook_perplexity": pytest.approx(2.0)}
