"""FVD benchmark: I3D throughput at 16x224x224 and the memory of a 10k-video FVD's statistics.

    .venv/bin/python bench/bench_fvd.py [--videos 12] [--batch_size 4] [--fvd_videos 10000]

1. Videos per second through I3D (random weights: speed does not depend on their values), uint8
   16x64x64 clips preprocessed under the `magvit` protocol (64 -> 224 bilinear) and without
   preprocessing, after one warm-up batch.
2. Peak memory of the statistics of a 10k-video FVD (activations only): 400-d activations streamed
   batch by batch into `RunningStats` for both sides, then the Fréchet distance; measured with
   tracemalloc (numpy buffers included), next to what keeping all activations would take.
"""
import argparse
import os
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from magvit.metrics import frechet, fvd  # noqa: E402


def bench_i3d(num_videos: int, batch_size: int) -> None:
    evaluator = fvd.FVD(allow_random=True, batch_size=batch_size)
    clips = np.random.default_rng(0).integers(0, 256, (batch_size, 16, 64, 64, 3), np.uint8)
    inputs = fvd.preprocess(clips, evaluator.protocol)
    evaluator.model(inputs).numpy()  # warm-up: trace + oneDNN primitives
    batches = max(1, num_videos // batch_size)
    start = time.perf_counter()
    for _ in range(batches):
        evaluator.model(inputs).numpy()
    network = batches * batch_size / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(batches):
        evaluator.features(clips)
    end_to_end = batches * batch_size / (time.perf_counter() - start)
    print(f"I3D 16x224x224, batch {batch_size}, {batches * batch_size} videos, "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()} threads:")
    print(f"  network only:                       {network:7.2f} videos/s")
    print(f"  uint8 16x64x64 -> protocol -> I3D:  {end_to_end:7.2f} videos/s")


def bench_memory(num_videos: int, batch_size: int = 8, dim: int = 400) -> None:
    rng = np.random.default_rng(0)
    tracemalloc.start()
    real, generated = frechet.RunningStats(dim), frechet.RunningStats(dim)
    for start in range(0, num_videos, batch_size):
        n = min(batch_size, num_videos - start)
        real.update(rng.normal(size=(n, dim)))
        generated.update(rng.normal(size=(n, dim)) + 0.1)
    distance = frechet.frechet_distance_from_stats(real, generated)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    stored = 2 * num_videos * dim * 8
    print(f"FVD of {num_videos} vs {num_videos} videos (activations only, batch {batch_size}): "
          f"FVD {distance:.4f}")
    print(f"  streaming statistics peak memory:   {peak / 2**20:7.2f} MiB")
    print(f"  (all activations in float64 would be {stored / 2**20:.2f} MiB before covariances)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--fvd_videos", type=int, default=10_000)
    args = parser.parse_args()
    bench_i3d(args.videos, args.batch_size)
    bench_memory(args.fvd_videos)


if __name__ == "__main__":
    main()
