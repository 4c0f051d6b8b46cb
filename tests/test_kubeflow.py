"""The compiled Kubeflow V2 pipeline, read by the real kfp / aiplatform clients, and one of its
steps run by the TFX container entrypoint exactly as a Vertex AI Pipelines worker starts it."""
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from pipelines import run
from tests import kubeflow_client

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPENDENCIES = {"VideoExampleGen": [], "TokenizerTrainer": ["VideoExampleGen"],
                "Pretokenizer": ["TokenizerTrainer", "VideoExampleGen"],
                "TransformerTrainer": ["Pretokenizer", "TokenizerTrainer"],
                "Evaluator": ["TokenizerTrainer", "TransformerTrainer", "VideoExampleGen"]}
ON_ACCELERATORS = ("TokenizerTrainer", "TransformerTrainer", "Evaluator")
ENTRYPOINT = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
IMAGE = "us-docker.pkg.dev/proj/repo/magvit:gpu"


def _compile(tmp_path, *extra) -> str:
    out = str(tmp_path / "magvit.json")
    assert run.main(["--dataset=demo", "--config=tiny", "--orchestrator=kubeflow",
                     "--pipeline_root=gs://bucket/runs", f"--image={IMAGE}",
                     f"--kubeflow_output={out}", *extra]) == 0
    return out


def test_kfp_and_vertex_clients_read_the_compiled_pipeline(tmp_path):
    path = _compile(tmp_path, "--accelerator=NVIDIA_H100_80GB", "--accelerator_count=8",
                    "--cpu_limit=32", "--memory_limit=256G", "--runner=DataflowRunner",
                    "--project=proj", "--region=us-central1")
    seen = kubeflow_client.inspect(path)
    assert seen["kfp"].startswith("2.17.") and seen["component"] == "magvit-tiny"
    assert seen["tasks"] == DEPENDENCIES
    for task, executor in seen["executors"].items():
        assert executor["image"] == IMAGE and executor["command"] == ENTRYPOINT, task
        machine = (executor["accelerator"], executor["accelerator_count"], executor["cpu_limit"],
                   executor["memory_limit"])
        assert machine == (("NVIDIA_H100_80GB", 8, 32.0, 256.0) if task in ON_ACCELERATORS
                           else ("", 0, 0.0, 0.0)), task
    assert seen["vertex"] == {"type": "PipelineJob", "display_name": "magvit",
                              "pipeline_root": "gs://bucket/runs", "tasks": sorted(DEPENDENCIES)}


def test_tpu_request_in_the_compiled_json(tmp_path):
    path = _compile(tmp_path, "--accelerator=TPU_V5_LITEPOD", "--accelerator_count=4")
    with open(path) as f:
        executors = json.load(f)["pipelineSpec"]["deploymentSpec"]["executors"]
    for task in ON_ACCELERATORS:
        resources = executors[f"{task}_executor"]["container"]["resources"]
        assert resources["accelerator"] == {"type": "TPU_V5_LITEPOD", "count": "4",
                                            "resourceType": "TPU_V5_LITEPOD", "resourceCount": "4"}
    assert "resources" not in executors["VideoExampleGen_executor"]["container"]


def test_multi_host_trainers_compile_their_custom_job_settings(tmp_path):
    """--trainer_replicas > 1: every trainer step carries the worker pools (its own step only
    waits, so it asks for no accelerator); the evaluator keeps the accelerators."""
    from components import resources
    path = _compile(tmp_path, "--accelerator=NVIDIA_H100_80GB", "--accelerator_count=8",
                    "--trainer_replicas=4", "--trainer_machine_type=a3-highgpu-8g",
                    "--trainer_region=us-central1", "--image_tokenizer")
    with open(path) as f:
        spec = json.load(f)["pipelineSpec"]
    tasks, executors = spec["root"]["dag"]["tasks"], spec["deploymentSpec"]["executors"]
    expected = resources.TrainerPools(4, "a3-highgpu-8g", IMAGE, "", "us-central1",
                                      "NVIDIA_H100_80GB", 8)
    for task in ("ImageTokenizerTrainer", "TokenizerTrainer", "TransformerTrainer"):
        given = tasks[task]["inputs"]["parameters"]["trainer_pools"]["runtimeValue"]["constant"]
        assert resources.TrainerPools.from_json(given) == expected, task
        assert "resources" not in executors[f"{task}_executor"]["container"], task
    assert "trainer_pools" not in tasks["Evaluator"]["inputs"]["parameters"]
    assert executors["Evaluator_executor"]["container"]["resources"]["accelerator"]["count"] == "8"
    single = _compile(tmp_path / "one")
    with open(single) as f:
        assert "trainer_pools" not in f.read()


