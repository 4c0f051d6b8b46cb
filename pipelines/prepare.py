"""Beam job: a dataset in its native layout -> sharded TFRecords of clips (tfrecords_schemas.clip).

For each split S of `dataset.split` it writes, under `<out_dir>/<dataset.name>/`:
  S/clips-XXXXX-of-NNNNN.tfrecord   clip records (uint8 frames encoded as `dataset.image_format`)
  S/failures-00000-of-00001.jsonl   dead letters {"path", "stage", "reason", "detail"}, one a line
  stats.json                        per split: files listed, videos read, clips written, clips and
                                    videos per class, failures by reason, source frame rates,
                                    shard count; plus the dataset config of the run
  schema.pbtxt                      the TFMD schema of the clip records

The graph: list each split's videos (reader of `dataset.name`, pipelines/datasets) -> Reshuffle, so
each video is its own unit of work -> decode (streaming PyAV), cut clips (pipelines/clip_sampling)
and encode them, streaming the video's records into its own part file `<out>/<name>/_work/...` ->
group the parts (references only, never the records) by shard -> each shard is its parts
concatenated (TFRecord files concatenate) in video id order, then the parts are deleted. A video's
clips go to shard crc32(video id) mod N in clip order, so the same input and config give
byte-identical shards under any runner and worker count. N is `dataset.num_shards`, or
ceil(listed videos / videos_per_shard). Records never pass through Beam's shuffle, so a worker's
memory holds one clip at a time, and the job costs little more than decoding and encoding; the
parts need as much temporary space as the shards, freed shard by shard.

Command line (any Beam pipeline flag passes through):
  python -m pipelines.prepare --config=ucf101_b --config.dataset.root=/data/ucf101 --out_dir=/data/out
  ... --direct_running_mode=multi_processing --direct_num_workers=4           (local, N processes)
  ... --runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp \
      --setup_file=./setup.py --out_dir=gs://B/out --config.dataset.root=gs://B/ucf101
"""
import hashlib
import json
import logging
import math
import os
import sys
import tempfile
import time
import zlib

import apache_beam as beam
import ml_collections
import tensorflow as tf
from absl import flags

from magvit import cli, remote, video_io
from pipelines import beam_options, clip_sampling, datasets, gfile_filesystem  # noqa: F401  (ram://)
from pipelines.part_files import LazyRecordWriter, Part, atomic_path, concatenate  # noqa: F401
from pipelines.datasets import common
from tfrecords_schemas import clip as clip_schema
from tfrecords_schemas.common import write_schema

FAILURES = "failures"
COUNTS = "counts"
IMAGE_FORMATS = ("png", "jpeg")
_CLIP_REASONS = ("too_short",)   # dead letters of the clip stage; the others are decode's


# ----------------------------------------------------------------------------------------- layout
def split_dir(dataset_dir: str, split: str) -> str:
    return os.path.join(dataset_dir, split)


def shard_path(dataset_dir: str, split: str, shard: int, num_shards: int) -> str:
    return os.path.join(split_dir(dataset_dir, split), f"clips-{shard:05d}-of-{num_shards:05d}.tfrecord")


def failures_path(dataset_dir: str, split: str) -> str:
    return os.path.join(split_dir(dataset_dir, split), "failures-00000-of-00001.jsonl")


def shard_count(config, listed: int) -> int:
    return config.num_shards or max(1, math.ceil(listed / config.videos_per_shard))


def work_dir(dataset_dir: str) -> str:
    return os.path.join(dataset_dir, "_work")


def part_path(dataset_dir: str, video: common.Video) -> str:
    """Where a video's records wait for their shard: named by a hash of the input's path."""
    name = hashlib.sha1(video.path.encode()).hexdigest()[:24]
    return os.path.join(work_dir(dataset_dir), video.split, f"{name}.tfrecord")


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


# ------------------------------------------------------------------------------------------ DoFns
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


