"""Multi-host trainers (--trainer_replicas > 1): the trainer steps launch a Vertex AI CustomJob
(components/custom_job.py) whose replicas run the trainers' CLIs with the step's config."""
import json
import os
import re

import pytest
from tfx.types import standard_artifacts

from components import artifacts, config_param, tokenizer_trainer
from magvit.configs import get_config
from tests.test_components import _write_clips

def open_remote(path, mode):
    import tensorflow as tf
    return tf.io.gfile.GFile(path, mode)


POOLS = dict(replicas=4, machine_type="a3-highgpu-8g", image="us-docker.pkg.dev/p/r/magvit:gpu",
             region="us-central1", accelerator="NVIDIA_H100_80GB", accelerator_count=8)


MODULE_T = "magvit.train_transformer"


def _examples(uri, splits):
    examples = standard_artifacts.Examples()
    examples.uri = uri
    artifacts.set_splits(examples, {s: f"{s}/clips-*" for s in splits})
    return examples


def _assert_pools(specs, module):
    from components import resources
    machine = {"machine_type": "a3-highgpu-8g", "accelerator_type": "NVIDIA_H100_80GB",
               "accelerator_count": 8}
    assert [s["replica_count"] for s in specs] == [1, 3]
    for spec in specs:
        assert spec["machine_spec"] == machine
        assert spec["container_spec"]["image_uri"] == POOLS["image"]
        assert spec["container_spec"]["command"] == ["python", "-m", module]
    assert specs[0]["container_spec"]["args"] == specs[1]["container_spec"]["args"]
    assert resources.worker_pool_specs(resources.TrainerPools(**POOLS), module, ["--x"])[0][
        "container_spec"]["args"] == ["--x"]
    return specs[0]["container_spec"]["args"]


def test_the_tokenizer_step_runs_the_in_step_training_on_the_custom_job(monkeypatch):
    """The replicas' command line parses (with the trainer's own CLI) to the step's config, data
    and work directory; the step reports what the job's run left in the work directory."""
    from components import custom_job, resources
    from magvit import train_tokenizer
    config = get_config("tiny")
    config.tokenizer.training.num_train_steps = 7
    text = config_param.dumps(config, tokenizer_trainer.SECTIONS)
    clips = _examples("ram://mh/clips", ["train", "test"])
    model, evaluation = standard_artifacts.Model(), standard_artifacts.ModelEvaluation()
    model.uri, evaluation.uri = "ram://mh/model", "ram://mh/evaluation"
    submitted = []

    def fake_submit(display, specs, output_dir, project, region):
        submitted.append((display, specs, output_dir, project, region))
        with open_remote(os.path.join(model.uri, train_tokenizer.EVAL_METRICS_FILE), "w") as f:
            f.write(json.dumps({"step": 7, "psnr": 21.5}))

    monkeypatch.setattr(custom_job, "submit", fake_submit)
    monkeypatch.setattr(tokenizer_trainer, "checkpoint_id", lambda workdir: "ckpt-" + workdir)
    monkeypatch.setenv("CLOUD_ML_PROJECT_ID", "vertex-proj")
    tokenizer_trainer.TokenizerTrainer.EXECUTOR_SPEC.executor_class().Do(
        {"clips": [clips]}, {"model": [model], "evaluation": [evaluation]},
        {"config": text, "trainer_pools": resources.TrainerPools(**POOLS).to_json()})
    (display, specs, output_dir, project, region), = submitted
    assert (output_dir, project, region) == ("ram://mh/model/custom_job", "vertex-proj",
                                             "us-central1")
    assert display.startswith("magvit-tokenizertrainer-")
    args = _assert_pools(specs, "magvit.train_tokenizer")
    fv, _ = train_tokenizer.PROGRAM.parse(args)
    assert fv.config.to_dict() == config_param.loads(text).to_dict()
    assert (fv.data, fv.eval_data, fv.workdir) == (
        "ram://mh/clips/train/clips-*", "ram://mh/clips/test/clips-*", model.uri)
    assert model.get_string_custom_property("checkpoint_id") == "ckpt-ram://mh/model"
    assert evaluation.get_float_custom_property("eval_psnr") == 21.5
    with open_remote(os.path.join(evaluation.uri, "metrics.json"), "r") as f:
        assert json.load(f) == {"step": 7, "eval_psnr": 21.5}


def test_the_transformer_step_reports_the_job_checkpoint_metrics(monkeypatch, tmp_path):
    import numpy as np
    from components import custom_job, resources, transformer_trainer
    from magvit import checkpoints, train_transformer
    config = get_config("tiny")
    text = config_param.dumps(config, transformer_trainer.SECTIONS)
    tokens = _examples(str(tmp_path / "tokens"), ["train"])
    tokenizer, model = standard_artifacts.Model(), standard_artifacts.Model()
    tokenizer.uri, model.uri = str(tmp_path / "tokenizer"), str(tmp_path / "model")
    submitted = []

    def fake_submit(display, specs, output_dir, project, region):
        submitted.append(specs)
        ckpt = checkpoints.Checkpointer(model.uri)
        ckpt.save(5, {"w": np.zeros(2, np.float32)}, {"metrics": {"loss": 2.5}}, force=True)
        ckpt.close()

    monkeypatch.setattr(custom_job, "submit", fake_submit)
    transformer_trainer.TransformerTrainer.EXECUTOR_SPEC.executor_class().Do(
        {"tokens": [tokens], "tokenizer": [tokenizer]}, {"model": [model]},
        {"config": text, "trainer_pools": resources.TrainerPools(**POOLS).to_json()})
    fv, _ = train_transformer.PROGRAM.parse(_assert_pools(submitted[0], MODULE_T))
    assert fv.config.to_dict() == config_param.loads(text).to_dict()
    assert (fv.data, fv.tokenizer, fv.workdir) == (
        os.path.join(tokens.uri, "train/clips-*"), tokenizer.uri, model.uri)
    assert model.get_float_custom_property("loss") == 2.5
    assert model.get_float_custom_property("step") == 5.0


