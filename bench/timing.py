"""Step timing for the benchmarks: best wall time, and what the host kernel did per step."""
import dataclasses
import os
import resource
import time

import jax


@dataclasses.dataclass
class Timing:
    seconds: float         # best wall time of one call
    page_faults: float     # host page faults per call (mean over the timed calls)
    system_seconds: float  # host kernel CPU time per call (mean), e.g. mapping fresh pages


def time_calls(call, iters: int) -> Timing:
    """Times `iters` calls of `call()` after one warm-up. On a CPU, XLA allocates each program's
    temporary buffer when it starts and glibc maps it afresh: the page faults and system time
    show what that costs per step (README, Benchmarks)."""
    jax.block_until_ready(call())
    best = float("inf")
    faults, system = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, os.times().system
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(call())
        best = min(best, time.perf_counter() - start)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return Timing(best, faults / iters, (os.times().system - system) / iters)
