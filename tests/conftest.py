"""Suite-wide: one JAX persistent compilation cache per pytest run.

Many tests (and the CLIs they start as subprocesses) compile the same tiny programs: the demo
tokenizer's train step, its encoder and decoder, the transformer's step, I3D. With a cache
directory shared through the environment, each program compiles once per run instead of once per
process. It is a fresh temporary directory, removed at the end, so no run sees another's programs.
"""
import os
import shutil
import tempfile

import jax

_CACHE = tempfile.mkdtemp(prefix="magvit-test-jax-cache-")
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE   # inherited by subprocesses
jax.config.update("jax_compilation_cache_dir", _CACHE)


def pytest_unconfigure(config):  # pylint: disable=unused-argument
    shutil.rmtree(_CACHE, ignore_errors=True)
