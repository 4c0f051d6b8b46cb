"""The evaluation job's steps (Beam DoFns and CombineFns): key clip records (`_KeyRecord`) and
decode their frames (`_DecodeFrames`), the key-only pairing join (`key_only`, `one_each`,
`if_paired`), I3D features per batch (`_I3DFeatures`) and their streaming statistics
(`_StatsCombineFn`), the paired scores of a real / generated pair, decoded there
(`_PairedScores`), and their means (`_MeanPairsCombineFn`). In a module of their own, which every
Beam worker can import; the graph is `pipelines.evaluate`.
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


SHUFFLED_BYTES = "shuffled_bytes"   # Beam counter: bytes this job sends into its joins


def _dead_letter(filename: str, side: str, error: Exception) -> beam.pvalue.TaggedOutput:
    return beam.pvalue.TaggedOutput(DEAD_LETTER, json.dumps({
        "path": filename, "stage": f"evaluate/{side}",
        "reason": "bad_clip_record", "detail": f"{type(error).__name__}: {error}"[:1000]}))


def _decode(serialized: bytes) -> np.ndarray:
    return clip_schema.parse_clip(serialized)["frames"].numpy()


class _KeyRecord(beam.DoFn):
    """(filename, serialized clip) -> (clip key `video_id@clip_start`, (filename, serialized)),
    frames left encoded; records of another schema -> dead letters."""

    def __init__(self, side: str):
        self._side = side

    def process(self, element):
        filename, serialized = element
        try:
            feature = clip_schema.check_clip(serialized).features.feature
            key = (f"{feature['video_id'].bytes_list.value[0].decode()}"
                   f"@{int(feature['clip_start'].int64_list.value[0])}")
        except (ValueError, tf.errors.OpError) as e:
            yield _dead_letter(filename, self._side, e)
            return
        yield key, (filename, serialized)


class _DecodeFrames(beam.DoFn):
    """(key, (filename, serialized clip)) -> uint8 frames [T, H, W, 3]; undecodable -> dead letters."""

    def __init__(self, side: str):
        self._side = side

    def process(self, element):
        _, (filename, serialized) = element
        beam.metrics.Metrics.counter("evaluate", f"decoded_{self._side}").inc()
        try:
            yield _decode(serialized)
        except (ValueError, tf.errors.OpError) as e:
            yield _dead_letter(filename, self._side, e)


def key_only(element, counter_name: str = SHUFFLED_BYTES):
    """(key, record) -> (key, None): what the pairing join of keys shuffles."""
    key = element[0]
    beam.metrics.Metrics.counter("evaluate", counter_name).inc(len(key.encode()))
    return key, None


def one_each(element):
    """(key, {"real": [...], "generated": [...]}) -> (key, True) when the key pairs one real with
    one generated clip (a key seen twice on a side pairs nothing)."""
    key, grouped = element
    if len(grouped["real"]) == 1 and len(grouped["generated"]) == 1:
        yield key, True


def if_paired(element, paired: dict):
    """Passes the (key, (filename, serialized)) records of paired keys, counting their bytes."""
    key, (filename, serialized) = element
    if key in paired:
        beam.metrics.Metrics.counter("evaluate", SHUFFLED_BYTES).inc(
            len(key.encode()) + len(filename.encode()) + len(serialized))
        yield element


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

    def __init__(self, lpips_weights: str, task: str = "", condition_frames: int = 1,
                 report_real: bool = False):
        self._lpips_weights = lpips_weights
        self._task_name, self._condition_frames = task, condition_frames
        self._report_real = report_real
        self._lpips = self._task = None

    def setup(self):
        if self._lpips_weights:
            self._lpips = lpips.LPIPS.from_file(self._lpips_weights)
        if self._task_name:
            self._task = tasks.get_task(self._task_name, self._condition_frames)

    def process(self, element):
        """Records of one pair, decoded here. A record that does not decode is a dead letter of
        the FVD step that decodes its side; the real side's here when its statistics are cached
        (`report_real`), as then nothing else decodes it."""
        _, grouped = element
        if len(grouped["real"]) != 1 or len(grouped["generated"]) != 1:
            return
        (real_file, real_record), (_, generated_record) = grouped["real"][0], grouped["generated"][0]
        try:
            real = _decode(real_record)
        except (ValueError, tf.errors.OpError) as e:
            if self._report_real:
                yield _dead_letter(real_file, "real", e)
            return
        try:
            generated = _decode(generated_record)
        except (ValueError, tf.errors.OpError):
            return
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
