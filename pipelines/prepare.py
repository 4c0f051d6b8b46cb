"""Beam job: a dataset in its native layout -> sharded TFRecords of clips (tfrecords_schemas.clip).

For each split S of `dataset.split` it writes, under `<out_dir>/<dataset.name>/`:
  S/clips-XXXXX-of-NNNNN.tfrecord   clip records (uint8 frames encoded as `dataset.image_format`)
  S/failures-00000-of-00001.jsonl   dead letters {"path", "stage", "reason", "detail"}, one a line
                                    (more files, -XXXXX-of-NNNNN, past 100k failures: pipelines/dead_letters)
  stats.json                        per split: files listed, videos read, clips written, clips and
                                    videos per class, failures by reason, source frame rates,
                                    shard count; plus the dataset config of the run
  schema.pbtxt                      the TFMD schema of the clip records

The graph: list the splits' videos (reader of `dataset.name`, pipelines/datasets; fanned out
over workers by pipelines/listing) -> key each
video by its shard, crc32(video id) mod N, and group the Video references (path, id, label: never
frames or records) by shard -> the worker that owns a shard decodes its videos in video id order
(streaming PyAV), cuts their clips (pipelines/clip_sampling), encodes them and writes them straight
into the shard file. N is `dataset.num_shards`, or ceil(listed videos / videos_per_shard), so the
same input and config give byte-identical shards under any runner and worker count. Records never
pass through Beam's shuffle and are never copied: a worker's memory holds one clip at a time and
no worker reads back another's bytes. The unit of work is a shard (videos_per_shard videos, 8 by
default: 70-110 MB shards), so Kinetics-600's ~500k videos make ~62k units; a run with fewer
shards than workers leaves workers idle (set `dataset.num_shards` higher). Dead letters: pipelines/dead_letters.

Temporary disk (`prepare_steps.shard_target`): no byte of the output is ever stored twice.
  - On an object store (gs://, s3://) a shard is written under its final name: an object appears
    atomically when its upload completes, so a worker that dies mid-shard leaves no object, a
    retry uploads it whole again, and there is no rename, which on GCS would be a copy plus a
    delete of the whole shard. Temporary objects in the bucket: none. (TensorFlow's GCS client
    stages the object being uploaded on the worker's local disk: one shard per worker.)
  - On a local or POSIX file system a shard is written under a temporary name beside it and
    renamed when complete (a rename there is free and atomic): the shards being written are the
    only temporary files, one per busy worker, so the peak temporary disk is about
    workers x (output / N): 1/N of the output per worker, e.g. 0.03 with one worker at 1,000
    videos (32 shards) but 0.25 at 108 videos (4 shards). These bytes are the output being
    written, not a copy: the peak of all bytes on disk never exceeds the finished output.
  bench/bench_prepare.py measures both.

Command line (any Beam pipeline flag passes through):
  python -m pipelines.prepare --config=ucf101_b --config.dataset.root=/data/ucf101 --out_dir=/data/out
  ... --direct_running_mode=multi_processing --direct_num_workers=4           (local, N processes)
  ... --runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp \
      --setup_file=./setup.py --out_dir=gs://B/out --config.dataset.root=gs://B/ucf101
"""
import json
import logging
import os
import sys
import time

import apache_beam as beam
import ml_collections
import tensorflow as tf
from absl import flags

from magvit import cli, remote
from pipelines import beam_options, dead_letters, gfile_filesystem, listing  # noqa: F401  (ram://)
from pipelines.atomic_files import atomic_path  # noqa: F401  (re-exported)
from pipelines.datasets import common
from pipelines.prepare_layout import (  # noqa: F401  (the job's public names, importable here)
    IMAGE_FORMATS, check_config, clear_outputs, failures_path, remove_work_dir,
    resolve_config, shard_count, shard_of, shard_path, split_dir, work_dir)
from pipelines.prepare_report import check_clips_written, summary, write_stats  # noqa: F401
from pipelines.prepare_steps import (  # noqa: F401
    COUNTS, FAILURES, ListVideos, WriteShard)
from tfrecords_schemas import clip as clip_schema
from tfrecords_schemas.common import write_schema


# ----------------------------------------------------------------------------------------- graph
def build_pipeline(pipeline: beam.Pipeline, config, dataset_dir: str) -> None:
    splits = common.split_names(config)
    split_names = pipeline | "SplitNames" >> beam.Create(splits)
    listed = listing.list_videos(pipeline, config)   # on workers, fanned out where it can be
    num_shards = beam.pvalue.AsDict(
        listed.videos
        | "SplitOfVideo" >> beam.Map(lambda video: (video.split, 1))
        | "VideosPerSplit" >> beam.CombinePerKey(sum)
        | "ShardCount" >> beam.Map(lambda kv: (kv[0], shard_count(config, kv[1]))))
    # Videos -> shards: a video's shard is crc32(its id) mod N, and every shard index gets a
    # key, so empty shards are written too. Only the small Video references are grouped.
    shard_keys = split_names | "ShardKeys" >> beam.FlatMap(
        lambda split, n: [((split, i), None) for i in range(n.get(split, 1))], num_shards)
    keyed_videos = listed.videos | "KeyByShard" >> beam.Map(
        lambda video, n: (shard_of(video.split, video.video_id, n), video), num_shards)
    made = ({"keys": shard_keys, "videos": keyed_videos}
            | "GroupShards" >> beam.CoGroupByKey()
            | "WriteShards" >> beam.ParDo(WriteShard(config, dataset_dir), num_shards).with_outputs(
                FAILURES, COUNTS, main="shards"))
    # Dead letters: sorted files per split, written by the workers (pipelines/dead_letters).
    failures = (listed[FAILURES], made[FAILURES]) | "AllFailures" >> beam.Flatten()
    failure_files = beam.pvalue.AsDict(
        failures
        | "FailureLines" >> beam.Map(lambda f: (f.split, f.to_json()))
        | "WriteFailures" >> dead_letters.WriteDeadLetters(
            {split: split_dir(dataset_dir, split) for split in splits}))
    # stats.json
    counts = (
        (listed.videos | "CountListed" >> beam.Map(lambda v: ((v.split, "files_listed"), 1)),
         failures | "CountFailures" >> beam.Map(lambda f: ((f.split, "failures_by_reason", f.reason), 1)),
         made[COUNTS])
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombinePerKey(sum)
        | "CountsDict" >> beam.combiners.ToDict())
    _ = counts | "WriteStats" >> beam.Map(write_stats, dataset_dir, config.to_dict(), splits,
                                          num_shards, failure_files)


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
    for split in common.split_names(config):   # what abandoned (retried) attempts left
        for path in tf.io.gfile.glob(os.path.join(split_dir(dataset_dir, split), "*.tmp-*")):
            tf.io.gfile.remove(path)
    stats = json.loads(common.read_text(os.path.join(dataset_dir, "stats.json")))
    stats["elapsed_s"] = round(time.time() - started, 3)
    logging.info("%s", summary(stats))
    check_clips_written(stats, common.split_names(config))   # training would wait forever
    return stats


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
    # Run the imported module, not this `__main__` copy: the DoFns that
    # workers unpickle must name `pipelines.prepare`, which every worker process can import.
    from pipelines import prepare as _importable
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(_importable.main())
