"""The compiled SSA kernel's own pieces: the ziggurat exponential that times each event and the
branch-free channel choice, against exact answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("numba")

from numba import njit  # noqa: E402
from scipy import stats  # noqa: E402

from sbml_met import _ssa_numba as k  # noqa: E402


@njit(cache=False)
def _draw(n, state):
    out = np.empty(n)
    for i in range(n):
        out[i] = k.exponential(state)
    return out


def test_ziggurat_exponential_is_the_standard_exponential():
    state = np.random.SeedSequence(3).generate_state(4, np.uint64)
    x = _draw(2_000_000, state)
    n = x.size
    # moments of Exp(1): mean 1, variance 1, E[x^3] = 6 (standard errors 1/sqrt(n), sqrt(8/n), ...)
    assert abs(x.mean() - 1.0) < 5 / math.sqrt(n)
    assert abs(x.var() - 1.0) < 5 * math.sqrt(8 / n)
    assert stats.kstest(x, "expon").pvalue > 1e-3
    # the tail beyond the ziggurat's base (drawn as r - log U) has mass exp(-r)
    p = math.exp(-k._ZIG_R)
    assert abs((x > k._ZIG_R).mean() - p) < 5 * math.sqrt(p / n)
    # the wedges: P(x in layer boundaries' bins) as the exact CDF says, on a fine grid
    edges = np.linspace(0.0, 8.0, 81)
    counts = np.histogram(x, edges)[0]
    want = n * np.diff(-np.exp(-edges))
    assert stats.chisquare(counts, want * counts.sum() / want.sum()).pvalue > 1e-3
    assert x.min() >= 0.0 and np.all(np.isfinite(x))


def test_ziggurat_is_seeded():
    a = _draw(1000, np.random.SeedSequence(5).generate_state(4, np.uint64))
    b = _draw(1000, np.random.SeedSequence(5).generate_state(4, np.uint64))
    c = _draw(1000, np.random.SeedSequence(6).generate_state(4, np.uint64))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_select_is_the_direct_methods_choice():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        R = int(rng.integers(1, 12))
        a = rng.exponential(size=R) * (rng.random(R) < 0.7)
        if a.sum() == 0:
            a[int(rng.integers(R))] = 1.0
        cum = np.cumsum(a)
        threshold = rng.random() * cum[-1]
        j = k._select(a, cum, threshold)
        # the first channel whose running sum passes the threshold, never a zero propensity
        want = min(int(np.searchsorted(cum, threshold, side="right")), R - 1)
        while a[want] == 0.0:
            want -= 1
        assert j == want and a[j] > 0.0
    # at the top end (threshold equal to the total) the last channel that can fire
    a = np.array([1.0, 2.0, 0.0, 0.0])
    assert k._select(a, np.cumsum(a), 3.0) == 1
    assert k._select(a, np.cumsum(a), 0.0) == 0
    assert k._select(a, np.cumsum(a), 0.999) == 0 and k._select(a, np.cumsum(a), 1.0) == 1


@njit(cache=False)
def _first_draws(seed, n):
    out = np.empty((n, 2))
    state = np.zeros(4, np.uint64)
    for i in range(n):
        k.seed_trajectory(seed, i, state)
        out[i, 0] = k.uniform(state)
        out[i, 1] = k.uniform(state)
    return out


def test_each_trajectory_stream_is_uniform_and_independent_of_its_neighbours():
    seed = np.random.SeedSequence(9).generate_state(4, np.uint64)
    u = _first_draws(seed, 50_000)
    n = len(u)
    for col in (u[:, 0], u[:, 1]):
        assert stats.kstest(col, "uniform").pvalue > 1e-3
    # neighbouring trajectories, and a trajectory's first two draws, are uncorrelated (SE 1/sqrt(n))
    assert abs(np.corrcoef(u[:-1, 0], u[1:, 0])[0, 1]) < 5 / math.sqrt(n)
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 5 / math.sqrt(n)
    # the stream is the seed's and the index's alone
    assert np.array_equal(_first_draws(seed, 10), u[:10])
    other = _first_draws(np.random.SeedSequence(10).generate_state(4, np.uint64), 10)
    assert not np.any(other == u[:10])
