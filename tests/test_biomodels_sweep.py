"""Every curated BioModels entry in ../shared/biomodels/ either loads (as amounts, or with
``volume=``) or is refused with an UnsupportedSBMLError whose reasons name element ids of the
document; never any other exception. Loading only (no simulation); bench/biomodels_sweep.py runs
the simulations. Skips cleanly when the folder is absent."""

from __future__ import annotations

from pathlib import Path

import libsbml
import numpy as np
import pytest

import sbml_met
from sbml_met.errors import UnsupportedSBMLError
from sbml_met.sbml import suggest_volume

# the SHARED convention of tests/conftest.py: ../shared beside the repository
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BIOMODELS = SHARED / "biomodels"
FILES = sorted(BIOMODELS.glob("*.xml")) if BIOMODELS.is_dir() else []

# entries bench/biomodels_sweep.py loaded (as amounts or with its volume=; bench/biomodels_sweep.txt):
# one of these refused again is a regression
LOADS = {f"BIOMD0000000{n}" for n in (
    "001", "012", "021", "022", "028", "030", "035", "050", "065", "080", "090", "110", "120", "130", "169",
    "240", "320", "330", "370", "380", "390", "400", "485", "520", "680", "740", "820")}


def _volume(doc: libsbml.SBMLDocument) -> float:
    """The sweep's rule: a power of ten that brings the median positive initial amount to ~300."""
    return suggest_volume(libsbml.writeSBMLToString(doc))


def _document_ids(doc: libsbml.SBMLDocument) -> set[str]:
    """Every id (and metaid) of the document, rule variables, and 'reaction.param' for local
    parameters."""
    ids: set[str] = set()
    m = doc.getModel()
    if m.isSetId():
        ids.add(m.getId())
    elements = doc.getListOfAllElements()
    for k in range(elements.getSize()):
        e = elements.get(k)
        if e.isSetId():
            ids.add(e.getId())
        if e.isSetMetaId():
            ids.add(e.getMetaId())
    for i in range(m.getNumRules()):
        if m.getRule(i).getVariable():
            ids.add(m.getRule(i).getVariable())
    for i in range(m.getNumReactions()):
        r = m.getReaction(i)
        kl = r.getKineticLaw()
        if kl is None:
            continue
        for j in range(kl.getNumParameters()):
            ids.add(f"{r.getId()}.{kl.getParameter(j).getId()}")
        for j in range(kl.getNumLocalParameters()):
            ids.add(f"{r.getId()}.{kl.getLocalParameter(j).getId()}")
    return ids


def _check_network(net) -> None:
    """Counted species start at whole counts >= 0 (species defined by assignment rules or rate
    rules are values, the model's algebra: they are not held to that)."""
    x0 = np.asarray(net.initial_state, dtype=float)
    assert x0.shape == (net.n_species,)
    counted = ~np.array([s.rule or s.continuous for s in net.species_info], dtype=bool)
    x = x0[counted]
    assert np.all(np.isfinite(x)), f"non-finite initial counts {dict(zip(net.species, x0))}"
    assert np.all(x >= 0), f"negative initial counts: {dict(zip(net.species, x0))}"
    assert np.all(x == np.round(x)), f"non-whole initial counts: {dict(zip(net.species, x0))}"
    assert np.all(x <= 2.0**53), f"initial counts beyond 2^53: {dict(zip(net.species, x0))}"


def _check_refusal(err: UnsupportedSBMLError, ids: set[str], how: str) -> None:
    assert err.reasons, f"{how}: UnsupportedSBMLError without reasons"
    unknown = [str(r) for r in err.reasons if r.element_id not in ids]
    assert not unknown, f"{how}: reasons naming no element of the document: {unknown}"


@pytest.mark.parametrize("path", FILES or [None], ids=[p.stem for p in FILES] or ["absent"])
def test_entry_loads_or_is_refused_by_element(path):
    if path is None:
        pytest.skip(f"curated BioModels files not found at {BIOMODELS}")
    doc = libsbml.readSBMLFromFile(str(path))
    assert doc.getModel() is not None
    ids = _document_ids(doc)
    try:
        net = sbml_met.load_sbml(path)
    except UnsupportedSBMLError as e:
        _check_refusal(e, ids, "load_sbml(path)")
    else:
        _check_network(net)
        return
    volume = _volume(doc)
    try:
        net = sbml_met.load_sbml(path, volume=volume)
    except UnsupportedSBMLError as e:
        _check_refusal(e, ids, f"load_sbml(path, volume={volume:g})")
        assert path.stem not in LOADS, f"{path.stem} loaded in the sweep, refused now: {e}"
    else:
        _check_network(net)
