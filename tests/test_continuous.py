"""Species declared continuous: their own reactions become an ODE, the rest stays exact.

Two-stage gene expression with the mRNA M continuous is exact to test: M follows
M' = km - gm M, and the protein P, made at kp M(t) and lost at gp P, is Poisson at every time with
mean lambda' = kp M(t) - gp lambda (a Poisson birth-death process with a time-varying birth rate).
With M counted instead, P's Fano factor is 1 + kp / (gm + gp) = 1.42: the test tells them apart."""

from __future__ import annotations

import subprocess
import sys

import libsbml
import numpy as np
import pandas as pd
import pytest
from scipy.integrate import solve_ivp

import sbml_met
from sbml_met.errors import UnknownIdError, UnsupportedSBMLError

GENE = """model gene_expression
  J1: -> M; km
  J2: M -> ; gm*M
  J3: M -> M + P; kp*M
  J4: P -> ; gp*P
  km = 20; gm = 1; kp = 0.5; gp = 0.2
  M = 0; P = 0
end"""
TIMES = [0.0, 1.0, 5.0, 20.0]


def exact_means() -> tuple[np.ndarray, np.ndarray]:
    """(M(t), lambda(t)) at TIMES from the ODE."""
    sol = solve_ivp(lambda t, y: [20 - y[0], 0.5 * y[0] - 0.2 * y[1]], (0, 20), [0, 0], t_eval=TIMES,
                    rtol=1e-11, atol=1e-12)
    return sol.y[0], sol.y[1]


def check_poisson_protein(df: pd.DataFrame, n: int) -> None:
    m_exact, lam = exact_means()
    for t, m, lm in zip(TIMES[1:], m_exact[1:], lam[1:]):
        p = df[(df.time == t) & (df.species == "P")]["count"].astype(float)
        assert len(p) == n
        assert abs(p.mean() - lm) < 4 * np.sqrt(lm / n), (t, p.mean(), lm)
        assert p.var() / p.mean() == pytest.approx(1.0, abs=0.1), (t, p.var() / p.mean())
        values = df[(df.time == t) & (df.species == "M")]["value"].astype(float)
        assert np.allclose(values, m, rtol=1e-6)  # the same deterministic M in every trajectory


def test_continuous_mrna_leaves_the_protein_poisson_with_the_ode_mean():
    net = sbml_met.load_antimony(GENE, continuous=["M"])
    assert net.reaction_ids == ("J3", "J4")  # J1, J2 became M's rate of change
    assert any("continuous" in note and "M" in note for note in net.notes)
    res = sbml_met.simulate(net, TIMES, n=4000, seed=11)
    check_poisson_protein(res.to_frame(), 4000)
    again = sbml_met.simulate(net, TIMES, n=4000, seed=11)
    assert np.array_equal(res.states, again.states)  # a seed gives the same numbers


def test_local_parameters_of_a_continuous_reaction_keep_their_values():
    # J2's rate constant as a local parameter named like a global one with another value
    doc = libsbml.readSBMLFromString(sbml_met.load_antimony(GENE).to_sbml())
    m = doc.getModel()
    kl = m.getReaction("J2").getKineticLaw()
    local = kl.createLocalParameter() if m.getLevel() > 2 else kl.createParameter()
    local.setId("km")  # shadows the global km = 20 inside J2 only
    local.setValue(1.0)
    kl.setMath(libsbml.parseL3Formula("km*M"))
    net = sbml_met.load_sbml(libsbml.writeSBMLToString(doc), continuous="M")
    res = sbml_met.simulate(net, TIMES, n=200, seed=1).to_frame()
    m_exact, _ = exact_means()
    values = res[(res.time == 20.0) & (res.species == "M")]["value"].astype(float)
    assert np.allclose(values, m_exact[-1], rtol=1e-6)


def test_a_reaction_that_changes_both_kinds_is_refused_by_name():
    text = GENE.replace("J3: M -> M + P; kp*M", "J3: M -> P; kp*M")
    with pytest.raises(UnsupportedSBMLError) as err:
        sbml_met.load_antimony(text, continuous=["M"])
    assert "J3" in str(err.value) and "declare P continuous too" in str(err.value)
    with pytest.raises(UnknownIdError, match="'Q'"):
        sbml_met.load_antimony(GENE, continuous=["Q"])


def test_engines_that_cannot_follow_an_ode_refuse():
    net = sbml_met.load_antimony(GENE, continuous=["M"])
    with pytest.raises(UnsupportedSBMLError):
        sbml_met.solve_fsp(net, [1.0])


def test_cli_continuous_flag(tmp_path):
    model = tmp_path / "gene.ant"
    model.write_text(GENE, encoding="utf-8")
    out = tmp_path / "traj.csv"
    proc = subprocess.run([sys.executable, "-m", "sbml_met", "simulate", str(model), "--continuous", "M",
                           "--times", "0,1,5,20", "--n", "1000", "--seed", "3", "--out", str(out)],
                          capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(out)
    _, lam = exact_means()
    p = df[(df.time == 20.0) & (df.species == "P")]["count"]
    assert abs(p.mean() - lam[-1]) < 4 * np.sqrt(lam[-1] / 1000)
