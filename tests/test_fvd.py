"""FVD protocol, evaluator and reference-statistics cache (magvit/metrics/fvd.py)."""
import numpy as np
import pytest

from magvit.configs import get_config
from magvit.metrics import fvd, i3d

SMALL = fvd.Protocol("small-test", size=(64, 64))  # fast I3D inputs for evaluator tests


def _videos(seed, n=4, t=4, size=32):
    return np.random.default_rng(seed).integers(0, 256, (n, t, size, size, 3), dtype=np.uint8)


def _eval_config(**overrides):
    config = get_config("tiny").eval
    config.allow_random_i3d = True
    config.update(overrides)
    return config


def test_tf1_bilinear_resize_hand_computed():
    frame = np.array([[0, 40, 80, 120],
                      [100, 140, 180, 220],
                      [200, 240, 250, 255],
                      [10, 20, 30, 40]], np.uint8)
    videos = np.repeat(frame[None, None, :, :, None], 3, axis=-1)
    # 4x4 -> intermediate 2x2 samples rows/cols 0 and 2 (src = dst * 2): [[0, 80], [200, 250]];
    # 2x2 -> 4x4 samples at 0, 0.5, 1, 1.5 (clamped to 1): the legacy TF1 alignment.
    expected = np.array([[0, 40, 80, 80],
                         [100, 132.5, 165, 165],
                         [200, 225, 250, 250],
                         [200, 225, 250, 250]])
    protocol = fvd.Protocol("hand", size=(4, 4), intermediate_size=(2, 2))
    out = fvd.preprocess(videos, protocol).numpy()
    assert out.shape == (1, 1, 4, 4, 3)
    np.testing.assert_allclose(out[0, 0, :, :, 0], 2 * expected / 255 - 1, atol=1e-6)


def test_magvit_protocol_uses_64x64_intermediate_and_fvd_original_does_not():
    frame = np.random.default_rng(0).integers(0, 256, (128, 128), dtype=np.uint8)
    videos = np.repeat(frame[None, None, :, :, None], 3, axis=-1)
    p = frame.astype(np.float64)
    magvit = fvd.preprocess(videos, "magvit").numpy()[0, 0, :, :, 0]
    original = fvd.preprocess(videos, "fvd_original").numpy()[0, 0, :, :, 0]
    assert magvit.shape == original.shape == (224, 224)
    # magvit: 128 -> 64 keeps even pixels, then 64 -> 224 samples at i * 64 / 224 = 2i/7.
    want_magvit = p[0, 0] + (p[0, 2] - p[0, 0]) * 2 / 7
    # fvd_original: 128 -> 224 samples at i * 128 / 224 = 4i/7.
    want_original = p[0, 0] + (p[0, 1] - p[0, 0]) * 4 / 7
    assert magvit[0, 1] == pytest.approx(2 * want_magvit / 255 - 1, abs=1e-5)
    assert original[0, 1] == pytest.approx(2 * want_original / 255 - 1, abs=1e-5)
    assert magvit[7, 7] == pytest.approx(2 * p[4, 4] / 255 - 1, abs=1e-5)
    # Frames already 64x64 skip the intermediate resize: both protocols agree exactly.
    small = videos[:, :, ::2, ::2]
    np.testing.assert_array_equal(fvd.preprocess(small, "magvit").numpy(),
                                  fvd.preprocess(small, "fvd_original").numpy())


def test_preprocess_and_protocol_errors():
    with pytest.raises(ValueError, match="uint8 videos"):
        fvd.preprocess(np.zeros([1, 2, 8, 8, 3], np.float32))
    with pytest.raises(ValueError, match="unknown FVD protocol 'bilinear'.*magvit, fvd_original"):
        fvd.get_protocol("bilinear")


def test_every_config_uses_the_real_weights_by_default():
    from magvit.configs import NAMES
    for name in NAMES:
        config = get_config(name).eval
        assert config.i3d_weights == "" and config.allow_random_i3d is False, name


def test_bad_weights_path_is_a_clear_error(tmp_path):
    with pytest.raises(i3d.I3DWeightsError, match=r"I3D weights '/no/i3d': not an \.npz"):
        fvd.FVD("/no/i3d")
    with pytest.raises(i3d.I3DWeightsError, match="no-such.npz': cannot read the .npz"):
        fvd.FVD(str(tmp_path / "no-such.npz"))


