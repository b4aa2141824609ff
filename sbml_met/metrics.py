"""Distances between distributions and scores of moments against a reference."""

from __future__ import annotations

import numpy as np


def z_scores(mean, reference_mean, reference_std, n: int) -> np.ndarray:
    """DSMTS Z score sqrt(n) (mean - mu) / sigma; where sigma is 0: 0 if mean == mu, else inf."""
    mean, mu, sigma = (np.asarray(a, dtype=float) for a in (mean, reference_mean, reference_std))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.sqrt(n) * (mean - mu) / sigma
    exact = sigma == 0
    return np.where(exact, np.where(np.isclose(mean, mu, rtol=0, atol=1e-12), 0.0, np.inf), z)


def y_scores(std, reference_std, n: int) -> np.ndarray:
    """DSMTS Y score sqrt(n/2) (s^2 / sigma^2 - 1); where sigma is 0: 0 if s == 0, else inf."""
    s, sigma = np.asarray(std, dtype=float), np.asarray(reference_std, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.sqrt(n / 2.0) * (s**2 / sigma**2 - 1.0)
    exact = sigma == 0
    return np.where(exact, np.where(s == 0, 0.0, np.inf), y)