def test_the_image_tokenizer_stage_compiles_as_a_task_the_video_trainer_waits_for(tmp_path):
    path = _compile(tmp_path, "--image_tokenizer", "--image_tokenizer_steps=7",
                    "--config.tokenizer.training.image_folder=gs://bucket/images",
                    "--accelerator=NVIDIA_L4", "--accelerator_count=1")
    seen = kubeflow_client.inspect(path)
    assert seen["tasks"] == {**DEPENDENCIES, "ImageTokenizerTrainer": ["VideoExampleGen"],
                             "TokenizerTrainer": ["ImageTokenizerTrainer", "VideoExampleGen"]}
    for task in ON_ACCELERATORS + ("ImageTokenizerTrainer",):
        assert seen["executors"][task]["accelerator"] == "NVIDIA_L4", task
    assert seen["vertex"]["tasks"] == sorted([*DEPENDENCIES, "ImageTokenizerTrainer"])
    with open(path) as f:
        tasks = json.load(f)["pipelineSpec"]["root"]["dag"]["tasks"]
    # the video trainer's image_tokenizer input is the image trainer's model artifact
    assert tasks["TokenizerTrainer"]["inputs"]["artifacts"]["image_tokenizer"] == {
        "taskOutputArtifact": {"outputArtifactKey": "model", "producerTask": "ImageTokenizerTrainer"}}
    configs = {task: json.loads(tasks[task]["inputs"]["parameters"]["config"]["runtimeValue"][
        "constant"]) for task in ("ImageTokenizerTrainer", "TokenizerTrainer")}
    image, video = (configs[t]["tokenizer"] for t in ("ImageTokenizerTrainer", "TokenizerTrainer"))
    assert configs["ImageTokenizerTrainer"]["name"] == "tiny_image"
    assert (image["model"]["spatial_dims"], video["model"]["spatial_dims"]) == (2, 3)
    assert image["training"]["image_folder"] == "gs://bucket/images"
    assert video["training"]["image_folder"] == "" and image["training"]["num_train_steps"] == 7


def _executor_input(pipeline: dict, task: str, tmp_path) -> tuple[dict, list[str]]:
    """What Vertex AI passes a step: the current ExecutorInput (`parameterValues`, not the
    deprecated `parameters`), with the output artifacts' URIs it chose; and the step's command."""
    spec = pipeline["pipelineSpec"]
    task_spec = spec["root"]["dag"]["tasks"][task]
    component = spec["components"][task_spec["componentRef"]["name"]]
    container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
    values = {name: value["runtimeValue"]["constant"]
              for name, value in task_spec["inputs"]["parameters"].items()}
    outputs = {name: {"artifacts": [{
        "name": f"projects/1/locations/us-central1/metadataStores/default/artifacts/{i}",
        "type": definition["artifactType"], "uri": str(tmp_path / "root" / task / name),
        "metadata": {}}]}
        for i, (name, definition) in enumerate(component["outputDefinitions"]["artifacts"].items())}
    executor_input = {"inputs": {"parameterValues": values},
                      "outputs": {"artifacts": outputs,
                                  "outputFile": str(tmp_path / "root" / task / "executor_output.json")}}
    return executor_input, container["command"] + container["args"]


