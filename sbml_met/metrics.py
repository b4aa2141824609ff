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


# ------------------------------------------------------------------------------------ distances
def _aligned(p, q) -> tuple[np.ndarray, np.ndarray]:
    """Two distributions on one support. Accepts pandas Series indexed by count (or by state
    tuples), dicts state -> probability, or equal-length arrays over the same support."""
    import pandas as pd

    if isinstance(p, dict):
        p = pd.Series(p, dtype=float)
    if isinstance(q, dict):
        q = pd.Series(q, dtype=float)
    if isinstance(p, pd.Series) and isinstance(q, pd.Series):
        p = p.groupby(level=list(range(p.index.nlevels))).sum() if not p.index.is_unique else p
        q = q.groupby(level=list(range(q.index.nlevels))).sum() if not q.index.is_unique else q
        index = p.index.union(q.index)
        return (p.reindex(index, fill_value=0.0).to_numpy(dtype=float),
                q.reindex(index, fill_value=0.0).to_numpy(dtype=float))
    a, b = np.asarray(p, dtype=float).ravel(), np.asarray(q, dtype=float).ravel()
    if a.shape != b.shape:
        n = max(a.size, b.size)
        a, b = np.pad(a, (0, n - a.size)), np.pad(b, (0, n - b.size))
    return a, b


def hellinger(p, q) -> float:
    """Hellinger distance sqrt(1 - sum sqrt(p q)) in [0, 1] (normalises p and q first)."""
    a, b = _aligned(p, q)
    a, b = a / a.sum(), b / b.sum()
    return float(np.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(a * b)))))


def total_variation(p, q) -> float:
    """Total variation distance 0.5 sum |p - q| in [0, 1]."""
    a, b = _aligned(p, q)
    return float(0.5 * np.abs(a / a.sum() - b / b.sum()).sum())


def kl_divergence(p, q, eps: float = 0.0) -> float:
    """KL(p || q) = sum p log(p / q): the divergence *of q from p* (p is the reference, e.g. the
    exact FSP answer; q the approximation). Infinite where q = 0 < p unless ``eps`` > 0 is added
    to q (then renormalised)."""
    a, b = _aligned(p, q)
    a = a / a.sum()
    b = b + eps
    b = b / b.sum()
    mask = a > 0
    with np.errstate(divide="ignore"):
        return float(np.sum(a[mask] * (np.log(a[mask]) - np.log(b[mask]))))


def wasserstein_1(p, q) -> float:
    """Earth mover's distance between two marginals over counts (Series indexed by count)."""
    import pandas as pd

    if isinstance(p, pd.Series) and isinstance(q, pd.Series) and p.index.nlevels == 1:
        index = p.index.union(q.index).sort_values()
        a = p.reindex(index, fill_value=0.0).to_numpy(float)
        b = q.reindex(index, fill_value=0.0).to_numpy(float)
        x = index.to_numpy(float)
    else:
        a, b = _aligned(p, q)
        x = np.arange(a.size, dtype=float)
    cdf = np.cumsum(a / a.sum() - b / b.sum())
    return float(np.sum(np.abs(cdf[:-1]) * np.diff(x)))


# ------------------------------------------------------------------------------------ shape
def _values_probs(p) -> tuple[np.ndarray, np.ndarray]:
    """(values, probabilities) of a marginal: Series indexed by count, dict count -> p, or an
    array of probabilities over counts 0, 1, 2, ..."""
    import pandas as pd

    if isinstance(p, dict):
        p = pd.Series(p, dtype=float)
    if isinstance(p, pd.Series):
        return p.index.to_numpy(dtype=float), p.to_numpy(dtype=float)
    w = np.asarray(p, dtype=float).ravel()
    return np.arange(w.size, dtype=float), w


def bimodality_coefficient(p) -> float:
    """Bimodality coefficient BC = (skewness^2 + 1) / kurtosis of a marginal distribution.

    As in the MET paper (and Pfister et al. 2013), with population moments of the distribution
    (normalised first): skewness = m3 / m2^1.5 and *kurtosis = m4 / m2^2, Pearson's kurtosis, not
    the excess kurtosis* (so a normal distribution gives 1/3, a uniform one 5/9; BC > 5/9
    suggests bimodality). NaN for a point mass (m2 = 0).
    """
    x, w = _values_probs(p)
    total = w.sum()
    if not total > 0:
        return float("nan")
    w = w / total
    mean = float(w @ x)
    d = x - mean
    m2, m3, m4 = float(w @ d**2), float(w @ d**3), float(w @ d**4)
    if m2 <= 0:
        return float("nan")
    skew = m3 / m2**1.5
    kurt = m4 / m2**2
    return float((skew**2 + 1.0) / kurt)


# ------------------------------------------------------------------------------------ compare
def compare(result, reference):
    """Compare two results (SSAResult or Distribution) per common time and species.

    Returns a long table with columns time, species, method, reference, mean, reference_mean,
    std, reference_std, hellinger, total_variation: one row per output time present in both
    (matched to 1e-9) and species present in both. Moments of an SSAResult are sample moments
    (std with ddof=1), of a Distribution exact ones; distances are between the marginals.
    """
    import pandas as pd

    from .errors import InvalidArgumentError
    from .results import SSAResult, as_distribution

    a, b = as_distribution(result), as_distribution(reference)
    ma = result.moments() if isinstance(result, SSAResult) else a.moments()
    mb = reference.moments() if isinstance(reference, SSAResult) else b.moments()
    species = [s for s in a.species if s in b.species]
    if not species:
        raise InvalidArgumentError(
            f"the two results share no species ({', '.join(a.species)} vs {', '.join(b.species)})")
    tb = np.asarray(b.times, dtype=float)
    pairs = []
    for t in np.asarray(a.times, dtype=float):
        close = np.flatnonzero(np.isclose(tb, t, rtol=1e-9, atol=1e-9))
        if close.size:
            pairs.append((float(t), float(tb[close[0]])))
    if not pairs:
        raise InvalidArgumentError("the two results share no output time")
    ia = ma.set_index(["time", "species"])
    ib = mb.set_index(["time", "species"])
    rows = []
    for t, tr in pairs:
        for s in species:
            pa, pb = a.marginal(s, t), b.marginal(s, tr)
            rows.append((t, s, a.method, b.method, float(ia.loc[(t, s), "mean"]),
                         float(ib.loc[(tr, s), "mean"]), float(ia.loc[(t, s), "std"]),
                         float(ib.loc[(tr, s), "std"]), hellinger(pa, pb), total_variation(pa, pb)))
    return pd.DataFrame(rows, columns=["time", "species", "method", "reference", "mean",
                                       "reference_mean", "std", "reference_std", "hellinger",
                                       "total_variation"])
