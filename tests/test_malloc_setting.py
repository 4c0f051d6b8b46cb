"""README's GLIBC_TUNABLES setting for large CPU steps: a block larger than a thread's malloc
arena, freed and allocated again by a new thread (as XLA does with a program's temporary buffer
every step), comes back without page faults, where glibc's defaults map it afresh."""
import os
import platform
import re
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")

_PROBE = """
import ctypes, resource, threading
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
SIZE = 512 << 20                       # well above a thread arena's 64 MiB heap

def step():
    block = libc.malloc(SIZE)
    ctypes.memset(block, 1, SIZE)
    libc.free(block)

def faults_of_a_step():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    thread = threading.Thread(target=step)
    thread.start()
    thread.join()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults_of_a_step()                     # the first step grows the heap
print(faults_of_a_step())
"""


def readme_tunables() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        return re.search(r"^GLIBC_TUNABLES=(\S+)$", f.read(), re.M).group(1)


def faults_of_second_step(tunables: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if tunables is not None:
        env["GLIBC_TUNABLES"] = tunables
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="glibc tunables")
def test_readme_setting_reuses_freed_memory_without_page_faults():
    tunables = readme_tunables()
    assert "arena_max=1" in tunables and "mmap_max=0" in tunables
    default = faults_of_second_step(None)
    tuned = faults_of_second_step(tunables)
    assert default >= 256                 # one per 2 MiB page at least: mapped afresh
    assert tuned <= 64, (tuned, default)  # the heap's pages come back mapped
