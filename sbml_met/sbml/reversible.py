"""Reversible reactions: a net rate law read as the channels sbml-met simulates."""

from __future__ import annotations

import libsbml

from .._laws import is_nonnegative, split_net_law


def _nonnegative_symbols(m: libsbml.Model):
    """For one reaction's local parameter values: a callback saying whether a symbol is >= 0
    (species, compartments, parameters with values >= 0, rules whose math is non-negative)."""
    species = {m.getSpecies(i).getId() for i in range(m.getNumSpecies())}
    compartments = {m.getCompartment(i).getId() for i in range(m.getNumCompartments())}
    values = {m.getParameter(i).getId(): m.getParameter(i).getValue() for i in range(m.getNumParameters())}
    rules = {}
    for r in m.getListOfRules():
        if r.isAssignment() and r.getMath() is not None:
            rules[r.getVariable()] = r.getMath().deepCopy()
            libsbml.SBMLTransforms.replaceFD(rules[r.getVariable()], m.getListOfFunctionDefinitions())

    def for_reaction(local: dict[str, float]):
        def check(name: str, seen: frozenset = frozenset()) -> bool:
            if name in local:
                return bool(local[name] >= 0)
            if name in species or name in compartments:
                return True
            if name in rules:
                return name not in seen and is_nonnegative(rules[name], lambda n: check(n, seen | {name}))
            return bool(values.get(name, float("nan")) >= 0)

        return check

    return for_reaction


def split_reversible(sbml: str) -> str:
    """The SBML with every reversible reaction written as the irreversible channels sbml-met
    simulates: its net law's positive part forward, its negative part as ``ID__reverse``.

    Same ODE, and the stochastic process of the CME. libroadrunner's gillespie fires a reversible
    reaction at its *net* rate instead, which is no CME: ``A <-> B`` at ``kf*A - kr*B`` stops dead
    at B = kf N / (kf + kr) where the CME gives a binomial spread. Laws that do not split are left
    as they are (the loader refuses them).
    """
    doc = libsbml.readSBMLFromString(sbml)
    m = doc.getModel()
    nonneg = _nonnegative_symbols(m)
    for rx in list(m.getListOfReactions()):
        kl = rx.getKineticLaw()
        if not rx.getReversible() or kl is None or kl.getMath() is None:
            continue
        split = _split_law(m, kl.getMath(), nonneg({p.getId(): p.getValue() for p in kl.getListOfParameters()}))
        if split is None:
            continue
        rx.setReversible(False)
        kl.setMath(split[0])
        if split[1] is not None:
            _add_reverse_channel(m, rx, split[1])
    return libsbml.writeSBMLToString(doc)


def _split_law(m: libsbml.Model, math: libsbml.ASTNode, nonnegative):
    """:func:`split_net_law` of a kinetic law with the model's functions inlined."""
    inlined = math.deepCopy()
    libsbml.SBMLTransforms.replaceFD(inlined, m.getListOfFunctionDefinitions())
    return split_net_law(inlined, nonnegative)


def _add_reverse_channel(m: libsbml.Model, rx: libsbml.Reaction, law: libsbml.ASTNode) -> None:
    """Add ``rx.id__reverse``: products to reactants at ``law``, with rx's local parameters."""
    back = m.createReaction()
    back.setId(f"{rx.getId()}__reverse")
    back.setReversible(False)
    if m.getLevel() > 2:
        back.setFast(False)
    for refs, create in ((rx.getListOfProducts(), back.createReactant),
                         (rx.getListOfReactants(), back.createProduct)):
        for ref in refs:
            new = create()
            new.setSpecies(ref.getSpecies())
            new.setStoichiometry(ref.getStoichiometry() if ref.isSetStoichiometry() else 1.0)
            if m.getLevel() > 2:
                new.setConstant(True)
    for ref in rx.getListOfModifiers():
        back.createModifier().setSpecies(ref.getSpecies())
    kl = back.createKineticLaw()
    old = rx.getKineticLaw()
    for j in range(old.getNumParameters()):
        p = old.getParameter(j)
        new = kl.createLocalParameter() if m.getLevel() > 2 else kl.createParameter()
        new.setId(p.getId())
        new.setValue(p.getValue())
    kl.setMath(law)
