"""`jit` and `jit_step`: jax.jit with the compiler options this project's programs use on a CPU.

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

`jit_step` is `jit` for a training step, a program called thousands of times. XLA on a CPU
mallocs a program's temporaries as one block when the program starts and frees it when it ends.
glibc maps a block over 32 MiB afresh each time, so every step faults its pages in again (the
tiny transformer step at batch 8: 106 MiB, 28,000 page faults and 0.07 s of kernel time a step).
A step whose temporaries exceed 32 MiB is compiled a second time with them split into heaps of
at most HEAP_BYTES, or of its largest buffer's size when that is larger
(`xla_multiheap_size_constraint_per_heap`), which glibc serves from its arenas, and the split
build is kept when it needs at most 10% more temporary memory. (With 12 MiB heaps, XLA wrote a
warning for each buffer larger than a heap, 165 lines for the tiny tokenizer step's 14-15 MiB
buffers; with 15.2 MiB heaps it takes as long and as much memory, and writes none.) For that
tiny step (107 MiB split), 200 steps in a loop: 86-119 ms a step and 3,000-12,500 faults,
against 115-144 ms and 28,000 (bench/bench_train.py's `faults` column shows the build in use).
Large models keep the single block: split, bair_b's tokenizer and transformer steps would grow
their 2.7 and 2.3 GiB of temporaries to 6.9 and 7.5 GiB, because a buffer larger than a heap
gets a heap of its own (with 29 MiB heaps: 4.8 and 5.6 GiB, and the steps slowed from 10.4 /
8.6 s to 16.2 / 15.4 s). Their block is kept from step to step by
`host_memory.keep_freed_memory`, which `compile_step` calls for them.
A step with a buffer over 32 MiB (bair_b's: up to 102 and 48 MiB) is not compiled a second time
at all: that buffer's heap would still be mapped afresh each step, and it could share its heap
with nothing. (The second build cost their first step 11-15 s of compiling and wrote 96,752
lines of XLA warnings, one per buffer larger than a heap.) The largest buffer is read from the
compiled program's HLO text (`largest_buffer_bytes`).
Splitting changes where buffers live, not what is computed.
"""
import os
import re
import warnings

import jax

from magvit import host_memory

YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
HEAP_OPTION = "xla_multiheap_size_constraint_per_heap"
MMAP_MAX_BYTES = 32 << 20   # glibc's largest mmap threshold (64-bit): larger blocks are mapped
HEAP_BYTES = 12 << 20
MAX_HEAP_GROWTH = 1.1      # the split build's temporaries, at most, relative to the single block


def _named_in_xla_flags(option: str) -> bool:
    return option in os.environ.get("XLA_FLAGS", "")


def compiler_options() -> dict | None:
    """The options `jit` passes to XLA on this process's default backend (None: XLA's own)."""
    if jax.default_backend() != "cpu" or _named_in_xla_flags(YNN_OPTION):
        return None
    return {YNN_OPTION: ""}


def jit(fn, **kwargs):
    """jax.jit(fn, **kwargs) compiled with `compiler_options()`."""
    return jax.jit(fn, compiler_options=compiler_options(), **kwargs)


def compile_step(lowered: jax.stages.Lowered) -> tuple[jax.stages.Compiled, bool]:
    """Compiles a lowered training step; True beside it when its temporaries are split into heaps
    of HEAP_BYTES or of its largest buffer: on a CPU, when they exceed MMAP_MAX_BYTES, no buffer
    does, and the split costs at most 10% more. A CPU step that keeps more than MMAP_MAX_BYTES
    of temporaries in one block has malloc keep freed memory (`host_memory.keep_freed_memory`)."""
    compiled = lowered.compile()
    if (jax.default_backend() != "cpu" or _named_in_xla_flags(HEAP_OPTION)
            or _temp_bytes(compiled) <= MMAP_MAX_BYTES):
        return compiled, False
    largest = largest_buffer_bytes(compiled.as_text())
    if largest > MMAP_MAX_BYTES:
        host_memory.keep_freed_memory()
        return compiled, False
    with warnings.catch_warnings():
        # XLA cannot serialize a program with several temporary blocks, so JAX's persistent
        # compilation cache (when a user turns it on) skips this build, and says so each time.
        warnings.filterwarnings("ignore", "Error writing persistent compilation cache entry")
        split = lowered.compile({HEAP_OPTION: max(HEAP_BYTES, largest)})
    if _temp_bytes(split) <= MAX_HEAP_GROWTH * _temp_bytes(compiled):
        return split, True
    host_memory.keep_freed_memory()
    return compiled, False


def _temp_bytes(compiled) -> int:
    return compiled.memory_analysis().temp_size_in_bytes


_ELEMENT_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4,
                  "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
_COMPUTATION = re.compile(r"^(?:ENTRY )?%([\w.\-]+) ")
_INSTRUCTION = re.compile(r"^\s+(?:ROOT )?%[\w.\-]+ = (.*?) ([a-z][\w\-]*)\(")
_ARRAY = re.compile(r"\b([a-z]\w*)\[([\d,]*)\]")
_INLINED = re.compile(r"\b(?:calls|to_apply)=%([\w.\-]+)")
_NO_BUFFER = {"parameter", "get-tuple-element", "bitcast", "tuple", "constant"}


def largest_buffer_bytes(hlo_text: str) -> int:
    """Bytes of the largest array an optimized HLO module (`Compiled.as_text()`) materialises:
    the outputs of the instructions of its entry and loop computations, not of the computations
    fused or applied inside an instruction (`calls=`, `to_apply=`), nor arguments and aliases."""
    inlined = set(_INLINED.findall(hlo_text))
    largest, computation = 0, None
    for line in hlo_text.splitlines():
        header = _COMPUTATION.match(line)
        if header:
            computation = header.group(1)
            continue
        instruction = _INSTRUCTION.match(line)
        if (computation is None or computation in inlined or not instruction
                or instruction.group(2) in _NO_BUFFER):
            continue
        for dtype, dims in _ARRAY.findall(instruction.group(1)):
            size = _ELEMENT_BYTES.get(dtype, 1)
            for dim in filter(None, dims.split(",")):
                size *= int(dim)
            largest = max(largest, size)
    return largest


def jit_step(fn, **kwargs) -> "StepProgram":
    """`jit(fn, **kwargs)` for a training step: each input signature compiled by `compile_step`."""
    return StepProgram(fn, **kwargs)


class StepProgram:
    """A jitted training step. `.lower(*args)` is the jitted function's; `.compile(*args)` gives
    (and keeps) the program that calls with such arguments run, and whether it splits its
    temporaries (`compile_step`)."""

    def __init__(self, fn, **kwargs):
        self.__wrapped__ = fn
        self._jitted = jit(fn, **kwargs)
        self._programs = {}

    def lower(self, *args):
        return self._jitted.lower(*args)

    def compile(self, *args) -> tuple[jax.stages.Compiled, bool]:
        key = _signature(args)
        if key not in self._programs:
            self._programs[key] = compile_step(self._jitted.lower(*args))
        return self._programs[key]

    def __call__(self, *args):
        return self.compile(*args)[0](*args)


def _signature(args) -> tuple:
    leaves, tree = jax.tree.flatten(args)
    return tree, tuple((jax.typeof(x), getattr(x, "sharding", None)) for x in leaves)
