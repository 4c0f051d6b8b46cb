"""A large training step on a CPU reuses its temporaries instead of faulting them in every step.

XLA on a CPU mallocs a program's temporaries as one block when the program starts and frees it
when the program ends. glibc gives a block over 32 MiB a mapping of its own and unmaps it when it
is freed, so every step of a large model faults its temporaries in afresh: the bair_b transformer
training step's 2.2 GiB took 0.5-0.8 million page faults and 1.5-4 s of kernel time a step on
2 cores, the bair_b tokenizer step's 2.7 GiB 0.7-0.8 million and 3.5-4.5 s. Two settings
together keep the block in the process from one step to the next:

- `dispatch_on_calling_thread()`: JAX's CPU client runs a single-device program on the thread
  that calls it (`jax_cpu_enable_async_dispatch` False), which then also allocates its
  temporaries. By default it hands the program to a pool thread, and a pool thread's malloc arena
  grows by heaps of at most 64 MiB, so glibc maps a larger block whatever its options say; the
  main thread's arena grows with brk and holds a block of any size. This must run before JAX
  creates its CPU client: the trainers', the pipeline's and bench_train.py's entry points call
  it first. Python then waits for each step before it fetches the next batch (tf.data still
  prepares batches on threads of its own); README command 1 was not slower for it (431 and
  426 s against 454 and 493 s, run in alternation on 2 cores). A program whose inputs are
  still being copied in is queued to a pool thread all the same, and so is every step after it
  (each waits for the one before): `inputs_ready` waits for a batch's copy first, and
  `train_utils.shard_batch` calls it.
- `keep_freed_memory()`: malloc options M_MMAP_MAX = 0 (large blocks come from the arena, not
  from mappings of their own) and M_TRIM_THRESHOLD -1 (freed memory is never handed
  back to the system). `xla_cpu.compile_step` calls it when a step compiled for the CPU keeps
  temporaries over 32 MiB as one block. From then on the process keeps its peak memory until it
  exits.

A user's own JAX_CPU_ENABLE_ASYNC_DISPATCH, or GLIBC_TUNABLES naming malloc options, wins
(JAX_CPU_ENABLE_ASYNC_DISPATCH=true gives JAX's queued dispatch and malloc's defaults back).
`keep_freed_memory` does nothing while programs are queued to pool threads, where it would keep
memory for no gain, nor outside glibc on Linux.
"""
import ctypes
import os
import platform

import jax

_ASYNC_OPTION = "jax_cpu_enable_async_dispatch"
ASYNC_DISPATCH_ENV = _ASYNC_OPTION.upper()
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4      # glibc's malloc.h
NEVER_TRIM = -1    # M_TRIM_THRESHOLD -1: never hand freed memory back (mallopt(3)); INT_MAX would
                   # trim a freed block over 2 GiB (bair_b tokenizer temporaries: 2.7 GiB)
_kept = False


def dispatch_on_calling_thread() -> bool:
    """Runs single-device CPU programs on the calling thread, unless the environment sets
    JAX_CPU_ENABLE_ASYNC_DISPATCH; True when programs will run so. Call it before the first
    JAX computation: the setting is read when JAX creates its CPU client."""
    if ASYNC_DISPATCH_ENV not in os.environ:
        jax.config.update(_ASYNC_OPTION, False)
    return _on_calling_thread()


def _on_calling_thread() -> bool:
    return not jax.config.read(_ASYNC_OPTION)


def inputs_ready(tree):
    """`tree` (jax.Arrays) once its host-to-device copies are done, when single-device CPU
    programs run on the calling thread; at once otherwise (an accelerator overlaps the copy with
    the step before). JAX copies a numpy array over 100 KB in on a pool thread, and a program
    called before the copy is done is queued to a pool thread instead of running on this one."""
    leaves = jax.tree.leaves(tree)
    if (leaves and _on_calling_thread()
            and all(d.platform == "cpu" for leaf in leaves for d in leaf.devices())):
        jax.block_until_ready(tree)
    return tree


def _glibc_malloc_tuned_by_user() -> bool:
    return "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")


def keep_freed_memory() -> bool:
    """Sets glibc's M_MMAP_MAX to 0 and M_TRIM_THRESHOLD to -1 (never), once per process, when
    programs run on the calling thread (`dispatch_on_calling_thread`), the C library is glibc
    and GLIBC_TUNABLES names no malloc option; True when the options are (now) set."""
    global _kept
    if not _kept and _applies():
        libc = ctypes.CDLL(None)
        _kept = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
    return _kept


def _applies() -> bool:
    return (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
            and not _glibc_malloc_tuned_by_user() and _on_calling_thread())
