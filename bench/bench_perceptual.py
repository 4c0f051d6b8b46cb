"""Cost of the tokenizer's perceptual loss on this machine: ResNet-50 logits of real and
reconstructed frames at 224x224 with the gradient into the reconstruction, per clip, in frames/s
and achieved FLOP/s (XLA's cost analysis). Timing only: the network has random weights (shapes of
the Keras ImageNet file), so the loss values mean nothing.

    PYTHONPATH=. python bench/bench_perceptual.py [--clips=1] [--frames=16] [--size=64] [--iters=2]
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from magvit.metrics import resnet50
from magvit.tokenizer import perceptual


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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=1)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="clip height = width")
    parser.add_argument("--resolution", type=int, default=resnet50.IMAGE_SIZE)
    parser.add_argument("--iters", type=int, default=2)
    args = parser.parse_args()
    variables = jax.device_put(random_variables())
    shape = (args.clips, args.frames, args.size, args.size, 3)
    real = jax.random.uniform(jax.random.PRNGKey(0), shape)
    fake = jax.random.uniform(jax.random.PRNGKey(1), shape)
    loss_and_grad = jax.jit(jax.value_and_grad(
        lambda v, r, f: perceptual.perceptual_loss(v, r, f, args.resolution), argnums=2))
    start = time.perf_counter()
    compiled = loss_and_grad.lower(variables, real, fake).compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    jax.block_until_ready(compiled(variables, real, fake))
    start = time.perf_counter()
    for _ in range(args.iters):
        out = compiled(variables, real, fake)
    jax.block_until_ready(out)
    seconds = (time.perf_counter() - start) / args.iters
    frames = args.clips * args.frames
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}")
    print(f"perceptual loss + grad, {args.clips} clip(s) of {args.frames}x{args.size}x{args.size} "
          f"-> {args.resolution}x{args.resolution}: compile {compile_s:.1f} s, "
          f"{seconds * 1e3:.0f} ms/step, {frames / seconds:.1f} frames/s, "
          f"{float(cost.get('flops', 0.0)) / seconds / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
