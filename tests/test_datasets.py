"""Dataset readers (each native layout), clip sampling and decoding, without Beam.

The `write_*` helpers build tiny fixtures in each published layout; tests/test_prepare.py reuses them.
"""
import csv
import json
import os
import re
import shutil

import av
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from magvit import video_io
from magvit.configs import get_config
from pipelines import clip_sampling, datasets
from pipelines.datasets import bair, common
from pipelines.prepare import check_config

W, H = 32, 24   # fixture videos: 32x24, shorter side 24


# ---------------------------------------------------------------------------------- fixtures
def frames_of(seed: int, num_frames: int, height: int = H, width: int = W) -> np.ndarray:
    """Smooth moving colour gradients (codec-friendly), different per seed."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    colour = rng.uniform(40, 200, size=3)
    out = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        wave = 40 * np.sin((xx + 2 * t) / 6.0) + 30 * np.cos((yy - t) / 5.0)
        out[t] = np.clip(colour + wave[..., None], 0, 255).astype(np.uint8)
    return out


def write_webm(path: str, frames: np.ndarray, fps: int = 12) -> None:
    with av.open(path, mode="w") as container:
        stream = container.add_stream("libvpx-vp9", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_any(path: str, frames: np.ndarray, fps: int = 25) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if path.endswith(".webm"):
        write_webm(path, frames, fps)
    else:
        video_io.write_video(path, frames, fps=fps)
    return path


def truncate_inside_frame(path: str, index: int, keep: int = 9) -> None:
    """Cuts the file `keep` bytes into the stored packet of frame `index` (a cut-off download). Cut
    at a packet's start, not at a fraction of the file, so that the damage does not depend on the
    encoder's exact output; the first few bytes of a packet never decode."""
    with av.open(path) as container:
        positions = [p.pos for p in container.demux(container.streams.video[0]) if p.size]
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:positions[index] + keep])


UCF_CLASSES = ("ApplyEyeMakeup", "Basketball", "HandstandPushups")


def write_ucf101(root: str, num_frames: int = 12) -> dict:
    """UCF-101 layout: 3 classes x 2 groups; group g01 is test, g02 train; plus a listed-but-missing
    video and a list entry of an unknown class. Returns {video id: frames count}."""
    lists = os.path.join(root, "ucfTrainTestlist")
    os.makedirs(lists, exist_ok=True)
    with open(os.path.join(lists, "classInd.txt"), "w") as f:
        f.write("".join(f"{i + 1} {name}\n" for i, name in enumerate(UCF_CLASSES)))
    train, test = [], []
    for i, name in enumerate(UCF_CLASSES):
        file_class = "HandStandPushups" if name == "HandstandPushups" else name
        for group, entries in (("g01", test), ("g02", train)):
            relative = f"{name}/v_{file_class}_{group}_c01.avi"
            write_any(os.path.join(root, "UCF-101", relative), frames_of(i * 2 + len(entries), num_frames))
            entries.append(f"{relative} {i + 1}" if entries is train else relative)
    train.append("Basketball/v_Basketball_g09_c01.avi 2")     # listed, no file
    test.append("Juggling/v_Juggling_g01_c01.avi")             # class not in classInd
    with open(os.path.join(lists, "trainlist01.txt"), "w") as f:
        f.write("\n".join(train) + "\n")
    with open(os.path.join(lists, "testlist01.txt"), "w") as f:
        f.write("\n".join(test) + "\n")
    return root


