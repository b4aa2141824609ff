"""Reversible reactions: a net rate law read as the channels sbml-met simulates.

SBML gives a reversible reaction one law, the *net* rate. It becomes a forward and a reverse
channel by its positive and negative parts (``k1*A - k2*B``: forward ``k1*A``, reverse ``k2*B``)
only where that is the mass-action reading: each channel's propensity vanishes in every state where
its firing would make a count negative, checked by evaluating both parts on small whole counts.
Otherwise (``kd*P*(P - 1)/2`` for ``2 P -> D``, ``u*(1 - G)`` for ``-> 2 P + G``) the reaction is
one channel at the net rate, written as two: forward at the law where it is positive, reverse at
minus the law where it is negative. Every engine runs that as it runs any pair of channels, and a
firing that would make a count negative is still a :class:`~sbml_met.errors.NegativeCountError`.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass
from typing import Callable

import libsbml
import numpy as np

from .._laws import ast_apply, ast_number, is_nonnegative, split_net_law
from .._math import TIME, Compiled, MathCompileError, compile_math, names_in, node_type

MAX_CHECK_STATES = 20_000  # integer states on which a split's channels are checked


@dataclass(frozen=True)
class Channels:
    """How a reversible reaction is simulated: ``forward`` (and ``reverse``, None when the law is
    never negative) laws as new ASTs; ``net``: one channel at the net rate (not a mass-action split)."""

    forward: libsbml.ASTNode
    reverse: libsbml.ASTNode | None
    net: bool = False


def reversible_channels(m: libsbml.Model, rx: libsbml.Reaction, local: dict[str, float]) -> Channels:
    """The channels of reversible reaction ``rx`` (its kinetic law set), ``local`` its local
    parameters' values: the law itself where it is never negative (by sign rules, or on whole
    counts while vanishing where a firing would make a count negative: ``kd*P*(P - 1)/2``), the
    mass-action split where it holds on whole counts, else one channel at the net rate."""
    law = rx.getKineticLaw().getMath().deepCopy()
    libsbml.SBMLTransforms.replaceFD(law, m.getListOfFunctionDefinitions())
    split = split_net_law(law, _nonnegative_symbols(m)(local))
    if split is not None and split[1] is None:
        return Channels(split[0], None)
    probe = _Probe(m, rx, set(local))
    if probe.vanishes_where_short(law, 1) and probe.never_negative(law):
        return Channels(law, None)  # never negative: splitting it would change the CME
    for pair in (_written_difference(law), split):
        if pair is not None and probe.vanishes_where_short(pair[0], 1) and probe.vanishes_where_short(pair[1], -1):
            return Channels(pair[0], pair[1])
    return Channels(_signed_part(law, 1), _signed_part(law, -1), net=True)


def _written_difference(law: libsbml.ASTNode) -> tuple[libsbml.ASTNode, libsbml.ASTNode] | None:
    """``(A, B)`` for a law written ``A - B`` (``c1*X*(X - 1)/2 - c2*X*(X - 1)*(X - 2)/6``): the
    split as the modeller wrote it, before any expansion into monomials."""
    if node_type(law) != libsbml.AST_MINUS or law.getNumChildren() != 2:
        return None
    return law.getChild(0).deepCopy(), law.getChild(1).deepCopy()


def _signed_part(law: libsbml.ASTNode, sign: int) -> libsbml.ASTNode:
    """``piecewise(law, law > 0, 0)`` (sign 1) or ``piecewise(-law, law < 0, 0)`` (sign -1)."""
    value = law.deepCopy() if sign > 0 else ast_apply(libsbml.AST_MINUS, law.deepCopy())
    relation = libsbml.AST_RELATIONAL_GT if sign > 0 else libsbml.AST_RELATIONAL_LT
    cond = ast_apply(relation, law.deepCopy(), ast_number(0.0))
    return ast_apply(libsbml.AST_FUNCTION_PIECEWISE, value, cond, ast_number(0.0))


def _needs(m: libsbml.Model, rx: libsbml.Reaction) -> tuple[dict[str, int], dict[str, int]]:
    """What one forward firing needs of each reactant and one reverse firing of each product
    (their stoichiometries; boundary and constant species excluded): mass action's propensity
    vanishes wherever a count is below what its firing needs (``2 X -> 3 X`` needs X >= 2)."""
    def need(refs) -> dict[str, int]:
        out: dict[str, int] = {}
        for ref in refs:
            s = m.getSpecies(ref.getSpecies())
            if s is None or s.getBoundaryCondition() or s.getConstant():
                continue
            st = ref.getStoichiometry() if ref.isSetStoichiometry() else 1.0
            out[s.getId()] = out.get(s.getId(), 0) + int(round(st))
        return {sid: n for sid, n in out.items() if n > 0}
    return need(rx.getListOfReactants()), need(rx.getListOfProducts())


class _Probe:
    """A reaction's laws evaluated on whole counts of the species they read: 0 to its largest
    stoichiometry + 1 and a few larger counts for its reactants and products, 0, 1, 3 and larger for others. Parameters
    take fixed generic values, so that what the probe says is the law's structure, the same for
    every parameter set (a network rebuilt in a worker gets the same channels)."""

    LARGER = (7.0, 50.0, 1000.0)

    def __init__(self, m: libsbml.Model, rx: libsbml.Reaction, local: set[str]):
        self.needs = dict(zip((1, -1), _needs(m, rx)))
        top = {s: n for need in self.needs.values() for s, n in need.items()}
        for need in self.needs.values():
            for s, n in need.items():
                top[s] = max(top[s], n)
        law = rx.getKineticLaw().getMath()
        read = sorted(_species_read(m, law) - set(top))
        names = sorted(top) + read
        values = ([tuple(range(top[s] + 2)) + self.LARGER for s in sorted(top)]
                  + [(0.0, 1.0, 3.0) + self.LARGER] * len(read))
        grid = _states(values)
        self.counts = {s: grid[:, j] for j, s in enumerate(names)}
        self.size = len(grid)
        try:
            self.env = _evaluator(m, local)(self.counts)
        except (MathCompileError, KeyError, RecursionError, ZeroDivisionError):
            self.env = None

    def values(self, node: libsbml.ASTNode) -> np.ndarray | None:
        """``node`` on every probe state, or None where it cannot be evaluated."""
        if self.env is None:
            return None
        try:
            f = _compile(node)
            with np.errstate(all="ignore"):
                v = np.asarray(f(self.env) if callable(f) else f, dtype=float)
        except (MathCompileError, KeyError, RecursionError, ZeroDivisionError):
            return None
        return np.broadcast_to(v, (self.size,))

    def vanishes_where_short(self, node: libsbml.ASTNode, direction: int) -> bool:
        """Whether ``node`` is finite, >= 0, and 0 wherever firing in ``direction`` (1 forward,
        -1 reverse) lacks what it needs: a reactant (forward) or product (reverse) below its
        stoichiometry."""
        v = self.values(node)
        if v is None or not np.all(np.isfinite(v)) or np.any(v < 0):
            return False
        short = np.zeros(self.size, dtype=bool)
        for s, n in self.needs[direction].items():
            short |= self.counts[s] < n
        return bool(np.all(v[short] == 0))

    def never_negative(self, node: libsbml.ASTNode) -> bool:
        v = self.values(node)
        return v is not None and bool(np.all(v >= 0))


def _states(values: list) -> np.ndarray:
    """Every combination of ``values`` (one sequence per species) as rows, or a fixed random
    sample of MAX_CHECK_STATES of them."""
    total = int(np.prod([len(v) for v in values])) if values else 1
    if total <= MAX_CHECK_STATES:
        return np.array(list(itertools.product(*values)), dtype=float).reshape(total, len(values))
    rng = np.random.default_rng(0)
    return np.stack([rng.choice(np.asarray(v, dtype=float), MAX_CHECK_STATES) for v in values], axis=1)


def _generic_value(name: str) -> float:
    """A fixed value in [0.5, 2) for a parameter (the structural check ignores the model's values)."""
    return 0.5 + 1.5 * (zlib.crc32(name.encode()) % 1000) / 1000.0


def _rule_maths(m: libsbml.Model) -> dict[str, libsbml.ASTNode]:
    """Assignment rules' math by variable, the model's functions inlined."""
    out = {}
    for r in m.getListOfRules():
        if r.isAssignment() and r.getMath() is not None:
            out[r.getVariable()] = r.getMath().deepCopy()
            libsbml.SBMLTransforms.replaceFD(out[r.getVariable()], m.getListOfFunctionDefinitions())
    return out


def _species_read(m: libsbml.Model, node: libsbml.ASTNode) -> set[str]:
    """Species (not defined by rules) that ``node`` reads, directly or through assignment rules."""
    rules, seen, todo, out = _rule_maths(m), set(), set(names_in(node)), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in rules:
            todo |= names_in(rules[name])
        elif m.getSpecies(name) is not None:
            out.add(name)
    return out


def _compile(node: libsbml.ASTNode) -> Compiled:
    """``node`` compiled against an environment by name (see :func:`_evaluator`)."""
    return compile_math(node, lambda name: (lambda env, _k=name: env[_k]), {})


def _evaluator(m: libsbml.Model, local: set[str]) -> Callable[[dict], dict]:
    """A function from species counts (arrays by id) to the environment of every symbol the
    model's laws read: species (amounts, or concentrations in their compartment), compartment
    sizes, generic parameter values, local parameters, assignment rules in dependency order."""
    rules = {v: _compile(n) for v, n in _rule_maths(m).items()}
    order = _rule_order(m, set(rules))
    sizes = {c.getId(): (c.getSize() if c.isSetSize() and c.getSize() > 0 else 1.0)
             for c in m.getListOfCompartments()}

    def env_of(counts: dict[str, np.ndarray]) -> dict:
        env: dict = {TIME: 0.0, **sizes}
        env.update({p.getId(): _generic_value(p.getId()) for p in m.getListOfParameters()})
        env.update({name: _generic_value(name) for name in local})
        for s in m.getListOfSpecies():
            x = counts.get(s.getId(), 1.0)
            env[s.getId()] = x if s.getHasOnlySubstanceUnits() else x / sizes.get(s.getCompartment(), 1.0)
        for var in order:
            env[var] = rules[var](env) if callable(rules[var]) else rules[var]
        return env

    return env_of


def _rule_order(m: libsbml.Model, variables: set[str]) -> list[str]:
    """Assignment rule variables so that each comes after the rules it reads (cycles: KeyError)."""
    maths = _rule_maths(m)
    order: list[str] = []

    def visit(v: str, stack: frozenset) -> None:
        if v in order:
            return
        if v in stack:
            raise KeyError(v)
        for d in sorted(names_in(maths[v]) & variables):
            visit(d, stack | {v})
        order.append(v)

    for v in sorted(variables):
        visit(v, frozenset())
    return order


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
    simulates (:func:`reversible_channels`): forward as the reaction's id, reverse as ``ID__reverse``.

    Same ODE, and the stochastic process of the CME. libroadrunner's gillespie fires a reversible
    reaction at its *net* rate instead, which is no CME for a mass-action law: ``A <-> B`` at
    ``kf*A - kr*B`` stops dead at B = kf N / (kf + kr) where the CME gives a binomial spread.
    """
    doc = libsbml.readSBMLFromString(sbml)
    m = doc.getModel()
    for rx in list(m.getListOfReactions()):
        kl = rx.getKineticLaw()
        if not rx.getReversible() or kl is None or kl.getMath() is None:
            continue
        channels = reversible_channels(m, rx, {p.getId(): p.getValue() for p in kl.getListOfParameters()})
        rx.setReversible(False)
        kl.setMath(channels.forward)
        if channels.reverse is not None:
            _add_reverse_channel(m, rx, channels.reverse)
    return libsbml.writeSBMLToString(doc)


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
