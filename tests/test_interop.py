"""SBML as Tellurium users write it: Antimony's `->`, tellurium in the same process, concentration
models with any rate law, substance units, and what the engines do when a law would empty a pool."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import sbml_met
from sbml_met.errors import NegativeCountError, UnsupportedSBMLError

# the everyday Tellurium example: `->` makes reversible reactions in Antimony
TELLURIUM_STYLE = """
J0: -> X; k1
J1: X -> ; k2*X
J2: X -> Y; k3*X
J3: Y -> ; k4*Y
k1 = 10; k2 = 0.1; k3 = 0.05; k4 = 0.2
X = 0; Y = 0
"""


def test_reversible_arrow_loads_as_the_irreversible_model():
    rev = sbml_met.load_antimony(TELLURIUM_STYLE)
    irr = sbml_met.load_antimony(TELLURIUM_STYLE.replace("->", "=>"))
    assert rev.reaction_ids == irr.reaction_ids == ("J0", "J1", "J2", "J3")
    assert np.array_equal(rev.stoichiometry, irr.stoichiometry)
    assert rev.fingerprint() == irr.fingerprint()  # a MET trained on one serves the other
    states = np.array([[0, 0], [3, 7], [50, 20]])
    assert np.array_equal(rev.propensities(states), irr.propensities(states))
    assert "forward only" in str(rev) and "J0, J1, J2, J3" in str(rev)
    a = sbml_met.simulate(rev, [0, 5, 20], n=200, seed=4).states
    b = sbml_met.simulate(irr, [0, 5, 20], n=200, seed=4).states
    assert np.array_equal(a, b)


def test_reversible_arrow_through_fsp_matches_the_poisson_answer():
    net = sbml_met.load_antimony("J0: -> X; k1\nJ1: X -> ; k2*X\nk1 = 5; k2 = 0.5; X = 0")
    dist = sbml_met.solve_fsp(net, [2.0], tol=1e-8)
    lam = 5 / 0.5 * (1 - np.exp(-0.5 * 2.0))  # X(t) ~ Poisson(k1/k2 (1 - e^{-k2 t}))
    marg = dist.marginal("X", 2.0)
    assert float((marg.index * marg).sum()) == pytest.approx(lam, rel=1e-6)


@pytest.mark.parametrize("law, forward, reverse", [
    ("cell*(k1*D*R - k7*DR)", [2 * 1.5 * 4 * 3], [2 * 0.5 * 5]),
    ("k*(D*R - DR/Keq)", [0.7 * 12], [0.7 * 5 / 2.0]),
    ("(Vf*D*R/Ks - Vr*DR/Kp)/(1 + D/Ks + DR/Kp)", [1.0 * 12 / 2 / (1 + 2 + 2.5)], [3.0 * 5 / 2 / (1 + 2 + 2.5)]),
    # the forward part does not vanish at R = 0: one channel at the net rate (not the split)
    ("k*(D - DR/Keq)", [0.7 * (4 - 5 / 2.0)], [0.0]),
])
def test_reversible_net_laws_split_into_nonnegative_channels(law, forward, reverse):
    net = sbml_met.load_antimony(f"""
        compartment cell = 2
        species D in cell, R in cell, DR in cell
        substanceOnly species D, R, DR
        J: D + R -> DR; {law}
        D = 4; R = 3; DR = 5
        k1 = 1.5; k7 = 0.5; k = 0.7; Keq = 2; Vf = 1; Vr = 3; Ks = 2; Kp = 2""")
    assert net.reaction_ids == ("J", "J__reverse")
    a = net.propensities(net.initial_state)
    assert a.tolist() == pytest.approx(forward + reverse, rel=1e-12)


def test_reversible_law_that_cannot_split_runs_at_its_net_rate():
    net = sbml_met.load_antimony("J: A -> B; k*ln(A)\nA = 5; B = 0; k = 1")
    assert net.reaction_ids == ("J", "J__reverse") and "net rate" in net.notes[-1]
    assert net.propensities([5, 0]).tolist() == pytest.approx([np.log(5), 0])


def test_roundoff_difference_is_zero_not_a_negative_propensity():
    # Ep = Et - E: equal totals along different float paths differ by ~1e-16, not by a molecule
    net = sbml_met.load_antimony("""
        species E, P
        Ep := Et - f*E
        R: => P; k*Ep
        E = 3; P = 0; Et = 0.3; f = 0.1; k = 1""")
    assert net.initial_state.tolist() == [3.0, 0.0]
    assert 0.3 - 0.1 * 3 < 0  # the free enzyme is -5.6e-17 in floating point
    assert net.propensities(net.initial_state).tolist() == [0.0]
    assert sbml_met.simulate(net, [0, 1], n=5, seed=0).states[:, -1, 1].tolist() == [0] * 5


def test_truly_negative_propensity_is_still_an_error():
    net = sbml_met.load_antimony("R: A => B; k*(A - 10)\nA = 5; B = 0; k = 1")
    with pytest.raises(sbml_met.PropensityError, match="'R'"):
        sbml_met.simulate(net, [0, 1], n=4, seed=0)


SCHLOGL_EMPTYSET = """
species A, EmptySet
R: EmptySet => A; k
A = 0; EmptySet = 3; k = 1
"""


def test_a_law_that_does_not_vanish_with_its_reactant_is_an_error_not_a_negative_count():
    net = sbml_met.load_antimony(SCHLOGL_EMPTYSET)
    with pytest.raises(NegativeCountError) as info:
        sbml_met.simulate(net, [0, 50], n=20, seed=1)
    assert (info.value.reaction_id, info.value.species_id) == ("R", "EmptySet")
    assert "boundary" in str(info.value) and "$EmptySet" in str(info.value)
    with pytest.raises(NegativeCountError, match="EmptySet"):
        sbml_met.solve_fsp(net, [50.0])
    # as a boundary species (a constant pool) the same model is a plain birth process
    ok = sbml_met.load_antimony(SCHLOGL_EMPTYSET.replace("species A, EmptySet", "species A, $EmptySet"))
    assert sbml_met.simulate(ok, [0, 5], n=50, seed=1).states.min() >= 0


def test_time_event_assigning_a_parameter_switches_production_off():
    # BioModels' common pattern (a stimulus removed at t = t2): X is Poisson with mean
    # k/d (1 - e^{-d t}) until t2 = 5, then decays as m(5) e^{-d (t - 5)}
    net = sbml_met.load_antimony("""
        J0: => X; k
        J1: X => ; d*X
        k = 20; d = 0.5; t2 = 5; X = 0
        off: at time > t2: k = 0""")
    res = sbml_met.simulate(net, [5.0, 7.0], n=4000, seed=5)
    m5 = 20 / 0.5 * (1 - np.exp(-0.5 * 5))
    mean = res.states[:, :, 0].mean(axis=0)
    assert mean[0] == pytest.approx(m5, abs=4 * np.sqrt(m5 / 4000))
    m7 = m5 * np.exp(-0.5 * 2)
    assert mean[1] == pytest.approx(m7, abs=4 * np.sqrt(m7 / 4000))
    assert net.parameters["k"] == 20  # the network itself is unchanged


# ---------------------------------------------------------------------------- substance units
MOLAR_MODEL = """<?xml version="1.0" encoding="UTF-8"?>
<sbml xmlns="http://www.sbml.org/sbml/level2/version4" level="2" version="4">
  <model id="molar">
    <listOfUnitDefinitions>
      <unitDefinition id="substance"><listOfUnits><unit kind="mole"/></listOfUnits></unitDefinition>
    </listOfUnitDefinitions>
    <listOfCompartments><compartment id="cell" size="1e-12"/></listOfCompartments>
    <listOfSpecies>
      <species id="C" compartment="cell" initialConcentration="4E-7"/>
      <species id="M" compartment="cell" initialConcentration="{m}"/>
    </listOfSpecies>
    <listOfParameters><parameter id="k" value="0.5"/></listOfParameters>
    <listOfReactions>
      <reaction id="deg" reversible="false">
        <listOfReactants><speciesReference species="C"/></listOfReactants>
        <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML">
          <apply><times/><ci>cell</ci><ci>k</ci><ci>C</ci></apply></math></kineticLaw>
      </reaction>
    </listOfReactions>
  </model>
