"""The real Kubeflow / Vertex AI clients, in a tool venv of their own (created once, then cached).

kfp 2.17 installs beside TensorFlow 2.21 (both take protobuf 6), but it replaces the
kfp-pipeline-spec 0.6.0 that TFX 1.21's Kubeflow V2 compiler is installed with by 2.17.x, outside
TFX's declared range, so the project's environment leaves it out and the tests use this venv.
"""
import hashlib
import json
import os
import subprocess
import sys

REQUIREMENTS = ("kfp==2.17.3", "google-cloud-aiplatform==2.7.0")
TOOLS_DIR = os.environ.get("MAGVIT_TOOLS_DIR") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "magvit", "tools")


def tool_python() -> str:
    """The python of the cached venv holding REQUIREMENTS (made on first use, ~3 min)."""
    key = hashlib.sha256(" ".join(REQUIREMENTS).encode()).hexdigest()[:12]
    venv = os.path.join(TOOLS_DIR, f"kfp-{key}")
    python, stamp = os.path.join(venv, "bin", "python"), os.path.join(venv, ".installed")
    if not os.path.exists(stamp):
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", "--clear", venv], check=True)
        done = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                               *REQUIREMENTS], capture_output=True, text=True)
        assert done.returncode == 0, f"installing {REQUIREMENTS} into {venv} failed:\n{done.stderr[-3000:]}"
        with open(stamp, "w") as f:
            f.write("\n".join(REQUIREMENTS))
    return python


# Run in the tool venv: parse the compiled pipeline with kfp's own protos (strict: a field kfp
# does not know fails), load it as a kfp component, and build an aiplatform PipelineJob offline.
INSPECT = r'''
import json, sys
import kfp
from kfp import components
from kfp.pipeline_spec import pipeline_spec_pb2
from google.protobuf import json_format
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform
import yaml

path = sys.argv[1]
with open(path) as f:
    job = json.load(f)
spec = pipeline_spec_pb2.PipelineSpec()
json_format.ParseDict(job["pipelineSpec"], spec)
deployment = pipeline_spec_pb2.PipelineDeploymentConfig()
json_format.ParseDict(job["pipelineSpec"]["deploymentSpec"], deployment)
component = components.load_component_from_text(yaml.safe_dump(job["pipelineSpec"]))
vertex = aiplatform.PipelineJob(display_name="magvit", template_path=path, project="proj",
                                location="us-central1", credentials=AnonymousCredentials())
resource = vertex._gca_resource
executors = {}
for task, task_spec in spec.root.dag.tasks.items():
    label = spec.components[task_spec.component_ref.name].executor_label
    container = deployment.executors[label].container
    resources = container.resources
    executors[task] = dict(image=container.image, command=list(container.command),
                           accelerator=resources.accelerator.type,
                           accelerator_count=resources.accelerator.count,
                           cpu_limit=resources.cpu_limit, memory_limit=resources.memory_limit)
print(json.dumps(dict(
    kfp=kfp.__version__, component=component.name,
    tasks={n: sorted(t.dependent_tasks) for n, t in spec.root.dag.tasks.items()},
    executors=executors,
    vertex=dict(type=type(resource).__name__, display_name=resource.display_name,
                pipeline_root=resource.runtime_config.gcs_output_directory,
                tasks=sorted(resource.pipeline_spec["root"]["dag"]["tasks"])))))
'''


def inspect(pipeline_json: str) -> dict:
    done = subprocess.run([tool_python(), "-c", INSPECT, pipeline_json], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
