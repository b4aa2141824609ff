"""Concentrations (or moles) to molecule counts: ``to_counts`` rewrites a model's laws, sizes and
amounts so that its species are counted molecules (``load_sbml(..., volume=...)``)."""

from __future__ import annotations

import os
from typing import Any, Mapping

import libsbml
import numpy as np

from .._math import TIME, names_in, node_type
from .._laws import ast_apply, ast_name, ast_number, ast_sum, signed_terms, sum_of_terms
from ..errors import Unsupported, UnsupportedSBMLError
from .reading import read_document
from .reversible import _nonnegative_symbols
from .units import _warn_rounding, _whole_count


def to_counts(source: str | os.PathLike, volume: float,
              species_factors: Mapping[str, float] | None = None) -> str:
    """SBML of a model converted from concentrations (or moles) to molecule counts.

    Rule: ``volume`` is the number of molecules per unit of the model's substance amount, i.e. per
    concentration unit in a compartment of size 1. Every compartment size V becomes V * volume,
    every species starts at round(amount * volume) molecules (amount = concentration * V; a
    rounding above 1% warns), and every mass-action term k * prod(S^p) is rewritten so that its
    propensity is volume times the original rate with each S^p replaced by a falling factorial:
    for compartments of size 1 a term of order m gets k * volume^(1 - m) applied to
    n (n-1) ... (n-p+1). Any other law f (Michaelis-Menten, Hill, ...) becomes volume * f with
    compartments at their original sizes and species at their concentrations (particle-number
    scaling, as COPASI does). Parameter ids are kept, so parameter values stay in the model's
    own units. ``species_factors``: molecules per unit of each species' own substance unit where
    species differ (a "molecules" species beside mole ones): each converts by its own factor, and
    a reaction fires at its changed species' factor times its rate (one factor per reaction).
    """
    vol = float(volume)
    if not np.isfinite(vol) or vol <= 0:
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError(f"volume must be a finite number > 0, got {volume!r}")
    doc = read_document(source)
    props = libsbml.ConversionProperties()
    props.addOption("expandFunctionDefinitions", True)
    doc.convert(props)
    m = doc.getModel()
    sizes = {}
    for i in range(m.getNumCompartments()):
        c = m.getCompartment(i)
        sizes[c.getId()] = float(c.getSize()) if c.isSetSize() else 1.0
    species = {m.getSpecies(i).getId(): m.getSpecies(i) for i in range(m.getNumSpecies())}
    substance_only = {sid for sid, s in species.items() if s.getHasOnlySubstanceUnits()}
    ratios = {sid: f / vol for sid, f in (species_factors or {}).items() if sid in species and f != vol}
    _keep_model_units(m, sizes, substance_only, vol, ratios)
    _convert_rate_laws(m, vol, sizes, species, substance_only, ratios)
    rounded: list[str] = []
    _convert_initial_amounts(m, species, sizes, vol, rounded, ratios)
    for cid, size in sizes.items():
        m.getCompartment(cid).setSize(size * vol)
    _declare_items(m)
    _warn_rounding(rounded, 3, f"volume={vol:g} gives initial counts that round")
    return libsbml.writeSBMLToString(doc)


def _keep_model_units(m: libsbml.Model, sizes: dict[str, float], substance_only: set[str], vol: float,
                      ratios: dict[str, float]) -> None:
    """Math outside kinetic laws keeps its value in the model's own units: compartments at their
    original sizes, species in amount units at count / volume (an amount target at volume x;
    a species with its own unit at its own factor, see :func:`_divisors`)."""
    for owner, target in _math_outside_kinetic_laws(m):
        math = owner.getMath()
        if math is None or target in sizes:
            continue
        new = _in_model_units(math, sizes, substance_only, vol, ratios)
        scale = _divisors({target} & (substance_only | set(ratios)), substance_only, vol, ratios).get(target)
        if scale is not None:
            new = ast_apply(libsbml.AST_TIMES, ast_number(scale), new)
        owner.setMath(new)


def _rule_math(m: libsbml.Model) -> dict[str, libsbml.ASTNode]:
    return {m.getRule(i).getVariable(): m.getRule(i).getMath() for i in range(m.getNumRules())
            if m.getRule(i).getVariable() and m.getRule(i).getMath() is not None}


def _state_dependent_names(m: libsbml.Model, species) -> set[str]:
    """Names whose value can change with the state (species, time, rules that depend on them)."""
    rule_math = _rule_math(m)
    dynamic = set(species) | {TIME}
    changed = True
    while changed:
        changed = False
        for var, math in rule_math.items():
            if var not in dynamic and (names_in(math) & dynamic or m.getRule(var).isRate()):
                dynamic.add(var)
                changed = True
    return dynamic


