"""The transformer's dropout against flax's nn.Dropout, on whatever backend JAX finds: the same
mask bit for bit (checked here), drawn by JAX's Threefry lowering (on a CPU, a while loop of 5
iterations that stores the whole state after each) or by magvit/random_bits.py's fused hash.

    PYTHONPATH=. python bench/bench_dropout.py [--shape=1,12,1025,1025] [--rate=0.1] [--iters=5]

The default shape is one bair_b transformer layer's attention weights (batch 1, 12 heads, 1025
positions), the largest dropout of a training step; per program: best wall time of `--iters`
calls after a warm-up (bench/timing.py), and flax's time / ours.
"""
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, __file__.rsplit("/", 1)[0])    # bench/timing.py beside it  # local-only
from timing import time_calls  # noqa: E402

from magvit import random_bits, xla_cpu  # noqa: E402
from magvit.transformer.model import Dropout  # noqa: E402

flags.DEFINE_list("shape", ["1", "12", "1025", "1025"], "Shape of the float32 input.")
flags.DEFINE_float("rate", 0.1, "Dropout rate.")
flags.DEFINE_integer("iters", 5, "Timed calls per program (after one warm-up).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    shape = tuple(int(d) for d in FLAGS.shape)
    n = int(np.prod(shape))
    x = jax.random.normal(jax.random.PRNGKey(1), shape)
    key = jax.random.PRNGKey(0)
    programs = {
        "random words: jax.random.bits": (
            xla_cpu.jit(lambda k: jax.random.bits(k, (n,), jnp.uint32)), (key,)),
        "random words: random_bits.uint32_bits": (
            xla_cpu.jit(lambda k: random_bits.uint32_bits(k, n)), (key,)),
        "dropout: flax nn.Dropout": (xla_cpu.jit(lambda x, k: nn.Dropout(FLAGS.rate).apply(
            {}, x, False, rngs={"dropout": k})), (x, key)),
        "dropout: magvit Dropout": (xla_cpu.jit(lambda x, k: Dropout(FLAGS.rate).apply(
            {}, x, False, rngs={"dropout": k})), (x, key)),
    }
    print(f"backend {jax.default_backend()}: {jax.devices()[0].device_kind}; shape {shape} "
          f"({n / 1e6:.2f} M elements), rate {FLAGS.rate}")
    outputs, seconds = {}, {}
    for name, (program, args) in programs.items():
        outputs[name] = np.asarray(program(*args))
        seconds[name] = time_calls(lambda: program(*args), FLAGS.iters).seconds
    names = list(programs)
    for jax_name, ours_name in (names[:2], names[2:]):
        same = np.array_equal(outputs[jax_name], outputs[ours_name])
        print(f"{jax_name:42s} {seconds[jax_name] * 1e3:9.2f} ms")
        print(f"{ours_name:42s} {seconds[ours_name] * 1e3:9.2f} ms   "
              f"{seconds[jax_name] / seconds[ours_name]:5.2f}x faster, "
              f"{'the same values' if same else 'DIFFERENT VALUES'}")
        if not same:
            raise SystemExit(f"{ours_name} differs from {jax_name}")


if __name__ == "__main__":
    app.run(main)