def write_kinetics(root: str) -> str:
    """Kinetics layout: train clips per class folder, validate clips flat; one missing clip."""
    rows = {"train": [("abseiling", "aaa", 0, 10), ("zumba", "bbb", 5, 15), ("abseiling", "ccc", 1, 11),
                      ("zumba", "missing1", 0, 10)],
            "validate": [("zumba", "ddd", 2, 12), ("unknown class", "eee", 0, 10)]}
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for split, entries in rows.items():
        with open(os.path.join(root, "annotations", f"{split}.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            for seed, (label, youtube_id, start, end) in enumerate(entries):
                writer.writerow([label, youtube_id, start, end, split])
                if youtube_id.startswith("missing"):
                    continue
                name = f"{youtube_id}_{start:06d}_{end:06d}.mp4"
                folder = os.path.join(root, split, label) if split == "train" else os.path.join(root, split)
                write_any(os.path.join(folder, name), frames_of(seed, 10))
    return root


def write_ssv2(root: str) -> str:
    labels = {"Holding something next to something": "0", "Pushing something from left to right": "1"}
    train = [{"id": "11", "label": "holding a cup next to a pen",
              "template": "Holding [something] next to [something]", "placeholders": ["a cup", "a pen"]},
             {"id": "12", "label": "pushing a box from left to right",
              "template": "Pushing [something] from left to right", "placeholders": ["a box"]},
             {"id": "13", "label": "x", "template": "Spinning [something]", "placeholders": ["x"]},
             {"id": "14", "label": "y", "template": "Pushing [something] from left to right",
              "placeholders": ["y"]}]
    validation = [{"id": "21", "label": "z", "template": "Holding [something] next to [something]",
                   "placeholders": ["z", "w"]}]
    for name, data in (("labels", labels), ("train", train), ("validation", validation)):
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, f"{name}.json"), "w") as f:
            json.dump(data, f)
    for seed, video_id in enumerate(("11", "12", "13", "21")):       # 14 is missing
        write_any(os.path.join(root, "20bn-something-something-v2", f"{video_id}.webm"), frames_of(seed, 10), fps=12)
    return root


def bair_example(seed: int, steps: int = 30, cameras=("image_main", "image_aux1")) -> tf.train.Example:
    rng = np.random.RandomState(seed)
    feature = {}
    for t in range(steps):
        for c, camera in enumerate(cameras):
            image = np.full((64, 64, 3), (seed * 10 + c * 100 + t) % 256, np.uint8)
            image[0, 0] = rng.randint(0, 255, size=3)
            feature[f"{t}/{camera}/encoded"] = tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[image.tobytes()]))
        feature[f"{t}/action"] = tf.train.Feature(float_list=tf.train.FloatList(value=rng.randn(4)))
        feature[f"{t}/endeffector_pos"] = tf.train.Feature(float_list=tf.train.FloatList(value=rng.randn(3)))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def write_bair(root: str) -> str:
    """softmotion30_44k: train has 2 files (3 + 1 trajectories, one lacking image_aux1); test 1."""
    layout = {"train": {"traj_256_to_511.tfrecords": [bair_example(0), bair_example(1),
                                                       bair_example(2, cameras=("image_main",))],
                        "traj_512_to_767.tfrecords": [bair_example(3)]},
              "test": {"traj_0_to_255.tfrecords": [bair_example(4)]}}
    for split, files in layout.items():
        folder = os.path.join(root, "softmotion30_44k", split)
        os.makedirs(folder, exist_ok=True)
        for name, examples in files.items():
            with tf.io.TFRecordWriter(os.path.join(folder, name)) as writer:
                for example in examples:
                    writer.write(example.SerializeToString())
    return root


def dataset_config(name: str, root: str, **overrides):
    config = get_config("tiny").dataset
    config.name, config.root = name, root
    for key, value in overrides.items():
        config[key] = value
    return config


def listed(reader, config, split):
    items = list(reader.list_videos(config, split))
    videos = [v for v in items if isinstance(v, common.Video)]
    failures = [f for f in items if isinstance(f, common.Failure)]
    return videos, failures


