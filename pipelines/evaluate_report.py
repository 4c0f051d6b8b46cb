"""The evaluation job's report: metrics.json from the combined statistics (`_metrics`: FVD, paired
scores, LPIPS status, the baseline), the reference-statistics cache (`_write_reference`), the
up-front clip-length check (`check_clip_lengths`) and the one-screen summary (`_summary`).
"""
from __future__ import annotations

import json

import tensorflow as tf

from magvit.metrics import frechet, fvd
from tfrecords_schemas import clip as clip_schema

_LPIPS_OFF = ("not computed: no LPIPS weights given (--lpips_weights / eval.lpips_weights, an .npz "
              "made by `python -m magvit.metrics.lpips --convert`)")


def _lpips_report(paired: dict, lpips_id: str) -> dict:
    """metrics.json's `lpips` (mean over frames and pairs, or None) and `lpips_status`."""
    if not lpips_id:
        return {"lpips": None, "lpips_status": _LPIPS_OFF}
    if not paired["num_pairs"]:
        return {"lpips": None, "lpips_status": f"not computed: no paired reconstructions "
                                               f"(weights {lpips_id})"}
    return {"lpips": paired["lpips"], "lpips_status": f"computed with {lpips_id}"}


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
