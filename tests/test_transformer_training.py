"""Transformer training on demo-dataset tokens, exact resume, and sampling (tiny sizes, CPU).

The tokenizer is the real `magvit.tokenizer.api.Tokenizer` with randomly initialised parameters:
these tests are about the transformer, which only needs a fixed clip <-> token mapping.
"""
import os

import jax
import numpy as np
import pytest
import tensorflow as tf

from magvit.configs import get_config
from magvit.sample import Sampler, write_outputs
from magvit.tokenizer import model as tokenizer_model
from magvit.tokenizer.api import Tokenizer
from magvit.train_transformer import TransformerSetup, assemble_batch, train_with_tokenizer
from magvit.transformer import conditions, tasks
from pipelines.datasets import demo
from tfrecords_schemas import tokens as token_schema

TASKS = ("frame_prediction", "class_conditional")
STEPS = 150


def _config(steps=STEPS):
    config = get_config("tiny")
    config.transformer.tasks = TASKS
    config.transformer.training.num_train_steps = steps
    config.transformer.training.log_every_steps = 50
    return config


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2, axis=(1, 2, 3, 4))
    return float(np.mean(10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    os.environ["MAGVIT_NO_PROGRESS"] = "1"
    root = tmp_path_factory.mktemp("transformer")
    config = _config()
    tc = config.tokenizer
    params = jax.jit(lambda rng: tokenizer_model.init_params(tc.model, tuple(tc.clip_shape), rng))(
        jax.random.PRNGKey(0))
    tokenizer = Tokenizer.from_params(tc, params)
    rs = np.random.RandomState(0)
    labels = np.repeat(np.arange(len(demo.CLASSES)), 6)
    clips = np.stack([demo.render(demo.CLASSES[c], rs, 8, 32) for c in labels])
    grids = np.concatenate([tokenizer.encode(clips[i:i + 8]) for i in range(0, len(clips), 8)])
    pattern = str(root / "tokens-*.tfrecord")
    with tf.io.TFRecordWriter(str(root / "tokens-00000.tfrecord")) as writer:
        for i, (grid, label) in enumerate(zip(grids, labels)):
            writer.write(token_schema.build_tokens(token_schema.TokenGrid(
                grid, tokenizer.codebook_size, tokenizer.checkpoint_id, int(label),
                demo.CLASSES[label], f"clip{i}", "demo")).SerializeToString())
    workdir = str(root / "run")
    result = train_with_tokenizer(config, pattern, tokenizer, workdir)
    return dict(config=config, tokenizer=tokenizer, clips=clips, grids=grids, labels=labels,
                pattern=pattern, workdir=workdir, result=result, root=root)


def test_training_brings_the_masked_token_loss_well_below_a_uniform_guess(env):
    result = env["result"]
    assert result["step"] == STEPS
    uniform = np.log(env["tokenizer"].codebook_size)
    assert result["masked_loss"] < 0.7 * uniform, result
    assert os.path.exists(os.path.join(env["workdir"], "config.json"))
    assert tf.io.gfile.glob(os.path.join(env["workdir"], "tensorboard", "events.*"))


def _frame_prediction(sampler, clips, seed=0):
    """(pixels, tokens) of frame-prediction samples, through the sampler's own pieces."""
    spec = tasks.task_from_config("frame_prediction", sampler.setup.config.transformer)
    setup = sampler.setup
    cond = sampler.conditions.from_pixels(spec, clips).reshape(len(clips), -1)
    mask = np.broadcast_to(setup.token_mask(spec), cond.shape)
    prefix = setup.vocab.prefix(spec, np.zeros(len(clips), int))
    tokens = np.asarray(sampler._sample_tokens(sampler.params, prefix, cond, mask,
                                               jax.random.PRNGKey(seed)))
    return sampler.generate("frame_prediction", clips, seed=seed), tokens


def test_frame_prediction_beats_an_untrained_model_and_keeps_the_condition(env):
    tokenizer, clips, grids = env["tokenizer"], env["clips"][::3], env["grids"][::3]
    trained = Sampler(env["workdir"], tokenizer)
    assert trained.step == STEPS
    untrained = Sampler(env["workdir"], tokenizer)
    untrained.params = untrained.setup.init_state(123).params
    samples, tokens = _frame_prediction(trained, clips)
    baseline, baseline_tokens = _frame_prediction(untrained, clips)
    assert samples.shape == clips.shape and samples.dtype == np.uint8
    # Official: no pasted pixels; the sample is the decoded prediction, the condition token
    # frame included (refined, not copied).
    np.testing.assert_array_equal(samples, tokenizer.decode(tokens.reshape(grids.shape)))
    spec = tasks.task_from_config("frame_prediction", trained.setup.config.transformer)
    known = trained.setup.token_mask(spec)   # the condition token frames (tiny: the first 2 of 4)
    assert known.any() and not known.all()
    flat = grids.reshape(len(clips), -1)
    cond_accuracy = np.mean(tokens[:, known] == flat[:, known])
    assert cond_accuracy > np.mean(baseline_tokens[:, known] == flat[:, known])
    trained.setup.config.transformer.decoding.paste_condition = True       # the named option
    pasted = trained.generate("frame_prediction", clips, seed=0)
    np.testing.assert_array_equal(pasted[:, 0], clips[:, 0])
    # The generated token frames against the clip's own tokens.
    truth_tokens = flat[:, ~known]
    accuracy = np.mean(tokens[:, ~known] == truth_tokens)
    baseline_accuracy = np.mean(baseline_tokens[:, ~known] == truth_tokens)
    # tiny has 1024 codes (chance 0.1%): the trained model must be far above chance and the
    # untrained model.
    assert accuracy > 0.05 and accuracy > 5 * baseline_accuracy, (accuracy, baseline_accuracy)
    # Pixels of frames 4..7 (decoded from the generated token frames) against the clip's
    # reconstruction. The tokenizer is untrained, so wrong tokens are far off and the PSNR
    # stays low in absolute terms; the trained transformer must still be closer.
    truth = tokenizer.decode(grids)
    assert _psnr(samples[:, 4:], truth[:, 4:]) > _psnr(baseline[:, 4:], truth[:, 4:])


def test_sampling_errors_and_outputs(env, tmp_path):
    sampler = Sampler(env["workdir"], env["tokenizer"])
    with pytest.raises(ValueError, match="not trained on task 'inpainting_c'"):
        sampler.generate("inpainting_c", env["clips"][:1])
    with pytest.raises(ValueError, match=r"class 4 out of range \[0, 4\)"):
        sampler.generate("class_conditional", class_id=4)
    with pytest.raises(ValueError, match=r"wrong size: got \[1, 8, 16, 16, 3\]"):
        sampler.generate("frame_prediction", np.zeros((1, 8, 16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="needs a condition video"):
        sampler.generate("frame_prediction")
    videos = sampler.generate("class_conditional", class_id=2, num_samples=2, seed=1)
    assert videos.shape == (2, 8, 32, 32, 3)
    paths = write_outputs(str(tmp_path), videos, tasks.get_task("class_conditional"))
    assert sorted(os.path.basename(p) for p in paths) == [
        "contact_sheet.png", "sample_00.gif", "sample_00.mp4", "sample_01.gif", "sample_01.mp4"]
    truth = env["clips"][:1]
    sample = sampler.generate("frame_prediction", truth)
    sheet = write_outputs(str(tmp_path / "fp"), sample, tasks.get_task("frame_prediction"), truth)[-1]
    from PIL import Image
    width = Image.open(sheet).size[0]
    assert width == 3 * 8 * 32 + 2 * 8           # condition | sample | truth, 8 frames each


def test_precomputed_condition_grids_are_used_and_built_ones_are_cached(env):
    setup = TransformerSetup(env["config"], env["tokenizer"])
    grids = env["grids"][:4]
    records = dict(tokens=grids, label=env["labels"][:4].astype(np.int32),
                   clip_id=np.array([b"a", b"b", b"c", b"d"]))
    builder = conditions.ConditionTokens(env["tokenizer"], chunk=4)
    codes = env["tokenizer"].codebook_size
    precomputed = dict(records, **{"condition/frame_prediction": (grids + 1) % codes})
    fp = tasks.get_task("frame_prediction", env["config"].transformer.condition_frames)
    seen = set()
    for step in range(6):        # one task per step (official): the batch is all FP or all CC
        batch = assemble_batch(setup, precomputed, step, builder)
        rows = batch["prefix"][:, 0] == setup.vocab.task_id("frame_prediction")
        assert rows.all() or not rows.any()
        seen.add(bool(rows[0]))
        assert setup.task_sequence[step] == (0 if rows[0] else 1)
        np.testing.assert_array_equal(batch["cond_tokens"][rows],
                                      ((grids + 1) % codes).reshape(4, -1)[rows])
        assert (batch["cond_mask"][rows] == setup.token_mask(fp)).all()
        assert not batch["cond_mask"][~rows].any()
        assert (batch["prefix"][~rows, 1] == codes + records["label"][~rows]).all()  # class token
    assert seen == {True, False}
    built = builder.from_tokens(fp, grids, records["clip_id"])
    expected = builder.from_pixels(fp, env["tokenizer"].decode(grids))
    np.testing.assert_array_equal(built, expected)
    assert len(builder._cache) == 4
    np.testing.assert_array_equal(builder.from_tokens(fp, grids * 0, records["clip_id"]), built)


def test_resumed_training_equals_uninterrupted_training(env):
    config = _config(steps=6)
    config.transformer.training.checkpoint_every_steps = 2
    tokenizer, pattern, root = env["tokenizer"], env["pattern"], env["root"]
    full = train_with_tokenizer(config, pattern, tokenizer, str(root / "full"))
    part = train_with_tokenizer(config, pattern, tokenizer, str(root / "resumed"), stop_at_step=3)
    assert part["step"] == 3
    resumed = train_with_tokenizer(config, pattern, tokenizer, str(root / "resumed"))
    assert resumed["step"] == 6
    a = Sampler(str(root / "full"), tokenizer).params
    b = Sampler(str(root / "resumed"), tokenizer).params
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert full["loss"] == resumed["loss"]