# ---------------------------------------------------------------------------------- clip sampling
def test_clip_starts_follow_the_policy_exactly():
    assert clip_sampling.clip_span(16, 1) == 16 and clip_sampling.clip_span(4, 3) == 10
    assert clip_sampling.clip_starts("all", 30, 16, 1) == [0]
    assert clip_sampling.clip_starts("all", 32, 8, 1) == [0, 8, 16, 24]
    assert clip_sampling.clip_starts("all", 31, 8, 1) == [0, 8, 16]
    assert clip_sampling.clip_starts("all", 30, 4, 2) == [0, 8, 16]          # span 7, step 8
    assert clip_sampling.clip_starts("center", 30, 16, 1) == [7]
    assert clip_sampling.clip_starts("center", 100, 16, 2) == [34]           # span 31
    assert clip_sampling.clip_starts("all", 15, 16, 1) == []
    rng = clip_sampling.video_rng(0, "v1")
    starts = clip_sampling.clip_starts("random", 40, 8, 1, 5, rng)
    assert len(starts) == 5 and len(set(starts)) == 5 and starts == sorted(starts)
    assert all(0 <= s <= 40 - 8 for s in starts)
    again = clip_sampling.clip_starts("random", 40, 8, 1, 5, clip_sampling.video_rng(0, "v1"))
    other = clip_sampling.clip_starts("random", 40, 8, 1, 5, clip_sampling.video_rng(0, "v2"))
    assert again == starts and other != starts
    assert clip_sampling.clip_starts("random", 10, 8, 1, 5, rng) == sorted(set(
        clip_sampling.clip_starts("random", 10, 8, 1, 5, clip_sampling.video_rng(0, "x"))))
    assert len(clip_sampling.clip_starts("random", 10, 8, 1, 5, rng)) == 3   # only 3 positions
    with pytest.raises(ValueError, match="unknown clip policy 'every'"):
        clip_sampling.clip_starts("every", 30, 16, 1)


def test_cut_clips_takes_strided_frames_and_stops_decoding_after_the_last_clip():
    pulled = []

    def frames():
        for i in range(100):
            pulled.append(i)
            yield np.full((2, 2, 3), i, np.uint8)

    clips = list(clip_sampling.cut_clips(frames(), [3, 5, 20], num_frames=4, frame_stride=2))
    assert [start for start, _ in clips] == [3, 5, 20]
    assert [list(clip[:, 0, 0, 0]) for _, clip in clips] == [[3, 5, 7, 9], [5, 7, 9, 11], [20, 22, 24, 26]]
    assert clips[0][1].shape == (4, 2, 2, 3) and clips[0][1].dtype == np.uint8
    assert pulled[-1] == 26                      # no frame decoded past the last clip


def test_center_crop_and_resize_keep_the_aspect_ratio():
    frame = np.arange(24 * 32 * 3, dtype=np.uint8).reshape(24, 32, 3)
    assert np.array_equal(clip_sampling.center_crop(frame, 24), frame[:, 4:28])
    assert video_io.scaled_size(240, 320, 128) == (128, 171)
    assert video_io.scaled_size(320, 240, 128) == (171, 128)
    assert video_io.resize_shorter(frame, 12).shape == (12, 16, 3)
    assert video_io.resize_shorter(frame, 24) is frame
    with pytest.raises(ValueError, match="smaller than the crop"):
        clip_sampling.center_crop(frame, 30)


