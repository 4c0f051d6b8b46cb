"""The evaluate Beam job and CLI (pipelines/evaluate.py) on small clip TFRecords."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from magvit.configs import get_config
from magvit.metrics import reconstruction
from pipelines import evaluate
from tfrecords_schemas import clip as clip_schema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _frames(seed, t=4, size=32):
    return np.random.default_rng(seed).integers(0, 256, (t, size, size, 3), dtype=np.uint8)


def _write(path, clips, garbage=False):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for video_id, frames in clips:
            clip = clip_schema.Clip(frames=frames, fps=8.0, label=0, label_name="bounce",
                                    video_id=video_id, clip_start=0, dataset="demo")
            writer.write(clip_schema.build_clip(clip).SerializeToString())
        if garbage:
            writer.write(b"not a clip record")
    return str(path)


def _config(**overrides):
    config = get_config("tiny").eval
    config.allow_random_i3d = True
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    real = {f"v{i}": _frames(i) for i in range(4)}
    noisy = {k: np.clip(v.astype(int) + np.random.default_rng(9).integers(-20, 21, v.shape), 0, 255)
             .astype(np.uint8) for k, v in list(real.items())[:3]}
    real_path = _write(root / "real.tfrecord", real.items())
    generated_path = _write(root / "generated.tfrecord",
                            list(noisy.items()) + [("sample", _frames(7))], garbage=True)
    return real, noisy, real_path, generated_path


def test_fvd_psnr_ssim_dead_letters_and_metrics_json(data, tmp_path):
    real, noisy, real_path, generated_path = data
    out = str(tmp_path / "eval")
    metrics = evaluate.run_evaluate(real_path, generated_path, _config(), out)
    with open(os.path.join(out, "metrics.json")) as f:
        assert json.load(f) == metrics
    assert metrics["fvd"] > 0
    assert (metrics["num_real"], metrics["num_generated"], metrics["num_frames"]) == (4, 3 + 1, 4)
    assert metrics["protocol"] == "magvit" and metrics["random_i3d"] is True
    assert "RANDOM" in metrics["warning"]
    assert metrics["num_pairs"] == 3
    want_psnr = np.mean([np.mean(reconstruction.psnr(real[k], noisy[k])) for k in noisy])
    want_ssim = np.mean([np.mean(reconstruction.ssim(real[k], noisy[k])) for k in noisy])
    assert metrics["psnr"] == pytest.approx(want_psnr, rel=1e-5)
    assert metrics["ssim"] == pytest.approx(want_ssim, rel=1e-5)
    assert metrics["lpips"] is None and metrics["lpips_status"].startswith("not computed")
    assert metrics["num_dead_letters"] == 1
    with open(os.path.join(out, "dead_letter.jsonl")) as f:
        (dead,) = [json.loads(line) for line in f]
    assert dead["path"] == generated_path and dead["stage"] == "evaluate/generated"
    assert dead["reason"] == "bad_clip_record" and "tf.train.Example" in dead["detail"]


def test_same_clips_give_zero_fvd_and_cache_is_reused(data, tmp_path):
    _, _, real_path, _ = data
    cache = str(tmp_path / "real_stats.npz")
    first = evaluate.run_evaluate(real_path, real_path, _config(reference_stats=cache),
                                  str(tmp_path / "a"))
    assert first["fvd"] == pytest.approx(0, abs=1e-6)
    assert first["psnr"] == pytest.approx(100) and first["ssim"] == pytest.approx(1)
    assert os.path.exists(cache) and first["reference_stats_cached"] is False
    second = evaluate.run_evaluate(real_path, real_path, _config(reference_stats=cache),
                                   str(tmp_path / "b"))
    assert second["reference_stats_cached"] is True
    assert second["fvd"] == pytest.approx(0, abs=1e-6) and second["num_real"] == 4


def test_paired_scores_of_a_task_cover_only_its_generated_content(tmp_path):
    from magvit.transformer import tasks
    real = {f"v{i}": np.random.default_rng(i).integers(16, 240, (4, 32, 32, 3), np.uint8)
            for i in range(2)}
    mask = reconstruction.generated_mask(tasks.get_task("frame_prediction", 1), (4, 32, 32))
    signs = np.where(np.random.default_rng(5).random((4, 32, 32, 3)) < 0.5, -8, 8)
    generated = {k: (v.astype(int) + signs * mask[..., None]).astype(np.uint8)
                 for k, v in real.items()}
    task = tasks.get_task("frame_prediction", 1)
    padded = {k: task.condition_video(v[None])[0] for k, v in real.items()}  # last frame copied
    real_path = _write(tmp_path / "real.tfrecord", real.items())
    generated_path = _write(tmp_path / "generated.tfrecord", generated.items())
    baseline_path = _write(tmp_path / "baseline.tfrecord", padded.items())
    metrics = evaluate.run_evaluate(real_path, generated_path, _config(), str(tmp_path / "fp"),
                                    task="frame_prediction", baseline_pattern=baseline_path)
    assert metrics["num_pairs"] == 2 and metrics["task"] == "frame_prediction"
    assert metrics["psnr"] == pytest.approx(20 * np.log10(255 / 8), abs=1e-3)  # not 100-inflated
    assert metrics["paired_scores"].startswith("generated content only")
    # The baseline, scored alike in the same job: its own FVD and generated-content PSNR.
    want = np.mean([reconstruction.generated_psnr(real[k], padded[k], mask) for k in real])
    assert metrics["baseline"]["psnr"] == pytest.approx(want, rel=1e-5)
    assert metrics["baseline"]["num_pairs"] == 2 and metrics["baseline"]["num_generated"] == 2
    assert metrics["baseline"]["fvd"] > 0 and metrics["baseline"]["pattern"] == baseline_path
    whole = evaluate.run_evaluate(real_path, generated_path, _config(), str(tmp_path / "all"))
    assert whole["psnr"] == pytest.approx((100 + 3 * 20 * np.log10(255 / 8)) / 4, abs=1e-3)


def test_bad_inputs_are_refused_before_running(data, tmp_path):
    _, _, real_path, generated_path = data
    with pytest.raises(ValueError, match="I3D weights '/no/i3d'"):
        evaluate.run_evaluate(real_path, generated_path, _config(i3d_weights="/no/i3d"),
                              str(tmp_path))
    with pytest.raises(ValueError, match="unknown task 'painting'"):
        evaluate.run_evaluate(real_path, generated_path, _config(), str(tmp_path), task="painting")
    with pytest.raises(FileNotFoundError, match=r"--generated='.*nothing-\*' matches no file"):
        evaluate.run_evaluate(real_path, str(tmp_path / "nothing-*"), _config(), str(tmp_path))


def test_cli_writes_metrics(data, tmp_path):
    _, _, real_path, generated_path = data
    out = str(tmp_path / "cli")
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.evaluate", f"--real={real_path}",
         f"--generated={generated_path}", "--allow_random_i3d", f"--out={out}", "--config=tiny",
         "--config.eval.fvd_protocol=fvd_original", "--runner=DirectRunner",
         "--task=frame_prediction", f"--baseline={real_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FVD " in result.stdout and "WARNING: features from a RANDOM I3D" in result.stdout
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["protocol"] == "fvd_original" and metrics["num_pairs"] == 3
    assert metrics["task"] == "frame_prediction" and "generated content only" in result.stdout
    # The real clips as their own baseline: FVD 0, every generated pixel exact (100 dB cap).
    assert metrics["baseline"]["fvd"] == pytest.approx(0, abs=1e-6)
    assert metrics["baseline"]["psnr"] == pytest.approx(100)
    assert metrics["baseline"]["num_pairs"] == 4
    assert "baseline: FVD 0.000, PSNR 100.000 dB" in result.stdout


def test_pairing_joins_keys_and_paired_records_only_and_cache_skips_real_decoding(tmp_path):
    """Counters of the run: the joins get every clip's key but only the pairs' encoded records,
    and with cached reference statistics no real clip is decoded for FVD."""
    real = {f"v{i}": _frames(i) for i in range(4)}
    real_path = _write(tmp_path / "real.tfrecord", real.items())
    unpaired = _write(tmp_path / "samples.tfrecord", [(f"sample{i}", _frames(10 + i))
                                                      for i in range(3)])
    paired = _write(tmp_path / "recon.tfrecord", [("v0", _frames(20)), ("v1", _frames(21))])
    cache = str(tmp_path / "real_stats.npz")
    first = {}
    evaluate.run_evaluate(real_path, unpaired, _config(reference_stats=cache), str(tmp_path / "a"),
                          job_counters=first)
    keys = sum(len(f"v{i}@0") for i in range(4))
    assert first["decoded_real"] == 4 and first["decoded_generated"] == 3
    assert first["shuffled_bytes"] == keys + sum(len(f"sample{i}@0") for i in range(3))
    second = {}
    metrics = evaluate.run_evaluate(real_path, paired, _config(reference_stats=cache),
                                    str(tmp_path / "b"), job_counters=second)
    assert metrics["reference_stats_cached"] is True and metrics["num_pairs"] == 2
    assert "decoded_real" not in second and second["decoded_generated"] == 2
    records = [r.numpy() for r in tf.data.TFRecordDataset([real_path])][:2]
    records += [r.numpy() for r in tf.data.TFRecordDataset([paired])]
    record_bytes = (sum(len(r) for r in records) + 2 * len(real_path) + 2 * len(paired)
                    + 2 * len("v0@0") + 2 * len("v1@0"))
    assert second["shuffled_bytes"] == keys + 2 * len("v0@0") + record_bytes
    assert second["shuffled_bytes"] < 6 * 4 * 32 * 32 * 3   # before: every clip's decoded frames
