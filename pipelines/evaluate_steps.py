"""The evaluation job's steps (Beam DoFns and CombineFns): parse clip records (`_ParseClip`),
I3D features per batch (`_I3DFeatures`) and their streaming statistics (`_StatsCombineFn`), the
paired scores of a real / generated pair (`_PairedScores`) and their means (`_MeanPairsCombineFn`).
In a module of their own, which every Beam worker can import; the graph is `pipelines.evaluate`.
"""
from __future__ import annotations

import json

import apache_beam as beam
import ml_collections
import numpy as np
import tensorflow as tf

from magvit.metrics import frechet, fvd, lpips, reconstruction
from magvit.transformer import tasks
from tfrecords_schemas import clip as clip_schema

DEAD_LETTER = "dead_letter"


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
