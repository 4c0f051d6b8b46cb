"""LPIPS (magvit/metrics/lpips.py): weights layout and loader, the formula against a direct numpy
implementation, metric properties, the .pth converter and the evaluation job's `lpips`."""
import os
import subprocess
import sys

import numpy as np
import pytest

from magvit.metrics import lpips
from pipelines import evaluate
from tests.test_evaluate import _config, _frames, _write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# torchvision's VGG16 `features` ("D" configuration): conv widths and max-pools ("M"), in order.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
LPIPS_TAPS = (3, 8, 15, 22, 29)  # torchvision indices: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3


@pytest.fixture(scope="module")
def weights():
    return lpips.random_weights(seed=3)


@pytest.fixture(scope="module")
def weights_file(weights, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("lpips") / "lpips_vgg.npz")
    lpips.save_weights(weights, path)
    return path


@pytest.fixture(scope="module")
def metric(weights):
    return lpips.LPIPS(weights, "random-test-weights", batch_size=4)


def _images(seed, n=3, size=24):  # 24 -> 12 -> 6 -> 3 -> 1: max-pools floor odd sizes
    return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 3)).astype(np.float32)


def _reference_lpips(weights, x, y):
    """The lpips v0.1 formula in float64 numpy, torch layout (NCHW, OIHW), on images in [0, 1]."""
    shift = np.array([-0.030, -0.088, -0.188])[None, :, None, None]
    scale = np.array([0.458, 0.448, 0.450])[None, :, None, None]

    def features(images):
        h = ((2 * np.moveaxis(images.astype(np.float64), -1, 1) - 1) - shift) / scale
        taps, index = [], 0
        for item in VGG16_CFG:
            if item == "M":
                n, c, height, width = (*h.shape[:2], h.shape[2] // 2, h.shape[3] // 2)
                h = h[:, :, :2 * height, :2 * width]  # torch's MaxPool2d(2, 2) drops an odd edge
                h = h.reshape(n, c, height, 2, width, 2).max(axis=(3, 5))
                index += 1
                continue
            w, b = weights[f"features.{index}.weight"], weights[f"features.{index}.bias"]
            padded = np.pad(h, ((0, 0), (0, 0), (1, 1), (1, 1)))
            height, width = h.shape[2:]
            h = b[None, :, None, None] + sum(
                np.einsum("nchw,oc->nohw", padded[:, :, i:i + height, j:j + width], w[:, :, i, j])
                for i in range(3) for j in range(3))
            h = np.maximum(h, 0)
            index += 2
            if index - 1 in LPIPS_TAPS:
                taps.append(h)
        return taps

    total = 0.0
    for layer, (fx, fy) in enumerate(zip(features(x), features(y))):
        nx = fx / (np.sqrt(np.sum(fx ** 2, axis=1, keepdims=True)) + 1e-10)
        ny = fy / (np.sqrt(np.sum(fy ** 2, axis=1, keepdims=True)) + 1e-10)
        lin = weights[f"lin{layer}.model.1.weight"][0, :, 0, 0]
        total = total + np.mean(np.einsum("nchw,c->nhw", (nx - ny) ** 2, lin), axis=(1, 2))
    return total


def test_weights_layout_and_npz_round_trip(weights, weights_file):
    shapes = lpips.weight_shapes()
    assert len(shapes) == 13 * 2 + 5
    assert shapes["features.0.weight"] == (64, 3, 3, 3)
    assert shapes["features.28.weight"] == (512, 512, 3, 3)
    assert shapes["features.17.bias"] == (512,)
    assert shapes["lin2.model.1.weight"] == (1, 256, 1, 1)
    loaded = lpips.load_weights(weights_file)
    assert sorted(loaded) == sorted(shapes)
    for name, value in weights.items():
        np.testing.assert_array_equal(loaded[name], value)
        assert loaded[name].dtype == np.float32
    assert lpips.weights_id(weights_file).startswith("lpips_vgg.npz:sha256:")
    params = lpips.to_flax_params(loaded)  # OIHW -> HWIO
    np.testing.assert_array_equal(params["features_5"]["kernel"][2, 0, 7, 9],
                                  weights["features.5.weight"][9, 7, 2, 0])
    assert params["lin4"].shape == (512,)


def test_bad_weights_are_refused_naming_the_problem(weights, tmp_path):
    def refused(broken, match):
        path = str(tmp_path / "bad.npz")
        np.savez(path, **broken)
        with pytest.raises(lpips.LPIPSWeightsError, match=match):
            lpips.load_weights(path)

    dropped = ("features.0.bias", "lin3.model.1.weight")
    missing = {k: v for k, v in weights.items() if k not in dropped}
    refused(missing, r"bad\.npz.*missing array\(s\): features\.0\.bias, lin3\.model\.1\.weight")
    refused({**weights, "classifier.0.weight": np.zeros((2, 2))},
            r"unexpected array\(s\): classifier\.0\.weight")
    hwio = {**weights, "features.5.weight": weights["features.5.weight"].transpose(2, 3, 1, 0)}
    refused(hwio, r"features\.5\.weight has shape \[3, 3, 64, 128\], expected \[128, 64, 3, 3\]")
    negative = {**weights, "lin1.model.1.weight": -weights["lin1.model.1.weight"]}
    refused(negative, r"lin1\.model\.1\.weight has negative weights")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(lpips.LPIPSWeightsError, match=r"garbage\.npz.*not a \.npz.*--convert"):
        lpips.load_weights(str(garbage))
    with pytest.raises(lpips.LPIPSWeightsError, match=r"nowhere\.npz.*no such file"):
        lpips.load_weights(str(tmp_path / "nowhere.npz"))


def test_layer_formula_on_a_hand_computed_case():
    # one pixel, two channels: (3, 4) and (4, 3) normalise to (0.6, 0.8) and (0.8, 0.6);
    # squared differences (0.04, 0.04), lin weights (1, 2): 0.04 + 0.08 = 0.12
    fx = np.array([3.0, 4.0], np.float32).reshape(1, 1, 1, 2)
    fy = np.array([4.0, 3.0], np.float32).reshape(1, 1, 1, 2)
    lin = np.array([1.0, 2.0], np.float32)
    assert float(lpips.layer_distance(fx, fy, lin)[0]) == pytest.approx(0.12, rel=1e-5)
    # the scale of a feature vector does not matter; the spatial mean halves one differing pixel
    assert float(lpips.layer_distance(10 * fx, fy, lin)[0]) == pytest.approx(0.12, rel=1e-5)
    two_pixels_x = np.concatenate([fx, fx], axis=2)
    two_pixels_y = np.concatenate([fy, fx], axis=2)
    assert float(lpips.layer_distance(two_pixels_x, two_pixels_y, lin)[0]) == pytest.approx(0.06)
    zeros = np.zeros_like(fx)  # dead ReLUs: the epsilon keeps it finite
    assert float(lpips.layer_distance(zeros, fy, lin)[0]) == pytest.approx(0.64 + 2 * 0.36)


def test_network_matches_a_direct_numpy_implementation(weights, metric):
    x, y = _images(0, n=2), _images(1, n=2)
    want = _reference_lpips(weights, x, y)
    np.testing.assert_allclose(metric(x, y), want, rtol=2e-4)
    assert np.all(want > 0)


def test_metric_properties(metric):
    x = _images(2, n=4)
    noise = np.random.default_rng(5).normal(size=x.shape).astype(np.float32)
    noisy = {level: np.clip(x + level * noise, 0, 1) for level in (0.02, 0.1, 0.3)}
    np.testing.assert_allclose(metric(x, x), 0.0, atol=1e-7)
    np.testing.assert_allclose(metric(x, noisy[0.1]), metric(noisy[0.1], x), rtol=1e-5)
    distances = [metric(x, noisy[level]) for level in (0.02, 0.1, 0.3)]
    assert np.all(distances[0] > 0)
    assert np.all(distances[0] < distances[1]) and np.all(distances[1] < distances[2])
    videos = (x.reshape(2, 2, 24, 24, 3) * 255).round().astype(np.uint8)  # uint8 [B, T, H, W, 3]
    by_frame = metric(videos, videos[::-1])
    assert by_frame.shape == (2, 2)
    as_floats = [v.reshape(4, 24, 24, 3) / np.float32(255) for v in (videos, videos[::-1])]
    np.testing.assert_allclose(by_frame.reshape(-1), metric(*as_floats), rtol=1e-5)
    with pytest.raises(ValueError, match=r"at least 16x16 pixels, got shape \(2, 8, 8, 3\)"):
        metric(np.zeros((2, 8, 8, 3), np.float32), np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="differ in shape"):
        metric(x, x[:2])


def test_convert_state_dicts_maps_and_checks_names(weights):
    vgg = {k: v for k, v in weights.items() if k.startswith("features.")}
    vgg["classifier.0.weight"] = np.zeros((4, 3), np.float32)  # torchvision's head: dropped
    lin = {k: v for k, v in weights.items() if k.startswith("lin")}
    converted = lpips.convert_state_dicts(vgg, lin)
    assert sorted(converted) == sorted(weights)
    with pytest.raises(lpips.LPIPSWeightsError,
                       match=r"unexpected array\(s\): net\.slice1\.0\.weight \(--lin\)"):
        lpips.convert_state_dicts(vgg, {**lin, "net.slice1.0.weight": np.zeros(1)})
    with pytest.raises(lpips.LPIPSWeightsError, match=r"missing array\(s\): lin0\.model\.1\."):
        lpips.convert_state_dicts(vgg, {k: v for k, v in lin.items() if not k.startswith("lin0")})


def test_converter_says_to_install_torch_when_it_is_missing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(lpips.LPIPSWeightsError, match=r"vgg16\.pth.*PyTorch.*pip install torch"):
        lpips.convert(str(tmp_path / "vgg16.pth"), str(tmp_path / "vgg.pth"),
                      str(tmp_path / "out.npz"))


def test_converter_cli_from_torch_files(weights, tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed (not a dependency)")
    vgg = {k: torch.from_numpy(v) for k, v in weights.items() if k.startswith("features.")}
    lin = {k: torch.from_numpy(v) for k, v in weights.items() if k.startswith("lin")}
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(lin, tmp_path / "vgg.pth")
    out = tmp_path / "lpips_vgg.npz"
    result = subprocess.run(
        [sys.executable, "-m", "magvit.metrics.lpips", "--convert", f"--vgg={tmp_path}/vgg16.pth",
         f"--lin={tmp_path}/vgg.pth", f"--out={out}"], cwd=ROOT, capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = lpips.load_weights(str(out))
    for name, value in weights.items():
        np.testing.assert_array_equal(loaded[name], value)


def test_run_evaluate_writes_lpips_of_paired_reconstructions(weights_file, tmp_path):
    rng = np.random.default_rng(11)
    real = {f"v{i}": _frames(20 + i) for i in range(3)}
    generated = {k: np.clip(v.astype(int) + rng.integers(-30, 31, v.shape), 0, 255)
                 .astype(np.uint8) for k, v in real.items()}
    real_path = _write(tmp_path / "real.tfrecord", real.items())
    generated_path = _write(tmp_path / "generated.tfrecord", generated.items())
    metrics = evaluate.run_evaluate(real_path, generated_path,
                                    _config(lpips_weights=weights_file, batch_size=4),
                                    str(tmp_path / "eval"))
    scorer = lpips.LPIPS.from_file(weights_file)
    want = np.mean([np.mean(scorer(real[k], generated[k])) for k in real])
    assert metrics["num_pairs"] == 3
    assert metrics["lpips"] == pytest.approx(want, rel=1e-5) and metrics["lpips"] > 0
    assert metrics["lpips_status"] == f"computed with {lpips.weights_id(weights_file)}"
    assert "LPIPS " in evaluate._summary(metrics) and "computed with" in evaluate._summary(metrics)
    with pytest.raises(lpips.LPIPSWeightsError, match="no such file"):
        evaluate.run_evaluate(real_path, generated_path,
                              _config(lpips_weights=str(tmp_path / "none.npz")),
                              str(tmp_path / "x"))
