"""Adaptive tau-leaping against exact answers: Poisson at stationarity, the exact SSA on the Schlögl
model and on a converted concentration model (means, SDs, marginal Hellinger at the noise floor)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import sbml_met
from sbml_met import models
from sbml_met.errors import InvalidArgumentError, NegativeCountError
from sbml_met.sbml import antimony_to_sbml


def hellinger(x: np.ndarray, other: np.ndarray, bins: np.ndarray, pmf: bool = False) -> float:
    """Hellinger distance between the histogram of ``x`` and that of ``other`` (or ``other`` itself,
    a pmf over the bins, with ``pmf=True``)."""
    p = np.histogram(x, bins)[0] / len(x)
    q = other if pmf else np.histogram(other, bins)[0] / len(other)
    return float(np.sqrt(0.5 * np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)))


def big_birth_death() -> sbml_met.ReactionNetwork:
    """Birth-death at 10^4 copies, started at stationarity: X(t) is Poisson(10^4) at every t."""
    return models.load("birth_death").with_parameters(k1=1000.0, k2=0.1).with_initial_state(X=10_000)


def test_birth_death_at_ten_thousand_copies_stays_poisson():
    n = 4000
    res = sbml_met.simulate(big_birth_death(), [0.0, 5.0, 20.0], n=n, seed=5, method="tau-leap")
    assert res.method == "tau-leap"
    x = res.states[:, -1, 0]
    assert abs(x.mean() - 1e4) < 4 * 100 / np.sqrt(n)
    assert abs(x.std(ddof=1) - 100) < 4 * 100 / np.sqrt(2 * n)
    # marginal Hellinger against Poisson(10^4) no worse than an exact Poisson sample of the same size
    bins = np.arange(9500, 10500, 20)
    pmf = np.diff(stats.poisson.cdf(bins - 1, 1e4))
    exact = np.random.default_rng(0).poisson(1e4, size=(8, n))
    floor = np.mean([hellinger(e, pmf, bins, pmf=True) for e in exact])
    assert hellinger(x, pmf, bins, pmf=True) < 1.3 * floor


def test_schlogl_matches_the_exact_ssa():
    net = models.load("schlogl")
    times = [0.0, 2.0]
    n = 1000
    exact = sbml_met.simulate(net, times, n=n, seed=1).states[:, -1, 2]
    again = sbml_met.simulate(net, times, n=n, seed=2).states[:, -1, 2]
    leap = sbml_met.simulate(net, times, n=n, seed=3, method="tau-leap").states[:, -1, 2]
    se = exact.std() / np.sqrt(n)
    assert abs(leap.mean() - exact.mean()) < 4 * np.sqrt(2) * se
    assert abs(leap.std() - exact.std()) < 4 * np.sqrt(2) * exact.std() / np.sqrt(2 * n) + 0.02 * exact.std()
    bins = np.linspace(0, 800, 33)
    assert hellinger(leap, exact, bins) < 1.5 * hellinger(again, exact, bins) + 0.01


DIMER = (Path(__file__).parent / "data" / "dimer_concentration.ant").read_text()  # concentrations: converted with volume=


def test_converted_concentration_model_matches_the_exact_ssa(tmp_path):
    path = tmp_path / "dimer.xml"
    path.write_text(antimony_to_sbml(DIMER))
    net = sbml_met.load_sbml(path, volume=1000.0)  # 10^4 monomers
    times = [0.0, 1.0, 3.0]
    n = 400
    exact = sbml_met.simulate(net, times, n=n, seed=1).states[:, -1]
    leap = sbml_met.simulate(net, times, n=n, seed=2, method="tau-leap").states[:, -1]
    assert exact[:, 0].mean() > 1000  # large counts: the regime tau-leaping is for
    for i in range(net.n_species):
        se = np.sqrt(exact[:, i].var() / n + leap[:, i].var() / n)
        assert abs(leap[:, i].mean() - exact[:, i].mean()) < 4 * se
        assert abs(leap[:, i].std() / exact[:, i].std() - 1) < 4 * np.sqrt(1 / n) + 0.03


def test_counts_never_go_negative_and_the_same_seed_gives_the_same_numbers():
    decay = models.load("birth_death").with_parameters(k1=0.0, k2=1.0).with_initial_state(X=10_000)
    times = np.linspace(0, 15, 16)
    a = sbml_met.simulate(decay, times, n=200, seed=4, method="tau-leap")
    b = sbml_met.simulate(decay, times, n=200, seed=4, method="tau-leap")
    assert a.states.min() == 0 and np.array_equal(a.states, b.states)
    assert np.all(a.states == np.round(a.states))
    # a pure decay (k = 1): binomial means; explicit leaping lags by about epsilon * k * t / 2 (relative)
    mean = 1e4 * np.exp(-times)
    lag = (mean - a.states[:, :, 0].mean(0)) / mean
    assert np.all(lag[1:6] > 0) and np.all(lag[1:6] < 0.03 * times[1:6])


def test_errors_of_the_exact_ssa_carry_over():
    net = sbml_met.load_antimony("species A, EmptySet\nR: EmptySet => A; k\nA = 0; EmptySet = 3; k = 1")
    with pytest.raises(NegativeCountError):
        sbml_met.simulate(net, [0, 50], n=5, seed=1, method="tau-leap")
    with pytest.raises(InvalidArgumentError, match="epsilon"):
        sbml_met.simulate(models.load("birth_death"), [0, 1], method="tau-leap", epsilon=0)
    with pytest.raises(InvalidArgumentError, match="record"):
        sbml_met.simulate(models.load("birth_death"), [0, 1], n=1, method="tau-leap", record="events")
