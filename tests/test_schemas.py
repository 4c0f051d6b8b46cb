"""Record formats: both round trips, TFMD schema files, clear errors for foreign records."""
import numpy as np
import pytest
import tensorflow as tf

from tfrecords_schemas import SchemaError, clip, common, tokens


def _clip(frames=None, **kw):
    rng = np.random.RandomState(0)
    frames = rng.randint(0, 256, (4, 8, 6, 3), dtype=np.uint8) if frames is None else frames
    args = dict(fps=12.5, label=7, label_name="ApplyEyeMakeup", video_id="v_ApplyEyeMakeup_g01_c01",
                clip_start=32, dataset="ucf101")
    args.update(kw)
    return clip.Clip(frames=frames, **args)


def test_clip_round_trip_png_is_lossless():
    original = _clip()
    parsed = clip.parse_clip(clip.build_clip(original).SerializeToString(), shape=(4, 8, 6))
    np.testing.assert_array_equal(parsed["frames"].numpy(), original.frames)
    assert parsed["frames"].dtype == tf.uint8
    assert parsed["label"].numpy() == 7 and parsed["clip_start"].numpy() == 32
    assert parsed["label_name"].numpy() == b"ApplyEyeMakeup"
    assert parsed["video_id"].numpy() == b"v_ApplyEyeMakeup_g01_c01"
    assert parsed["dataset"].numpy() == b"ucf101" and parsed["image_format"].numpy() == b"png"
    assert parsed["fps"].numpy() == pytest.approx(12.5)


def test_clip_round_trip_jpeg_within_codec_tolerance():
    frames = np.tile(np.linspace(64, 128, 16).astype(np.uint8)[None, None, :, None], (3, 16, 1, 3))
    serialized = clip.build_clip(_clip(frames), image_format="jpeg", jpeg_quality=95).SerializeToString()
    parsed = clip.parse_clip(serialized)
    assert parsed["image_format"].numpy() == b"jpeg"
    error = np.abs(parsed["frames"].numpy().astype(int) - frames)
    assert error.mean() <= 2 and error.max() <= 8


def test_clip_parses_inside_tf_data():
    records = [clip.build_clip(_clip(clip_start=i)).SerializeToString() for i in range(3)]
    ds = tf.data.Dataset.from_tensor_slices(records).map(lambda s: clip.parse_clip(s, shape=(4, 8, 6))).batch(3)
    batch = next(iter(ds))
    assert batch["frames"].shape == (3, 4, 8, 6, 3)
    assert list(batch["clip_start"].numpy()) == [0, 1, 2]


def test_clip_batches_parse_like_single_records_and_refuse_a_bad_one():
    rng = np.random.RandomState(1)
    records = [clip.build_clip(_clip(rng.randint(0, 256, (4, 8, 6, 3), dtype=np.uint8),
                                     clip_start=i), png_compression=i).SerializeToString()
               for i in range(3)]
    batch = clip.parse_clips(tf.constant(records), (4, 8, 6))
    assert batch["frames"].shape == (3, 4, 8, 6, 3)
    for i, record in enumerate(records):
        single = clip.parse_clip(record, shape=(4, 8, 6))
        for key, value in single.items():
            np.testing.assert_array_equal(batch[key][i].numpy(), value.numpy())
    other_size = clip.build_clip(_clip(np.zeros((4, 8, 8, 3), np.uint8))).SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"expected \(T, H, W\) = \(4, 8, 6\)"):
        clip.parse_clips(tf.constant(records + [other_size]), (4, 8, 6))
    foreign = tokens.build_tokens(_grid()).SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a magvit.clip record"):
        clip.parse_clips(tf.constant([foreign] + records), (4, 8, 6))


def test_clip_of_wrong_shape_is_refused():
    serialized = clip.build_clip(_clip()).SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"expected \(T, H, W\) = \(16, 64, 64\)"):
        clip.parse_clip(serialized, shape=(16, 64, 64))


def test_build_clip_rejects_bad_frames():
    with pytest.raises(ValueError, match="uint8"):
        clip.build_clip(_clip(np.zeros((4, 8, 8, 3), np.float32)))


def _grid(**kw):
    args = dict(tokens=np.arange(32).reshape(2, 4, 4) % 1024, codebook_size=1024, tokenizer_id="abc123",
                label=3, label_name="pulse", clip_id="pulse_000@8", dataset="demo")
    args.update(kw)
    return tokens.TokenGrid(**args)


def test_tokens_round_trip_with_conditions():
    condition = np.full((2, 4, 4), 1023)
    grid = _grid(conditions={"frame_prediction": condition})
    parsed = tokens.parse_tokens(tokens.build_tokens(grid).SerializeToString(), (2, 4, 4),
                                 conditions=("frame_prediction",), tokenizer_id="abc123")
    np.testing.assert_array_equal(parsed["tokens"].numpy(), grid.tokens)
    np.testing.assert_array_equal(parsed["condition/frame_prediction"].numpy(), condition)
    assert parsed["tokens"].dtype == tf.int32
    assert parsed["codebook_size"].numpy() == 1024 and parsed["tokenizer_id"].numpy() == b"abc123"
    assert parsed["clip_id"].numpy() == b"pulse_000@8" and parsed["label"].numpy() == 3


def test_tokens_from_another_tokenizer_or_grid_are_refused():
    serialized = tokens.build_tokens(_grid()).SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError, match="another tokenizer"):
        tokens.parse_tokens(serialized, (2, 4, 4), tokenizer_id="other")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"grid shape differs from the expected \(4, 16, 16\)"):
        tokens.parse_tokens(serialized, (4, 16, 16))


def test_build_tokens_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match=r"outside \[0, 16\)"):
        tokens.build_tokens(_grid(codebook_size=16))


def test_wrong_schema_and_version_give_clear_errors():
    clip_record = clip.build_clip(_clip()).SerializeToString()
    token_record = tokens.build_tokens(_grid()).SerializeToString()
    clip.check_clip(clip_record)
    tokens.check_tokens(token_record)
    with pytest.raises(SchemaError, match="record has schema 'magvit.tokens', expected 'magvit.clip'"):
        clip.check_clip(token_record)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a magvit.tokens record"):
        tokens.parse_tokens(clip_record.replace(b"magvit.clip", b"magvit.tokn"), (2, 4, 4))
    example = tf.train.Example.FromString(clip_record)
    example.features.feature["schema_version"].int64_list.value[0] = 2
    with pytest.raises(SchemaError, match="version 2, this code reads version 1"):
        clip.check_clip(example.SerializeToString())
    del example.features.feature["frames"]
    example.features.feature["schema_version"].int64_list.value[0] = 1
    with pytest.raises(SchemaError, match="lacks required feature.*frames"):
        clip.check_clip(example.SerializeToString())
    with pytest.raises(SchemaError, match="not a tf.train.Example"):
        clip.check_clip(b"\xff\xff garbage")


@pytest.mark.parametrize("module", [clip, tokens])
def test_checked_in_schema_pbtxt_matches_code(module, tmp_path):
    with open(module.PBTXT, encoding="utf-8") as f:
        assert f.read() == common.schema_text(module.schema()), "run `python -m tfrecords_schemas`"
    written = common.write_schema(module.schema(), str(tmp_path))
    assert open(written).read() == common.schema_text(module.schema())
    names = {f.name for f in module.schema().feature}
    assert names == set(module.FEATURES)
