"""Multi-host JAX: `initialize()` joins the processes of one job when the environment says so.

A training job on several hosts runs the same program once per host; `jax.distributed.initialize`
connects them (a coordinator on process 0), after which `jax.devices()` lists every host's devices,
the trainers' mesh (`train_utils.make_mesh`) spans them all, each process reads its own shard of the
input files (`magvit.data`) and orbax writes each checkpoint once. The environments recognised:

  MAGVIT_COORDINATOR_ADDRESS, MAGVIT_NUM_PROCESSES, MAGVIT_PROCESS_ID   explicit (any cluster)
  CLUSTER_SPEC   Vertex AI custom jobs with several replicas / worker pools (the coordinator is
                 the first replica of workerpool0; pools 0 and 1 train, 2 and 3 are ignored)
  TF_CONFIG      TensorFlow-style clusters (chief / master / worker; ps and evaluator ignored)
  SLURM_*        srun with more than one task (jax's own SLURM detection)
  TPU_WORKER_HOSTNAMES   a multi-host Cloud TPU slice (jax's own TPU detection)

With none of them (or a single process), nothing is done and the program runs on this host's
devices alone.
"""
import dataclasses
import json
import os

import jax
from absl import logging

EXPLICIT_VARS = ("MAGVIT_COORDINATOR_ADDRESS", "MAGVIT_NUM_PROCESSES", "MAGVIT_PROCESS_ID")
_VERTEX_TRAINING_POOLS = ("workerpool0", "workerpool1")
_TF_CONFIG_ROLES = ("chief", "master", "worker")


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """How to call jax.distributed.initialize: `auto` leaves the arguments to jax's detection."""
    source: str
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    auto: bool = False

    def kwargs(self) -> dict:
        if self.auto:
            return {}
        return dict(coordinator_address=self.coordinator_address,
                    num_processes=self.num_processes, process_id=self.process_id)


def _from_pools(source: str, cluster: dict, roles, task_type: str, task_index: int):
    """Processes numbered pool by pool in `roles` order; the coordinator is the first one."""
    members = [(role, i, address) for role in roles for i, address in
               enumerate(cluster.get(role) or [])]
    if len(members) <= 1:
        return None
    ids = {(role, i): n for n, (role, i, _) in enumerate(members)}
    if (task_type, task_index) not in ids:
        raise ValueError(f"{source}: this task ({task_type!r}, index {task_index}) is not one of "
                         f"the training replicas {sorted(ids)}")
    return ClusterSpec(source, members[0][2], len(members), ids[(task_type, task_index)])


def _json_env(name: str, environ) -> dict:
    try:
        value = json.loads(environ[name])
    except json.JSONDecodeError as e:
        raise ValueError(f"environment variable {name} is not valid JSON: {e}") from e
    if not isinstance(value, dict) or not isinstance(value.get("cluster"), dict):
        raise ValueError(f"environment variable {name} has no 'cluster' mapping: {environ[name]!r}")
    return value


def detect(environ=None) -> ClusterSpec | None:
    """The multi-process job this process belongs to, or None when it runs alone."""
    environ = os.environ if environ is None else environ
    given = [v for v in EXPLICIT_VARS if environ.get(v)]
    if given:
        if len(given) != len(EXPLICIT_VARS):
            missing = sorted(set(EXPLICIT_VARS) - set(given))
            raise ValueError(f"{', '.join(given)} set but {', '.join(missing)} missing: set all "
                             f"three of {', '.join(EXPLICIT_VARS)}")
        try:
            count, index = int(environ[EXPLICIT_VARS[1]]), int(environ[EXPLICIT_VARS[2]])
        except ValueError as e:
            raise ValueError(f"{EXPLICIT_VARS[1]} and {EXPLICIT_VARS[2]} must be integers") from e
        if not 0 <= index < count:
            raise ValueError(f"{EXPLICIT_VARS[2]}={index} is not in [0, {count})")
        return None if count == 1 else ClusterSpec("explicit", environ[EXPLICIT_VARS[0]],
                                                   count, index)
    if environ.get("CLUSTER_SPEC"):
        spec = _json_env("CLUSTER_SPEC", environ)
        task = spec.get("task") or {}
        return _from_pools("CLUSTER_SPEC", spec["cluster"], _VERTEX_TRAINING_POOLS,
                           task.get("type", ""), int(task.get("index", 0)))
    if environ.get("TF_CONFIG"):
        spec = _json_env("TF_CONFIG", environ)
        task = spec.get("task") or {}
        return _from_pools("TF_CONFIG", spec["cluster"], _TF_CONFIG_ROLES,
                           task.get("type", ""), int(task.get("index", 0)))
    if int(environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_JOB_ID" in environ:
        return ClusterSpec("SLURM", auto=True)
    if len([h for h in environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1:
        return ClusterSpec("Cloud TPU", auto=True)
    return None


def initialize(environ=None) -> ClusterSpec | None:
    """jax.distributed.initialize() for the detected job (once; later calls do nothing)."""
    spec = detect(environ)
    if spec is None or jax.distributed.is_initialized():
        return spec
    jax.distributed.initialize(**spec.kwargs())
    logging.info("jax.distributed (%s): process %d of %d, %d local / %d global devices",
                 spec.source, jax.process_index(), jax.process_count(), jax.local_device_count(),
                 jax.device_count())
    return spec
