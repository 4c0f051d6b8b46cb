"""Suite-wide: one JAX persistent compilation cache per pytest run.

Many tests (and the CLIs they start as subprocesses) compile the same tiny programs: the demo
tokenizer's train step, its encoder and decoder, the transformer's step, I3D. With a cache
directory shared through the environment, each program compiles once per run instead of once per
process. It is a fresh temporary directory, removed at the end, so no run sees another's programs.
The test workers (pytest-xdist, pytest.ini) inherit the directory of the run that started them.
"""
import os
import shutil
import tempfile

import jax

_INHERITED = os.environ.get("MAGVIT_TEST_JAX_CACHE")
_CACHE = _INHERITED or tempfile.mkdtemp(prefix="magvit-test-jax-cache-")
os.environ["MAGVIT_TEST_JAX_CACHE"] = _CACHE
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE   # inherited by subprocesses and test workers
jax.config.update("jax_compilation_cache_dir", _CACHE)


def pytest_unconfigure(config):  # pylint: disable=unused-argument
    if not _INHERITED:
        shutil.rmtree(_CACHE, ignore_errors=True)
