"""Species the user declares continuous: their reactions become an ODE, the rest stays discrete.

A species present in thousands of copies (a metabolite, a fast mRNA) costs an exact SSA one event
per molecule changed, yet its noise barely matters to the rest. ``load_sbml(..., continuous=["M"])``
reads it as a piecewise-deterministic model (the hybrid reading of GillesPy2 and COPASI): every
reaction that changes only continuous species becomes part of their rate of change,

    d[X]/dt = sum over those reactions r of  stoichiometry(r, X) * law_r   (/ compartment size for a concentration),

written into the SBML as a rate rule on X (made a boundary species, so no reaction changes it),
and the reaction is removed. Reactions that change discrete species keep firing one at a time,
their propensities reading X's current value: :mod:`sbml_met.pdmp` simulates that exactly. A
reaction that changes both kinds would need a species to jump and flow at once; it is refused,
naming the reaction, with the ways forward.

The transform works on libsbml ASTs (local parameters become global parameters ``<reaction>_<id>``),
never on formula text.
"""

from __future__ import annotations

from typing import Iterable

import libsbml

from .._laws import ast_apply, ast_name, ast_number, ast_sum
from ..errors import InvalidArgumentError, Unsupported, UnsupportedSBMLError, UnknownIdError


def make_continuous(doc: libsbml.SBMLDocument, species: Iterable[str]) -> libsbml.SBMLDocument:
    """A copy of ``doc`` in which each species in ``species`` follows the ODE of the reactions
    that change only such species (see the module notes)."""
    ids = list(dict.fromkeys(species))
    if not ids:
        return doc
    doc = doc.clone()
    m = doc.getModel()
    _check_ids(m, ids)
    continuous = set(ids)
    flows: dict[str, list[tuple[float, libsbml.ASTNode]]] = {sid: [] for sid in ids}
    reasons, moved = [], []
    for rx in m.getListOfReactions():
        changed = _net_changes(m, rx)
        touched = continuous & set(changed)
        if not touched:
            continue
        discrete = sorted(set(changed) - continuous)
        if discrete:
            reasons.append(Unsupported(rx.getId(), (
                f"reaction changes continuous {', '.join(sorted(touched))} and discrete {', '.join(discrete)}: "
                f"declare {', '.join(discrete)} continuous too, or leave {', '.join(sorted(touched))} discrete")))
            continue
        law = _global_law(m, rx)
        if law is None:
            reasons.append(Unsupported(rx.getId(), "reaction without a kinetic law cannot join an ODE"))
            continue
        for sid in touched:
            flows[sid].append((float(changed[sid]), law.deepCopy()))
        moved.append(rx.getId())
    if reasons:
        raise UnsupportedSBMLError(reasons)
    for sid in ids:
        _add_rate_rule(m, m.getSpecies(sid), flows[sid])
    for rid in moved:
        m.removeReaction(rid)
    return doc


def _check_ids(m: libsbml.Model, ids: list[str]) -> None:
    """Each id names a species that no rule or event already drives."""
    unknown = [sid for sid in ids if m.getSpecies(sid) is None]
    if unknown:
        known = ", ".join(m.getSpecies(i).getId() for i in range(m.getNumSpecies()))
        raise UnknownIdError(f"continuous: no species {', '.join(map(repr, unknown))} in the model (species: {known})")
    for sid in ids:
        if m.getRule(sid) is not None:
            raise InvalidArgumentError(f"continuous: species {sid!r} is already set by a rule in the model")
        if m.getSpecies(sid).getConstant():
            raise InvalidArgumentError(f"continuous: species {sid!r} is constant; nothing to integrate")


def _net_changes(m: libsbml.Model, rx: libsbml.Reaction) -> dict[str, float]:
    """Net stoichiometry of each species a firing of ``rx`` changes (boundary and constant
    species excluded: reactions never change them)."""
    out: dict[str, float] = {}
    for refs, sign in ((rx.getListOfReactants(), -1.0), (rx.getListOfProducts(), 1.0)):
        for ref in refs:
            s = m.getSpecies(ref.getSpecies())
            if s is None or s.getBoundaryCondition() or s.getConstant():
                continue
            st = ref.getStoichiometry() if ref.isSetStoichiometry() else 1.0
            out[s.getId()] = out.get(s.getId(), 0.0) + sign * st
    return {sid: v for sid, v in out.items() if v != 0}


def _global_law(m: libsbml.Model, rx: libsbml.Reaction) -> libsbml.ASTNode | None:
    """``rx``'s law with its local parameters made global (``<reaction>_<id>``), functions kept."""
    kl = rx.getKineticLaw()
    if kl is None or kl.getMath() is None:
        return None
    law = kl.getMath().deepCopy()
    for j in range(kl.getNumParameters()):
        p = kl.getParameter(j)
        new_id = _fresh_id(m, f"{rx.getId()}_{p.getId()}")
        g = m.createParameter()
        g.setId(new_id)
        g.setValue(p.getValue())
        g.setConstant(True)
        law.renameSIdRefs(p.getId(), new_id)
    return law


def _fresh_id(m: libsbml.Model, base: str) -> str:
    taken = lambda s: m.getElementBySId(s) is not None  # noqa: E731
    new, k = base, 1
    while taken(new):
        new, k = f"{base}_{k}", k + 1
    return new


def _gains_minus_losses(terms: list[tuple[float, libsbml.ASTNode]]) -> libsbml.ASTNode:
    """``sum of factor * law``, written as gains minus losses (``km - gm*M``)."""
    def scaled(factor: float, law: libsbml.ASTNode) -> libsbml.ASTNode:
        return law if factor == 1.0 else ast_apply(libsbml.AST_TIMES, ast_number(factor), law)

    gains = [scaled(f, n) for f, n in terms if f > 0]
    losses = [scaled(-f, n) for f, n in terms if f < 0]
    if not losses:
        return ast_sum(gains)
    if not gains:
        return ast_apply(libsbml.AST_MINUS, ast_sum(losses))
    return ast_apply(libsbml.AST_MINUS, ast_sum(gains), ast_sum(losses))


def _add_rate_rule(m: libsbml.Model, s: libsbml.Species, flows: list[tuple[float, libsbml.ASTNode]]) -> None:
    """``s``' = sum of stoichiometry x law over ``flows`` (amount per time; divided by its
    compartment's size where ``s`` is a concentration), ``s`` made a boundary species."""
    total = _gains_minus_losses(flows) if flows else ast_number(0.0)
    if not s.getHasOnlySubstanceUnits() and flows:
        total = ast_apply(libsbml.AST_DIVIDE, total, ast_name(s.getCompartment()))
    s.setBoundaryCondition(True)
    rule = m.createRateRule()
    rule.setVariable(s.getId())
    rule.setMath(total)
