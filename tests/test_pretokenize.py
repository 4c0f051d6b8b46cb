"""Pre-tokenization job: exact tokens, batch-size independence, determinism, dead letters."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from magvit.configs import get_config
from magvit.tokenizer.api import Tokenizer, save_random_tokenizer
from magvit.transformer.tasks import get_task
from pipelines import pretokenize
from tfrecords_schemas import clip as clip_schema
from tfrecords_schemas import tokens as tokens_schema

NUM_CLIPS = 5


def _clip(rng, i, shape):
    t, h, w = shape
    return clip_schema.Clip(frames=rng.randint(0, 256, (t, h, w, 3), dtype=np.uint8), fps=8.0,
                            label=i % 4, label_name=f"class{i % 4}", video_id=f"video{i}",
                            clip_start=0, dataset="demo")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretokenize")
    config = get_config("tiny")
    tokenizer_dir = save_random_tokenizer(root / "tokenizer", config)
    shape = tuple(config.tokenizer.clip_shape)
    rng = np.random.RandomState(0)
    clips = [_clip(rng, i, shape) for i in range(NUM_CLIPS)]
    clips_path = str(root / "clips-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(clips_path) as writer:
        for i, clip in enumerate(clips):
            writer.write(clip_schema.build_clip(clip).SerializeToString())
            if i == 1:   # a clip of the wrong size and a record of another schema
                small = _clip(rng, 99, (shape[0], shape[1] // 2, shape[2] // 2))
                writer.write(clip_schema.build_clip(small).SerializeToString())
                writer.write(b"not an example")
    return dict(root=root, tokenizer_dir=tokenizer_dir, clips=clips, clips_path=clips_path,
                tokenizer=Tokenizer.load(tokenizer_dir), config=config)


def _read_tokens(out_dir, split, tokenizer, conditions=()):
    records = {}
    for path in sorted(glob.glob(os.path.join(out_dir, split, "tokens-*.tfrecord"))):
        for serialized in tf.data.TFRecordDataset(path):
            parsed = tokens_schema.parse_tokens(serialized, tokenizer.grid_shape, conditions,
                                                tokenizer_id=tokenizer.checkpoint_id)
            records[parsed["clip_id"].numpy().decode()] = parsed
    return records


def _run(setup, out_dir, batch_size, conditions=()):
    return pretokenize.run_pretokenize(
        {"train": setup["clips_path"]}, setup["tokenizer_dir"], str(out_dir),
        batch_size=batch_size, conditions=conditions, beam_args=["--runner=DirectRunner"])


@pytest.fixture(scope="module")
def run_b2(setup):
    out = setup["root"] / "out_b2"
    stats = _run(setup, out, 2, conditions=("frame_prediction",))
    return out, stats


def test_tokens_decode_like_the_tokenizer_and_carry_their_provenance(setup, run_b2):
    out, stats = run_b2
    tokenizer = setup["tokenizer"]
    records = _read_tokens(out, "train", tokenizer, ("frame_prediction",))
    clips = setup["clips"]
    assert sorted(records) == sorted(c.clip_id for c in clips)
    frames = np.stack([c.frames for c in clips])
    written = np.stack([records[c.clip_id]["tokens"].numpy() for c in clips])
    np.testing.assert_array_equal(tokenizer.decode(written),
                                  tokenizer.decode(tokenizer.encode(frames)))
    conditions = np.stack([records[c.clip_id]["condition/frame_prediction"].numpy() for c in clips])
    np.testing.assert_array_equal(
        conditions, tokenizer.encode(get_task("frame_prediction").condition_video(frames)))
    for clip in clips:
        record = records[clip.clip_id]
        assert int(record["label"]) == clip.label
        assert record["label_name"].numpy().decode() == clip.label_name
        assert int(record["codebook_size"]) == tokenizer.codebook_size
    split = stats["train"]
    assert split["clips"] == NUM_CLIPS and split["failures"] == 2
    assert split["tokens"] == NUM_CLIPS * int(np.prod(tokenizer.grid_shape))
    assert 0 < split["codebook_usage"] <= 1 and 1 <= split["perplexity"] <= tokenizer.codebook_size
    assert split["tokenizer_id"] == tokenizer.checkpoint_id
    assert json.load(open(out / "train" / "stats.json")) == split
    assert os.path.exists(out / "train" / "schema.pbtxt")


def test_bad_records_go_to_the_dead_letter_output(run_b2, setup):
    out, _ = run_b2
    lines = [json.loads(line) for path in glob.glob(str(out / "train" / "failures-*.jsonl"))
             for line in open(path) if line.strip()]
    assert sorted(f["reason"] for f in lines) == ["schema", "shape"]
    assert {f["path"] for f in lines} == {setup["clips_path"]}
    assert all(f["stage"] == "pretokenize" for f in lines)
    shape = next(f for f in lines if f["reason"] == "shape")
    assert "8x16x16" in shape["detail"] and "8x32x32" in shape["detail"]


def test_batch_size_does_not_change_tokens_and_runs_are_identical(setup, run_b2):
    out_b2, stats_b2 = run_b2
    tokenizer = setup["tokenizer"]
    b2 = _read_tokens(out_b2, "train", tokenizer)
    out_b3 = setup["root"] / "out_b3"
    stats_b3 = _run(setup, out_b3, 3)
    b3 = _read_tokens(out_b3, "train", tokenizer)
    assert sorted(b2) == sorted(b3)
    for clip_id in b2:
        np.testing.assert_array_equal(b2[clip_id]["tokens"].numpy(), b3[clip_id]["tokens"].numpy())
    again = setup["root"] / "out_b3_again"
    assert _run(setup, again, 3) == stats_b3
    files = lambda d: sorted(glob.glob(str(d / "train" / "tokens-*")))
    assert [open(a, "rb").read() for a in files(out_b3)] == \
        [open(b, "rb").read() for b in files(again)]
    assert {k: v for k, v in stats_b2["train"].items() if k != "conditions"} == \
        {k: v for k, v in stats_b3["train"].items() if k != "conditions"}


def test_a_tokenizer_of_another_resolution_is_refused_up_front(setup, tmp_path):
    config = get_config("tiny")
    config.tokenizer.clip_shape = (8, 16, 16)
    other = save_random_tokenizer(tmp_path / "tok16", config)
    with pytest.raises(ValueError, match=r"encodes clips of 8x16x16 .* are 8x32x32"):
        pretokenize.run_pretokenize({"train": setup["clips_path"]}, other, str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


def test_cli_errors_clearly(setup, tmp_path, capsys):
    assert pretokenize.main([f"--clips={tmp_path}/none-*", f"--tokenizer={setup['tokenizer_dir']}",
                             f"--out={tmp_path}/o"]) == 2
    assert "matches no file" in capsys.readouterr().err