def _convert_rate_laws(m: libsbml.Model, vol: float, sizes, species, substance_only, ratios) -> None:
    """Every kinetic law rewritten as a propensity in molecule counts (see to_counts)."""
    dynamic = _state_dependent_names(m, species)
    nonneg = _nonnegative_symbols(m)
    mixed: list[Unsupported] = []
    for i in range(m.getNumReactions()):
        rx = m.getReaction(i)
        kl = rx.getKineticLaw()
        if kl is None or kl.getMath() is None:
            continue  # reported when loading
        local = {kl.getParameter(j).getId(): kl.getParameter(j).getValue() for j in range(kl.getNumParameters())}
        own = _reaction_ratio(rx, species, ratios, mixed)
        if own == 1.0 and not names_in(kl.getMath()) & set(ratios):
            kl.setMath(_counts_rate_law(kl.getMath(), vol, sizes, species, substance_only,
                                        dynamic - set(local), nonneg(local)))
        else:  # species in their own units: particle-number scaling at the reaction's own factor
            scaled = _in_model_units(kl.getMath(), sizes, substance_only, vol, ratios)
            kl.setMath(ast_apply(libsbml.AST_TIMES, ast_number(vol * own), scaled))
    if mixed:
        raise UnsupportedSBMLError(mixed)


def _reaction_ratio(rx: libsbml.Reaction, species, ratios: dict[str, float], mixed: list[Unsupported]) -> float:
    """The factor (relative to the model's) of the species ``rx`` changes; reported in ``mixed``
    where they differ (a firing would change them by different, fractional molecule numbers)."""
    found = {}
    for ref in list(rx.getListOfReactants()) + list(rx.getListOfProducts()):
        s = species.get(ref.getSpecies())
        if s is not None and not s.getBoundaryCondition() and not s.getConstant():
            found[s.getId()] = ratios.get(s.getId(), 1.0)
    if len(set(found.values())) > 1:
        mixed.append(Unsupported(rx.getId(), "changes species declared in different substance units ("
                                 + ", ".join(f"{sid}: x{r:g}" for sid, r in found.items()) + " relative to the "
                                 "model's unit), so one firing cannot change each by whole molecules"))
    return next(iter(found.values()), 1.0)


def _convert_initial_amounts(m: libsbml.Model, species, sizes, vol: float, rounded: list[str],
                             ratios: dict[str, float]) -> None:
    """Literal initial amounts as whole molecule counts (ids moved by more than 1% into ``rounded``)."""
    rule_math = _rule_math(m)
    for sid, s in species.items():
        if m.getInitialAssignment(sid) is not None or sid in rule_math:
            continue  # concentrations from assignments scale with the new compartment size
        size = sizes.get(s.getCompartment(), 1.0)
        if s.isSetInitialAmount():
            amount = float(s.getInitialAmount())
        elif s.isSetInitialConcentration():
            amount = float(s.getInitialConcentration()) * size
        else:
            continue  # reported when loading
        count = _whole_count(sid, amount * vol * ratios.get(sid, 1.0), rounded)
        s.unsetInitialConcentration()
        s.setInitialAmount(count)


def _declare_items(m: libsbml.Model) -> None:
    """Declare the converted model's substance unit as ``item`` (molecules), so that reading it
    again (``net.to_sbml()``, worker processes) does not convert its counts a second time."""
    if m.getLevel() > 2 and m.isSetSubstanceUnits():
        m.setSubstanceUnits("item")
    for s in m.getListOfSpecies():
        if s.isSetSubstanceUnits():
            s.setSubstanceUnits("item")
    ud = m.getUnitDefinition("substance")
    if ud is not None:
        while ud.getNumUnits():
            ud.removeUnit(0)
        unit = ud.createUnit()
        unit.setKind(libsbml.UNIT_KIND_ITEM)
        unit.setExponent(1)
        unit.setScale(0)
        unit.setMultiplier(1.0)


def _math_outside_kinetic_laws(m: libsbml.Model) -> list[tuple[Any, str | None]]:
    """(element with math, the variable it sets or None) for rules, initial assignments, event
    triggers and event assignments."""
    out: list[tuple[Any, str | None]] = []
    out += [(m.getRule(i), m.getRule(i).getVariable() or None) for i in range(m.getNumRules())]
    out += [(ia, ia.getSymbol()) for ia in m.getListOfInitialAssignments()]
    for ev in m.getListOfEvents():
        if ev.getTrigger() is not None:
            out.append((ev.getTrigger(), None))
        out += [(ea, ea.getVariable()) for ea in ev.getListOfEventAssignments()]
    return out


def _counts_rate_law(math, vol, sizes, species, substance_only, dynamic, nonneg) -> libsbml.ASTNode:
    """The count-based rate law (see to_counts): mass-action terms keep the combinatorial
    propensity, any other law is scaled by particle number, vol * f(n / vol)."""
    terms = signed_terms(math, nonneg)
    if terms is not None:
        laws = [(x.sign, _counts_law(sum_of_terms([x]), vol, sizes, species, substance_only, dynamic))
                for x in terms]
        if all(law is not None for _, law in laws):
            pos = ast_sum([law for sign, law in laws if sign > 0])
            neg = [law for sign, law in laws if sign < 0]
            return ast_apply(libsbml.AST_MINUS, pos, ast_sum(neg)) if neg else pos
    return ast_apply(libsbml.AST_TIMES, ast_number(vol), _in_model_units(math, sizes, substance_only, vol, {}))