def write_stats(counts: dict, dataset_dir: str, config_dict: dict, splits: list[str],
                num_shards: dict) -> None:
    """Turns the summed ((split, field[, key]), n) counts into stats.json."""
    stats = {"dataset": config_dict["name"], "config": config_dict, "splits": {}}
    for split in splits:
        n = num_shards.get(split, 1)
        stats["splits"][split] = dict(
            files_listed=0, videos_read=0, clips_written=0, failures=0, num_shards=n,
            clips_pattern=shard_path(dataset_dir, split, 0, n).replace("00000-of", "*-of"),
            failures_file=failures_path(dataset_dir, split),
            clips_per_class={}, videos_per_class={}, failures_by_reason={}, source_fps={})
    for (split, field, *key), n in counts.items():
        if key:
            stats["splits"][split][field][key[0]] = n
        else:
            stats["splits"][split][field] = n
    for split_stats in stats["splits"].values():
        split_stats["failures"] = sum(split_stats["failures_by_reason"].values())
    stats["totals"] = {field: sum(s[field] for s in stats["splits"].values())
                       for field in ("files_listed", "videos_read", "clips_written", "failures")}
    with tf.io.gfile.GFile(os.path.join(dataset_dir, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1, sort_keys=True)


# ----------------------------------------------------------------------------------------- graph
def build_pipeline(pipeline: beam.Pipeline, config, dataset_dir: str) -> None:
    splits = common.split_names(config)
    split_names = pipeline | "Splits" >> beam.Create(splits)
    listed = split_names | "ListVideos" >> beam.ParDo(ListVideos(config)).with_outputs(
        FAILURES, main="videos")
    num_shards = beam.pvalue.AsDict(
        listed.videos
        | "SplitOfVideo" >> beam.Map(lambda video: (video.split, 1))
        | "VideosPerSplit" >> beam.CombinePerKey(sum)
        | "ShardCount" >> beam.Map(lambda kv: (kv[0], shard_count(config, kv[1]))))
    made = (listed.videos
            | "OneVideoPerWorkUnit" >> beam.Reshuffle()
            | "MakeClips" >> beam.ParDo(MakeClips(config, dataset_dir)).with_outputs(
                FAILURES, COUNTS, main="parts"))
    # Parts -> shards; every shard index gets a key, so empty shards are written too.
    shard_keys = split_names | "ShardKeys" >> beam.FlatMap(
        lambda split, n: [((split, i), None) for i in range(n.get(split, 1))], num_shards)
    keyed_parts = made.parts | "KeyByShard" >> beam.Map(
        lambda part, n: (shard_of(part.split, part.video_id, n), part), num_shards)
    _ = ({"keys": shard_keys, "parts": keyed_parts}
         | "GroupShards" >> beam.CoGroupByKey()
         | "WriteShards" >> beam.ParDo(WriteShard(dataset_dir), num_shards))
    # Dead letters, one sorted file per split (empty when nothing failed).
    failures = (listed[FAILURES], made[FAILURES]) | "AllFailures" >> beam.Flatten()
    _ = ({"keys": split_names | "FailureKeys" >> beam.Map(lambda split: (split, None)),
          "failures": failures | "FailureLines" >> beam.Map(lambda f: (f.split, f.to_json()))}
         | "GroupFailures" >> beam.CoGroupByKey()
         | "WriteFailures" >> beam.ParDo(WriteFailures(dataset_dir)))
    # stats.json
    counts = (
        (listed.videos | "CountListed" >> beam.Map(lambda v: ((v.split, "files_listed"), 1)),
         failures | "CountFailures" >> beam.Map(lambda f: ((f.split, "failures_by_reason", f.reason), 1)),
         made[COUNTS])
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombinePerKey(sum)
        | "CountsDict" >> beam.combiners.ToDict())
    _ = counts | "WriteStats" >> beam.Map(write_stats, dataset_dir, config.to_dict(), splits,
                                          num_shards)


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


def check_clips_written(stats: dict, splits: list[str]) -> None:
    """Raises ValueError naming each of `splits` that got no clip, with its failure counts."""
    empty = []
    for split in splits:
        s = stats["splits"][split]
        if s["clips_written"] == 0:
            reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(
                s["failures_by_reason"].items())) or "no failures"
            empty.append(f"split {split!r}: {s['files_listed']} video file(s) listed, 0 clips "
                         f"written ({reasons}; dead letters in {s['failures_file']})")
    if empty:
        raise ValueError(f"{stats['dataset']} under --config.dataset.root="
                         f"{stats['config']['root']}: " + "; ".join(empty))


