"""magvit.host_memory: a CPU training step whose temporaries stay one block over 32 MiB reuses
that block step after step (no page faults once the heap has grown) when programs run on the
calling thread, as the trainers set up; a user's environment wins over both settings. Each case
runs in a fresh process, since the dispatch setting is read when JAX creates its CPU client."""
import json
import os
import platform
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")
pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc")

# A step over a 3072 x 3072 float32 array (36 MiB): cumulative sums keep 38 MiB of temporaries
# in one block (its largest buffer is over 32 MiB, so compile_step does not split it).
_STEP = """
import json, resource
from magvit import host_memory, xla_cpu
on_calling_thread = host_memory.dispatch_on_calling_thread()
import jax.numpy as jnp

def step(x):
    a = jnp.sin(x)
    return x + 1e-3 * jnp.cumsum(jnp.cumsum(a, axis=0)[::-1] * a, axis=1)

program = xla_cpu.jit_step(step)
x = jnp.ones((3072, 3072), jnp.float32)
compiled, split = program.compile(x)
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = program(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(dict(on_calling_thread=on_calling_thread, split=split,
                      kept=host_memory.keep_freed_memory(), faults=faults,
                      temp=compiled.memory_analysis().temp_size_in_bytes)))
"""


def run_step(script=_STEP, **env_vars) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GLIBC_TUNABLES", "JAX_CPU_ENABLE_ASYNC_DISPATCH", "XLA_FLAGS")}
    env.update(env_vars, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


PAGES_OF_THE_BLOCK = (36 << 20) // 4096


def test_large_step_reuses_its_temporaries_without_page_faults():
    ran = run_step()
    assert ran["on_calling_thread"] and ran["kept"] and not ran["split"]
    assert ran["temp"] > 32 << 20
    assert max(ran["faults"][-2:]) <= 64, ran["faults"]    # the heap's pages come back mapped


# The trainers' loop: a fresh numpy batch each step through train_utils.shard_batch, and no wait
# between steps. JAX copies a 20 MB batch in on a pool thread; a step called before that copy is
# done would be queued to a pool thread (whose arena maps the block afresh), and so would every
# step after it, since each waits for the one before.
_TRAINING_LOOP = """
import json, resource
import numpy as np
from magvit import host_memory, train_utils, xla_cpu
host_memory.dispatch_on_calling_thread()
import jax.numpy as jnp

def step(x, batch):
    a = jnp.sin(x) + jnp.mean(batch["frames"].astype(jnp.float32))
    return x + 1e-3 * jnp.cumsum(jnp.cumsum(a, axis=0)[::-1] * a, axis=1)

mesh, rng = train_utils.make_mesh(), np.random.default_rng(0)
program = xla_cpu.jit_step(step)
x = jnp.ones((3072, 3072), jnp.float32)
# one byte off the allocation's alignment, so that JAX copies the batch (it may alias an
# aligned numpy array instead)
frames = lambda: rng.integers(0, 255, (1, 20_000_001), dtype=np.uint8)[:, 1:]
program.compile(x, {"frames": frames()})
for i in range(10):
    if i == 4:          # the heap has grown: count from here, batches and the last wait included
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = program(x, train_utils.shard_batch({"frames": frames()}, mesh))
x.block_until_ready()
print(json.dumps(dict(faults=resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)))
"""


def test_training_loop_steps_run_on_the_calling_thread_with_batches_copied_in_first():
    # Over the 6 counted steps a step queued to a pool thread maps the 36 MiB block afresh (all
    # of them did without inputs_ready: 185,000-205,000 faults); on the calling thread, at most
    # a heap growth now and then, while batches and blocks settle in the arena (0-10,315).
    assert run_step(_TRAINING_LOOP)["faults"] < 2 * PAGES_OF_THE_BLOCK


def test_queued_dispatch_the_users_setting_maps_the_block_afresh_each_step():
    ran = run_step(JAX_CPU_ENABLE_ASYNC_DISPATCH="true")
    assert not ran["on_calling_thread"] and not ran["kept"]
    assert min(ran["faults"][-2:]) >= PAGES_OF_THE_BLOCK, ran["faults"]


def test_users_malloc_tunables_win():
    ran = run_step(GLIBC_TUNABLES="glibc.malloc.mmap_threshold=33554432")
    assert ran["on_calling_thread"] and not ran["kept"]
    assert min(ran["faults"][-2:]) >= PAGES_OF_THE_BLOCK, ran["faults"]


_BIG_BLOCK = """
import ctypes, json, resource
from magvit import host_memory
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
kept = host_memory.dispatch_on_calling_thread() and host_memory.keep_freed_memory()
SIZE = (2 << 30) + (256 << 20)         # over 2 GiB, as the bair_b tokenizer step's 2.7 GiB
faults = []
for _ in range(2):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(SIZE)
    ctypes.memset(block, 1, SIZE)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(dict(kept=kept, faults=faults)))
"""


def test_a_freed_block_over_2_gib_comes_back_without_page_faults():
    """M_TRIM_THRESHOLD is -1, never: its largest int (2 GiB) would trim such a block."""
    ran = run_step(_BIG_BLOCK)
    assert ran["kept"]
    assert ran["faults"][0] >= (2 << 30) // 4096 // 2, ran["faults"]  # the heap grows once
    assert ran["faults"][1] <= 64, ran["faults"]
