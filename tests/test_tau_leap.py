"""Adaptive tau-leaping against exact answers at stationarity: Poisson for birth-death, the exact
stationary pmf (detailed balance) of the bistable Schlögl model and of a converted concentration
model (means, SDs, marginal Hellinger at the noise floor of exact samples of the same size)."""

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


def chain_stationary(net: sbml_met.ReactionNetwork, states: np.ndarray) -> np.ndarray:
    """The exact stationary pmf of a network whose states form one chain (``states[i + 1]`` one
    reaction away from ``states[i]``): detailed balance, pi(i + 1) / pi(i) = up(i) / down(i + 1)."""
    a = net.propensities(states)
    step = np.diff(states, axis=0)
    nu = net.stoichiometry
    up = np.array([a[i, (nu == step[i]).all(1)].sum() for i in range(len(step))])
    down = np.array([a[i + 1, (nu == -step[i]).all(1)].sum() for i in range(len(step))])
    logp = np.concatenate([[0.0], np.cumsum(np.log(up) - np.log(down))])
    p = np.exp(logp - logp.max())
    return p / p.sum()


def check_stationary(x: np.ndarray, values: np.ndarray, pi: np.ndarray, bins: np.ndarray, seed: int) -> None:
    """Mean, SD and marginal of the sample ``x`` against the exact pmf ``pi`` over ``values``.

    Tolerances: 4 standard errors of a sample of this size from ``pi`` (its exact moments) for the
    mean and the SD, both tighter than a 10% error; a marginal Hellinger no worse than 1.3 x that
    of exact samples of the same size."""
    n = len(x)
    mean = float(values @ pi)
    c = values - mean
    var, m4 = float(c**2 @ pi), float(c**4 @ pi)
    sd = np.sqrt(var)
    se_sd = np.sqrt((m4 - var**2) / n) / (2 * sd)  # delta method: SE of the sample SD
    assert 4 * se_sd < 0.07 * sd and 4 * sd / np.sqrt(n) < 0.1 * sd  # a 10% error is seen
    assert abs(x.mean() - mean) < 4 * sd / np.sqrt(n), (x.mean(), mean)
    assert abs(x.std(ddof=1) - sd) < 4 * se_sd, (x.std(ddof=1), sd)
    pmf = np.histogram(values, bins, weights=pi)[0]
    exact = np.random.default_rng(seed).choice(values, p=pi, size=(8, n))
    floor = np.mean([hellinger(e, pmf, bins, pmf=True) for e in exact])
    assert hellinger(x, pmf, bins, pmf=True) < 1.3 * floor, (hellinger(x, pmf, bins, pmf=True), floor)


def test_schlogl_keeps_its_exact_stationary_distribution():
    """Bistable Schlogl (wells near 85 and 565): trajectories started from the exact stationary
    pmf (detailed balance on X) must still follow it after several within-well relaxation times."""
    net = models.load("schlogl")
    values = np.arange(0, 1501)
    states = np.zeros((values.size, 3))
    states[:, :2] = net.initial_state[:2]
    states[:, 2] = values
    pi = chain_stationary(net, states)
    n = 2000
    start = np.random.default_rng(11).choice(values, p=pi, size=n)
    x = []
    for v, count in zip(*np.unique(start, return_counts=True)):  # one call per distinct initial count
        res = sbml_met.simulate(net.with_initial_state(X=float(v)), [0.0, 3.0], n=int(count), seed=int(v),
                                method="tau-leap")
        x.append(res.states[:, -1, 2])
    assert res.method == "tau-leap"
    check_stationary(np.concatenate(x), values.astype(float), pi, np.linspace(0, 1000, 41), seed=12)


DIMER = (Path(__file__).parent / "data" / "dimer_concentration.ant").read_text(encoding="utf-8")  # concentrations: converted with volume=


def test_converted_concentration_model_reaches_its_exact_stationary_distribution(tmp_path):
    """The dimer in concentrations, converted to 10^4 monomers: M + 2 D is conserved, so its states
    form one chain and the exact stationary pmf follows by detailed balance; by t = 3 (ten
    relaxation times of the rate equations) tau-leaping must have reached it."""
    path = tmp_path / "dimer.xml"
    path.write_text(antimony_to_sbml(DIMER), encoding="utf-8")
    net = sbml_met.load_sbml(path, volume=1000.0)  # 10^4 monomers
    assert net.species == ("M", "D")
    total = int(net.initial_state[0] + 2 * net.initial_state[1])
    d = np.arange(0, total // 2 + 1)
    pi = chain_stationary(net, np.column_stack([total - 2 * d, d]).astype(float))
    leap = sbml_met.simulate(net, [0.0, 1.0, 3.0], n=2000, seed=2, method="tau-leap").states[:, -1]
    assert leap[:, 0].mean() > 1000  # large counts: the regime tau-leaping is for
    assert np.all(leap[:, 0] + 2 * leap[:, 1] == total)
    mean_d = float(d @ pi)
    check_stationary(leap[:, 1], d.astype(float), pi, np.arange(mean_d - 200, mean_d + 200, 10), seed=3)


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
