"""load_sbml reads Antimony too (text or a .ant path); load_antimony takes volume=; errors that
advise volume= name the CLI flag --volume as well."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sbml_met
from sbml_met.errors import SBMLParseError, UnsupportedSBMLError

MODELS = Path(__file__).resolve().parents[1] / "sbml_models"
BD = "J0: -> X; k1\nJ1: X -> ; k2*X\nk1 = 5; k2 = 0.5; X = 3"
CONC = "compartment c = 1; species A in c, B in c; A = 0.5; B = 0.25; J: A => B; k*A; k = 1"


def test_load_sbml_reads_antimony_text_and_ant_paths():
    a = sbml_met.load_sbml(BD)
    assert a.reaction_ids == sbml_met.load_antimony(BD).reaction_ids == ("J0", "J1")
    for source in (MODELS / "toggle_switch.ant", str(MODELS / "toggle_switch.ant")):
        net = sbml_met.load_sbml(source)
        assert net.fingerprint() == sbml_met.load_sbml(MODELS / "toggle_switch.xml").fingerprint()


def test_load_antimony_takes_volume_and_paths():
    net = sbml_met.load_antimony(CONC, volume=100)
    assert net.initial_state.tolist() == [50, 25]
    assert np.allclose(net.propensities(net.initial_state), [50.0])
    assert sbml_met.load_antimony(MODELS / "autoregulation.ant").reaction_ids[0] == "unbinding"


def test_bad_sources_are_typed_errors():
    with pytest.raises(SBMLParseError, match="no such SBML file"):
        sbml_met.load_sbml("no_such_model.xml")
    with pytest.raises(SBMLParseError, match="neither SBML .* nor valid Antimony"):
        sbml_met.load_sbml("J0: -> X; k1 +")


def test_advice_on_volume_names_the_cli_flag():
    with pytest.raises(UnsupportedSBMLError) as info:
        sbml_met.load_antimony(CONC)
    assert "volume=" in str(info.value) and "--volume" in str(info.value)
