"""The data job's steps (Beam DoFns): list a split's videos (`ListVideos`), cut and encode a
video's clips into its part file (`MakeClips`), concatenate parts into a shard (`WriteShard`) and
write a split's dead letters (`WriteFailures`). In a module of their own, which every Beam worker
can import (never `__main__`); the graph is `pipelines.prepare.build_pipeline`.
"""
import logging
import time

import apache_beam as beam
import tensorflow as tf

from magvit import video_io
from pipelines import clip_sampling, datasets
from pipelines.datasets import common
from pipelines.part_files import LazyRecordWriter, Part, atomic_path, concatenate
from pipelines.prepare_layout import failures_path, part_path, shard_path
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


class MakeClips(beam.DoFn):
    """Video -> its clip records, streamed into its part file, and a `Part` naming that file (none
    when it made no clips); Failures and stats counts (((split, field[, key]), n) pairs) as tagged
    outputs. Bad input never raises."""

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

    def process(self, video):
        path = part_path(self.dataset_dir, video)
        with atomic_path(path) as temporary, LazyRecordWriter(temporary) as part:
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
                    yield from self._clips(item, part)
        if part.records:
            yield Part(video.split, video.video_id, path, part.records)
        self.done += 1
        if self.done % 100 == 0:
            logging.info("prepare: %d videos in %.0f s on this worker", self.done,
                         time.time() - self.started)

    def _clips(self, source, part):
        video, config, made, ok = source.video, self.config, 0, True
        try:
            for clip in clip_sampling.sample_clips(source, config):
                record = clip_schema.build_clip(clip, config.image_format, config.jpeg_quality,
                                                config.png_compression)
                # deterministic: map fields (the features) in key order, the same in every process
                part.write(record.SerializeToString(deterministic=True))
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


class WriteShard(beam.DoFn):
    """((split, shard), {"keys": [...], "parts": [Part]}) -> the shard file: its parts concatenated
    in video id order (written to a temporary name, then renamed); then the parts are deleted."""

    def __init__(self, dataset_dir: str):
        self.dataset_dir = dataset_dir

    def process(self, element, num_shards):
        (split, shard), grouped = element
        parts = sorted(grouped["parts"])
        path = shard_path(self.dataset_dir, split, shard, num_shards.get(split, 1))
        if not tf.io.gfile.exists(path):   # it does for a retry after the shard was written
            with atomic_path(path) as temporary:
                concatenate([part.path for part in parts], temporary)
            for part in parts:
                tf.io.gfile.remove(part.path)
        yield split, sum(part.records for part in parts)


class WriteFailures(beam.DoFn):
    """(split, {"keys": [...], "failures": [json line]}) -> the split's sorted failures file."""

    def __init__(self, dataset_dir: str):
        self.dataset_dir = dataset_dir

    def process(self, element):
        split, grouped = element
        with atomic_path(failures_path(self.dataset_dir, split)) as temporary:
            with tf.io.gfile.GFile(temporary, "w") as f:
                f.write("".join(line + "\n" for line in sorted(grouped["failures"])))