def test_decoded_frames_match_the_source_pixels(tmp_path):
    frames = frames_of(7, 12, height=48, width=64)
    path = write_any(str(tmp_path / "known.mp4"), frames, fps=25)
    video = common.Video(path, "all", 2, "c", "known")
    # Resolution = source height: no resize, only the centre crop.
    config = dataset_config("folder", str(tmp_path), num_frames=4, resolution=48)
    (source,) = common.read_file(video, config)
    assert source.fps == 25.0 and source.count_frames() == 12
    clips = list(clip_sampling.sample_clips(source, config))
    assert [c.clip_start for c in clips] == [0, 4, 8]
    got = np.concatenate([c.frames for c in clips]).astype(np.float32)
    assert got.shape == (12, 48, 48, 3)
    assert np.abs(got - frames[:, :, 8:56]).mean() < 3.0              # H.264 at crf 12
    # Halved: swscale bilinear (antialiased) ~ PIL bilinear of the source frames.
    config.resolution = 24
    (source,) = common.read_file(video, config)
    small = next(clip_sampling.sample_clips(source, config))
    expected = np.stack([np.asarray(Image.fromarray(f).resize((32, 24), Image.BILINEAR))[:, 4:28]
                         for f in frames[:4]]).astype(np.float32)
    assert small.frames.shape == (4, 24, 24, 3)
    assert np.abs(small.frames - expected).mean() < 3.0
    assert (small.label, small.label_name, small.video_id, small.fps, small.dataset) == (2, "c", "known", 25.0, "folder")


def test_sample_clips_policies_and_too_short(tmp_path):
    path = write_any(str(tmp_path / "v.mp4"), frames_of(1, 20), fps=10)
    video = common.Video(path, "all", -1, "", "v")
    counts = {}
    for policy, k in (("all", 1), ("center", 1), ("random", 3)):
        config = dataset_config("folder", str(tmp_path), num_frames=4, frame_stride=2,
                                resolution=16, clip_policy=policy, clips_per_video=k)
        (source,) = common.read_file(video, config)
        clips = list(clip_sampling.sample_clips(source, config))
        counts[policy] = [c.clip_start for c in clips]
        assert all(c.frames.shape == (4, 16, 16, 3) and c.fps == 5.0 for c in clips)
    assert counts["all"] == [0, 8]                 # span 7, step 8, 20 frames
    assert counts["center"] == [6]
    assert len(counts["random"]) == 3 and counts["random"] == sorted(set(counts["random"]))
    config = dataset_config("folder", str(tmp_path), num_frames=16, frame_stride=2, resolution=16)
    (source,) = common.read_file(video, config)
    with pytest.raises(common.BadInput, match="20 frames, a clip of 16 frames with stride 2 needs 31") as e:
        list(clip_sampling.sample_clips(source, config))
    assert e.value.reason == "too_short"


def test_a_cut_off_file_keeps_its_frames_and_is_called_truncated(tmp_path):
    frames = frames_of(8, 30)
    whole = write_any(str(tmp_path / "whole.avi"), frames)
    expected = video_io.read_video(whole)
    video = common.Video(str(tmp_path / "cut.avi"), "all", -1, "", "cut")
    config = dataset_config("folder", str(tmp_path), num_frames=4, resolution=24)
    for keep, message in ((0, "decoded 13 of the 30 frames its container declares"),   # at a packet
                          (9, "ends inside the data of frame 14 .*: decoded 13 frames")):  # inside
        shutil.copy(whole, video.path)
        truncate_inside_frame(video.path, 13, keep)
        got = []
        if keep:
            with pytest.raises(video_io.TruncatedVideo, match="cut.avi: the file ends inside the "
                                                              "data of frame 14"):
                got.extend(video_io.iter_frames(video.path))
        else:
            got.extend(video_io.iter_frames(video.path))
        np.testing.assert_array_equal(np.stack(got), expected[:13])   # every frame before the cut
        (source,) = common.read_file(video, config)
        clips = []
        with pytest.raises(common.BadInput, match=message) as e:
            clips.extend(clip_sampling.sample_clips(source, config))
        assert e.value.reason == "truncated" and [c.clip_start for c in clips] == [0, 4, 8]


