"""Issue 17: bad input is refused up front (naming the file or flag), dead-lettered with a
documented reason, or recovered from; never silently wrong and never a hang.

One test per case of the issue, numbered as there. README's "Bad input" section lists them all.
"""
import json
import logging
import os

import numpy as np
import pytest

from magvit import checkpoints

pytestmark = pytest.mark.timeout(300)


# ------------------------------------------------------------------------ 6. damaged checkpoints
def _state(value: float) -> dict:
    rng = np.random.default_rng(int(value))
    return {"w": rng.normal(size=(96, 96)).astype(np.float32) + value,
            "b": np.full((7,), value, np.float32)}


def _biggest_file(directory: str) -> str:
    files = [os.path.join(d, n) for d, _, names in os.walk(directory) for n in names]
    return max(files, key=os.path.getsize)


def test_6_damaged_checkpoints_fall_back_to_the_newest_intact_step(tmp_path, caplog):
    workdir = str(tmp_path / "run")
    ckpt = checkpoints.Checkpointer(workdir, max_to_keep=5)
    for step in (1, 2, 3, 4):
        ckpt.save(step, _state(step), {"step": step}, force=True)
    ckpt.close()
    template = _state(0)
    step_dir = lambda s: os.path.join(checkpoints.checkpoint_dir(workdir), str(s))  # noqa: E731

    # 64 flipped bytes in the newest step's array data: detected, step 3 restored instead.
    data_file = _biggest_file(os.path.join(step_dir(4), "state"))
    with open(data_file, "r+b") as f:
        f.seek(16)
        chunk = f.read(64)
        f.seek(16)
        f.write(bytes(b ^ 0xFF for b in chunk))
    # step 3 truncated, step 2's meta/metadata emptied: both skipped too.
    truncated = _biggest_file(os.path.join(step_dir(3), "state"))
    with open(truncated, "r+b") as f:
        f.truncate(os.path.getsize(truncated) // 2)
    open(os.path.join(step_dir(2), "meta", "metadata"), "w").close()

    caplog.set_level(logging.WARNING)
    state, meta = checkpoints.Checkpointer(workdir).restore(template)
    assert meta == {"step": 1}
    np.testing.assert_array_equal(state["w"], _state(1)["w"])
    warned = caplog.text
    for s in (4, 3, 2):
        assert step_dir(s) in warned, warned
    assert "SHA-256 mismatch" in warned and "bytes" in warned

    # Nothing intact left: one error naming every step directory and its problem.
    open(os.path.join(step_dir(1), "meta", "metadata"), "w").close()
    with pytest.raises(checkpoints.CheckpointError) as error:
        checkpoints.Checkpointer(workdir).restore(template)
    for s in (4, 3, 2, 1):
        assert step_dir(s) in str(error.value)


# ------------------------------------------------------------------------------ training helpers
def _tiny_tokenizer_config(steps: int = 2):
    from magvit.configs import get_config
    config = get_config("tiny")
    training = config.tokenizer.training
    training.batch_size, training.num_train_steps = 2, steps
    training.checkpoint_every_steps = training.log_every_steps = steps
    return config


def _write_clips(path: str, count: int, shape=(8, 32, 32)) -> str:
    import tensorflow as tf
    from tfrecords_schemas.clip import Clip, build_clip
    rng = np.random.RandomState(0)
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(count):
            frames = rng.randint(0, 256, (*shape, 3), dtype=np.uint8)
            writer.write(build_clip(Clip(frames, 8.0, 0, "a", f"v{i}", 0, "demo"))
                         .SerializeToString())
    return path


# ------------------------------------------------------------------------ 2. empty training data
@pytest.mark.timeout(240, method="thread")
def test_2_empty_training_data_is_refused_instead_of_hanging(tmp_path):
    from magvit import train_tokenizer
    from pipelines import prepare
    from tests.test_datasets import dataset_config
    # The data stage on an empty folder fails, naming the split and its (zero) counts.
    (tmp_path / "videos").mkdir()
    config = dataset_config("folder", str(tmp_path / "videos"), split="all")
    with pytest.raises(ValueError, match=r"split 'all': 0 video file\(s\) listed, 0 clips written "
                                         r"\(no failures"):
        prepare.run_prepare(config, str(tmp_path / "out"))
    # Training on a file with no record stops at once, naming the flag and the file.
    empty = _write_clips(str(tmp_path / "clips-00000-of-00001.tfrecord"), 0)
    with pytest.raises(ValueError, match=r"--data=.*hold no record \(.*clips-00000-of-00001"):
        train_tokenizer.train(_tiny_tokenizer_config(), empty, str(tmp_path / "run"))


# ------------------------------------------------------------------------ 4. refused resume
def test_4_a_refused_resume_leaves_the_work_dir_usable(tmp_path):
    from magvit import train_tokenizer
    from magvit.tokenizer.api import Tokenizer
    clips = _write_clips(str(tmp_path / "clips.tfrecord"), 4)
    workdir = str(tmp_path / "run")
    config = _tiny_tokenizer_config()
    train_tokenizer.train(config, clips, workdir)
    with open(os.path.join(workdir, checkpoints.CONFIG_FILE)) as f:
        saved = f.read()
    trained_id = Tokenizer.load(workdir).checkpoint_id

    changed = _tiny_tokenizer_config(steps=4)
    changed.tokenizer.model.filters = config.tokenizer.model.filters * 2
    with pytest.raises(ValueError, match=r"--workdir=.* cannot resume: --config\.tokenizer\.model"
                                         r"\.filters was \d+, now \d+"):
        train_tokenizer.train(changed, clips, workdir)
    with open(os.path.join(workdir, checkpoints.CONFIG_FILE)) as f:
        assert f.read() == saved
    assert Tokenizer.load(workdir).checkpoint_id == trained_id

    # A non-positive step count is refused before anything is written.
    config.tokenizer.training.num_train_steps = -3
    with pytest.raises(ValueError, match=r"--config\.tokenizer\.training\.num_train_steps=-3: "
                                         "must be at least 1"):
        train_tokenizer.train(config, clips, str(tmp_path / "negative"))
    assert not os.path.exists(tmp_path / "negative")
