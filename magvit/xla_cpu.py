"""`jit`: jax.jit with the compiler options this project compiles its programs with on a CPU.

On a CPU, jaxlib 0.10's XLA hands dots and the ops around them to YNNPACK ("library fusions").
For these models XLA's own kernels (Eigen dots and XLA's loop fusions) run faster, most of all
for the tokenizer's convolutions (bench/bench_train.py, 2 cores, float32, step seconds with
YNNPACK fusions -> without, both compiled in one process):

  bair_b tokenizer train 11.25 -> 9.32, encode 1.15 -> 0.88, decode 2.34 -> 1.86
  tiny tokenizer encode 0.054 -> 0.032, decode 0.114 -> 0.077 (batch 8), train 0.059 -> 0.056
  tiny transformer train 0.120 -> 0.107 (batch 8); bair_b transformer train 6.99 -> 7.15 (noise)

So on a CPU backend `jit` compiles with `xla_cpu_experimental_ynn_fusion_type=""` (no YNNPACK
fusion), unless XLA_FLAGS names that option itself: the user's setting then wins. On other
backends it is plain jax.jit. Results differ from YNNPACK's only by float summation order.
"""
import os

import jax

YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"


def compiler_options() -> dict | None:
    """The options `jit` passes to XLA on this process's default backend (None: XLA's own)."""
    if jax.default_backend() != "cpu" or YNN_OPTION in os.environ.get("XLA_FLAGS", ""):
        return None
    return {YNN_OPTION: ""}


def jit(fn, **kwargs):
    """jax.jit(fn, **kwargs) compiled with `compiler_options()`."""
    return jax.jit(fn, compiler_options=compiler_options(), **kwargs)
