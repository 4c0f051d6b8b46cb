"""Issue 17: bad input is refused up front (naming the file or flag), dead-lettered with a
documented reason, or recovered from; never silently wrong and never a hang.

One test per case of the issue, numbered as there. README's "Bad input" section lists them all.
"""
import json
import logging
import os

import numpy as np
import pytest

from magvit import checkpoints

pytestmark = pytest.mark.timeout(300)


# ------------------------------------------------------------------------ 6. damaged checkpoints
def _state(value: float) -> dict:
    rng = np.random.default_rng(int(value))
    return {"w": rng.normal(size=(96, 96)).astype(np.float32) + value,
            "b": np.full((7,), value, np.float32)}


def _biggest_file(directory: str) -> str:
    files = [os.path.join(d, n) for d, _, names in os.walk(directory) for n in names]
    return max(files, key=os.path.getsize)


def test_6_damaged_checkpoints_fall_back_to_the_newest_intact_step(tmp_path, caplog):
    workdir = str(tmp_path / "run")
    ckpt = checkpoints.Checkpointer(workdir, max_to_keep=5)
    for step in (1, 2, 3, 4):
        ckpt.save(step, _state(step), {"step": step}, force=True)
    ckpt.close()
    template = _state(0)
    step_dir = lambda s: os.path.join(checkpoints.checkpoint_dir(workdir), str(s))  # noqa: E731

    # 64 flipped bytes in the newest step's array data: detected, step 3 restored instead.
    data_file = _biggest_file(os.path.join(step_dir(4), "state"))
    with open(data_file, "r+b") as f:
        f.seek(16)
        chunk = f.read(64)
        f.seek(16)
        f.write(bytes(b ^ 0xFF for b in chunk))
    # step 3 truncated, step 2's meta/metadata emptied: both skipped too.
    truncated = _biggest_file(os.path.join(step_dir(3), "state"))
    with open(truncated, "r+b") as f:
        f.truncate(os.path.getsize(truncated) // 2)
    open(os.path.join(step_dir(2), "meta", "metadata"), "w").close()

    caplog.set_level(logging.WARNING)
    state, meta = checkpoints.Checkpointer(workdir).restore(template)
    assert meta == {"step": 1}
    np.testing.assert_array_equal(state["w"], _state(1)["w"])
    warned = caplog.text
    for s in (4, 3, 2):
        assert step_dir(s) in warned, warned
    assert "SHA-256 mismatch" in warned and "bytes" in warned

    # Nothing intact left: one error naming every step directory and its problem.
    open(os.path.join(step_dir(1), "meta", "metadata"), "w").close()
    with pytest.raises(checkpoints.CheckpointError) as error:
        checkpoints.Checkpointer(workdir).restore(template)
    for s in (4, 3, 2, 1):
        assert step_dir(s) in str(error.value)
