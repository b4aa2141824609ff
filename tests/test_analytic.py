"""Exact first-order solutions against FSP and the exact moment equations."""

from __future__ import annotations

import numpy as np
import pytest

import sbml_met
from sbml_met.analytic import first_order_marginals, first_order_moments, monomolecular
from sbml_met.errors import InvalidArgumentError, UnsupportedSBMLError

CONVERSION = """
model conversion
  species A = 0, B = 0, C = 0;
  r0: => A; k0;
  r1: A => B; 1.5*A;
  r2: B => C; 0.7*B;
  r3: C => ; 0.5*C;
  r4: A => ; 0.3*A;
  k0 = 4;
end"""

CATALYTIC = """
model catalytic
  species A = 2, B = 1, C = 0;
  r0: => A; 3;
  r1: A => A + B; 1.2*A;
  r2: B => B + C; 0.8*B;
  r3: C => ; 0.9*C;
  r4: A => ; 1*A;
  r5: B => ; 1*B;
end"""

TIMES = [0.5, 2.0, 5.0]


def _max_marginal_error(d, ref, times, species):
    worst = 0.0
    for t in times:
        for s in species:
            a, b = d.marginal(s, t).to_numpy(), ref.marginal(s, t).to_numpy()
            n = max(len(a), len(b))
            worst = max(worst, float(np.abs(np.pad(a, (0, n - len(a))) - np.pad(b, (0, n - len(b)))).max()))
    return worst


def test_monomolecular_conversion_cascade_matches_fsp():
    net = sbml_met.load_antimony(CONVERSION)
    d = monomolecular(net, TIMES)
    ref = sbml_met.solve_fsp(net, TIMES, tol=1e-10)
    assert d.method == "analytic"
    assert _max_marginal_error(d, ref, TIMES, "ABC") < 1e-6
    # the joint too: a product of Poissons
    j = 2
    p = np.exp(d.log_prob(ref.states[j], TIMES[j]))
    assert np.abs(p - ref.probabilities[j]).max() < 1e-6


def test_monomolecular_refuses_catalytic_production_naming_each_reaction():
    with pytest.raises(UnsupportedSBMLError) as err:
        monomolecular(sbml_met.load_antimony(CATALYTIC), TIMES)
    ids = [r.element_id for r in err.value.reasons]
    assert ids == ["r1", "r2"]
    assert "catalytic" in str(err.value)
    with pytest.raises(UnsupportedSBMLError) as err:
        monomolecular(sbml_met.models.load("cascade15"), [1.0])
    assert len(err.value.reasons) == 14


def test_monomolecular_refuses_nonlinear_and_nonzero_start():
    with pytest.raises(UnsupportedSBMLError) as err:
        monomolecular(sbml_met.models.load("autoregulation"), [1.0])
    assert {r.element_id for r in err.value.reasons} >= {"binding", "prod_bound"}
    with pytest.raises(InvalidArgumentError, match="A"):
        monomolecular(sbml_met.load_antimony(CONVERSION).with_initial_state(A=3), [1.0])


def test_first_order_marginals_catalytic_matches_fsp():
    net = sbml_met.load_antimony(CATALYTIC)
    d = first_order_marginals(net, TIMES)
    ref = sbml_met.solve_fsp(net, TIMES, tol=1e-10)
    assert _max_marginal_error(d, ref, TIMES, "ABC") < 1e-6
    m, r = d.moments(), ref.moments()
    assert np.allclose(m["mean"], r["mean"], atol=1e-6) and np.allclose(m["std"], r["std"], atol=1e-6)
    assert d.metadata["joint"] is False
    with pytest.raises(InvalidArgumentError, match="marginals only"):
        d.log_prob([[0, 0, 0]], 2.0)
    # the tidy table carries every species' exact marginal
    f = d.to_frame()
    assert set(f.columns) == {"time", "species", "count", "probability"}
    assert np.allclose(f.groupby(["time", "species"])["probability"].sum(), 1.0, atol=1e-9)


def test_first_order_moments_cascade15_overdispersed():
    net = sbml_met.models.load("cascade15")
    mean, cov = first_order_moments(net, [10.0])
    # closed forms at k0 = 5, k = g = 1: S2 mean 5 (1 - e^-t (1 + t)), variance 7.5 at t -> large
    t = 10.0
    assert mean[0, 1] == pytest.approx(5 * (1 - np.exp(-t) * (1 + t)), rel=1e-8)
    assert cov[0, 1, 1] == pytest.approx(7.5, abs=0.01)
    assert cov[0, 0, 0] == pytest.approx(5 * (1 - np.exp(-t)), rel=1e-8)


@pytest.mark.slow
def test_first_order_marginals_cascade15_against_moment_equations():
    net = sbml_met.models.load("cascade15")
    times = [2.0, 10.0]
    d = first_order_marginals(net, times)
    mean, cov = first_order_moments(net, times)
    m = d.moments()
    for j, t in enumerate(times):
        rows = m[m.time == t]
        assert np.allclose(rows["mean"], mean[j], atol=1e-7)
        assert np.allclose(rows["std"], np.sqrt(np.diagonal(cov[j])), atol=1e-6)
    # S1 is Poisson(5 (1 - e^-t)) exactly
    from scipy.stats import poisson

    p = d.marginal("S1", 10.0).to_numpy()
    assert np.abs(p - poisson.pmf(np.arange(len(p)), 5 * (1 - np.exp(-10.0)))).max() < 1e-9
