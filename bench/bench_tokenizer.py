"""Tokenizer throughput on this machine: encode / decode clips/s and training steps/s of a paper
config (default bair_b: 16x64x64 clips -> 4x16x16 tokens), with achieved FLOP/s (XLA's cost
analysis of each compiled function) as a fraction of the measured float32 matmul FLOP/s.

    PYTHONPATH=. python bench/bench_tokenizer.py [--config=bair_b] [--batch=1] [--iters=2] [--gan]
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from magvit import train_utils
from magvit.configs import get_config
from magvit.tokenizer.model import VQModel
from magvit.tokenizer.train_step import Models, to_unit, train_step


def _time(fn, *args, iters):
    jax.block_until_ready(fn(*args))            # compile + warm-up
    start = time.perf_counter()
    for _ in range(iters):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / iters


def _flops(fn, *args) -> float:
    cost = fn.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0))


def matmul_flops_per_sec(n: int = 2048, iters: int = 5) -> float:
    a = jnp.ones((n, n), jnp.float32)
    mm = jax.jit(lambda x: x @ x)
    return 2 * n ** 3 / _time(mm, a, iters=iters)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="bair_b")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--gan", action="store_true", help="time the GAN train step")
    args = parser.parse_args()
    config = get_config(args.config).tokenizer
    clip = tuple(config.clip_shape)
    peak = matmul_flops_per_sec()
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}; "
          f"matmul {peak / 1e9:.1f} GFLOP/s (float32)")
    models = Models(config)
    state = models.init(jax.random.PRNGKey(0))
    print(f"{args.config}: clips {clip}, tokenizer {train_utils.param_count(state.params) / 1e6:.1f}M"
          f" params, discriminator {train_utils.param_count(state.disc_params) / 1e6:.1f}M")
    video = np.random.RandomState(0).randint(0, 256, (args.batch, *clip, 3)).astype(np.uint8)
    model = VQModel(config.model)
    encode = jax.jit(lambda p, v: model.apply({"params": p}, to_unit(v), method=VQModel.encode)[1])
    decode = jax.jit(lambda p, ids: model.apply({"params": p}, ids, method=VQModel.decode_ids))
    ids = encode(state.params, video)
    step = jax.jit(lambda s, b: train_step(models, s, b, gan=args.gan))
    rows = [("encode", encode, (state.params, video), "clips/s", args.batch),
            ("decode", decode, (state.params, ids), "clips/s", args.batch),
            (f"train step (gan={args.gan})", step, (state, {"frames": video}), "steps/s", 1)]
    for name, fn, fargs, unit, per_call in rows:
        seconds = _time(fn, *fargs, iters=args.iters)
        flops = _flops(fn, *fargs)
        print(f"{name:24s} batch {args.batch}: {per_call / seconds:8.3f} {unit}  "
              f"{flops / seconds / 1e9:7.1f} GFLOP/s = {flops / seconds / peak:5.1%} of matmul")


if __name__ == "__main__":
    main()
