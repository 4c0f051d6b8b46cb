"""BAIR Robot Pushing as published: `softmotion30_44k/{train,test}/*.tfrecords`, each record one
trajectory of 30 steps with raw 64x64x3 uint8 bytes under `<t>/image_main/encoded` and
`<t>/image_aux1/encoded` (plus `<t>/action`, `<t>/endeffector_pos`).

A listed item is one tfrecord file (listing fans out by split folder, see `common`); `read` streams its trajectories, one Source each, from the
camera `dataset.camera`. Trajectories carry no frame rate: clips get `dataset.fps_when_unknown`.
A trajectory without that camera's frames is a `bad_record` dead letter; an unreadable file is a
`decode_error` one (its earlier trajectories are kept).
"""
import math
from typing import Iterator

import numpy as np
import tensorflow as tf

from magvit import video_io
from pipelines.datasets import common

SPLITS = ("train", "test")
CAMERAS = ("image_main", "image_aux1")


def split_dir(root: str, split: str) -> str:
    nested = common.join(root, "softmotion30_44k")
    return common.join(nested if common.isdir(nested) else root, split)


def check(config) -> None:
    if config.camera not in CAMERAS:
        raise ValueError(f"--config.dataset.camera={config.camera!r}: expected one of {CAMERAS}")
    for split in common.split_names(config):
        common.require(split_dir(config.root, split), f"BAIR's softmotion30_44k/{split} folder")


def list_videos(config, split: str) -> Iterator[common.Video | common.Failure]:
    yield from label_partition(list_partition(config, (split, split_dir(config.root, split))), [])


# ------------------------------------------------------------ listing by partition (see common)
def partitions(config) -> list[tuple[str, str]]:
    """(split, split folder) per requested split: one listing (by prefix on an object store) of
    its tfrecord files each; the files themselves, read on workers, are the units of work."""
    return [(split, split_dir(config.root, split)) for split in common.split_names(config)]


def list_partition(config, unit: tuple[str, str]) -> tuple[str, list[str]]:
    split, folder = unit
    return split, common.list_files(folder, (".tfrecords", ".tfrecord"))


def partition_classes(listed) -> list[str]:
    return []      # unlabelled


def label_partition(listed: tuple[str, list[str]], classes) -> Iterator[common.Video]:
    split, paths = listed
    for path in paths:
        yield common.Video(path, split, -1, "", common.stem(path))


def trajectory_frames(example: tf.train.Example, camera: str) -> list[np.ndarray]:
    """The [H, W, 3] uint8 frames of one trajectory's camera, in time order."""
    features = example.features.feature
    frames, t = [], 0
    while f"{t}/{camera}/encoded" in features:
        data = features[f"{t}/{camera}/encoded"].bytes_list.value[0]
        side = math.isqrt(len(data) // 3)
        if side * side * 3 != len(data):
            raise ValueError(f"step {t}: {len(data)} bytes is not a square RGB image")
        frames.append(np.frombuffer(data, np.uint8).reshape(side, side, 3))
        t += 1
    if not frames:
        raise ValueError(f"no '<t>/{camera}/encoded' features")
    return frames


def read(video: common.Video, config) -> Iterator[common.Source | common.Failure]:
    try:
        for index, record in enumerate(tf.data.TFRecordDataset(video.path).as_numpy_iterator()):
            trajectory = common.Video(f"{video.path}#{index}", video.split, video.label,
                                      video.label_name, f"{video.video_id}/{index:03d}")
            try:
                frames = trajectory_frames(tf.train.Example.FromString(record), config.camera)
            except Exception as e:  # protobuf's DecodeError is a bare Exception subclass
                yield common.Failure(trajectory.path, video.split, "decode", "bad_record",
                                     f"{trajectory.path}: {type(e).__name__}: {e}")
                continue
            yield common.Source(
                video=trajectory, fps=config.fps_when_unknown,
                frames=lambda frames=frames: (video_io.resize_shorter(f, config.resolution,
                                                                       config.resize_filter)
                                              for f in frames),
                count_frames=lambda frames=frames: len(frames))
    except tf.errors.OpError as e:
        raise video_io.VideoError(f"{video.path}: cannot read records ({type(e).__name__}: "
                                  f"{e.message})") from e
