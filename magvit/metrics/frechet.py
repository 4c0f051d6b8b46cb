"""Fréchet distance between Gaussian fits of activations, and streaming statistics.

Same math as TF-GAN's `frechet_classifier_distance_from_activations` (the formula behind every
published FVD): fit a Gaussian (mean, unbiased covariance) to each set of activations and return

    |mu_1 - mu_2|^2 + Tr(S_1) + Tr(S_2) - 2 Tr((S_1^(1/2) S_2 S_1^(1/2))^(1/2)),

everything in float64. The trace of the matrix square root goes through symmetric
eigen-decompositions (TF-GAN uses SVDs of the same symmetric matrices), which stays real and
stable for singular covariances (fewer samples than dimensions).

`RunningStats` accumulates count, mean and the centred sum of outer products batch by batch
(Chan et al.'s parallel update), so a 50k-video FVD needs one batch plus d x d matrices in memory;
two partial statistics merge exactly, which is what a Beam CombineFn needs.
"""
from __future__ import annotations

import dataclasses

import numpy as np

# Eigenvalues below this are treated as zero noise (TF-GAN's guard for sqrt near 0).
_EPS = 1e-10


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    roots = np.where(values < _EPS, np.maximum(values, 0.0), np.sqrt(np.maximum(values, 0.0)))
    return (vectors * roots) @ vectors.T


def trace_sqrt_product(sigma_1: np.ndarray, sigma_2: np.ndarray) -> float:
    """Tr((S_1 S_2)^(1/2)) computed as Tr((S_1^(1/2) S_2 S_1^(1/2))^(1/2)), which is symmetric."""
    root_1 = _symmetric_sqrt(sigma_1)
    inner = root_1 @ sigma_2 @ root_1
    values = np.linalg.eigvalsh((inner + inner.T) / 2)
    values = np.maximum(values, 0.0)
    return float(np.sum(np.where(values < _EPS, values, np.sqrt(values))))


def frechet_distance(mu_1, sigma_1, mu_2, sigma_2) -> float:
    """Fréchet distance between N(mu_1, sigma_1) and N(mu_2, sigma_2), in float64."""
    mu_1, mu_2 = np.asarray(mu_1, np.float64), np.asarray(mu_2, np.float64)
    sigma_1, sigma_2 = np.asarray(sigma_1, np.float64), np.asarray(sigma_2, np.float64)
    if mu_1.shape != mu_2.shape or mu_1.ndim != 1:
        raise ValueError(f"means must be vectors of one size, got {mu_1.shape} and {mu_2.shape}")
    d = mu_1.shape[0]
    for name, sigma in (("sigma_1", sigma_1), ("sigma_2", sigma_2)):
        if sigma.shape != (d, d):
            raise ValueError(f"{name} must be {d}x{d} to match the means, got {sigma.shape}")
    diff = mu_1 - mu_2
    distance = (diff @ diff + np.trace(sigma_1) + np.trace(sigma_2)
                - 2.0 * trace_sqrt_product(sigma_1, sigma_2))
    # >= 0 exactly; float round-off on (near-)identical statistics can give -1e-9 ("-0.000")
    return max(float(distance), 0.0)


@dataclasses.dataclass
class RunningStats:
    """Count, mean and centred sum of outer products (M2) of activations, updated batch by batch."""
    dim: int
    count: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None

    def __post_init__(self):
        if self.mean is None:
            self.mean = np.zeros(self.dim, np.float64)
        if self.m2 is None:
            self.m2 = np.zeros((self.dim, self.dim), np.float64)

    def update(self, activations) -> "RunningStats":
        """Adds a batch of activations [n, dim]; returns self."""
        batch = np.asarray(activations, np.float64)
        if batch.ndim != 2 or batch.shape[1] != self.dim:
            raise ValueError(f"activations must be [n, {self.dim}], got {list(batch.shape)}")
        if batch.shape[0] == 0:
            return self
        mean = batch.mean(axis=0)
        centred = batch - mean
        return self.merge(RunningStats(self.dim, batch.shape[0], mean, centred.T @ centred))

    def merge(self, other: "RunningStats") -> "RunningStats":
        """Adds the activations summarised by `other` (exact parallel update); returns self."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dimension {other.dim} into {self.dim}")
        if other.count == 0:
            return self
        total = self.count + other.count
        delta = other.mean - self.mean
        self.m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.count * other.count / total)
        self.mean = self.mean + delta * (other.count / total)
        self.count = total
        return self

    @property
    def covariance(self) -> np.ndarray:
        """Unbiased covariance (divides by n - 1, as TF-GAN does)."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {self.count}")
        return self.m2 / (self.count - 1)

    @classmethod
    def from_activations(cls, activations) -> "RunningStats":
        activations = np.asarray(activations)
        return cls(activations.shape[-1]).update(activations)


def frechet_distance_from_stats(stats_1: RunningStats, stats_2: RunningStats) -> float:
    return frechet_distance(stats_1.mean, stats_1.covariance, stats_2.mean, stats_2.covariance)


def frechet_distance_from_activations(activations_1, activations_2) -> float:
    """Fréchet distance of the Gaussian fits of two activation arrays [n, d] (TF-GAN's formula)."""
    return frechet_distance_from_stats(RunningStats.from_activations(activations_1),
                                       RunningStats.from_activations(activations_2))