def test_a_failed_custom_job_fails_the_step_with_its_error(monkeypatch):
    from google.cloud import aiplatform
    from components import custom_job, resources
    made = {}

    class FailingJob:
        def __init__(self, **kwargs):
            made.update(kwargs)

        def run(self, sync):
            assert sync
            raise RuntimeError("Job failed with:\ncode: 3\nmessage: \"The replica workerpool1-0 "
                               "exited with a non-zero status of 1.\"")

    monkeypatch.setattr(aiplatform, "CustomJob", FailingJob)
    pools = resources.TrainerPools(**POOLS, project="my-proj")
    with pytest.raises(custom_job.CustomJobError,
                       match=r"CustomJob magvit-transformertrainer-\w+ \(2 worker pools, 4 "
                             r"replicas\) failed: Job failed with:\ncode: 3\nmessage: \"The "
                             r"replica workerpool1-0 exited"):
        custom_job.run_trainer(pools, "TransformerTrainer", MODULE_T, ["--workdir=gs://b/m"],
                               "gs://b/m")
    assert (made["project"], made["location"], made["base_output_dir"]) == (
        "my-proj", "us-central1", "gs://b/m/custom_job")
    assert made["worker_pool_specs"] == resources.worker_pool_specs(pools, MODULE_T,
                                                                     ["--workdir=gs://b/m"])


@pytest.mark.parametrize("argv, message", [
    (["--trainer_replicas=2"], "--trainer_replicas asks Kubeflow / Vertex AI for machines: it "
                               "needs --orchestrator=kubeflow"),
    (["--trainer_region=us-central1"], "--trainer_region asks Kubeflow / Vertex AI"),
])
def test_multi_host_flags_need_kubeflow(argv, message):
    from pipelines import run
    with pytest.raises(run.UsageError, match=re.escape(message)):
        run.parse_args(["--dataset=demo", "--pipeline_root=ram://root", *argv])
    assert not run.parse_args(["--dataset=demo", "--pipeline_root=ram://root"]).pools


# `python -m MODULE ARGS...` as a replica runs it, then which jax process it was
REPLICA = """import runpy, sys, jax
sys.argv = sys.argv[1:]
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit as e:
    print(f"replica {jax.process_index()} of {jax.process_count()}", flush=True)
    raise
"""


@pytest.mark.slow
def test_the_tokenizer_step_trains_on_a_two_replica_job_run_here(monkeypatch, tmp_path):
    """The CustomJob played on this machine: each replica of the submitted pools runs its
    container command in a process with the CLUSTER_SPEC Vertex AI would set (localhost), so
    the step's config, data and workdir reach `jax.distributed` training for real."""
    import socket
    import subprocess
    import sys
    from components import custom_job, resources
    from magvit.tokenizer.api import Tokenizer
    config = get_config("tiny")
    config.tokenizer.training.update(num_train_steps=2, batch_size=2, log_every_steps=1)
    clips = _examples(str(tmp_path / "clips"), ["train"])
    os.makedirs(tmp_path / "clips" / "train")
    for shard in range(2):   # one file per process
        _write_clips(tmp_path / "clips" / "train" / f"clips-{shard}", [0, 1, 2])
    model, evaluation = standard_artifacts.Model(), standard_artifacts.ModelEvaluation()
    model.uri, evaluation.uri = str(tmp_path / "model"), str(tmp_path / "evaluation")
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]

    logs = []

    def run_replicas(display, specs, output_dir, project, region):
        hosts = {f"workerpool{p}": [f"localhost:{port}"] * spec["replica_count"]
                 for p, spec in enumerate(specs)}
        procs = []
        for p, spec in enumerate(specs):
            for index in range(spec["replica_count"]):
                env = dict(os.environ, JAX_PLATFORMS="cpu", CLUSTER_SPEC=json.dumps(
                    {"cluster": hosts, "task": {"type": f"workerpool{p}", "index": index}}),
                    XLA_FLAGS="--xla_force_host_platform_device_count=1")
                python, dash_m, module = spec["container_spec"]["command"]
                assert (python, dash_m) == ("python", "-m")
                procs.append(subprocess.Popen(
                    [sys.executable, "-c", REPLICA, module, *spec["container_spec"]["args"]],
                    env=env,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        logs.extend(proc.communicate(timeout=600)[0] for proc in procs)
        if any(proc.returncode for proc in procs):
            raise custom_job.CustomJobError("\n".join(logs)[-3000:])

    monkeypatch.setattr(custom_job, "submit", run_replicas)
    pools = resources.TrainerPools(2, "n1-standard-4", "r-docker.pkg.dev/p/r/magvit:cpu",
                                   region="us-central1")
    tokenizer_trainer.TokenizerTrainer.EXECUTOR_SPEC.executor_class().Do(
        {"clips": [clips]}, {"model": [model], "evaluation": [evaluation]},
        {"config": config_param.dumps(config, tokenizer_trainer.SECTIONS),
         "trainer_pools": pools.to_json()})
    assert model.get_string_custom_property("checkpoint_id") == Tokenizer.load(
        model.uri).checkpoint_id
    with open(os.path.join(evaluation.uri, "metrics.json")) as f:  # local-only
        assert json.load(f) == {"step": 2}
    assert ["replica 0 of 2" in logs[0], "replica 1 of 2" in logs[1]] == [True, True]
