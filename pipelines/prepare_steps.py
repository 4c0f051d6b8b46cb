"""The data job's steps (Beam DoFns): list a split's videos (`ListVideos`) and write a shard
from its videos (`WriteShard`: decode, cut clips, encode, straight into the shard file). In a
module of their own, which every Beam worker can import (never `__main__`); the graph is
`pipelines.prepare.build_pipeline`, the dead letters `pipelines.dead_letters`.
"""
import contextlib
import logging
import os
import time

import apache_beam as beam
import tensorflow as tf

from magvit import video_io
from pipelines import clip_sampling, datasets
from pipelines.datasets import common
from pipelines.atomic_files import atomic_path, removed_on_error
from pipelines.prepare_layout import shard_path
from tfrecords_schemas import clip as clip_schema

FAILURES = "failures"
COUNTS = "counts"
_CLIP_REASONS = ("too_short",)   # dead letters of the clip stage; the others are decode's


class ListVideos(beam.DoFn):
    """split -> the split's Videos (main output) and listing Failures (tagged)."""

    def __init__(self, config):
        self.config = config

    def process(self, split):
        for item in datasets.get_reader(self.config.name).list_videos(self.config, split):
            if isinstance(item, common.Failure):
                yield beam.pvalue.TaggedOutput(FAILURES, item)
            else:
                yield item


class WriteShard(beam.DoFn):
    """((split, shard), {"keys": [...], "videos": [Video]}) -> the shard file, written by the
    worker that owns the shard: its videos in video id order, each decoded, cut into clips and
    encoded straight into the shard (`shard_target`: the final name on an object store, whose
    upload appears whole or not at all; a temporary name renamed when complete elsewhere; a retry
    rewrites it whole either way). Yields (split, records); Failures and stats counts
    (((split, field[, key]), n) pairs) as tagged outputs. Bad input never raises."""

    def __init__(self, config, dataset_dir: str):
        self.config = config
        self.dataset_dir = dataset_dir
        self.videos = beam.metrics.Metrics.counter("prepare", "videos_read")
        self.clips = beam.metrics.Metrics.counter("prepare", "clips_written")
        self.failed = beam.metrics.Metrics.counter("prepare", "failures")

    def setup(self):
        self.reader = datasets.get_reader(self.config.name)
        self.done, self.started = 0, time.time()

    def _failure(self, video, error: Exception):
        reason = getattr(error, "reason", "decode_error")
        if not isinstance(error, video_io.VideoError):
            logging.exception("unexpected error on %s", video.path)
            reason = "unexpected_error"
        self.failed.inc()
        stage = "clip" if reason in _CLIP_REASONS else "decode"
        return beam.pvalue.TaggedOutput(FAILURES, common.Failure(
            video.path, video.split, stage, reason, f"{type(error).__name__}: {error}"))

    def process(self, element, num_shards):
        (split, shard), grouped = element
        videos = sorted(grouped["videos"], key=lambda video: (video.video_id, video.path))
        path = shard_path(self.dataset_dir, split, shard, num_shards.get(split, 1))
        tf.io.gfile.makedirs(os.path.dirname(path))
        with shard_target(path) as target, tf.io.TFRecordWriter(target) as writer:
            records = _RecordCount(writer)
            for video in videos:
                yield from self._video(video, records)
        yield split, records.count

    def _video(self, video, writer):
        sources = self.reader.read(video, self.config)
        while True:
            try:
                item = next(sources)
            except StopIteration:
                break
            except Exception as e:  # pylint: disable=broad-except  (bad input must not stop the job)
                yield self._failure(video, e)
                break
            if isinstance(item, common.Failure):
                self.failed.inc()
                yield beam.pvalue.TaggedOutput(FAILURES, item)
            else:
                yield from self._clips(item, writer)
        self.done += 1
        if self.done % 100 == 0:
            logging.info("prepare: %d videos in %.0f s on this worker", self.done,
                         time.time() - self.started)

    def _clips(self, source, writer):
        video, config, made, ok = source.video, self.config, 0, True
        try:
            for clip in clip_sampling.sample_clips(source, config):
                record = clip_schema.build_clip(clip, config.image_format, config.jpeg_quality,
                                                config.png_compression)
                # deterministic: map fields (the features) in key order, the same in every process
                writer.write(record.SerializeToString(deterministic=True))
                made += 1
        except Exception as e:  # pylint: disable=broad-except
            ok = False
            yield self._failure(video, e)
        self.videos.inc(ok)
        self.clips.inc(made)
        name = video.label_name or "(unlabelled)"
        for key, n in [((video.split, "videos_read"), int(ok)),
                       ((video.split, "clips_written"), made),
                       ((video.split, "clips_per_class", name), made),
                       ((video.split, "videos_per_class", name), int(ok)),
                       ((video.split, "source_fps", f"{source.fps:g}"), 1)]:
            yield beam.pvalue.TaggedOutput(COUNTS, (key, n))


# Stores whose writes publish an object only when its upload completes (ram://: the in-memory
# stand-in for a bucket in tests and benchmarks).
ATOMIC_UPLOAD_SCHEMES = ("gs", "s3", "ram")


def writes_atomically(path: str) -> bool:
    return path.split("://", 1)[0] in ATOMIC_UPLOAD_SCHEMES if "://" in path else False


@contextlib.contextmanager
def shard_target(path: str):
    """The name to write shard `path` under. On an object store (gs://, s3://) the final name
    itself: the object appears atomically when its upload completes (a worker that dies mid-shard
    leaves nothing) and a rename there would be a copy plus a delete of the whole shard; a write
    that raises is removed. Elsewhere a temporary name beside it, renamed when complete (free and
    atomic on a local or POSIX file system)."""
    if not writes_atomically(path):
        with atomic_path(path) as temporary:
            yield temporary
        return
    with removed_on_error(path):
        yield path


class _RecordCount:
    """A record writer that counts what it writes."""

    def __init__(self, writer):
        self.writer, self.count = writer, 0

    def write(self, record: bytes) -> None:
        self.writer.write(record)
        self.count += 1