def run_prepare(dataset_config: ml_collections.ConfigDict, out_dir: str,
                beam_args: list[str] | None = None) -> dict:
    """Prepares the dataset of `dataset_config` under `<out_dir>/<name>/`; returns stats.json's
    content plus `elapsed_s`. `beam_args` are Beam pipeline flags (--runner, ...). A split that
    gets no clip raises ValueError with its failure counts (after its outputs are written)."""
    out_dir = remote.absolute(out_dir)
    config = resolve_config(dataset_config, out_dir)
    dataset_dir = os.path.join(out_dir, config.name)
    clear_outputs(dataset_dir, common.split_names(config))
    write_schema(clip_schema.schema(), dataset_dir)
    started = time.time()
    with beam.Pipeline(options=beam_options.pipeline_options(beam_args)) as pipeline:
        build_pipeline(pipeline, config, dataset_dir)
    remove_work_dir(dataset_dir)   # empty folders now, and the parts of abandoned attempts
    stats = json.loads(common.read_text(os.path.join(dataset_dir, "stats.json")))
    stats["elapsed_s"] = round(time.time() - started, 3)
    logging.info("%s", summary(stats))
    check_clips_written(stats, common.split_names(config))   # training would wait forever
    return stats


def summary(stats: dict) -> str:
    """A one-screen table of the run."""
    lines = [f"{stats['dataset']}: {stats['totals']['clips_written']} clips from "
             f"{stats['totals']['videos_read']} videos in {stats.get('elapsed_s', 0):.1f} s"]
    for split, s in stats["splits"].items():
        fps = ", ".join(f"{k} fps x{v}" for k, v in sorted(s["source_fps"].items())[:4])
        lines.append(f"  {split:<10} listed {s['files_listed']:>7}  read {s['videos_read']:>7}  "
                     f"clips {s['clips_written']:>8}  shards {s['num_shards']:>5}  "
                     f"failures {s['failures']:>5}  ({fps})")
        for reason, n in sorted(s["failures_by_reason"].items()):
            lines.append(f"  {'':<10} {n:>7} {reason} -> {s['failures_file']}")
        lines.append(f"  {'':<10} {s['clips_pattern']}")
    return "\n".join(lines)


def _define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("out_dir", None, "Where <dataset>/<split>/clips-*.tfrecord go (a folder "
                        "or gs:// path).", flag_values=fv)


PROGRAM = cli.Program("pipelines.prepare", __doc__, _define_flags, required=("out_dir",),
                      passthrough=beam_options.split_beam_args,
                      passthrough_help=beam_options.BEAM_HELP)


def _main(fv: flags.FlagValues, beam_args: list[str]) -> None:
    try:
        stats = run_prepare(fv.config.dataset, fv.out_dir, beam_args)
    except (ValueError, FileNotFoundError) as e:
        raise cli.UsageError(str(e)) from e
    print(summary(stats))


def main(argv: list[str] | None = None) -> int:
    """`python -m pipelines.prepare --config=NAME --out_dir=DIR [--config.dataset.k=v] [Beam flags]`."""
    return PROGRAM.run(_main, argv)


if __name__ == "__main__":
    # Run the imported module, not this `__main__` copy: the DoFns and the `Part` records that
    # workers unpickle must name `pipelines.prepare`, which every worker process can import.
    from pipelines import prepare as _importable
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(_importable.main())
