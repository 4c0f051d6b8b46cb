"""Multi-host training on Vertex AI: a trainer step that launches a CustomJob and waits for it.

A Vertex AI Pipelines step is one machine. With `--trainer_replicas=N` (N > 1) the trainer
steps instead submit a CustomJob of N replicas of the pipeline's image (workerpool0: 1 replica,
the `jax.distributed` coordinator; workerpool1: N - 1), each running the trainer's module CLI
with the step's own config (written as JSON next to the checkpoints, read by
`components.json_config`), data patterns and work directory (the step's Model artifact URI).
Vertex AI gives every replica CLUSTER_SPEC, which `magvit.distributed` turns into
`jax.distributed.initialize`. The step waits for the job and fails with the job's error.

Project and region: `--trainer_project` / `--trainer_region` (compiled into the step); an empty
project falls back to GOOGLE_CLOUD_PROJECT / CLOUD_ML_PROJECT_ID (Vertex AI sets the latter in
its custom-job containers, pipeline steps included), then to google.auth's default project.
"""
import hashlib
import json
import os

from components import json_config
from components.resources import TrainerPools, worker_pool_specs

CONFIG_FILE = "custom_job_config.json"
JOB_DIR = "custom_job"
PROJECT_VARS = ("GOOGLE_CLOUD_PROJECT", "CLOUD_ML_PROJECT_ID")


class CustomJobError(RuntimeError):
    """The trainers' CustomJob could not be submitted or did not succeed."""


def config_flag(config, workdir: str) -> str:
    """Writes `config` as JSON under `workdir`; returns the `--config=` flag that loads it."""
    import tensorflow as tf
    path = os.path.join(workdir, CONFIG_FILE)
    tf.io.gfile.makedirs(workdir)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(config.to_dict(), sort_keys=True))
    return f"--config={os.path.abspath(json_config.__file__)}:{path}"  # local-only (the image)


def project(pools: TrainerPools, environ=None) -> str | None:
    environ = os.environ if environ is None else environ
    return pools.project or next((environ[v] for v in PROJECT_VARS if environ.get(v)), None)


def display_name(stage: str, workdir: str) -> str:
    return f"magvit-{stage}-{hashlib.sha256(workdir.encode()).hexdigest()[:10]}".lower()


def submit(display: str, specs: list[dict], output_dir: str, project_id: str | None,
           region: str) -> None:
    """Runs the CustomJob to its end (the aiplatform client); raises CustomJobError unless it
    succeeded."""
    from google.cloud import aiplatform
    job = aiplatform.CustomJob(display_name=display, worker_pool_specs=specs,
                               base_output_dir=output_dir, staging_bucket=output_dir,
                               project=project_id, location=region)
    try:
        job.run(sync=True)
    except Exception as e:  # the client raises RuntimeError("Job failed with: ...") and API errors
        raise CustomJobError(f"Vertex AI CustomJob {display} ({len(specs)} worker pools, "
                             f"{sum(s['replica_count'] for s in specs)} replicas) failed: "
                             f"{e}") from e


def run_trainer(pools: TrainerPools, stage: str, module: str, args: list[str],
                workdir: str) -> None:
    """Trains with `python -m module args` on the CustomJob's replicas; returns when it is done."""
    if not pools.region:
        raise CustomJobError(f"{stage}: --trainer_region is empty: the region of the trainers' "
                             "CustomJob must be compiled into the pipeline")
    submit(display_name(stage, workdir), worker_pool_specs(pools, module, args),
           os.path.join(workdir, JOB_DIR), project(pools), pools.region)
