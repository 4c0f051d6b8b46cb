"""Issue 17, run side: mixed tokenizers, refused resumes, damaged checkpoints, interrupted and
concurrent pipeline runs. Cases 3, 4, 6 and 8 of the issue (1, 2, 5, 7 are in
tests/test_bad_input_data.py); README's "Bad input" section lists them all.
"""
import json
import logging
import os

import numpy as np
import pytest

from magvit import checkpoints
from tests.test_bad_input_data import _tiny_tokenizer_config, _write_clips

pytestmark = pytest.mark.timeout(300)


# ------------------------------------------------------------------ 3. tokens of two tokenizers
def _token_files(out_dir: str) -> list[str]:
    import glob
    return sorted(glob.glob(os.path.join(out_dir, "train", "tokens-*")))


def test_3_tokens_of_two_tokenizers_never_mix(tmp_path):
    import tensorflow as tf
    from magvit import token_data, train_transformer
    from magvit.configs import get_config
    from magvit.tokenizer.api import Tokenizer, save_random_tokenizer
    from pipelines import pretokenize
    config = get_config("tiny")
    config.transformer.tasks = ("class_conditional",)
    config.transformer.training.num_train_steps = 1
    config.transformer.training.batch_size = 2
    clips = _write_clips(str(tmp_path / "clips.tfrecord"), 6, tuple(config.tokenizer.clip_shape))
    dirs = {name: save_random_tokenizer(str(tmp_path / f"tokenizer_{name}"), config, seed=seed)
            for name, seed in (("a", 0), ("b", 1))}
    out = {name: str(tmp_path / f"tokens_{name}") for name in dirs}
    for name in dirs:
        pretokenize.run_pretokenize({"train": clips}, dirs[name], out[name], batch_size=2,
                                    num_shards=1, beam_args=["--runner=DirectRunner"])
    a, b = Tokenizer.load(dirs["a"]), Tokenizer.load(dirs["b"])
    assert a.checkpoint_id != b.checkpoint_id

    # A glob over both outputs is refused, naming a file of each.
    mixed = ",".join(os.path.join(out[name], "train", "tokens-*") for name in out)
    with pytest.raises(ValueError, match=rf"mixes token files .*{out['a']}.*tokenizer_id="
                                         rf"{a.checkpoint_id}.*{out['b']}.*{b.checkpoint_id}"):
        token_data.describe(mixed, ())
    # A file of B's slipped into A's folder disagrees with the stats.json there.
    stray = os.path.join(out["a"], "train", "tokens-stray.tfrecord")
    tf.io.gfile.copy(_token_files(out["b"])[0], stray)
    with pytest.raises(ValueError, match=r"tokens-stray.tfrecord holds tokens of tokenizer "
                                         rf"{b.checkpoint_id} but the stats.json beside it says"):
        token_data.describe(os.path.join(out["a"], "train", "tokens-*"), ())
    # Records are also checked one by one while training reads them.
    records = token_data.token_iterator(stray, b.grid_shape, 2, train=False,
                                        tokenizer_id=a.checkpoint_id)
    with pytest.raises(tf.errors.InvalidArgumentError, match="another tokenizer"):
        next(records)
    os.remove(stray)

    # Re-running into the same folder with another shard count replaces the old shards.
    stats = pretokenize.run_pretokenize({"train": clips}, dirs["a"], out["a"], batch_size=2,
                                        num_shards=3, beam_args=["--runner=DirectRunner"])
    files = _token_files(out["a"])
    assert [os.path.basename(f) for f in files] == [
        f"tokens-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert sum(1 for f in files for _ in tf.data.TFRecordDataset(f)) == stats["train"]["clips"]
    assert not [n for n in os.listdir(out["a"]) if n.startswith("_staging")]

    # A transformer trained on A's tokens does not resume with tokenizer B.
    workdir = str(tmp_path / "transformer")
    pattern = {name: os.path.join(out[name], "train", "tokens-*") for name in out}
    train_transformer.train_with_tokenizer(config, pattern["a"], a, workdir)
    config.transformer.training.num_train_steps = 2
    with pytest.raises(ValueError, match=rf"trained on tokens of tokenizer {a.checkpoint_id}, "
                                         rf"but --tokenizer is {b.checkpoint_id}"):
        train_transformer.train_with_tokenizer(config, pattern["b"], b, workdir)
    assert checkpoints.Checkpointer(workdir).all_steps() == [1]
    # ... and sampling checks every checkpoint of the work directory, not only the one it loads.
    from magvit.sample import Sampler
    with pytest.raises(ValueError, match=rf"tokenizer {a.checkpoint_id} \(checkpoint step\(s\) "
                                         rf"\[1\]\), but --tokenizer is {b.checkpoint_id}"):
        Sampler(workdir, b)


# ------------------------------------------------------------------------ 4. refused resume
def test_4_a_refused_resume_leaves_the_work_dir_usable(tmp_path):
    from magvit import train_tokenizer
    from magvit.tokenizer.api import Tokenizer
    clips = _write_clips(str(tmp_path / "clips.tfrecord"), 4)
    workdir = str(tmp_path / "run")
    config = _tiny_tokenizer_config()
    train_tokenizer.train(config, clips, workdir)
    with open(os.path.join(workdir, checkpoints.CONFIG_FILE)) as f:
        saved = f.read()
    trained_id = Tokenizer.load(workdir).checkpoint_id

    changed = _tiny_tokenizer_config(steps=4)
    changed.tokenizer.model.filters = config.tokenizer.model.filters * 2
    with pytest.raises(ValueError, match=r"--workdir=.* cannot resume: --config\.tokenizer\.model"
                                         r"\.filters was \d+, now \d+"):
        train_tokenizer.train(changed, clips, workdir)
    with open(os.path.join(workdir, checkpoints.CONFIG_FILE)) as f:
        assert f.read() == saved
    assert Tokenizer.load(workdir).checkpoint_id == trained_id



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


# ------------------------------------------------------------ 8. interrupted and concurrent runs
def _store(path: str):
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2 as pb
    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return mlmd.MetadataStore(config)


def _record_run(store, pipeline_name: str, run_id: str, stages: dict, root: str) -> dict:
    """What TFX records for one run: {stage: (execution state, output folder)} -> artifact ids."""
    from ml_metadata.proto import metadata_store_pb2 as pb
    types = {name: store.put_context_type(pb.ContextType(name=name))
             for name in ("pipeline", "pipeline_run", "node")}
    execution_type = store.put_execution_type(pb.ExecutionType(name="Stage"))
    artifact_type = store.put_artifact_type(pb.ArtifactType(name="Model"))
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    pipeline_id = pipeline.id if pipeline else store.put_contexts(
        [pb.Context(type_id=types["pipeline"], name=pipeline_name)])[0]
    [run] = store.put_contexts([pb.Context(type_id=types["pipeline_run"], name=run_id)])
    store.put_parent_contexts([pb.ParentContext(child_id=run, parent_id=pipeline_id)])
    artifacts = {}
    for stage, (state, uri) in stages.items():
        node = store.get_context_by_type_and_name("node", f"{pipeline_name}.{stage}")
        node_id = node.id if node else store.put_contexts(
            [pb.Context(type_id=types["node"], name=f"{pipeline_name}.{stage}")])[0]
        os.makedirs(uri, exist_ok=True)
        with open(os.path.join(uri, "partial.bin"), "wb") as f:
            f.write(b"half written")
        done = state == pb.Execution.COMPLETE
        artifact = pb.Artifact(type_id=artifact_type, uri=uri,
                               state=pb.Artifact.LIVE if done else pb.Artifact.PENDING)
        execution = pb.Execution(type_id=execution_type, last_known_state=state)
        event = pb.Event(type=pb.Event.OUTPUT if done else pb.Event.PENDING_OUTPUT)
        event.path.steps.add().key = "model"
        ids = store.put_lineage_subgraph([execution], [artifact],
                                         store.get_contexts_by_id([run, node_id]), [(0, 0, event)])
        artifacts[stage] = ids[1][0]
    return artifacts


def test_8_a_killed_run_is_marked_failed_and_runs_do_not_share_a_root(tmp_path):
    import subprocess
    from ml_metadata.proto import metadata_store_pb2 as pb
    from components import run_guard, summary
    root = str(tmp_path / "root")
    os.makedirs(root)
    metadata_path = os.path.join(root, "metadata.sqlite")
    store = _store(metadata_path)
    # run 1 finished; run 2 was killed inside its second stage.
    _record_run(store, "p", "run-1", {"data": (pb.Execution.COMPLETE, f"{root}/data/1"),
                                      "train": (pb.Execution.COMPLETE, f"{root}/train/2")}, root)
    _record_run(store, "p", "run-2", {"data": (pb.Execution.COMPLETE, f"{root}/data/3"),
                                      "train": (pb.Execution.RUNNING, f"{root}/train/4")}, root)
    assert [r.state for r in summary.last_run(summary.open_store(metadata_path), "p")] == [
        "ran", "running"]

    # The next run on the root: the killed execution is FAILED (saying why), its folder gone.
    recovered = run_guard.recover_interrupted(metadata_path)
    assert len(recovered) == 1 and f"removed {root}/train/4" in recovered[0]
    assert not os.path.exists(f"{root}/train/4")
    assert os.path.exists(f"{root}/train/2") and os.path.exists(f"{root}/data/3")
    records = summary.last_run(summary.open_store(metadata_path), "p")
    assert [r.state for r in records] == ["ran", "FAILED"]
    failed = [e for e in _store(metadata_path).get_executions()
              if e.last_known_state == pb.Execution.FAILED]
    assert "interrupted" in failed[0].custom_properties["failure"].string_value
    assert run_guard.recover_interrupted(metadata_path) == []

    # One summary reports one run: a given run id, not whichever run is newest.
    assert [r.state for r in summary.last_run(summary.open_store(metadata_path), "p",
                                              run_id="run-1")] == ["ran", "ran"]
    assert "p run run-1: 2 stage(s), 2 ran" in summary.summarize(metadata_path, "p", "run-1")
    with pytest.raises(ValueError, match="no run 'run-3' of pipeline 'p'"):
        summary.last_run(summary.open_store(metadata_path), "p", run_id="run-3")

    # Two runs on one root: the second is refused while the first holds it...
    with run_guard.hold_root(root):
        with pytest.raises(run_guard.RunInProgress, match=rf"--pipeline_root={root} is in use by "
                                                          rf"another run \(pid {os.getpid()}"):
            with run_guard.hold_root(root):
                pass
    assert not os.path.exists(os.path.join(root, run_guard.LOCK_FILE))
    # ...and the lock of a killed run (its process is gone) is taken over.
    gone = subprocess.Popen(["true"])
    gone.wait()
    with open(os.path.join(root, run_guard.LOCK_FILE), "w") as f:
        json.dump({"pid": gone.pid, "host": __import__("socket").gethostname()}, f)
    with run_guard.hold_root(root):
        with open(os.path.join(root, run_guard.LOCK_FILE)) as f:
            assert json.load(f)["pid"] == os.getpid()
