"""Species whose ids libsbml's formula parser would read as constants (``Pi``, ``E``): every
conversion works on libsbml ASTs, so the converted laws keep reading the species."""

from __future__ import annotations

import numpy as np
import pytest

import sbml_met
from sbml_met.sbml import antimony_to_sbml, to_counts

PHOSPHATE = """
model phosphate
  compartment cell = 1;
  species ATP in cell = 2, ADP in cell = 0.5, Pi in cell = 1, E in cell = 0.4;
  J1: ATP => ADP + Pi; k1*ATP;
  J2: ADP + Pi => ATP; k2*ADP*Pi;
  J3: Pi => ; V*Pi/(Km + Pi);
  J4: => Pi; s*E;
  J5: E => ; d*E;
  k1 = 1; k2 = 0.5; V = 0.3; Km = 0.5; s = 0.5; d = 0.1
end
"""


def test_converted_laws_read_the_species_pi_not_the_constant():
    net = sbml_met.load_sbml(antimony_to_sbml(PHOSPHATE), volume=100)
    laws = dict(zip(net.reaction_ids, (r.rate_law for r in net.reactions)))
    assert "Pi" in laws["J2"] and "pi" not in laws["J2"].replace("Pi", "")
    assert "pi" not in str(net).replace("Pi", "").replace("phosphate", "")
    x = dict(ATP=200.0, ADP=50.0, Pi=100.0, E=40.0)
    a = dict(zip(net.reaction_ids, net.propensities(np.array([x[s] for s in net.species]))))
    assert a["J2"] == pytest.approx(0.5 * 50 * 100 / 100)  # k2 * ADP * Pi / volume
    assert a["J3"] == pytest.approx(100 * 0.3 * 1.0 / (0.5 + 1.0))
    assert a["J4"] == pytest.approx(0.5 * 40)
    # the SBML written for reference simulators says Pi too
    assert "<ci> Pi </ci>" in to_counts(antimony_to_sbml(PHOSPHATE), volume=100)


def test_ssa_means_of_pi_match_libroadrunner_deterministic_limit():
    roadrunner = pytest.importorskip("roadrunner")
    sbml, volume, t = antimony_to_sbml(PHOSPHATE), 1000.0, 2.0
    rr = roadrunner.RoadRunner(sbml)
    ode = rr.simulate(0, t, 3, ["time", "[ATP]", "[ADP]", "[Pi]", "[E]"])[-1, 1:] * volume
    net = sbml_met.load_sbml(sbml, volume=volume)
    res = sbml_met.simulate(net, [0, t], n=200, seed=1)
    means = res.states[:, -1].mean(axis=0)
    got = dict(zip(net.species, means))
    for sid, want in zip(["ATP", "ADP", "Pi", "E"], ode):
        assert got[sid] == pytest.approx(want, rel=0.02), sid
