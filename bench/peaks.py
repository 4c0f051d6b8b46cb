"""Peak dense matmul FLOP/s of the device a benchmark runs on (the MFU denominator).

GPU / TPU: the vendor's dense (no sparsity) tensor-core figure per `jax.devices()[0]`, bfloat16 for
bfloat16 compute, TF32 for float32 on NVIDIA GPUs (XLA's default float32 matmul precision there);
TPUs run float32 matmuls as bfloat16 passes, so both use the bfloat16 figure. CPU (or an unknown
accelerator): the float32 / bfloat16 matmul rate measured in the same run.
"""
import jax
import jax.numpy as jnp
from timing import time_calls   # bench/timing.py, beside this module

from magvit import xla_cpu

# device_kind substring (lower case, most specific first) -> (bf16 dense, tf32 dense) FLOP/s,
# from the vendors' datasheets (SXM / per-chip figures; a TPU v2/v3 device is one core).
VENDOR_PEAKS = (
    ("gh200", (989e12, 494.7e12)),
    ("h200", (989e12, 494.7e12)),
    ("h100 pcie", (756e12, 378e12)),
    ("h100", (989e12, 494.7e12)),
    ("h800", (989e12, 494.7e12)),
    ("b200", (2250e12, 1100e12)),
    ("a100", (312e12, 156e12)),
    ("a800", (312e12, 156e12)),
    ("l40s", (362e12, 183e12)),
    ("l4", (121e12, 60e12)),
    ("a10", (125e12, 62.5e12)),
    ("tpu v6", (918e12, 918e12)),
    ("tpu v5 lite", (197e12, 197e12)),
    ("tpu v5e", (197e12, 197e12)),
    ("tpu v5", (459e12, 459e12)),
    ("tpu v4", (275e12, 275e12)),
    ("tpu v3", (61.5e12, 61.5e12)),
    ("tpu v2", (22.5e12, 22.5e12)),
)


def vendor_peak(device_kind: str, dtype) -> float | None:
    kind = device_kind.lower()
    for key, (bf16, tf32) in VENDOR_PEAKS:
        if key in kind:
            return bf16 if jnp.dtype(dtype) == jnp.bfloat16 else tf32
    return None


def measured_matmul_peak(dtype, n: int = 2048, iters: int = 5) -> float:
    """FLOP/s of an n x n x n matmul in `dtype` on the default device: the best of `iters` calls,
    compiled both with XLA's defaults and with the options the product compiles with
    (magvit/xla_cpu.py; on a CPU they pick other matmul kernels), so the rate is the best either
    reaches."""
    a = jnp.ones((n, n), dtype)
    best = float("inf")
    product = xla_cpu.compiler_options()
    for options in (None, product) if product else (None,):
        matmul = jax.jit(lambda x: x @ x, compiler_options=options)
        best = min(best, time_calls(lambda: matmul(a), iters).seconds)
    return 2 * n ** 3 / best


def device_peak(dtype) -> tuple[float | None, str]:
    """(vendor peak FLOP/s, its source) for compute in `dtype`; (None, how to measure it) on a
    CPU or an accelerator missing from the table: measure it beside each timing
    (`measured_matmul_peak`), since a shared machine's rate drifts."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        peak = vendor_peak(device.device_kind, dtype)
        if peak is not None:
            kind = "bf16" if jnp.dtype(dtype) == jnp.bfloat16 else "tf32"
            return peak, f"vendor dense {kind} peak of {device.device_kind}"
    return None, (f"{jnp.dtype(dtype).name} 2048^3 matmul measured right after each part "
                  "(best of 5; column 'matmul')")