def _in_model_units(math: libsbml.ASTNode, sizes: dict[str, float], substance_only: set[str],
                    vol: float, ratios: dict[str, float]) -> libsbml.ASTNode:
    """A copy of ``math`` that keeps its value in the model's own units after conversion:
    compartments at their original sizes, species in amount units at count / ``vol``, species
    in their own units as :func:`_divisors` says."""
    new = math.deepCopy()
    _numeric_compartments(new, sizes)
    return _divide_names(new, _divisors(names_in(new), substance_only, vol, ratios))


def _divisors(names: set[str], substance_only: set[str], vol: float, ratios: dict[str, float]) -> dict[str, float]:
    """What each species symbol among ``names`` is divided by to read in the model's units:
    count -> amount (``vol`` times its ratio) for amounts, its ratio for concentrations in
    their own unit (the compartments scale by ``vol``); species that need nothing left out."""
    out = {}
    for name in names:
        if name in substance_only:
            out[name] = vol * ratios.get(name, 1.0)
        elif ratios.get(name, 1.0) != 1.0:
            out[name] = ratios[name]
    return out


def _divide_names(node: libsbml.ASTNode, divisors: dict[str, float]) -> libsbml.ASTNode:
    """``node`` with every name in ``divisors`` replaced by (name / divisor); may return a new root."""
    if node_type(node) == libsbml.AST_NAME and node.getName() in divisors:
        return ast_apply(libsbml.AST_DIVIDE, node.deepCopy(), ast_number(divisors[node.getName()]))
    for i in range(node.getNumChildren()):
        child = node.getChild(i)
        new = _divide_names(child, divisors)
        if new is not child:
            node.replaceChild(i, new, True)
    return node


def _counts_law(node, vol, sizes, species, substance_only, dynamic) -> libsbml.ASTNode | None:
    """The count-based form of one mass-action term (see to_counts), or None if not mass action."""
    powers: dict[str, int] = {}
    constants: list[tuple[libsbml.ASTNode, int]] = []

    def integer(n: libsbml.ASTNode) -> int | None:
        if n.isInteger():
            return int(n.getInteger())
        if n.isReal() and np.isfinite(n.getReal()) and n.getReal() == round(n.getReal()):
            return int(round(n.getReal()))
        return None

    def walk(n: libsbml.ASTNode, sign: int) -> bool:
        t = node_type(n)
        if t == libsbml.AST_TIMES:
            return all(walk(n.getChild(i), sign) for i in range(n.getNumChildren()))
        if t == libsbml.AST_DIVIDE and n.getNumChildren() == 2:
            return walk(n.getChild(0), sign) and walk(n.getChild(1), -sign)
        if not names_in(n) & dynamic:
            constants.append((n, sign))
            return True
        if t == libsbml.AST_NAME and n.getName() in species:
            powers[n.getName()] = powers.get(n.getName(), 0) + sign
            return True
        if t in (libsbml.AST_POWER, libsbml.AST_FUNCTION_POWER) and n.getNumChildren() == 2:
            base, expo = n.getChild(0), n.getChild(1)
            p = integer(expo)
            if node_type(base) == libsbml.AST_NAME and base.getName() in species and p is not None:
                powers[base.getName()] = powers.get(base.getName(), 0) + sign * p
                return True
        return False

    if not walk(node, 1) or any(p < 0 for p in powers.values()):
        return None
    coef, factors = _constant_factors(constants, sizes, vol)
    for sid, p in sorted(powers.items()):
        comp = species[sid].getCompartment()
        for j in range(p):
            if sid in substance_only:
                coef /= vol  # the symbol is now a count, was count / volume
                offset = ast_number(j)
            else:
                offset = ast_apply(libsbml.AST_DIVIDE, ast_number(j), ast_name(comp))
            factors.append(ast_name(sid) if j == 0 else ast_apply(libsbml.AST_MINUS, ast_name(sid), offset))
    return ast_apply(libsbml.AST_TIMES, ast_number(coef), *factors)


def _constant_factors(constants: list[tuple[libsbml.ASTNode, int]], sizes: dict[str, float],
                      vol: float) -> tuple[float, list[libsbml.ASTNode]]:
    """``vol`` times the numeric constants of a term (a sign -1 divides), and its other constant
    factors as ASTs (compartments at their original sizes; a divisor as 1/(factor))."""
    coef, factors = vol, []
    for n, sign in constants:
        copy = n.deepCopy()
        _numeric_compartments(copy, sizes)
        if not copy.isNumber():
            factors.append(copy if sign > 0 else ast_apply(libsbml.AST_DIVIDE, ast_number(1.0), copy))
            continue
        value = float(copy.getValue())
        coef = coef * value if sign > 0 else coef / value
    return coef, factors


def _numeric_compartments(node: libsbml.ASTNode, sizes: dict[str, float]) -> None:
    """Replace, in place, compartment names by their (original) sizes."""
    if node_type(node) == libsbml.AST_NAME and node.getName() in sizes:
        node.setValue(float(sizes[node.getName()]))
        return
    for i in range(node.getNumChildren()):
        _numeric_compartments(node.getChild(i), sizes)
