"""Issue 17, data side: bad input to the data stage and to training data is refused up front
(naming the file or flag), dead-lettered with a documented reason, or recovered from; never
silently wrong and never a hang. Cases 1, 2, 5 and 7 of the issue (3, 4, 6, 8 are in
tests/test_bad_input_runs.py); README's "Bad input" section lists them all.
"""
import os

import numpy as np
import pytest

pytestmark = pytest.mark.timeout(300)


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


# ------------------------------------------------------------------------- 1. links and FIFOs
def _prepare_folder(root: str, out: str, **overrides):
    from pipelines import prepare
    from tests.test_datasets import dataset_config
    from tests.test_prepare import failures, records
    config = dataset_config("folder", root, split="all", num_frames=4, resolution=16, **overrides)
    stats = prepare.run_prepare(config, out)
    split = stats["splits"]["all"]
    return split, records(split["clips_pattern"], (4, 16, 16)), failures(
        os.path.join(out, "folder"), "all")


@pytest.mark.timeout(240, method="thread")
def test_1_link_loops_are_not_followed_and_links_and_fifos_are_dead_letters(tmp_path):
    from tests.test_datasets import frames_of, write_any
    root = tmp_path / "videos"
    for i, label in enumerate(("a", "b")):
        write_any(str(root / label / f"{label}{i}.mp4"), frames_of(i, 8))
    os.symlink("..", root / "b" / "up")                      # a folder loop
    os.symlink(str(root / "a"), root / "b" / "also_a")       # a link into the root itself
    outside = tmp_path / "elsewhere"
    write_any(str(outside / "far.mp4"), frames_of(7, 8))
    os.symlink(str(outside), root / "a" / "linked")          # a link out of the root: followed
    os.symlink("self.mp4", root / "b" / "self.mp4")          # a file link to itself
    os.mkfifo(root / "b" / "pipe.mp4")                       # would block a reader forever

    split, clips, dead = _prepare_folder(str(root), str(tmp_path / "out"))
    assert split["files_listed"] == 5
    assert sorted({(r["video_id"].decode(), r["label_name"].decode()) for r in clips}) == [
        ("a/a0", "a"), ("a/linked/far", "a"), ("b/b1", "b")]
    assert len(clips) == 3 * 2
    assert sorted((os.path.basename(f["path"]), f["reason"]) for f in dead) == [
        ("pipe.mp4", "not_a_file"), ("self.mp4", "broken_link")]
    assert all("unexpected" not in f["reason"] for f in dead)


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


# ------------------------------------------------------------------------- 5. duplicate ids
def test_5_videos_differing_only_by_extension_get_distinct_ids(tmp_path):
    from pipelines.datasets import folder
    from tests.test_datasets import frames_of, write_any
    root = tmp_path / "videos"
    write_any(str(root / "c" / "x.mp4"), frames_of(0, 8))
    write_any(str(root / "c" / "x.mkv"), frames_of(1, 8))
    write_any(str(root / "c" / "y.mp4"), frames_of(2, 8))
    split, clips, dead = _prepare_folder(str(root), str(tmp_path / "out"))
    assert not dead
    ids = sorted({r["video_id"].decode() for r in clips})
    assert ids == ["c/x.mkv", "c/x.mp4", "c/y"]
    clip_ids = [(r["video_id"], int(r["clip_start"])) for r in clips]
    assert len(clip_ids) == len(set(clip_ids)) == 6
    # ids stay unique even when a stem equals another file's name
    assert folder.video_ids(["c/x.mp4", "c/x.mkv", "c/x.mp4.avi", "c/z.avi"]) == {
        "c/x.mp4": "c/x.mp4", "c/x.mkv": "c/x.mkv", "c/x.mp4.avi": "c/x.mp4.avi", "c/z.avi": "c/z"}