def test_a_compiled_step_runs_in_the_tfx_container_entrypoint(tmp_path):
    path = _compile(tmp_path, "--config.dataset.demo_videos_per_class=2")
    with open(path) as f:
        pipeline = json.load(f)
    executor_input, command = _executor_input(pipeline, "VideoExampleGen", tmp_path)
    command = [sys.executable if c == "python" else c for c in command]
    command = [json.dumps(executor_input) if c == "{{$}}" else c for c in command]
    env = dict(os.environ, PYTHONPATH=REPO)
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    output = json.loads((tmp_path / "root" / "VideoExampleGen" / "executor_output.json").read_text())
    (examples,) = output["artifacts"]["examples"]["artifacts"]
    uri = str(tmp_path / "root" / "VideoExampleGen" / "examples")
    assert examples["uri"] == uri
    patterns = json.loads(examples["metadata"]["split_patterns"])
    assert patterns == {"test": "demo/test/clips-*-of-00001.tfrecord",
                        "train": "demo/train/clips-*-of-00001.tfrecord"}
    assert examples["metadata"]["dataset"] == "demo"
    clips = sum(1 for _ in tf.data.TFRecordDataset(tf.io.gfile.glob(
        os.path.join(uri, patterns["train"]))))
    assert clips == examples["metadata"]["train/clips_written"] > 0


@pytest.mark.parametrize("argv, message", [
    (["--pipeline_root=runs/local"], "--pipeline_root=runs/local: a local path, but with "
                                     "--orchestrator=kubeflow the steps run on other machines"),
    (["--dataset=folder", "--config.dataset.split=train,test", "--data_root=/data/videos"],
     "--data_root=/data/videos: a local path"),
    (["--config.eval.i3d_weights=/models/i3d"], "--config.eval.i3d_weights=/models/i3d: a local"),
    (["--config.tokenizer.loss.perceptual_weights=/w/resnet.h5"],
     "--config.tokenizer.loss.perceptual_weights=/w/resnet.h5: a local path"),
    (["--accelerator=NVIDIA_H100_80GB"], "--accelerator_count=0: must be >= 1"),
    (["--accelerator=H100", "--accelerator_count=8"], "--accelerator=H100: value should be one of"),
    (["--accelerator_count=2"], "--accelerator_count=2 needs --accelerator"),
    (["--memory_limit=lots"], "--memory_limit=lots: expected a size such as 64G"),
    (["--trainer_replicas=4", "--trainer_region=us-central1"],
     "--trainer_replicas=4 needs --trainer_machine_type"),
    (["--trainer_replicas=4", "--trainer_machine_type=a3-highgpu-8g"],
     "--trainer_replicas=4 needs --trainer_region"),
    (["--trainer_replicas=2", "--trainer_machine_type=a3-highgpu-8g", "--trainer_region=r1"],
     "--image=magvit:latest: --trainer_replicas=2 runs the trainers' CustomJob in this image, "
     "so it must be one Vertex AI can pull"),
    (["--trainer_machine_type=a3-highgpu-8g"], "--trainer_machine_type=a3-highgpu-8g sets up "
                                               "the multi-host CustomJob of the trainers: it "
                                               "needs --trainer_replicas > 1"),
    (["--trainer_replicas=0"], "--trainer_replicas=0: must be >= 1"),
    (["--image_tokenizer", "--config.tokenizer.training.image_folder=/data/images"],
     "--config.tokenizer.training.image_folder=/data/images: a local path, but with "
     "--orchestrator=kubeflow"),
])
def test_compilation_refuses_what_the_steps_could_not_use(tmp_path, capsys, argv, message):
    out = tmp_path / "magvit.json"
    base = {"--pipeline_root": "--pipeline_root=gs://bucket/runs"}
    given = {a.split("=")[0] for a in argv}
    argv = ["--dataset=demo", "--config=tiny", "--orchestrator=kubeflow",
            f"--kubeflow_output={out}", *[v for k, v in base.items() if k not in given], *argv]
    if any(a.startswith("--dataset=folder") for a in argv):
        argv.remove("--dataset=demo")
    assert run.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
