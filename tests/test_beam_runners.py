"""Every Beam job started as `python -m pipelines.<job>` (as README documents it) on runners whose
workers are other processes or go through the portable job API: DirectRunner multi_processing
with 2 workers, and PortableRunner with an in-process job service and LOOPBACK workers. Their
outputs must be byte-identical to plain in-process DirectRunner's (nothing a worker needs may
live in `__main__`, and every record is serialized deterministically)."""
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from magvit.configs import get_config
from magvit.tokenizer.api import save_random_tokenizer
from pipelines import evaluate, prepare, pretokenize
from pipelines.datasets import demo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIRECT = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
RUNNERS = {
    "multi_processing": ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                         "--direct_num_workers=2"],
    "portable_loopback": ["--runner=PortableRunner", "--job_endpoint=embed",
                          "--environment_type=LOOPBACK"],
}
DEMO = ["--config.dataset.demo_videos_per_class=2"]


def _files(root) -> dict[str, bytes]:
    """{relative path: bytes} of every file under `root`; in the JSON reports (stats.json,
    metrics.json), which name the files they describe, `root` itself reads `<OUT>`."""
    found = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                content = f.read()
            if name.endswith(".json"):
                content = content.replace(str(root).encode(), b"<OUT>")
            found[os.path.relpath(path, root)] = content
    return found


def _cli(job: str, args: list[str], cwd) -> None:
    done = subprocess.run([sys.executable, "-m", f"pipelines.{job}", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, f"python -m pipelines.{job} failed:\n{done.stderr[-4000:]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Demo videos, a tokenizer, and each job's outputs on plain (in-process) DirectRunner."""
    root = tmp_path_factory.mktemp("runners")
    config = get_config("tiny")
    config.dataset.demo_videos_per_class = 2
    videos = demo.generate_for(config.dataset, str(root / "videos"))
    config.dataset.root = videos
    prepare.run_prepare(config.dataset, str(root / "direct" / "clips"), DIRECT)
    clips = str(root / "direct" / "clips" / "demo")
    tokenizer = save_random_tokenizer(root / "tokenizer", config)
    pretokenize.run_pretokenize({"train": f"{clips}/train/*.tfrecord"}, tokenizer,
                                str(root / "direct" / "tokens"), beam_args=DIRECT)
    eval_config = get_config("tiny").eval
    eval_config.allow_random_i3d = True
    evaluate.run_evaluate(f"{clips}/test/*.tfrecord", f"{clips}/train/*.tfrecord", eval_config,
                          str(root / "direct" / "eval"), beam_args=DIRECT)
    return dict(root=root, videos=videos, clips=clips, tokenizer=str(tokenizer))


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_prepare_cli_on_out_of_process_runners(reference, runner, tmp_path):
    out = tmp_path / "clips"
    _cli("prepare", ["--config=tiny", *DEMO, f"--config.dataset.root={reference['videos']}",
                     f"--out_dir={out}", *RUNNERS[runner]], tmp_path)
    expected = _files(reference["root"] / "direct" / "clips")
    assert sorted(expected) == sorted(_files(out)) and any(p.endswith(".tfrecord") for p in expected)
    assert _files(out) == expected


@pytest.mark.parametrize("runner", [
    pytest.param("multi_processing", marks=pytest.mark.slow),   # ~45 s; prepare covers it by default
    "portable_loopback"])
def test_pretokenize_and_evaluate_clis_on_out_of_process_runners(reference, runner, tmp_path):
    clips = reference["clips"]
    _cli("pretokenize", [f"--clips={clips}/train/*.tfrecord", f"--tokenizer={reference['tokenizer']}",
                         f"--out={tmp_path / 'tokens'}", *RUNNERS[runner]], tmp_path)
    expected = _files(reference["root"] / "direct" / "tokens")
    assert any(p.endswith(".tfrecord") for p in expected)
    assert _files(tmp_path / "tokens") == expected
    _cli("evaluate", [f"--real={clips}/test/*.tfrecord", f"--generated={clips}/train/*.tfrecord",
                      "--config=tiny", "--allow_random_i3d", f"--out={tmp_path / 'eval'}",
                      *RUNNERS[runner]], tmp_path)
    expected = _files(reference["root"] / "direct" / "eval")
    assert "metrics.json" in expected
    assert _files(tmp_path / "eval") == expected
    assert tf.io.gfile.exists(str(tmp_path / "eval" / "metrics.json"))
