"""The Beam data job end to end (DirectRunner): shards, dead letters, stats, determinism, CLI."""
import glob
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from magvit.configs import get_config
from magvit.video_io import iter_frames, read_video, resize_shorter
from pipelines import prepare, prepare_steps
from tests.test_datasets import (dataset_config, frames_of, truncate_inside_frame, write_any,
                                 write_bair, write_ucf101)
from tfrecords_schemas import clip as clip_schema
from tfrecords_schemas.common import schema_text

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shard_bytes(dataset_dir: str) -> dict:
    return {os.path.relpath(p, dataset_dir): open(p, "rb").read()
            for p in sorted(glob.glob(os.path.join(dataset_dir, "*", "clips-*.tfrecord")))}


def records(pattern: str, shape) -> list[dict]:
    out = []
    for path in sorted(glob.glob(pattern)):
        for serialized in tf.data.TFRecordDataset(path):
            clip_schema.check_clip(serialized.numpy())
            out.append({k: v.numpy() for k, v in clip_schema.parse_clip(serialized, shape).items()})
    return out


def failures(dataset_dir: str, split: str) -> list[dict]:
    with open(os.path.join(dataset_dir, split, "failures-00000-of-00001.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_demo_prepares_parses_and_is_byte_identical(tmp_path):
    config = get_config("tiny").dataset
    config.demo_videos_per_class = 6   # the counts below (tiny's own demo has 10 per class)
    first = prepare.run_prepare(config, str(tmp_path / "a"))       # generates the demo videos
    config.root = str(tmp_path / "a" / "demo_videos")                # the same input again
    second = prepare.run_prepare(config, str(tmp_path / "b"), ["--direct_num_workers=1"])
    a, b = str(tmp_path / "a" / "demo"), str(tmp_path / "b" / "demo")
    # ceil(20 train videos / 8 per shard) = 3 shards; 4 test videos: 1
    assert sorted(shard_bytes(a)) == ["test/clips-00000-of-00001.tfrecord"] + [
        f"train/clips-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert shard_bytes(a) == shard_bytes(b)
    assert sorted(os.listdir(a)) == ["schema.pbtxt", "stats.json", "test", "train"]   # no parts left
    # 6 videos per class of 32 frames, the last one held out; 8-frame clips, all policy: 4 each.
    assert first["splits"]["train"]["clips_written"] == 80 and first["splits"]["test"]["clips_written"] == 16
    assert first["splits"]["train"]["clips_per_class"] == {"bounce": 20, "orbit": 20, "pulse": 20, "slide": 20}
    assert first["splits"]["train"]["source_fps"] == {"8": 20}
    assert first["totals"] == dict(files_listed=24, videos_read=24, clips_written=96, failures=0)
    assert first["config"]["root"] == str(tmp_path / "a" / "demo_videos")
    assert json.load(open(os.path.join(a, "stats.json")))["splits"] == first["splits"]
    assert second["splits"]["train"]["clips_written"] == 80 and first["elapsed_s"] > 0
    with open(os.path.join(a, "schema.pbtxt")) as f:
        assert f.read() == schema_text(clip_schema.schema())
    test = records(os.path.join(a, "test", "clips-*.tfrecord"), (8, 32, 32))
    assert len(test) == 16
    assert {(r["video_id"].decode(), int(r["label"])) for r in test} == {
        ("bounce/bounce_005", 0), ("orbit/orbit_005", 1), ("slide/slide_005", 2), ("pulse/pulse_005", 3)}
    assert sorted({int(r["clip_start"]) for r in test}) == [0, 8, 16, 24]
    assert all(r["frames"].dtype == np.uint8 and r["fps"] == 8.0 and r["dataset"] == b"demo" for r in test)
    # The 32x32 clip is the demo video (64x64) halved: compare one clip with a direct decode.
    clip = next(r for r in test if r["video_id"] == b"pulse/pulse_005" and r["clip_start"] == 8)
    path = os.path.join(tmp_path, "a", "demo_videos", "pulse", "pulse_005.mp4")
    halved = np.stack(list(iter_frames(path, shorter_side=32))[8:16])
    assert np.array_equal(clip["frames"], halved)                       # PNG is lossless
    full = read_video(path)[8:16]
    rgb_then_halved = np.stack([resize_shorter(f, 32) for f in full]).astype(np.float32)
    assert np.abs(clip["frames"] - rgb_then_halved).mean() < 2.0


def test_png_frames_decode_losslessly_with_tf_and_pil():
    """encode_png_frames writes PNG by hand (stored, or Up filter + libdeflate): any size, level,
    content."""
    rng = np.random.RandomState(0)
    frames = rng.randint(0, 256, (3, 5, 7, 3)).astype(np.uint8)
    frames[1] = 200                                                     # flat: compresses
    frames[2, :, :4] = frames[2, :, 3:]                                 # repeats across columns
    for level in (0, 1, 12):
        encoded = clip_schema.encode_png_frames(frames, level)
        assert [tf.io.decode_png(e).numpy().tolist() for e in encoded] == frames.tolist()
        assert [np.asarray(Image.open(io.BytesIO(e))).tolist() for e in encoded] == frames.tolist()
    assert len(encoded[1]) < len(encoded[0])
    assert encoded == clip_schema.encode_png_frames(frames.copy(), 12)   # same pixels, same bytes
    single = clip_schema.encode_png_frames(np.full((1, 1, 1, 3), 7, np.uint8))
    assert tf.io.decode_png(single[0]).numpy().tolist() == [[[7, 7, 7]]]
    with pytest.raises(ValueError, match="deflate level 0-12, got 13"):
        clip_schema.encode_png_frames(frames, 13)


def test_writes_are_all_or_nothing(tmp_path):
    shard = str(tmp_path / "out" / "shard.tfrecord")
    with prepare.atomic_path(shard) as temporary:
        with tf.io.TFRecordWriter(temporary) as writer:
            for value in (b"1", b"22", b"333"):
                writer.write(value)
    assert [r.numpy() for r in tf.data.TFRecordDataset(shard)] == [b"1", b"22", b"333"]
    with prepare.atomic_path(str(tmp_path / "out" / "never.tfrecord")):
        pass                                                              # nothing written: no file
    with pytest.raises(RuntimeError, match="worker died"):                 # a failed attempt leaves
        with prepare.atomic_path(shard) as temporary:                      # the old file and no
            with tf.io.TFRecordWriter(temporary) as writer:                # temporary behind
                writer.write(b"4")
            raise RuntimeError("worker died")
    assert sorted(os.listdir(tmp_path / "out")) == ["shard.tfrecord"]
    assert len(list(tf.data.TFRecordDataset(shard))) == 3


def write_bad_inputs(root: str) -> None:
    """UCF-101 layout with every kind of bad input listed in the train list."""
    write_ucf101(root, num_frames=12)
    folder = os.path.join(root, "UCF-101", "Basketball")
    with open(os.path.join(folder, "v_Basketball_g03_c01.avi"), "wb") as f:
        f.write(np.random.RandomState(0).bytes(4096))                    # corrupt
    long = write_any(os.path.join(folder, "v_Basketball_g04_c01.avi"), frames_of(8, 60))
    truncate_inside_frame(long, 20)                                      # 20 of 60 frames
    open(os.path.join(folder, "v_Basketball_g05_c01.avi"), "wb").close()  # zero-length
    write_any(os.path.join(folder, "v_Basketball_g06_c01.avi"), frames_of(9, 3))  # too short
    with open(os.path.join(root, "ucfTrainTestlist", "trainlist01.txt"), "a") as f:
        f.write("".join(f"Basketball/v_Basketball_g0{g}_c01.avi 2\n" for g in (3, 4, 5, 6)))


def test_bad_inputs_go_to_dead_letters_and_multiprocess_gives_the_same_shards(tmp_path):
    root = str(tmp_path / "ucf")
    write_bad_inputs(root)
    config = dataset_config("ucf101", root, split="train,test", num_frames=4, resolution=16,
                            num_shards=2)
    stats = prepare.run_prepare(config, str(tmp_path / "out"))
    out = str(tmp_path / "out" / "ucf101")
    got = sorted((os.path.basename(f["path"]), f["stage"], f["reason"]) for f in failures(out, "train"))
    assert got == [("v_Basketball_g03_c01.avi", "decode", "decode_error"),
                   ("v_Basketball_g04_c01.avi", "decode", "truncated"),
                   ("v_Basketball_g05_c01.avi", "decode", "empty_file"),
                   ("v_Basketball_g06_c01.avi", "clip", "too_short"),
                   ("v_Basketball_g09_c01.avi", "list", "missing_video")]
    assert all(set(f) == {"path", "stage", "reason", "detail"} and f["detail"] for f in failures(out, "train"))
    assert [f["reason"] for f in failures(out, "test")] == ["unknown_label"]
    train = stats["splits"]["train"]
    assert train["failures_by_reason"] == {"decode_error": 1, "truncated": 1, "empty_file": 1,
                                           "too_short": 1, "missing_video": 1}
    # 3 good 12-frame videos -> 3 clips each; the truncated one keeps the 5 clips it decoded.
    truncated = [r for r in records(train["clips_pattern"], (4, 16, 16))
                 if r["video_id"] == b"v_Basketball_g04_c01"]
    assert len(truncated) == 5
    assert train["videos_read"] == 3 and train["clips_written"] == 9 + 5
    assert train["clips_per_class"]["Basketball"] == 3 + 5
    assert train["source_fps"] == {"25": 5} and train["files_listed"] == 7
    assert "ends inside the data of frame 21 (cut off?): decoded 20 frames, 5 clips kept" in next(
        f["detail"] for f in failures(out, "train") if f["reason"] == "truncated")
    assert stats["splits"]["test"]["clips_written"] == 9
    assert sorted(os.listdir(os.path.join(out, "train"))) == [
        "clips-00000-of-00002.tfrecord", "clips-00001-of-00002.tfrecord", "failures-00000-of-00001.jsonl"]
    parsed = records(os.path.join(out, "test", "clips-*.tfrecord"), (4, 16, 16))
    assert sorted({(r["video_id"].decode(), int(r["label"]), r["label_name"].decode()) for r in parsed}) == [
        ("v_ApplyEyeMakeup_g01_c01", 0, "ApplyEyeMakeup"), ("v_Basketball_g01_c01", 1, "Basketball"),
        ("v_HandStandPushups_g01_c01", 2, "HandstandPushups")]
    # Local multi-process mode writes the same bytes.
    prepare.run_prepare(config, str(tmp_path / "multi"),
                        ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert shard_bytes(out) == shard_bytes(str(tmp_path / "multi" / "ucf101"))


def test_cli_with_overrides_bair_random_clips_and_fixed_shards(tmp_path, capsys):
    root = write_bair(str(tmp_path / "bair"))
    argv = ["--config=bair_b", f"--config.dataset.root={root}",
            f"--out_dir={tmp_path / 'out'}", "--config.dataset.clip_policy=random",
            "--config.dataset.clips_per_video=2", "--config.dataset.num_shards=3",
            "--config.dataset.num_frames=8", "--config.dataset.image_format=jpeg", "--direct_num_workers=1"]
    assert prepare.main(argv) == 0
    out = str(tmp_path / "out" / "bair")
    with open(os.path.join(out, "stats.json")) as f:
        stats = json.load(f)
    assert stats["config"]["clip_policy"] == "random" and stats["config"]["root"] == root
    # train: 3 good trajectories (one record lacks image_aux1), test: 1; 2 random clips each.
    assert stats["splits"]["train"]["videos_read"] == 3 and stats["splits"]["train"]["clips_written"] == 6
    assert stats["splits"]["train"]["failures_by_reason"] == {"bad_record": 1}
    assert stats["splits"]["test"]["clips_written"] == 2
    for split in ("train", "test"):
        assert sorted(os.listdir(os.path.join(out, split)))[:3] == [
            f"clips-0000{i}-of-00003.tfrecord" for i in range(3)]
    train = records(os.path.join(out, "train", "clips-*.tfrecord"), (8, 64, 64))
    starts = {}
    for r in train:
        starts.setdefault(r["video_id"].decode(), []).append(int(r["clip_start"]))
        assert r["image_format"] == b"jpeg" and r["fps"] == 10.0
    assert sorted(starts) == ["traj_256_to_511/000", "traj_256_to_511/001", "traj_512_to_767/000"]
    assert all(len(set(s)) == 2 and all(0 <= x <= 22 for x in s) for s in starts.values())
    assert prepare.main(argv + ["--config.dataset.split=validation"]) == 2
    assert ("pipelines.prepare: error: --config.dataset.split: 'validation' is not a split of bair"
            in capsys.readouterr().err)


def test_sdist_packages_the_worker_code(tmp_path):
    """What `--setup_file ./setup.py` stages for Dataflow workers (python setup.py sdist)."""
    source = tmp_path / "src"
    for name in ("magvit", "pipelines", "components", "tfrecords_schemas"):
        shutil.copytree(os.path.join(REPO, name), source / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "README.md"):
        shutil.copy(os.path.join(REPO, name), source / name)
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path / "dist")],
                   cwd=source, check=True, capture_output=True)
    (archive,) = glob.glob(str(tmp_path / "dist" / "*.tar.gz"))
    with tarfile.open(archive) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for needed in ("pipelines/prepare.py", "pipelines/clip_sampling.py", "pipelines/datasets/ucf101.py",
                   "pipelines/datasets/bair.py", "magvit/video_io.py", "magvit/configs/dataset.py",
                   "tfrecords_schemas/clip.py", "setup.py"):
        assert needed in names, needed


def test_shards_go_straight_to_their_final_name_on_an_object_store():
    root = f"ram://shard-target-{uuid.uuid4().hex}"
    shard = f"{root}/train/clips-00000-of-00001.tfrecord"
    assert prepare_steps.writes_atomically(shard) and prepare_steps.writes_atomically("gs://b/x")
    assert not prepare_steps.writes_atomically("/data/x") and not prepare_steps.writes_atomically("hdfs://h/x")
    with prepare_steps.shard_target(shard) as target:
        assert target == shard                                  # no temporary name, no rename
        with tf.io.TFRecordWriter(target) as writer:
            writer.write(b"1")
    assert [r.numpy() for r in tf.data.TFRecordDataset(shard)] == [b"1"]
    with pytest.raises(RuntimeError, match="worker died"):     # a failed attempt removes its object
        with prepare_steps.shard_target(shard) as target:
            with tf.io.TFRecordWriter(target) as writer:
                writer.write(b"2")
            raise RuntimeError("worker died")
    assert tf.io.gfile.glob(f"{root}/train/*") == []             # not even a temporary one
    with prepare_steps.shard_target(shard + ".x"):
        pass                                                    # nothing written: no object
    assert not tf.io.gfile.exists(shard + ".x")