# ---------------------------------------------------------------------------------- readers
def test_ucf101_reader_splits_labels_and_dead_letters(tmp_path):
    root = write_ucf101(str(tmp_path))
    config = dataset_config("ucf101", root)
    reader = datasets.get_reader("ucf101")
    reader.check(config)
    train, train_failures = listed(reader, config, "train")
    test, test_failures = listed(reader, config, "test")
    everything, _ = listed(reader, config, "all")
    assert [(v.video_id, v.label, v.label_name) for v in train] == [
        ("v_ApplyEyeMakeup_g02_c01", 0, "ApplyEyeMakeup"), ("v_Basketball_g02_c01", 1, "Basketball"),
        ("v_HandStandPushups_g02_c01", 2, "HandstandPushups")]
    assert [v.video_id for v in test] == ["v_ApplyEyeMakeup_g01_c01", "v_Basketball_g01_c01",
                                          "v_HandStandPushups_g01_c01"]
    assert all(os.path.exists(v.path) for v in train + test)
    assert {v.video_id for v in everything} == {v.video_id for v in train + test}
    assert all(v.split == "all" for v in everything)
    assert [(f.reason, f.stage, os.path.basename(f.path)) for f in train_failures] == [
        ("missing_video", "list", "v_Basketball_g09_c01.avi")]
    assert [(f.reason, os.path.basename(f.path)) for f in test_failures] == [
        ("unknown_label", "v_Juggling_g01_c01.avi")]
    assert "Juggling" in test_failures[0].detail
    config.ucf101_split_number = 2
    with pytest.raises(ValueError, match="trainlist02.txt: not found"):
        check_config(config)


def test_kinetics_reader_finds_flat_and_per_class_clips(tmp_path):
    root = write_kinetics(str(tmp_path))
    config = dataset_config("kinetics600", root, split="train,validation")
    reader = datasets.get_reader("kinetics600")
    reader.check(config)
    train, train_failures = listed(reader, config, "train")
    assert [(v.video_id, v.label, v.label_name) for v in train] == [
        ("aaa_000000_000010", 0, "abseiling"), ("bbb_000005_000015", 1, "zumba"),
        ("ccc_000001_000011", 0, "abseiling")]
    assert os.path.dirname(train[1].path).endswith("train/zumba")
    assert [(f.reason, f.path.endswith("missing1_000000_000010.mp4")) for f in train_failures] == [
        ("missing_video", True)]
    validation, failures = listed(reader, config, "validation")      # finds validate.csv
    assert [(v.video_id, v.label, v.label_name) for v in validation] == [("ddd_000002_000012", 1, "zumba")]
    assert [f.reason for f in failures] == ["unknown_label"]
    config.split = "test"
    with pytest.raises(ValueError, match="no annotation CSV for split 'test'"):
        reader.check(config)


def test_ssv2_reader_maps_templates_to_labels(tmp_path):
    root = write_ssv2(str(tmp_path))
    config = dataset_config("ssv2", root, split="train,validation")
    reader = datasets.get_reader("ssv2")
    reader.check(config)
    train, failures = listed(reader, config, "train")
    assert [(v.video_id, v.label, v.label_name) for v in train] == [
        ("11", 0, "Holding something next to something"), ("12", 1, "Pushing something from left to right")]
    assert sorted((f.reason, os.path.basename(f.path)) for f in failures) == [
        ("missing_video", "14.webm"), ("unknown_label", "13.webm")]
    validation, _ = listed(reader, config, "validation")
    assert [(v.video_id, v.label) for v in validation] == [("21", 0)]
    config.num_frames, config.resolution = 4, 16
    (source,) = reader.read(train[0], config)
    assert source.fps == 12.0 and source.count_frames() == 10        # webm declares no frame count
    assert len(list(clip_sampling.sample_clips(source, config))) == 2


