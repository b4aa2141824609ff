"""SBML and Antimony in and out: libsbml reading, feature checks, ReactionNetwork construction.

This is the only package that reads SBML. Every feature the exact stochastic engines cannot honour
is collected and reported at once in one :class:`~sbml_met.errors.UnsupportedSBMLError` (like
GillesPy2's solvers), each reason naming the SBML element id. What a network can carry but some
engines cannot run (events, assignment rules) is declared per engine in :mod:`sbml_met.support`.

One module per concern: :mod:`.reading` (libsbml documents, Antimony), :mod:`.units` (substance
units, molecules per unit), :mod:`.convert` (concentrations to counts, ``volume=``),
:mod:`.reversible` (net rate laws as channels), :mod:`.rules` (rules, initial assignments,
events), :mod:`.build` (the network), :mod:`.writing` (SBML out).
"""

from __future__ import annotations

from .build import UNSUPPORTED_PACKAGES, load_antimony, load_sbml
from .convert import to_counts
from .reading import antimony_to_sbml, read_document
from .reversible import split_reversible
from .units import _literal_amounts, molecules_per_substance_unit, suggest_volume
from .writing import write_sbml

__all__ = [
    "UNSUPPORTED_PACKAGES", "antimony_to_sbml", "load_antimony", "load_sbml", "molecules_per_substance_unit",
    "read_document", "split_reversible", "suggest_volume", "to_counts", "write_sbml",
]
