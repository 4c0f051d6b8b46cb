"""One line when a stage starts and one when it ends, so a pipeline run shows where it is."""
import contextlib
import sys
import time


@contextlib.contextmanager
def stage(name: str, what: str):
    print(f"[magvit] {name}: {what} ...", file=sys.stderr, flush=True)
    start = time.time()
    yield
    print(f"[magvit] {name}: done in {time.time() - start:.1f}s", file=sys.stderr, flush=True)
