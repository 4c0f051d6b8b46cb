"""I3D network and its weight loader (magvit/metrics/i3d.py), with random weights saved in the
published variable layout (no weights can be downloaded here)."""
import os

import numpy as np
import pytest
import tensorflow as tf

from magvit.metrics import i3d


@pytest.fixture(scope="module")
def params():
    return i3d.init_params(seed=1)


def test_variable_layout_is_the_published_one():
    shapes = i3d.variable_shapes()
    # 58 conv units, 57 with batch norm (beta, moving mean, variance), the logits with a bias.
    assert len(shapes) == 58 + 57 * 3 + 1
    assert shapes["Conv3d_1a_7x7/conv_3d/w"] == (7, 7, 7, 3, 64)
    assert shapes["Conv3d_1a_7x7/batch_norm/beta"] == (64,)
    assert shapes["Mixed_3b/Branch_0/Conv3d_0a_1x1/conv_3d/w"] == (1, 1, 1, 192, 64)
    assert shapes["Mixed_3c/Branch_1/Conv3d_0b_3x3/conv_3d/w"] == (3, 3, 3, 128, 192)
    assert shapes["Mixed_4b/Branch_3/Conv3d_0b_1x1/conv_3d/w"] == (1, 1, 1, 480, 64)
    assert shapes["Mixed_5b/Branch_2/Conv3d_0a_3x3/conv_3d/w"] == (3, 3, 3, 32, 128)  # typo kept
    assert "Mixed_5b/Branch_2/Conv3d_0b_3x3/conv_3d/w" not in shapes
    assert shapes["Logits/Conv3d_0c_1x1/conv_3d/w"] == (1, 1, 1, 1024, 400)
    assert shapes["Logits/Conv3d_0c_1x1/conv_3d/b"] == (400,)
    assert not any(k.startswith("Logits") and "batch_norm" in k for k in shapes)
    assert not any(k.endswith("gamma") for k in shapes)
    total = sum(int(np.prod(s)) for s in shapes.values())
    assert 12_000_000 < total < 13_000_000


def test_published_endpoint_shapes_at_16x224x224(params):
    model = i3d.I3D(params)
    out = model.endpoints(tf.zeros([1, 16, 224, 224, 3]))
    assert out["Conv3d_1a_7x7"].shape == (1, 8, 112, 112, 64)
    assert out["MaxPool3d_3a_3x3"].shape == (1, 8, 28, 28, 192)
    assert out["Mixed_3c"].shape == (1, 8, 28, 28, 480)
    assert out["MaxPool3d_4a_3x3"].shape == (1, 4, 14, 14, 480)
    assert out["Mixed_4f"].shape == (1, 4, 14, 14, 832)
    assert out["Mixed_5c"].shape == (1, 2, 7, 7, 1024)
    assert out["Logits"].shape == (1, 1, 400)
    assert out["LogitsMean"].shape == (1, 400)


def test_logits_bias_and_time_average(params):
    zeroed = {k: (np.zeros_like(v) if k.endswith("/w") else v) for k, v in params.items()}
    zeroed["Logits/Conv3d_0c_1x1/conv_3d/b"] = np.arange(400, dtype=np.float32)
    out = i3d.I3D(zeroed)(tf.random.uniform([2, 8, 64, 64, 3], -1, 1)).numpy()
    np.testing.assert_allclose(out, np.tile(np.arange(400.0), (2, 1)))


def test_rejects_frames_larger_than_224(params):
    with pytest.raises(ValueError, match="at most 224x224"):
        i3d.I3D(params).endpoints(tf.zeros([1, 8, 256, 256, 3]))


def test_save_load_round_trip_in_tf_hub_layout(params, tmp_path):
    module = str(tmp_path / "i3d-kinetics-400_1")
    prefix = i3d.save_params(params, module)
    assert prefix == os.path.join(module, "variables", "variables")
    stored = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    assert stored["RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w"] == [7, 7, 7, 3, 64]
    assert stored["RGB/inception_i3d/Conv3d_1a_7x7/batch_norm/moving_mean"] == [1, 1, 1, 1, 64]
    assert stored["RGB/inception_i3d/Conv3d_1a_7x7/batch_norm/beta"] == [64]  # as published
    assert stored["RGB/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/b"] == [400]
    loaded = i3d.load_params(module)
    assert set(loaded) == set(params)
    for name, value in params.items():
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)
    videos = tf.random.uniform([2, 8, 64, 64, 3], -1, 1, seed=3)
    np.testing.assert_allclose(i3d.I3D(loaded)(videos), i3d.I3D(params)(videos), rtol=1e-6, atol=1e-6)
    assert i3d.weights_id(module) == i3d.params_id(params)  # the tensors' hash, not the file's


def test_loads_kinetics_i3d_checkpoint_with_other_scope(params, tmp_path):
    names = [f"inception_i3d/{k}" for k in params]
    prefix = str(tmp_path / "rgb_imagenet" / "model.ckpt")
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(v) for v in params.values()])
    (tmp_path / "rgb_imagenet" / "checkpoint").write_text('model_checkpoint_path: "model.ckpt"\n')
    for path in (prefix, str(tmp_path / "rgb_imagenet")):
        loaded = i3d.load_params(path)
        np.testing.assert_array_equal(loaded["Mixed_4e/Branch_1/Conv3d_0b_3x3/conv_3d/w"],
                                      params["Mixed_4e/Branch_1/Conv3d_0b_3x3/conv_3d/w"])


def test_missing_extra_and_misshaped_variables_are_named(params, tmp_path):
    broken = dict(params)
    del broken["Mixed_4c/Branch_1/Conv3d_0b_3x3/batch_norm/moving_variance"]
    broken["Mixed_6a/Branch_0/Conv3d_0a_1x1/conv_3d/w"] = np.zeros([1, 1, 1, 4, 4], np.float32)
    broken["Conv3d_2b_1x1/conv_3d/w"] = np.zeros([1, 1, 1, 64, 32], np.float32)
    module = str(tmp_path / "broken")
    i3d.save_params(broken, module)
    with pytest.raises(i3d.I3DWeightsError) as error:
        i3d.load_params(module)
    message = str(error.value)
    assert module in message
    assert "missing variable(s): RGB/inception_i3d/Mixed_4c/Branch_1/Conv3d_0b_3x3/batch_norm/moving_variance" in message
    assert "unexpected variable(s): RGB/inception_i3d/Mixed_6a/Branch_0/Conv3d_0a_1x1/conv_3d/w" in message
    assert "RGB/inception_i3d/Conv3d_2b_1x1/conv_3d/w has shape [1, 1, 1, 64, 32], expected [1, 1, 1, 64, 64]" in message


def test_not_a_weights_path_is_a_clear_error(tmp_path):
    with pytest.raises(i3d.I3DWeightsError, match="not an .npz of magvit.metrics.i3d_weights, a TF-Hub module directory"):
        i3d.load_params(str(tmp_path))
    with pytest.raises(i3d.I3DWeightsError, match="no I3D weights path"):
        i3d.load_params("")
    other = str(tmp_path / "other" / "model.ckpt")
    tf.raw_ops.SaveV2(prefix=other, tensor_names=["resnet/conv1/w"], shape_and_slices=[""],
                      tensors=[tf.zeros([3])])
    with pytest.raises(i3d.I3DWeightsError, match="ending in 'inception_i3d/Conv3d_1a_7x7/conv_3d/w'"):
        i3d.load_params(other)
