"""Bytes the evaluation job shuffles per clip, with cached reference statistics.

Writes `--clips` real clips and, per case, as many generated ones:
  samples:          no generated clip shares a real clip's key (e.g. class-conditional samples);
  reconstructions:  every generated clip pairs with one real clip (tokenizer reconstructions).
Runs `pipelines.evaluate.run_evaluate` once to cache the real statistics (from the first
`--cache_clips` real clips: what the cache holds does not change what the later runs move, and a
random I3D on a shared CPU takes about a second per clip), then once per case with the cache over
all `--clips` real clips, and reads the job's Beam counters: `shuffled_bytes` (what the pairing joins get) and
`decoded_real` (real clips decoded; 0 with the cache when nothing pairs).
"before" is the old graph's figure, from its definition: every real and every generated clip
went into the pairing join as (key, decoded uint8 frames), cached statistics or not.
Prints a table: rows = case, columns = clips, wall time, shuffled bytes per clip before / after,
ratio. Random I3D weights (the bench measures data movement, not FVD).

  python bench/bench_evaluate.py [--clips 1000 --frames 16 --size 64 --cache_clips 16]
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from magvit.configs import get_config  # noqa: E402
from pipelines import evaluate  # noqa: E402
from tfrecords_schemas import clip as clip_schema  # noqa: E402


def write_clips(path: str, ids: list[str], frames: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with tf.io.TFRecordWriter(path) as writer:
        for video_id in ids:
            clip = clip_schema.Clip(
                frames=rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8), fps=8.0,
                label=0, label_name="x", video_id=video_id, clip_start=0, dataset="bench")
            writer.write(clip_schema.build_clip(clip).SerializeToString(deterministic=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--cache_clips", type=int, default=16)
    args = parser.parse_args()
    config = get_config("tiny").eval
    config.allow_random_i3d = True
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as root:  # local-only
        real_ids = [f"real{i:06d}" for i in range(args.clips)]
        real = os.path.join(root, "real.tfrecord")  # local-only
        write_clips(real, real_ids, args.frames, args.size, 0)
        config.reference_stats = os.path.join(root, "real_stats.npz")  # local-only
        cache_real = os.path.join(root, "cache_real.tfrecord")  # local-only
        write_clips(cache_real, real_ids[:args.cache_clips], args.frames, args.size, 0)
        evaluate.run_evaluate(cache_real, cache_real, config, os.path.join(root, "cache"))  # local-only
        frame_bytes = args.frames * args.size * args.size * 3
        for case, ids in [("samples", [f"sample{i:06d}" for i in range(args.clips)]),
                          ("reconstructions", real_ids)]:
            generated = os.path.join(root, f"{case}.tfrecord")  # local-only
            write_clips(generated, ids, args.frames, args.size, 1)
            counters = {}
            started = time.time()
            metrics = evaluate.run_evaluate(real, generated, config,
                                            os.path.join(root, case),  # local-only
                                            job_counters=counters)
            elapsed = time.time() - started
            assert metrics["reference_stats_cached"], "the cache was not used"
            key_bytes = np.mean([len(f"{i}@0") for i in real_ids + ids])
            before = key_bytes + frame_bytes   # per clip of either side, into the join
            after = counters.get("shuffled_bytes", 0) / (2 * args.clips)
            rows.append((case, args.clips, elapsed, before, after, after / before,
                         counters.get("decoded_real", 0), metrics["num_pairs"]))
    print(f"\nevaluate, cached reference stats, {args.frames}x{args.size}x{args.size} clips "
          f"(bytes per clip, real and generated together)")
    print(f"{'case':<16} {'clips':>6} {'time s':>8} {'before B':>10} {'after B':>10} "
          f"{'ratio':>8} {'real decoded for FVD':>21} {'pairs':>6}")
    for case, clips, elapsed, before, after, ratio, decoded, pairs in rows:
        print(f"{case:<16} {clips:>6} {elapsed:>8.1f} {before:>10.0f} {after:>10.0f} "
              f"{ratio:>8.4f} {decoded:>21} {pairs:>6}")


if __name__ == "__main__":
    main()