def test_bair_reader_streams_trajectories_of_the_chosen_camera(tmp_path):
    root = write_bair(str(tmp_path))
    config = dataset_config("bair", root, split="train,test", camera="image_aux1", resolution=64,
                            num_frames=16)
    reader = datasets.get_reader("bair")
    reader.check(config)
    files, _ = listed(reader, config, "train")
    assert [v.video_id for v in files] == ["traj_256_to_511", "traj_512_to_767"]
    items = list(reader.read(files[0], config))
    sources = [s for s in items if isinstance(s, common.Source)]
    failures = [f for f in items if isinstance(f, common.Failure)]
    assert [s.video.video_id for s in sources] == ["traj_256_to_511/000", "traj_256_to_511/001"]
    assert [(f.reason, f.path.endswith("#2")) for f in failures] == [("bad_record", True)]
    frames = list(sources[1].frames())
    assert len(frames) == 30 and sources[1].count_frames() == 30
    expected = bair_example(1).features.feature["5/image_aux1/encoded"].bytes_list.value[0]
    assert frames[5].tobytes() == expected                     # exact pixels, aux1 camera
    clips = list(clip_sampling.sample_clips(sources[1], config))
    assert [c.clip_start for c in clips] == [0] and clips[0].fps == config.fps_when_unknown
    config.clip_policy = "center"
    assert [c.clip_start for c in clip_sampling.sample_clips(sources[1], config)] == [7]
    config.camera = "image_main"
    (main_source, *_) = reader.read(files[0], config)
    assert next(main_source.frames())[1, 1, 0] == 0             # main camera: value t = 0
    config.camera = "front"
    with pytest.raises(ValueError, match="camera='front'"):
        bair.check(config)


def test_folder_and_demo_readers(tmp_path):
    root = str(tmp_path / "videos")
    for i, relative in enumerate(("cats/a.mp4", "cats/deep/b.mp4", "dogs/c.mp4", "loose.mp4")):
        write_any(os.path.join(root, relative), frames_of(i, 6))
    open(os.path.join(root, "notes.txt"), "w").close()
    config = dataset_config("folder", root, split="all")
    videos, failures = listed(datasets.get_reader("folder"), config, "all")
    assert failures == []
    assert [(v.video_id, v.label, v.label_name) for v in videos] == [
        ("cats/a", 0, "cats"), ("cats/deep/b", 0, "cats"), ("dogs/c", 1, "dogs"), ("loose", -1, "")]
    demo_root = str(tmp_path / "demo")
    config = dataset_config("demo", demo_root, demo_videos_per_class=3, demo_num_frames=8)
    datasets.demo.generate_for(config, demo_root)
    os.makedirs(os.path.join(demo_root, "stray"))
    write_any(os.path.join(demo_root, "stray", "s.mp4"), frames_of(0, 4))
    train, train_failures = listed(datasets.demo, config, "train")
    test, test_failures = listed(datasets.demo, config, "test")
    assert [v.video_id for v in test] == [f"{c}/{c}_002" for c in sorted(datasets.demo.CLASSES)]
    assert len(train) == 8 and not {v.video_id for v in train} & {v.video_id for v in test}
    assert {v.label_name: v.label for v in train} == {c: i for i, c in enumerate(datasets.demo.CLASSES)}
    assert [f.reason for f in test_failures] == ["unknown_label"] and train_failures == []


def test_config_errors_name_the_flag(tmp_path):
    root = write_ucf101(str(tmp_path))
    cases = [(dict(split="train,valid"), "--config.dataset.split: 'valid' is not a split of ucf101"),
             (dict(clip_policy="every"), "--config.dataset.clip_policy='every'"),
             (dict(resize_filter="cubic"), "--config.dataset.resize_filter='cubic'"),
             (dict(num_frames=0), "--config.dataset.num_frames=0"),
             (dict(png_compression=13), "--config.dataset.png_compression=13: must be a deflate level"),
             (dict(root=""), "--config.dataset.root is empty"),
             (dict(root=str(tmp_path / "nowhere")), "classInd.txt: not found")]
    for overrides, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            check_config(dataset_config("ucf101", overrides.pop("root", root), **overrides))
    with pytest.raises(ValueError, match="no reader; expected one of bair, ucf101"):
        datasets.get_reader("imagenet")
