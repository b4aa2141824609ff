"""Counts that fit: species defined by assignment rules come back as values (not counts), a run
beyond 2^53 is a typed error, tables never overflow int64, refusals list every reason."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import sbml_met
from sbml_met.errors import CountOverflowError, RuleValueWarning, UnsupportedSBMLError
from sbml_met.results import SSAResult

ALGEBRA = """
species X, Y
J: => X; k
D: X => ; d*X
Y := X - 10
k = 5; d = 0.5; X = 0"""


def test_rule_species_are_values_with_a_warning_where_negative():
    net = sbml_met.load_antimony(ALGEBRA)
    with pytest.warns(RuleValueWarning, match="Y"):
        res = sbml_met.simulate(net, [0, 1, 5], n=200, seed=1)
    assert res.noncounted == ("Y",)
    frame = res.to_frame()
    x, y = frame[frame.species == "X"], frame[frame.species == "Y"]
    assert x["count"].notna().all() and x["value"].isna().all()
    assert y["count"].isna().all() and np.array_equal(y["value"].to_numpy(), x["count"].to_numpy(float) - 10)
    assert res.to_distribution().species == ("X",)  # the distribution is over counted molecules
    # X(t) ~ Poisson(k/d (1 - e^{-d t})): the mean at t = 5
    assert x[x.time == 5.0]["count"].mean() == pytest.approx(10 * (1 - np.exp(-2.5)), abs=4 * 3 / np.sqrt(200))


def test_no_warning_when_rule_values_stay_non_negative():
    net = sbml_met.load_antimony(ALGEBRA.replace("Y := X - 10", "Y := X + 1"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuleValueWarning)
        sbml_met.simulate(net, [0, 1], n=20, seed=1)


def test_run_beyond_2_53_raises_the_typed_error():
    net = sbml_met.load_antimony("J: => X; k\nX = 9007199254740000; k = 1e6")
    with pytest.raises(CountOverflowError) as info:
        sbml_met.simulate(net, [0, 1], n=2, seed=1)
    assert info.value.species_id == "X" and "--volume" in str(info.value)


def test_to_frame_never_overflows_int64():
    big = SSAResult(("E",), np.array([0.0]), np.full((2, 1, 1), 6.02e23))
    frame = big.to_frame()
    assert frame["count"].dtype == float and (frame["count"] > 0).all()
    small = SSAResult(("A",), np.array([0.0]), np.full((2, 1, 1), 7.0))
    assert small.to_frame()["count"].dtype == np.int64


def test_initial_assignment_beyond_2_53_is_refused_with_every_reason():
    # E set by an initial assignment to one mole of molecules, and a fractional literal amount
    with pytest.raises(UnsupportedSBMLError) as info:
        sbml_met.load_antimony("species E, F, G\nJ: E => F; k*E\nE = m*6.02e23; F = 0; G = 2.5; m = 1; k = 1")
    features = {r.element_id: r.feature for r in info.value.reasons}
    assert set(features) == {"E", "G"} and "2^53" in features["E"] and "whole number" in features["G"]


def mixed_units(extra: str = "", a: float = 1e-15, fast: str = "") -> str:
    """A and B in mmol, C in molecules (item), as BIOMD0000000207 mixes them."""
    import libsbml

    from sbml_met.sbml import antimony_to_sbml

    doc = libsbml.readSBMLFromString(antimony_to_sbml(f"""
        unit mmol = 1e-3 mole
        compartment c = 1
        species A in c, B in c, C in c
        J: A => B; k*A
        K: C => ; k*C
        A = 1; B = 0; C = 5; k = 0.7
        {extra}"""))
    m = doc.getModel()
    for sid, unit in (("A", "mmol"), ("B", "mmol"), ("C", "item")):
        m.getSpecies(sid).setSubstanceUnits(unit)
        m.getSpecies(sid).setHasOnlySubstanceUnits(True)
    m.getSpecies("A").setInitialAmount(a)
    if fast:
        m.getReaction(fast).setFast(True)
    return libsbml.writeSBMLToString(doc)


def test_species_convert_by_their_own_substance_units():
    net = sbml_met.load_sbml(mixed_units())
    x0 = dict(zip(net.species, net.initial_state))
    assert x0 == {"A": 602214.0, "B": 0.0, "C": 5.0}
    assert "own substance unit" in net.notes[-1]
    # both laws are k times the count: each species at its own factor
    assert net.propensities(net.initial_state).tolist() == pytest.approx([0.7 * 602214, 0.7 * 5])
    d = sbml_met.solve_fsp(net.with_initial_state(A=3), [1.0])
    m = d.marginal("C", 1.0)
    assert m.to_numpy() == pytest.approx(__import__("scipy").stats.binom.pmf(m.index, 5, np.exp(-0.7)), abs=1e-7)


def test_reaction_mixing_units_is_refused_with_every_other_reason():
    with pytest.raises(UnsupportedSBMLError) as info:
        sbml_met.load_sbml(mixed_units("L: A => C; k*A", fast="K"))
    features = {r.element_id: r.feature for r in info.value.reasons}
    assert "different substance units" in features["L"] and "fast" in features["K"]
