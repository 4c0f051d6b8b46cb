"""Multi-host JAX: environment detection, and a 2-process CPU run (jax.distributed on localhost)
that trains the tiny tokenizer to the same parameters as one process over the same global batch."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from magvit import distributed

WORKER = os.path.join(os.path.dirname(__file__), "distributed_tokenizer_worker.py")


def test_detect_vertex_cluster_spec_numbers_replicas_pool_by_pool():
    cluster = {"workerpool0": ["chief:2222"], "workerpool1": ["w0:2222", "w1:2222"],
               "workerpool2": ["reducer:2222"]}
    spec = distributed.detect({"CLUSTER_SPEC": json.dumps(
        {"cluster": cluster, "task": {"type": "workerpool1", "index": 1}})})
    assert spec == distributed.ClusterSpec("CLUSTER_SPEC", "chief:2222", 3, 2)
    chief = distributed.detect({"CLUSTER_SPEC": json.dumps(
        {"cluster": cluster, "task": {"type": "workerpool0", "index": 0}})})
    assert (chief.process_id, chief.num_processes) == (0, 3)
    single = {"cluster": {"workerpool0": ["only:2222"]}, "task": {"type": "workerpool0"}}
    assert distributed.detect({"CLUSTER_SPEC": json.dumps(single)}) is None
    with pytest.raises(ValueError, match="reducer|workerpool2.*not one of"):
        distributed.detect({"CLUSTER_SPEC": json.dumps(
            {"cluster": cluster, "task": {"type": "workerpool2", "index": 0}})})


def test_the_trainers_custom_job_pools_become_one_jax_job_under_vertex_cluster_spec():
    """The CLUSTER_SPEC Vertex AI gives the replicas of the pools `components.custom_job` submits
    (its documented shape: cmle-training hosts, `environment`, `job`): one process each, numbered
    0..N-1, all with workerpool0's replica as the coordinator."""
    from components import resources
    specs = resources.worker_pool_specs(resources.TrainerPools(
        4, "a3-highgpu-8g", "r-docker.pkg.dev/p/r/magvit:gpu", region="us-central1"),
        "magvit.train_tokenizer", [])
    cluster = {f"workerpool{p}": [f"cmle-training-workerpool{p}-ab12-{i}:2222"
                                  for i in range(spec["replica_count"])]
               for p, spec in enumerate(specs)}
    seen = []
    for pool, hosts in cluster.items():
        for index in range(len(hosts)):
            seen.append(distributed.detect({"CLUSTER_SPEC": json.dumps(
                {"cluster": cluster, "environment": "cloud", "job": "{}",
                 "task": {"type": pool, "index": index}})}))
    assert [s.process_id for s in seen] == [0, 1, 2, 3]
    assert {(s.coordinator_address, s.num_processes) for s in seen} == {
        ("cmle-training-workerpool0-ab12-0:2222", 4)}


def test_detect_tf_config_slurm_tpu_and_explicit():
    tf_config = {"cluster": {"chief": ["c:1"], "worker": ["a:1", "b:1"], "ps": ["p:1"]},
                 "task": {"type": "worker", "index": 0}}
    assert distributed.detect({"TF_CONFIG": json.dumps(tf_config)}) == \
        distributed.ClusterSpec("TF_CONFIG", "c:1", 3, 1)
    assert distributed.detect({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}).auto
    assert distributed.detect({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}) is None
    assert distributed.detect({"TPU_WORKER_HOSTNAMES": "t0,t1"}).source == "Cloud TPU"
    assert distributed.detect({"TPU_WORKER_HOSTNAMES": "t0"}) is None
    assert distributed.detect({}) is None
    explicit = {"MAGVIT_COORDINATOR_ADDRESS": "h:5", "MAGVIT_NUM_PROCESSES": "2",
                "MAGVIT_PROCESS_ID": "1"}
    assert distributed.detect(explicit).kwargs() == dict(coordinator_address="h:5",
                                                         num_processes=2, process_id=1)


def test_detect_errors_name_the_variable():
    with pytest.raises(ValueError, match="MAGVIT_PROCESS_ID missing"):
        distributed.detect({"MAGVIT_COORDINATOR_ADDRESS": "h:5", "MAGVIT_NUM_PROCESSES": "2"})
    with pytest.raises(ValueError, match=r"MAGVIT_PROCESS_ID=2 is not in \[0, 2\)"):
        distributed.detect({"MAGVIT_COORDINATOR_ADDRESS": "h:5", "MAGVIT_NUM_PROCESSES": "2",
                            "MAGVIT_PROCESS_ID": "2"})
    with pytest.raises(ValueError, match="CLUSTER_SPEC is not valid JSON"):
        distributed.detect({"CLUSTER_SPEC": "{oops"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run_workers(out_dir, num_processes: int, devices_per_process: int):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}",
               JAX_PLATFORMS="cpu", MAGVIT_NO_PROGRESS="1")
    for name in distributed.EXPLICIT_VARS + ("CLUSTER_SPEC", "TF_CONFIG", "SLURM_JOB_ID"):
        env.pop(name, None)
    port = _free_port()
    procs = []
    for index in range(num_processes):
        worker_env = dict(env)
        if num_processes > 1:
            worker_env.update(MAGVIT_COORDINATOR_ADDRESS=f"localhost:{port}",
                              MAGVIT_NUM_PROCESSES=str(num_processes),
                              MAGVIT_PROCESS_ID=str(index))
        procs.append(subprocess.Popen([sys.executable, WORKER, str(out_dir)], env=worker_env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, output in zip(procs, outputs):
        assert p.returncode == 0, output[-3000:]
    return outputs[0]


@pytest.mark.slow
def test_two_processes_train_like_one_over_the_same_global_batch(tmp_path):
    """2 processes x 1 CPU device (jax.distributed on localhost) == 1 process x 2 devices."""
    import jax

    from magvit import checkpoints, train_utils
    two, one = tmp_path / "two", tmp_path / "one"
    log_two = _run_workers(two, num_processes=2, devices_per_process=1)
    log_one = _run_workers(one, num_processes=1, devices_per_process=2)
    assert "devices=2 processes=2" in log_two and "devices=2 processes=1" in log_one
    a, b = np.load(two / "params.npz"), np.load(one / "params.npz")
    assert sorted(a.files) == sorted(b.files) and len(a.files) > 10
    for name in a.files:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)
    # The checkpoint the two processes wrote together is one checkpoint, restorable here.
    checkpointer = checkpoints.Checkpointer(str(two / "work"))
    assert checkpointer.latest_step() == 3
    from magvit.configs import get_config
    from magvit.tokenizer import train_step as train_step_lib
    models = train_step_lib.Models(get_config("tiny").tokenizer)
    template = jax.eval_shape(models.init, jax.random.PRNGKey(0))
    state, meta = checkpointer.restore(
        template, default_sharding=train_utils.replicated(train_utils.make_mesh()))
    checkpointer.close()
    assert meta == {"processes": 2} and int(state.step) == 3
    restored = {jax.tree_util.keystr(p): np.asarray(x) for p, x in
                jax.tree_util.tree_flatten_with_path(state.params)[0]}
    for name in a.files:
        np.testing.assert_array_equal(restored[name], a[name], err_msg=name)
    # Training moved the parameters (the comparison above is not one of two untouched inits).
    fresh = models.init(jax.random.PRNGKey(0)).params
    moved = [not np.allclose(np.asarray(x), a[jax.tree_util.keystr(p)], atol=1e-4)
             for p, x in jax.tree_util.tree_flatten_with_path(fresh)[0]]
    assert sum(moved) > len(moved) // 2
