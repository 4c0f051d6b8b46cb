"""Remote paths: checkpoints on a scheme orbax cannot write (through the local mirror), Beam I/O
on ram://, and the path helpers, all on `ram://` (tf.io.gfile's in-memory filesystem)."""
import os
import uuid

import apache_beam as beam
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from magvit import checkpoints, remote
from pipelines import gfile_filesystem  # noqa: F401  (registers ram:// with Beam)


def _root(name):
    return f"ram://{name}-{uuid.uuid4().hex}"


def test_checkpoints_on_ram_round_trip_and_resume(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    workdir = _root("ckpt") + "/run"
    state = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.int32(3)}
    first = checkpoints.Checkpointer(workdir, max_to_keep=2)
    for step in (1, 2, 3):
        first.save(step, jax_tree_scale(state, step), {"position": step}, force=True)
    first.close()
    # Only the last two (max_to_keep) are on the remote store, nothing in the cwd.
    stored = tf.io.gfile.listdir(checkpoints.checkpoint_dir(workdir))
    assert sorted(name.rstrip("/") for name in stored) == ["2", "3"]
    assert os.listdir(tmp_path) == []
    # A new process (a new Checkpointer, empty local mirror) resumes from the remote copy.
    second = checkpoints.Checkpointer(workdir)
    assert second.latest_step() == 3 and second.all_steps() == [2, 3]
    restored, meta = second.restore(state)
    np.testing.assert_array_equal(restored["w"], np.arange(6.0).reshape(2, 3) * 3)
    assert meta == {"position": 3}
    second.close()


def jax_tree_scale(state, factor):
    return {"w": state["w"] * factor, "step": jnp.int32(factor)}


def test_beam_reads_and_writes_ram(tmp_path):
    root = _root("beam")
    lines = [f"line {i}" for i in range(20)]
    with beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(
            ["--runner=DirectRunner"])) as pipeline:
        _ = (pipeline | beam.Create(lines)
             | beam.io.WriteToText(f"{root}/out/part", num_shards=2, file_name_suffix=".txt"))
    assert len(tf.io.gfile.glob(f"{root}/out/part-*-of-00002.txt")) == 2
    with beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(
            ["--runner=DirectRunner"])) as pipeline:
        _ = (pipeline | beam.io.ReadFromText(f"{root}/out/part-*.txt")
             | beam.combiners.ToList()
             | beam.Map(lambda got: sorted(got) == sorted(lines))
             | beam.io.WriteToText(f"{root}/check", shard_name_template=""))
    with tf.io.gfile.GFile(f"{root}/check") as f:
        assert f.read() == "True\n"


def test_path_helpers(tmp_path):
    assert remote.is_remote("gs://b/x") and not remote.is_remote("runs/x")
    assert remote.absolute("gs://b/x") == "gs://b/x"
    assert remote.absolute("runs") == os.path.join(os.getcwd(), "runs")
    assert remote.relative("ram://b/root/demo/train/c-*", "ram://b/root") == "demo/train/c-*"
    with pytest.raises(ValueError, match="ram://b/other/x is not under ram://b/root/"):
        remote.relative("ram://b/other/x", "ram://b/root")
    root = _root("tree")
    remote.write_text(f"{root}/a/b/c.txt", "hello")
    remote.copy_tree(root, str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "a" / "b" / "c.txt").read_text() == "hello"
    assert remote.orbax_can_write("gs://b/x") and remote.orbax_can_write(str(tmp_path))
    assert not remote.orbax_can_write("ram://b/x")


def test_sample_outputs_land_on_a_remote_folder_as_they_do_locally(tmp_path, monkeypatch):
    from magvit.sample import write_outputs
    from magvit.transformer import tasks
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    videos = rng.integers(0, 256, (2, 4, 16, 16, 3), dtype=np.uint8)
    task = tasks.get_task("frame_prediction")
    local = write_outputs(str(tmp_path / "local"), videos, task, truth=videos)
    out = _root("samples") + "/gallery"
    written = write_outputs(out, videos, task, truth=videos)
    names = ["sample_00.mp4", "sample_00.gif", "sample_01.mp4", "sample_01.gif", "contact_sheet.png"]
    assert written == [f"{out}/{name}" for name in names]
    assert [os.path.basename(p) for p in local] == names
    for here, there in zip(local, written):
        with open(here, "rb") as a, tf.io.gfile.GFile(there, "rb") as b:
            assert a.read() == b.read()
    assert sorted(os.listdir(tmp_path)) == ["local"]  # nothing written beside it in the cwd