def test_fvd_from_videos_zero_symmetric_and_marked_random():
    config = _eval_config()
    a, b = _videos(0), _videos(1, n=3) // 2
    same = fvd.fvd_from_videos(a, a, config)
    assert same["fvd"] == pytest.approx(0.0, abs=1e-6)
    ab, ba = fvd.fvd_from_videos(a, b, config), fvd.fvd_from_videos(b, a, config)
    assert ab["fvd"] > 1e-3
    assert ab["fvd"] == pytest.approx(ba["fvd"], rel=1e-6)
    assert (ab["num_real"], ab["num_generated"], ab["num_frames"]) == (4, 3, 4)
    assert ab["protocol"] == "magvit" and ab["protocol_detail"]["intermediate_size"] == [64, 64]
    assert ab["random_i3d"] is True and ab["i3d_weights"] == "RANDOM-i3d(seed=0)"
    assert "RANDOM" in ab["warning"]
    with pytest.raises(ValueError, match="differ in frame count"):
        fvd.fvd_from_videos(a, _videos(2, t=5), config)


def test_features_do_not_depend_on_batching():
    videos = _videos(3, n=5)
    one = fvd.FVD(protocol=SMALL, allow_random=True, batch_size=5)
    two = fvd.FVD(protocol=SMALL, allow_random=True, batch_size=2)
    np.testing.assert_allclose(one.features(videos), two.features(videos), rtol=1e-4, atol=1e-5)
    stats = two.statistics([videos[:3], videos[3:]])
    assert stats.count == 5
    np.testing.assert_allclose(stats.mean, one.features(videos).mean(0), rtol=1e-4, atol=1e-5)


def test_loaded_weights_are_recorded(tmp_path):
    module = str(tmp_path / "i3d-kinetics-400_1")
    i3d.save_params(i3d.init_params(seed=5), module)
    evaluator = fvd.FVD(weights=module, protocol=SMALL)
    info = evaluator.describe()
    assert info["random_i3d"] is False and "warning" not in info
    assert info["i3d_weights"] == i3d.weights_id(module) == i3d.params_id(i3d.init_params(5))
    assert info["i3d_weights_name"] == f"unknown I3D weights from {module}"
    assert info["i3d_weights_path"] == module
    random = fvd.FVD(protocol=SMALL, allow_random=True, random_seed=5)
    np.testing.assert_allclose(evaluator.features(_videos(4, n=2)),
                               random.features(_videos(4, n=2)), rtol=1e-5, atol=1e-5)


def test_reference_statistics_cache(tmp_path):
    cache = str(tmp_path / "stats" / "ucf_train.npz")
    config = _eval_config(reference_stats=cache)
    real, generated = _videos(5), _videos(6)
    first = fvd.fvd_from_videos(real, generated, config)
    assert (tmp_path / "stats" / "ucf_train.npz").exists()
    # A second run reads the cache: other "real" videos do not change the result.
    second = fvd.fvd_from_videos(_videos(7), generated, config)
    assert second["fvd"] == pytest.approx(first["fvd"], rel=1e-9)
    assert second["num_real"] == 4

    evaluator = fvd.FVD(allow_random=True)
    stats, num_frames = fvd.load_reference_stats(cache, evaluator, num_frames=4)
    assert stats.count == 4 and stats.mean.shape == (400,) and num_frames == 4
    assert fvd.load_reference_stats(str(tmp_path / "absent.npz"), evaluator) is None
    with pytest.raises(ValueError, match=r"ucf_train.npz were computed with protocol=.*magvit"):
        fvd.load_reference_stats(cache, fvd.FVD(protocol="fvd_original", allow_random=True))
    with pytest.raises(ValueError, match=r"i3d_weights='RANDOM-i3d\(seed=0\)'"):
        fvd.load_reference_stats(cache, fvd.FVD(allow_random=True, random_seed=1))
    with pytest.raises(ValueError, match="num_frames=4"):
        fvd.load_reference_stats(cache, evaluator, num_frames=16)