# ------------------------------------------------------------------ 7. validation comes first
def test_7_bad_flags_are_refused_before_any_work_naming_the_flag(tmp_path, capsys):
    import subprocess
    import sys
    from magvit import train_tokenizer
    from magvit.configs import flags as config_flags
    from pipelines import prepare, run
    from tests.test_datasets import dataset_config
    # A non-positive step count: refused before anything is written.
    config = _tiny_tokenizer_config()
    config.tokenizer.training.num_train_steps = -3
    with pytest.raises(ValueError, match=r"--config\.tokenizer\.training\.num_train_steps=-3: "
                                         "must be at least 1"):
        train_tokenizer.train(config, "unused-*", str(tmp_path / "negative"))
    assert not os.path.exists(tmp_path / "negative")

    # A config-key typo: one line naming the override and the suggestion, in every entry point.
    typo = "--config.tokenizer.trainng.batch_size=2"
    message = ("--config.tokenizer.trainng.batch_size: the config has no field 'trainng'; "
               "did you mean 'training'?")
    with pytest.raises(config_flags.ConfigFieldError) as error:
        config_flags.parse_config([typo])
    assert str(error.value) == message
    with pytest.raises(run.UsageError) as error:
        run.parse_args([typo, f"--pipeline_root={tmp_path}"])
    assert str(error.value) == message
    assert prepare.main(["--config.dataset.nme=x", f"--out_dir={tmp_path}"]) == 2
    assert ("pipelines.prepare: error: --config.dataset.nme: the config has no field 'nme'"
            in capsys.readouterr().err)
    cli = subprocess.run([sys.executable, "-m", "magvit.train_tokenizer", typo, "--data=x",
                          f"--workdir={tmp_path / 'typo'}"], capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    assert f"magvit.train_tokenizer: error: {message}" in cli.stderr.strip().splitlines()

    # --dataset=folder: the missing `train` split is refused before any stage runs, and the
    # --config.dataset.split that fixes it is accepted beside --dataset.
    base = ["--dataset=folder", f"--data_root={tmp_path}", f"--pipeline_root={tmp_path / 'p'}",
            "--config.eval.allow_random_i3d=true"]
    with pytest.raises(run.UsageError, match=r"writes split\(s\) 'all', but the trainers read "
                                             r"split 'train': pass --config.dataset.split="
                                             r"train,test"):
        run.parse_args(base)
    assert run.parse_args(base + ["--config.dataset.split=train,test"]).config.dataset.split == \
        "train,test"

    # A split name that is a path would write (and clear) files outside --out_dir: refused.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "clips-00000-of-00001.tfrecord").write_bytes(b"precious")
    config = dataset_config("folder", str(tmp_path), split=str(outside))
    with pytest.raises(ValueError, match=r"--config.dataset.split: '/.*outside' is not a split "
                                         r"name"):
        prepare.run_prepare(config, str(tmp_path / "out"))
    assert (outside / "clips-00000-of-00001.tfrecord").read_bytes() == b"precious"
    with pytest.raises(run.UsageError, match="is not a split name"):
        run.parse_args(base + ["--config.dataset.split=train,../../x"])

    # A Matroska file cut at a frame boundary (it declares a duration, not a frame count): its
    # clips are kept and it is a `truncated` dead letter instead of silently losing its tail.
    import av
    from tests.test_datasets import frames_of, write_any
    videos = tmp_path / "mkv"
    whole = write_any(str(videos / "c" / "whole.mkv"), frames_of(0, 40))
    with av.open(whole) as container:
        starts = [p.pos for p in container.demux(container.streams.video[0]) if p.size]
    with open(whole, "rb") as f:
        head = f.read(starts[20])
    with open(videos / "c" / "cut.mkv", "wb") as f:
        f.write(head)
    split, clips, dead = _prepare_folder(str(videos), str(tmp_path / "mkv_out"))
    assert [(os.path.basename(f["path"]), f["reason"]) for f in dead] == [("cut.mkv", "truncated")]
    assert "decoded 20 frames, 5 clips kept, but the container's duration (1.60 s at 25 fps) " \
           "implies 40" in dead[0]["detail"]
    kept = {}
    for r in clips:
        kept[r["video_id"].decode()] = kept.get(r["video_id"].decode(), 0) + 1
    assert kept == {"c/cut": 5, "c/whole": 10}

    # Real and generated clips of different lengths: refused before any I3D work or Beam temp.
    from pipelines import evaluate
    from tests.test_evaluate import _config as eval_config, _frames, _write
    real = _write(tmp_path / "real.tfrecord", [(f"r{i}", _frames(i, t=4)) for i in range(3)])
    generated = _write(tmp_path / "gen.tfrecord", [(f"g{i}", _frames(i, t=8)) for i in range(3)])
    with pytest.raises(ValueError, match=r"--real clips have 4 frames \(.*real.tfrecord\), "
                                         r"--generated clips 8 \(.*gen.tfrecord\)"):
        evaluate.run_evaluate(real, generated, eval_config(), str(tmp_path / "eval"))
    assert not os.path.exists(tmp_path / "eval")