</sbml>"""


def test_amounts_in_moles_become_molecules_by_avogadro():
    net = sbml_met.load_sbml(MOLAR_MODEL.format(m="1E-9"))
    expected = [round(4e-7 * 1e-12 * 6.02214076e23), round(1e-9 * 1e-12 * 6.02214076e23)]
    assert net.initial_state.tolist() == expected  # 240,886 and 602 molecules, not 0
    # first order: the propensity is k per molecule, whatever the units
    assert net.propensities(net.initial_state).tolist() == pytest.approx([0.5 * expected[0]], rel=1e-9)


def test_converted_model_round_trips_through_sbml_without_converting_twice():
    net = sbml_met.load_sbml(MOLAR_MODEL.format(m="1E-9"))
    again = sbml_met.load_sbml(net.to_sbml())
    assert again.initial_state.tolist() == net.initial_state.tolist()
    assert again.propensities(again.initial_state).tolist() == pytest.approx(
        net.propensities(net.initial_state).tolist(), rel=1e-12)


def test_millimolar_unit_scales_avogadro():
    text = MOLAR_MODEL.format(m="0").replace('<unit kind="mole"/>', '<unit kind="mole" scale="-3"/>')
    net = sbml_met.load_sbml(text)
    assert net.initial_state[0] == round(4e-7 * 1e-12 * 1e-3 * 6.02214076e23)


def test_level2_default_mole_reads_tiny_amounts_as_molecules():
    # no unit definitions in Level 2 means mole; 1.66e-21 mol is 1,000 molecules, never 0
    text = MOLAR_MODEL.format(m="0").replace(
        '<listOfUnitDefinitions>\n      <unitDefinition id="substance"><listOfUnits><unit kind="mole"/></listOfUnits></unitDefinition>\n    </listOfUnitDefinitions>\n', "")
    text = text.replace('initialConcentration="4E-7"', 'initialAmount="1.66053906717e-21"')
    assert "unitDefinition" not in text
    net = sbml_met.load_sbml(text)
    assert net.initial_state.tolist() == [1000.0, 0.0]
    assert any("mole" in note for note in net.notes)


def test_tiny_fractional_amount_is_never_rounded_to_zero():
    with pytest.raises(UnsupportedSBMLError) as info:
        sbml_met.load_antimony("R: A => B; k*A\nA = 3e-7; B = 0; k = 1")
    assert info.value.element_id == "A" and "volume=" in str(info.value)


def test_species_without_initial_amount_start_at_zero_and_say_so():
    net = sbml_met.load_antimony("species A, B; R: A => B; k*A; S: => A; k; B = 2; k = 1")
    assert net.initial_state.tolist() == [0.0, 2.0]
    assert any("starting at 0" in note and note.endswith(": A") for note in net.notes)


def test_fractional_amounts_without_units_are_refused_listing_every_species():
    with pytest.raises(UnsupportedSBMLError) as info:
        sbml_met.load_antimony("R: A => B; k*A\nA = 0.25; B = 1.5; k = 1")
    ids = [r.element_id for r in info.value.reasons]
    assert ids == ["A", "B"] and "volume=" in str(info.value)


# ---------------------------------------------------------------------------- volume= for any law
HILL_MM = """
model hill_mm
  compartment cell = 1
  species X in cell, Y in cell
  J0: -> X; cell*v0/(1 + (Y/K)^h)
  J1: X -> ; cell*Vm*X/(Km + X)
  J2: -> Y; cell*k*X
  J3: Y -> ; cell*d*Y
  v0 = 2; K = 1; h = 2; Vm = 1; Km = 0.5; k = 1; d = 1
  X = 0.5; Y = 0.2
