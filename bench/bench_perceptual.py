"""Cost of the two perceptual networks on this machine, in frames/s and achieved FLOP/s (XLA's
cost analysis):
  * the tokenizer's perceptual loss: ResNet-50 logits of real and reconstructed frames at 224x224
    with the gradient into the reconstruction, for `--clips` clips;
  * the evaluator's LPIPS (VGG16) distance of `--lpips_batch` frame pairs at the clip size.
Each is compiled as the project compiles it (`magvit.xla_cpu.jit`) and, on a CPU, also with XLA's
own defaults (YNNPACK fusions), timed in the same run (best of `--iters` calls after a
warm-up, bench/timing.py); the last column is default / ours.
Timing only: the networks have random weights, so the values mean nothing.

    PYTHONPATH=. python bench/bench_perceptual.py [--clips=1] [--frames=16] [--size=64] [--iters=2]
"""
import argparse
import sys
import time

import jax
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])    # bench/timing.py beside it  # local-only
from timing import compiled_flops, time_calls  # noqa: E402

from magvit import xla_cpu  # noqa: E402
from magvit.metrics import lpips, resnet50  # noqa: E402
from magvit.tokenizer import perceptual  # noqa: E402


def random_variables(seed: int = 0) -> dict:
    """Variables in the layout `load_keras_weights` returns, with He-normal kernels."""
    rng = np.random.default_rng(seed)
    variables = {"params": {}, "batch_stats": {}}
    for layer, (name_map, shapes) in resnet50.keras_layers().items():
        for weight, shape in shapes.items():
            collection, name = name_map[weight]
            if weight == "kernel":
                value = rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
            elif weight in ("gamma", "moving_variance"):
                value = np.ones(shape)
            else:
                value = np.zeros(shape)
            variables[collection].setdefault(layer, {})[name] = value.astype(np.float32)
    return variables


def time_program(jitted, args, iters: int) -> tuple[float, float, float]:
    """(compile s, best seconds per call, FLOPs per call) of `jitted` on `args`."""
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - start
    return compile_s, time_calls(lambda: compiled(*args), iters).seconds, compiled_flops(compiled)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=1)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="clip height = width")
    parser.add_argument("--resolution", type=int, default=resnet50.IMAGE_SIZE)
    parser.add_argument("--lpips_batch", type=int, default=16, help="LPIPS frame pairs per call "
                        "(the evaluator's default batch)")
    parser.add_argument("--iters", type=int, default=2, help="timed calls (best is printed)")
    args = parser.parse_args()
    shape = (args.clips, args.frames, args.size, args.size, 3)
    real = jax.random.uniform(jax.random.PRNGKey(0), shape)
    fake = jax.random.uniform(jax.random.PRNGKey(1), shape)
    pairs = (args.lpips_batch, args.size, args.size, 3)
    image_x = jax.random.uniform(jax.random.PRNGKey(2), pairs, minval=-1.0)
    image_y = jax.random.uniform(jax.random.PRNGKey(3), pairs, minval=-1.0)
    programs = [
        (f"perceptual loss + grad, {args.clips} clip(s) of {args.frames}x{args.size}x{args.size} "
         f"-> {args.resolution}x{args.resolution}",
         jax.value_and_grad(lambda v, r, f: perceptual.perceptual_loss(v, r, f, args.resolution),
                            argnums=2),
         (jax.device_put(random_variables()), real, fake), args.clips * args.frames),
        (f"LPIPS, {args.lpips_batch} frame pairs of {args.size}x{args.size}",
         lpips.LPIPSNetwork().apply,
         ({"params": lpips.to_flax_params(lpips.random_weights())}, image_x, image_y),
         args.lpips_batch),
    ]
    builds = [("ours", xla_cpu.jit)]
    if xla_cpu.compiler_options() is not None:
        builds.append(("XLA default", jax.jit))
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}")
    print(f"{'program':62s} {'build':12s} {'compile s':>9s} {'ms/call':>8s} {'frames/s':>9s} "
          f"{'GFLOP/s':>8s} {'default/ours':>12s}")
    for name, fn, fn_args, frames in programs:
        seconds = {}
        for build, jit in builds:
            compile_s, seconds[build], flops = time_program(jit(fn), fn_args, args.iters)
            ratio = f"{seconds[build] / seconds['ours']:12.2f}" if build != "ours" else ""
            print(f"{name:62s} {build:12s} {compile_s:9.1f} {seconds[build] * 1e3:8.0f} "
                  f"{frames / seconds[build]:9.1f} {flops / seconds[build] / 1e9:8.1f} {ratio}")


if __name__ == "__main__":
    main()
