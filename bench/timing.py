"""Step timing for the benchmarks: best wall time, what the host kernel did per step, and the
FLOPs XLA's cost analysis gives a compiled program."""
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
    temporary buffer when it starts, and glibc maps a large one afresh unless malloc keeps it
    (magvit/host_memory.py): the page faults and system time show what that costs per step."""
    jax.block_until_ready(call())
    best = float("inf")
    faults, system = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, os.times().system
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(call())
        best = min(best, time.perf_counter() - start)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return Timing(best, faults / iters, (os.times().system - system) / iters)


def compiled_flops(compiled) -> float:
    """FLOPs per call of a compiled program, from XLA's cost analysis (0 when it has none)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", 0.0))
