"""The data job's layout and config: where a prepared dataset's shards and dead letters
go (`<out_dir>/<name>/<split>/...`), how many shards a split gets and which shard a video's
clips go to, and the checks of `--config.dataset.*` before any work (`check_config`,
`resolve_config`). Used by the `pipelines.prepare` job and its workers.
"""
import math
import os
import tempfile
import zlib

import ml_collections
import tensorflow as tf

from magvit import remote, video_io
from pipelines import clip_sampling, datasets
from pipelines.datasets import common
from tfrecords_schemas import clip as clip_schema

IMAGE_FORMATS = ("png", "jpeg")


def split_dir(dataset_dir: str, split: str) -> str:
    return os.path.join(dataset_dir, split)


def shard_path(dataset_dir: str, split: str, shard: int, num_shards: int) -> str:
    return os.path.join(split_dir(dataset_dir, split), f"clips-{shard:05d}-of-{num_shards:05d}.tfrecord")


def failures_path(dataset_dir: str, split: str) -> str:
    return os.path.join(split_dir(dataset_dir, split), "failures-00000-of-00001.jsonl")


def shard_count(config, listed: int) -> int:
    return config.num_shards or max(1, math.ceil(listed / config.videos_per_shard))


def work_dir(dataset_dir: str) -> str:
    """The part-file folder of older versions of the job (removed by `clear_outputs`)."""
    return os.path.join(dataset_dir, "_work")


def shard_of(split: str, video_id: str, num_shards: dict) -> tuple[str, int]:
    return split, zlib.crc32(video_id.encode()) % num_shards.get(split, 1)


# ----------------------------------------------------------------------------------------- config
def check_config(config) -> None:
    """Raises ValueError naming the `--config.dataset.*` flag that is wrong, and why."""
    reader = datasets.get_reader(config.name)
    splits = common.split_names(config)
    if reader.SPLITS is not None:
        for split in splits:
            if split not in reader.SPLITS:
                raise ValueError(f"--config.dataset.split: {split!r} is not a split of "
                                 f"{config.name}; expected one of {', '.join(reader.SPLITS)}")
    for key in ("num_frames", "frame_stride", "resolution", "clips_per_video", "videos_per_shard"):
        if config[key] < 1:
            raise ValueError(f"--config.dataset.{key}={config[key]}: must be at least 1")
    if config.num_shards < 0:
        raise ValueError(f"--config.dataset.num_shards={config.num_shards}: must be >= 0 (0: automatic)")
    if config.png_compression not in clip_schema.PNG_LEVELS:
        raise ValueError(f"--config.dataset.png_compression={config.png_compression}: must be a "
                         f"deflate level 0-12")
    choices = dict(clip_policy=clip_sampling.POLICIES, image_format=IMAGE_FORMATS,
                   resize_filter=tuple(video_io.INTERPOLATIONS))
    for key, allowed in choices.items():
        if config[key] not in allowed:
            raise ValueError(f"--config.dataset.{key}={config[key]!r}: expected one of "
                             f"{', '.join(allowed)}")
    if not config.root:
        raise ValueError(f"--config.dataset.root is empty: give the folder holding {config.name} "
                         f"in its native layout (only the demo dataset is generated)")
    reader.check(config)


def resolve_config(dataset_config, out_dir: str) -> ml_collections.ConfigDict:
    """A checked copy of the dataset config; generates the demo videos when the demo has no root."""
    config = ml_collections.ConfigDict(dataset_config.to_dict())
    if config.name == "demo" and not config.root:
        config.root = _generate_demo(config, os.path.join(out_dir, "demo_videos"))
    if config.root:
        config.root = remote.absolute(config.root)   # workers may run in another directory
    check_config(config)
    return config


def _generate_demo(config, root: str) -> str:
    """The demo videos under `root`; generated in a local folder and uploaded when it is remote."""
    if not common.is_remote(root):
        return datasets.demo.generate_for(config, root)
    with tempfile.TemporaryDirectory(prefix="magvit-demo-") as local:  # local-only
        remote.copy_tree(datasets.demo.generate_for(config, local), root)
    return root


def remove_work_dir(dataset_dir: str) -> None:
    if tf.io.gfile.exists(work_dir(dataset_dir)):
        tf.io.gfile.rmtree(work_dir(dataset_dir))


def clear_outputs(dataset_dir: str, splits: list[str]) -> None:
    """Removes the shards, failures files and part files an earlier run left."""
    remove_work_dir(dataset_dir)
    for split in splits:
        for pattern in ("clips-*", "failures-*"):
            for path in tf.io.gfile.glob(os.path.join(split_dir(dataset_dir, split), pattern)):
                tf.io.gfile.remove(path)


