"""bench/timing.py: the best wall time of a step and the host page faults it caused."""
import importlib.util
import mmap
import os
import time

_spec = importlib.util.spec_from_file_location(
    "timing", os.path.join(os.path.dirname(__file__), "..", "bench", "timing.py"))
timing = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(timing)


def test_best_time_is_the_fastest_timed_call_after_the_warm_up():
    sleeps = iter([0.01, 0.3, 0.02, 0.2])        # the first (0.01 s) is the warm-up
    result = timing.time_calls(lambda: time.sleep(next(sleeps)), iters=3)
    assert 0.02 <= result.seconds < 0.15


def test_page_faults_count_fresh_memory_touched_per_call():
    size = 64 * 2 ** 20

    def touch_fresh_memory():
        with mmap.mmap(-1, size) as block:        # new anonymous pages every call
            for offset in range(0, size, 4096):
                block[offset] = 1

    touching = timing.time_calls(touch_fresh_memory, iters=2)
    idle = timing.time_calls(lambda: None, iters=2)
    # at least one fault per 2 MiB huge page (at most one per 4 KiB page) in every call
    assert touching.page_faults >= size / 2 ** 21
    assert touching.page_faults > 10 * max(idle.page_faults, 1)
    assert touching.system_seconds >= 0.0 and idle.system_seconds >= 0.0
