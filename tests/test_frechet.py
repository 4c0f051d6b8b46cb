"""Fréchet distance and streaming statistics (magvit/metrics/frechet.py)."""
import numpy as np
import pytest
import scipy.linalg

from magvit.metrics import frechet


def _scipy_frechet(x, y):
    """The other common route: scipy's sqrtm of the covariance product, imaginary part dropped."""
    mu_x, mu_y = x.mean(0), y.mean(0)
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_x @ s_y).real
    return float(np.sum((mu_x - mu_y) ** 2) + np.trace(s_x + s_y - 2 * covmean))


def test_same_activations_give_zero_even_with_singular_covariance():
    rng = np.random.default_rng(0)
    full = rng.normal(size=(500, 16)) * 3 + 5
    singular = rng.normal(size=(10, 32)) * 4  # fewer samples than dimensions: rank 9
    assert frechet.frechet_distance_from_activations(full, full) == pytest.approx(0, abs=1e-8)
    assert frechet.frechet_distance_from_activations(singular, singular) == pytest.approx(0, abs=1e-6)


def test_symmetric_and_matches_scipy_sqrtm_formula():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 12))
    y = rng.normal(size=(200, 12)) @ rng.normal(size=(12, 12)) * 0.5 + 1.0
    d_xy = frechet.frechet_distance_from_activations(x, y)
    d_yx = frechet.frechet_distance_from_activations(y, x)
    assert d_xy == pytest.approx(d_yx, rel=1e-9)
    assert d_xy == pytest.approx(_scipy_frechet(x, y), rel=1e-7)
    assert d_xy > 1.0


def test_singular_covariances_stay_real_and_non_negative():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(8, 40)), rng.normal(size=(8, 40)) + 0.1
    d = frechet.frechet_distance_from_activations(x, y)
    assert np.isfinite(d) and d > 0
    assert d == pytest.approx(_scipy_frechet(x, y), rel=1e-5)


def test_closed_form_for_diagonal_gaussians():
    mu_1, mu_2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu_1 - mu_2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert expected == pytest.approx((1 + 6.25) + (4 + 1))
    got = frechet.frechet_distance(mu_1, np.diag(a), mu_2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-12)


def test_sampled_gaussians_approach_closed_form():
    rng = np.random.default_rng(3)
    n = 200_000
    x = rng.normal(size=(n, 2)) * [1.0, 2.0] + [0.0, 0.0]
    y = rng.normal(size=(n, 2)) * [3.0, 2.0] + [1.0, 0.0]
    expected = 1.0 + (1.0 - 3.0) ** 2  # |dmu|^2 + sum (sqrt(a) - sqrt(b))^2
    assert frechet.frechet_distance_from_activations(x, y) == pytest.approx(expected, rel=0.02)


def test_streaming_statistics_equal_batch_statistics():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1003, 20)) * 10 + 50
    stats = frechet.RunningStats(20)
    for start in range(0, len(x), 64):
        stats.update(x[start:start + 64])
    assert stats.count == 1003
    np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.covariance, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
    # Merging partial statistics (as a Beam combiner does) gives the same result.
    left = frechet.RunningStats.from_activations(x[:400])
    right = frechet.RunningStats.from_activations(x[400:])
    merged = frechet.RunningStats(20).merge(right).merge(left)
    np.testing.assert_allclose(merged.covariance, stats.covariance, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(merged.mean, stats.mean, rtol=1e-12)


def test_bad_shapes_are_refused():
    stats = frechet.RunningStats(4)
    with pytest.raises(ValueError, match=r"activations must be \[n, 4\]"):
        stats.update(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet.RunningStats(4).update(np.zeros((1, 4))).covariance
    with pytest.raises(ValueError, match="sigma_2 must be 2x2"):
        frechet.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(3))