end
"""


def test_hill_and_michaelis_menten_laws_reach_the_ode_at_large_volume():
    te = pytest.importorskip("tellurium")
    volume = 2000.0
    net = sbml_met.load_sbml(sbml_met.sbml.antimony_to_sbml(HILL_MM), volume=volume)
    assert net.initial_state.tolist() == [1000.0, 400.0]
    times = [0.0, 1.0, 3.0]
    ssa = sbml_met.simulate(net, times, n=200, seed=3)
    mean = ssa.states.mean(axis=0) / volume  # (times, species), back to concentrations
    rr = te.loada(HILL_MM)
    ode = rr.simulate(0, 3, 4, ["time", "[X]", "[Y]"])
    for j, t in enumerate(times):
        row = ode[int(round(t)), 1:] if t else ode[0, 1:]
        assert mean[j] == pytest.approx(row, rel=0.02)


# ---------------------------------------------------------------------------- import order
ORDERS = [
    ["sbml_met", "tellurium"],
    ["tellurium", "sbml_met"],
    ["sbml_met", "roadrunner", "antimony"],
    ["libsbml", "sbml_met", "phrasedml", "libsedml"],
    ["antimony", "libsedml", "sbml_met", "tellurium"],
    ["sbml_met", "libsedml", "phrasedml", "roadrunner", "tellurium"],
]


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
def test_any_import_order_loads_and_simulates(order):
    for name in order:
        pytest.importorskip(name)
    script = "\n".join(f"import {name}" for name in order) + textwrap.dedent(f"""
        import numpy as np
        net = sbml_met.models.load("toggle_switch")
        res = sbml_met.simulate(net, [0, 1, 5], n=50, seed=1)
        rev = sbml_met.load_antimony({TELLURIUM_STYLE!r})
        print(int(res.states.sum()), rev.reaction_ids, float(net.propensities(net.initial_state).sum()))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    reference = subprocess.run([sys.executable, "-c", script.replace("import tellurium\n", "").replace(
        "import roadrunner\n", "").replace("import libsedml\n", "").replace("import phrasedml\n", "")],
        capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert out.stdout.split("\n")[-2] == reference.stdout.split("\n")[-2]


def test_tellurium_reference_runs_reversible_reactions_as_the_cme():
    pytest.importorskip("roadrunner")
    from sbml_met.tellurium import run_gillespie

    # A <-> B at kf*A - kr*B: the CME's stationary B is Binomial(30, 1/3), variance 20/3
    net = sbml_met.load_antimony("""
        R: A -> B; kf*A - kr*B
        A = 30; B = 0; kf = 1; kr = 2""")
    split = run_gillespie(net, [0, 10], n=2000, seed=1, processes=1).states[:, -1, 1]
    assert split.mean() == pytest.approx(10, abs=4 * np.sqrt(20 / 3 / 2000))
    assert split.var() == pytest.approx(20 / 3, rel=0.15)
    # as libroadrunner reads it, the net rate freezes B at 10 exactly: not the CME
    raw = run_gillespie(net, [0, 10], n=200, seed=1, processes=1, split_reversible=False).states[:, -1, 1]
    assert raw.var() < 0.5
    ssa = sbml_met.simulate(net, [0, 10], n=2000, seed=2)
    assert sbml_met.validate(net, ssa, reference=run_gillespie(net, [0, 10], n=2000, seed=3)).ok


LOCAL_REVERSIBLE = """<?xml version="1.0" encoding="UTF-8"?>
<sbml xmlns="http://www.sbml.org/sbml/level3/version1/core" level="3" version="1">
  <model id="local">
    <listOfCompartments><compartment id="c" size="1" constant="true"/></listOfCompartments>
    <listOfSpecies>
      <species id="A" compartment="c" initialAmount="4" hasOnlySubstanceUnits="true" boundaryCondition="false" constant="false"/>
      <species id="B" compartment="c" initialAmount="3" hasOnlySubstanceUnits="true" boundaryCondition="false" constant="false"/>
      <species id="E" compartment="c" initialAmount="2" hasOnlySubstanceUnits="true" boundaryCondition="false" constant="false"/>
    </listOfSpecies>
    <listOfReactions>
      <reaction id="R" reversible="true" fast="false">
        <listOfReactants><speciesReference species="A" stoichiometry="1" constant="true"/></listOfReactants>
        <listOfProducts><speciesReference species="B" stoichiometry="1" constant="true"/></listOfProducts>
        <listOfModifiers><modifierSpeciesReference species="E"/></listOfModifiers>
        <kineticLaw>
          <math xmlns="http://www.w3.org/1998/Math/MathML"><apply><times/><ci>E</ci>
            <apply><minus/><apply><times/><ci>kf</ci><ci>A</ci></apply><apply><times/><ci>kr</ci><ci>B</ci></apply></apply>
          </apply></math>
          <listOfLocalParameters><localParameter id="kf" value="1.5"/><localParameter id="kr" value="0.5"/></listOfLocalParameters>
        </kineticLaw>
      </reaction>
    </listOfReactions>
  </model>
</sbml>"""


def test_split_reversible_keeps_local_parameters_and_modifiers():
    from sbml_met.sbml import split_reversible

    net = sbml_met.load_sbml(split_reversible(LOCAL_REVERSIBLE))
    assert net.reaction_ids == ("R", "R__reverse")
    assert net.propensities(net.initial_state).tolist() == pytest.approx([2 * 1.5 * 4, 2 * 0.5 * 3])
    assert np.array_equal(net.stoichiometry, sbml_met.load_sbml(LOCAL_REVERSIBLE).stoichiometry)


def test_the_deterministic_dimer_law_gets_advice_whose_law_then_runs_and_is_exact():
    """Tellurium users write a dimerisation as ka*P*P, which stays positive at P = 1 where the
    reaction needs two molecules. The error must say so and give the stochastic law; that law
    then runs, and its SSA agrees with exact FSP."""
    text = "model d\n make: -> P; kp\n pair: P + P -> D; {law}\n split: D -> P + P; kb*D\n" \
           " P = 0; D = 0; kp = 8; ka = 0.02; kb = 0.4\nend"
    net = sbml_met.load_antimony(text.format(law="ka*P*P"))
    with pytest.raises(NegativeCountError) as info:
        sbml_met.simulate(net, [0, 5], n=200, seed=1)
    msg = str(info.value)
    assert info.value.reaction_id == "pair" and info.value.count == 1
    assert "P*(P - 1)" in msg and "a factor 'P'" not in msg  # P*P has that factor: the advice is the pair law
    fixed = sbml_met.load_antimony(text.format(law="ka*P*(P - 1)"))
    res = sbml_met.simulate(fixed, [0, 5], n=4000, seed=2)
    pmf = sbml_met.solve_fsp(fixed, [5.0]).marginal("D", 5.0)
    k, p = np.asarray(pmf.index, float), pmf.to_numpy()
    mean = float(k @ p)
    sd = float(np.sqrt(((k - mean) ** 2) @ p))
    got = res.moments().query("species == 'D' and time == 5")["mean"].iloc[0]
    assert mean > 1 and abs(got - mean) < 4 * sd / np.sqrt(4000)
