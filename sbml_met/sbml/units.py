"""Substance units: molecules per unit of each species' substance, literal amounts, suggested
volumes, and rounding converted amounts to whole molecules."""

from __future__ import annotations

import os
import warnings

import libsbml
import numpy as np

from .._math import AVOGADRO
from ..errors import CountRoundingWarning, Unsupported, UnsupportedSBMLError
from ..network import Species
from .reading import read_document


MAX_SUGGESTED_COUNT = 1e9  # the largest initial count a suggested volume raises a species to


def suggest_volume(source: str | os.PathLike, target: float = 300.0) -> float:
    """A ``volume=`` (a power of ten) that gives the median species with a positive initial amount
    about ``target`` molecules, from the amounts written in the SBML (initial assignments aside);
    larger where that would leave a positive amount below one molecule (a species the model has
    would round to none), as far as keeps every initial count within ``MAX_SUGGESTED_COUNT``."""
    amounts = [a for a in _literal_amounts(read_document(source).getModel()) if np.isfinite(a) and a > 0]
    median = float(np.median(amounts)) if amounts else 1.0
    volume = 10.0 ** round(np.log10(target / median))
    if amounts and min(amounts) * volume < 1.0:
        every_one = 10.0 ** np.ceil(np.log10(1.0 / min(amounts)) - 1e-12)
        room = 10.0 ** np.floor(np.log10(MAX_SUGGESTED_COUNT / max(amounts)) + 1e-12)
        volume = max(volume, min(every_one, room))
    return float(volume)


def _literal_amounts(m: libsbml.Model) -> list[float]:
    """Initial amounts as written: initialAmount, or initialConcentration x compartment size."""
    sizes = {c.getId(): (c.getSize() if c.isSetSize() else 1.0) for c in m.getListOfCompartments()}
    out = []
    for s in m.getListOfSpecies():
        if s.isSetInitialAmount():
            out.append(s.getInitialAmount())
        elif s.isSetInitialConcentration():
            out.append(s.getInitialConcentration() * sizes.get(s.getCompartment(), 1.0))
    return out


def _default_moles_as_counts(doc: libsbml.SBMLDocument) -> bool:
    """A Level 2 model without substance units whose fractional amounts are whole molecule counts
    (at most 1e9) in mole, the Level 2 default unit: 1.66e-21 is 1,000 molecules, not 0."""
    m = doc.getModel()
    if doc.getLevel() > 2 or m.getUnitDefinition("substance") is not None:
        return False
    if any(s.isSetSubstanceUnits() for s in m.getListOfSpecies()):
        return False
    a = np.array([v for v in _literal_amounts(m) if np.isfinite(v) and v > 0])
    if a.size == 0 or np.all((np.abs(a - np.round(a)) <= 1e-9 * a) & (np.round(a) > 0)):
        return False  # whole numbers already: counts, as SSA models write them
    counts = a * AVOGADRO
    return bool(np.all((counts <= 1e9) & (np.abs(counts - np.round(counts)) <= 1e-4 * counts)))


def species_molecule_factors(doc: libsbml.SBMLDocument) -> dict[str, float | None]:
    """Molecules per unit of each species' substance unit (its own, else the model's), None
    where it is not declared as an amount of substance."""
    m = doc.getModel()
    factors: dict[str, float | None] = {}
    for i in range(m.getNumSpecies()):
        s = m.getSpecies(i)
        unit = s.getSubstanceUnits() or (m.getSubstanceUnits() if doc.getLevel() > 2 else "substance")
        factors[s.getId()] = _unit_molecules(m, unit)
    return factors


def molecules_per_substance_unit(doc: libsbml.SBMLDocument) -> float | None:
    """Molecules in one unit of the model's declared substance unit (Avogadro's number times the
    unit's scale for mole, mmol, umol, ...), or None where amounts are counts already (no declared
    unit, ``item``, ``dimensionless``). Species declared in different units are refused here
    (:func:`~sbml_met.sbml.load_sbml` converts each by its own: :func:`species_molecule_factors`)."""
    factors = species_molecule_factors(doc)
    distinct = {f for f in factors.values()}
    if len(distinct) > 1:
        raise UnsupportedSBMLError([Unsupported(sid, f"substance unit of {f or 1:g} molecules, unlike "
                                                     "the model's other species")
                                    for sid, f in factors.items() if f != max(distinct, key=lambda v: v or 0)])
    factor = distinct.pop() if distinct else None
    return None if factor is None or factor == 1.0 else factor


def _unit_molecules(m: libsbml.Model, unit: str) -> float | None:
    """Molecules per one ``unit`` (an SBML unit kind or unit definition id); None if not declared
    as an amount of substance (mole or item)."""
    if not unit:
        return None
    if unit == "mole":
        return AVOGADRO
    if unit in ("item", "dimensionless"):
        return 1.0
    ud = m.getUnitDefinition(unit)
    if ud is None or ud.getNumUnits() != 1 or ud.getUnit(0).getExponentAsDouble() != 1:
        return None
    u = ud.getUnit(0)
    scale = u.getMultiplier() * 10.0 ** u.getScale()
    if u.isMole():
        return AVOGADRO * scale
    if u.isItem() or u.isDimensionless():
        return scale
    return None


def _round_converted_counts(species: list[Species], x0: np.ndarray) -> None:
    """Round, in place, converted amounts (initial assignments included) to whole molecules,
    warning where that moves a count by more than 1% (see to_counts)."""
    moved: list[str] = []
    for i, s in enumerate(species):
        if not s.rule and np.isfinite(x0[i]) and x0[i] >= 0:
            x0[i] = _whole_count(s.id, x0[i], moved)
    _warn_rounding(moved, 4, "initial counts round")


def _whole_count(sid: str, amount: float, moved: list[str]) -> float:
    """``amount`` molecules rounded to a whole count; noted in ``moved`` where that is off by >1%."""
    count = float(np.floor(amount + 0.5))
    if amount > 0 and abs(count - amount) > 0.01 * amount:
        moved.append(f"{sid} ({amount:.3g} -> {count:g})")
    return count


def _warn_rounding(moved: list[str], stacklevel: int, lead: str) -> None:
    if moved:
        warnings.warn(CountRoundingWarning(
            f"{lead} by more than 1%: {', '.join(moved)}; a larger volume= (CLI: --volume) keeps them closer to the "
            "model's amounts"), stacklevel=stacklevel + 1)
