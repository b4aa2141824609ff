"""Distances, scores and compare() against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import sbml_met
from sbml_met.errors import InvalidArgumentError
from sbml_met.metrics import (
    bimodality_coefficient,
    compare,
    hellinger,
    kl_divergence,
    total_variation,
    wasserstein_1,
    y_scores,
    z_scores,
)
from sbml_met.results import Distribution, SSAResult


def test_hellinger_by_hand():
    # sum sqrt(p q) = sqrt(0.5) -> H = sqrt(1 - 0.70711) = 0.54120
    assert hellinger([0.5, 0.5], [1.0, 0.0]) == pytest.approx(math.sqrt(1 - math.sqrt(0.5)), abs=1e-12)
    assert hellinger(pd.Series({0: 1.0}), pd.Series({5: 1.0})) == pytest.approx(1.0)
    assert hellinger([0.2, 0.8], [0.2, 0.8]) == pytest.approx(0.0, abs=1e-7)


def test_total_variation_by_hand():
    assert total_variation([0.2, 0.5, 0.3], [0.1, 0.6, 0.3]) == pytest.approx(0.1, abs=1e-12)
    assert total_variation(pd.Series({0: 0.5, 1: 0.5}), pd.Series({1: 0.5, 2: 0.5})) == pytest.approx(0.5)


def test_kl_direction_by_hand():
    # KL(p || q) = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.14384
    want = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    assert kl_divergence([0.5, 0.5], [0.25, 0.75]) == pytest.approx(want, abs=1e-12)
    # the other direction differs: 0.25 ln(0.5) + 0.75 ln(1.5) = 0.13081
    assert kl_divergence([0.25, 0.75], [0.5, 0.5]) == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5))
    assert kl_divergence([0.5, 0.5], [1.0, 0.0]) == math.inf


def test_wasserstein_by_hand():
    assert wasserstein_1(pd.Series({0: 1.0}), pd.Series({3: 1.0})) == pytest.approx(3.0)
    assert wasserstein_1(pd.Series({0: 0.5, 2: 0.5}), pd.Series({1: 1.0})) == pytest.approx(1.0)


def test_z_and_y_scores_by_hand():
    assert z_scores(10.1, 10.0, 2.0, 400) == pytest.approx(1.0)  # sqrt(400) * 0.1 / 2
    assert y_scores(2.1, 2.0, 200) == pytest.approx(1.025)  # sqrt(100) * (4.41 / 4 - 1)
    assert z_scores(3.0, 3.0, 0.0, 10) == 0.0 and z_scores(3.5, 3.0, 0.0, 10) == math.inf


def test_bimodality_coefficient_by_hand():
    # two equal point masses: skewness 0, kurtosis m4/m2^2 = 1 -> BC = 1
    assert bimodality_coefficient(pd.Series({0: 0.5, 10: 0.5})) == pytest.approx(1.0)
    # uniform on {0, 1, 2}: m2 = 2/3, m4 = 2/3 -> kurtosis 1.5 -> BC = 2/3
    assert bimodality_coefficient([1 / 3, 1 / 3, 1 / 3]) == pytest.approx(2 / 3)
    # Poisson(4): skewness^2 = 1/4, kurtosis 3 + 1/4 -> BC = 1.25 / 3.25 (Pearson, not excess)
    k = np.arange(80)
    assert bimodality_coefficient(stats.poisson.pmf(k, 4.0)) == pytest.approx(1.25 / 3.25, abs=1e-10)
    assert math.isnan(bimodality_coefficient({3: 1.0}))


def _dist(states, probs, times=(1.0,), method="fsp"):
    return Distribution(("X",), np.array(times, float),
                        tuple(np.array(s, dtype=np.int64).reshape(-1, 1) for s in states),
                        tuple(np.array(p, float) for p in probs), method=method)


def test_compare_two_distributions_by_hand():
    a = _dist([[0, 1]], [[0.5, 0.5]], method="met")
    b = _dist([[1, 2]], [[0.5, 0.5]])
    df = compare(a, b)
    assert list(df.columns) == ["time", "species", "method", "reference", "mean", "reference_mean",
                                "std", "reference_std", "hellinger", "total_variation"]
    r = df.iloc[0]
    assert (r.time, r.species, r.method, r.reference) == (1.0, "X", "met", "fsp")
    assert (r["mean"], r.reference_mean, r["std"], r.reference_std) == pytest.approx((0.5, 1.5, 0.5, 0.5))
    assert r.hellinger == pytest.approx(math.sqrt(0.5))  # overlap sqrt(0.25) at count 1
    assert r.total_variation == pytest.approx(0.5)


def test_compare_ssa_result_with_distribution():
    # 4 trajectories, 2 times, 1 species; at t = 2 the counts are 0, 0, 1, 3
    states = np.array([[[0], [0]], [[0], [0]], [[0], [1]], [[0], [3]]], dtype=float)
    ssa = SSAResult(("X",), np.array([0.0, 2.0]), states, method="ssa")
    ref = _dist([[0], [0, 1, 3]], [[1.0], [0.5, 0.25, 0.25]], times=(0.0, 2.0))
    df = compare(ssa, ref).set_index("time")
    assert len(df) == 2
    r = df.loc[2.0]
    assert r["mean"] == pytest.approx(1.0) and r.reference_mean == pytest.approx(1.0)
    assert r["std"] == pytest.approx(math.sqrt(6 / 3))  # sample std, ddof = 1: sum (x-1)^2 = 6
    assert r.reference_std == pytest.approx(math.sqrt(1.5))  # exact: 0.5*1 + 0.25*0 + 0.25*4
    assert r.hellinger == pytest.approx(0.0, abs=1e-7) and r.total_variation == pytest.approx(0.0)
    assert df.loc[0.0, "hellinger"] == pytest.approx(0.0, abs=1e-7)


def test_compare_refuses_disjoint_results():
    with pytest.raises(InvalidArgumentError, match="no output time"):
        compare(_dist([[0]], [[1.0]], times=(1.0,)), _dist([[0]], [[1.0]], times=(2.0,)))
    with pytest.raises(InvalidArgumentError):
        compare(_dist([[0]], [[1.0]]), "not a result")


def test_compare_is_reexported():
    assert sbml_met.compare is compare
    assert sbml_met.solve_fsp is sbml_met.fsp.solve_fsp
