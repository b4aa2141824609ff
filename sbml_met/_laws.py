"""Sign analysis of SBML rate laws: which laws can never be negative, and how a net law splits.

SBML gives a reversible reaction one kinetic law, the *net* rate. A stochastic simulation needs
channels whose propensities are never negative. A law that cannot become negative on non-negative
states is one forward channel as written; a law that expands into a sum of signed products of
non-negative factors (``k1*A - k2*B``, ``cell*(k1*D*R - k7*DR)``, ``k*(A - B/Keq)``) splits into
its positive and its negative part, a forward and a reverse channel whose difference is the law.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import libsbml

from ._math import node_type

MAX_TERMS = 64  # expansions beyond this many products are refused rather than written out

_ALWAYS_NONNEGATIVE = {
    libsbml.AST_NAME_TIME, libsbml.AST_NAME_AVOGADRO, libsbml.AST_CONSTANT_PI, libsbml.AST_CONSTANT_E,
    libsbml.AST_CONSTANT_TRUE, libsbml.AST_CONSTANT_FALSE, libsbml.AST_FUNCTION_EXP,
    libsbml.AST_FUNCTION_ABS, libsbml.AST_FUNCTION_FACTORIAL, libsbml.AST_FUNCTION_COSH,
    libsbml.AST_RELATIONAL_EQ, libsbml.AST_RELATIONAL_NEQ, libsbml.AST_RELATIONAL_LT,
    libsbml.AST_RELATIONAL_LEQ, libsbml.AST_RELATIONAL_GT, libsbml.AST_RELATIONAL_GEQ,
    libsbml.AST_LOGICAL_AND, libsbml.AST_LOGICAL_OR, libsbml.AST_LOGICAL_XOR, libsbml.AST_LOGICAL_NOT,
}
_NONNEGATIVE_IF_ALL_ARGUMENTS = {
    libsbml.AST_PLUS, libsbml.AST_TIMES, libsbml.AST_DIVIDE, libsbml.AST_FUNCTION_ROOT,
    libsbml.AST_FUNCTION_FLOOR, libsbml.AST_FUNCTION_CEILING,
}


@dataclass(frozen=True)
class Term:
    """One signed product: sign * prod(factors) / prod(divisors), every factor non-negative."""

    sign: int
    factors: tuple[libsbml.ASTNode, ...]
    divisors: tuple[libsbml.ASTNode, ...] = ()


def is_nonnegative(node: libsbml.ASTNode, name_is_nonnegative: Callable[[str], bool]) -> bool:
    """True when the expression cannot be negative on non-negative states (a sufficient test).

    Numbers >= 0, names the callback vouches for (species, compartments, non-negative parameters),
    sums, products, quotients, roots and non-negative powers of such terms, exponentials,
    booleans, and piecewise functions whose every value is such a term. Model functions must be
    inlined first (``libsbml.SBMLTransforms.replaceFD``).
    """
    t = node_type(node)
    kids = [node.getChild(i) for i in range(node.getNumChildren())]
    rec = lambda k: is_nonnegative(k, name_is_nonnegative)  # noqa: E731
    if node.isNumber():
        return float(node.getValue()) >= 0
    if t == libsbml.AST_NAME:
        return name_is_nonnegative(node.getName())
    if t in _ALWAYS_NONNEGATIVE:
        return True
    if t in _NONNEGATIVE_IF_ALL_ARGUMENTS:
        return all(rec(k) for k in kids)
    if t in (libsbml.AST_POWER, libsbml.AST_FUNCTION_POWER) and len(kids) == 2:
        expo = kids[1]
        even = expo.isNumber() and float(expo.getValue()) % 2 == 0
        return even or rec(kids[0])
    if t == libsbml.AST_FUNCTION_PIECEWISE:
        return all(rec(k) for k in kids[0::2])
    if t == libsbml.AST_MINUS and len(kids) == 1 and kids[0].isNumber():
        return float(kids[0].getValue()) == 0
    return False


def signed_terms(node: libsbml.ASTNode, name_is_nonnegative: Callable[[str], bool]) -> list[Term] | None:
    """Expand a law into signed products of non-negative factors, or None where it does not expand
    (a negative factor that is not a sum, a divisor that may be negative, too many terms)."""
    t = node_type(node)
    kids = [node.getChild(i) for i in range(node.getNumChildren())]
    rec = lambda k: signed_terms(k, name_is_nonnegative)  # noqa: E731
    if t == libsbml.AST_PLUS:
        parts = [rec(k) for k in kids]
        return None if any(p is None for p in parts) else _capped([x for p in parts for x in p])
    if t == libsbml.AST_MINUS:
        parts = [rec(k) for k in kids]
        if any(p is None for p in parts):
            return None
        head, tail = (parts[0], parts[1]) if len(parts) == 2 else ([], parts[0])
        return _capped(head + [Term(-x.sign, x.factors, x.divisors) for x in tail])
    if t == libsbml.AST_TIMES:
        out = [Term(1, ())]
        for k in kids:
            part = rec(k)
            if part is None:
                return None
            out = _capped([Term(a.sign * b.sign, a.factors + b.factors, a.divisors + b.divisors)
                           for a in out for b in part])
            if out is None:
                return None
        return out
    if t == libsbml.AST_DIVIDE and len(kids) == 2 and is_nonnegative(kids[1], name_is_nonnegative):
        num = rec(kids[0])
        return None if num is None else [Term(x.sign, x.factors, x.divisors + (kids[1],)) for x in num]
    if node.isNumber() and float(node.getValue()) < 0:
        return [Term(-1, (ast_number(-float(node.getValue())),))]
    if is_nonnegative(node, name_is_nonnegative):
        return [Term(1, (node,))]
    return None


def _capped(terms: list[Term] | None) -> list[Term] | None:
    return terms if terms is not None and len(terms) <= MAX_TERMS else None


# ------------------------------------------------------------------ AST builders (shared by the law transforms)
def ast_number(value: float) -> libsbml.ASTNode:
    """A real-number AST node."""
    n = libsbml.ASTNode(libsbml.AST_REAL)
    n.setValue(float(value))
    return n


def ast_name(name: str) -> libsbml.ASTNode:
    """A name (symbol) AST node."""
    n = libsbml.ASTNode(libsbml.AST_NAME)
    n.setName(name)
    return n


def ast_apply(op: int, *children: libsbml.ASTNode) -> libsbml.ASTNode:
    """A new AST node ``op`` over ``children`` (taken over, not copied)."""
    out = libsbml.ASTNode(op)
    for child in children:
        out.addChild(child)
    return out


def ast_sum(nodes: list[libsbml.ASTNode]) -> libsbml.ASTNode:
    """``nodes`` added (0 for none, the node itself for one)."""
    if not nodes:
        return ast_number(0.0)
    return nodes[0] if len(nodes) == 1 else ast_apply(libsbml.AST_PLUS, *nodes)


def _product(nodes: tuple[libsbml.ASTNode, ...]) -> libsbml.ASTNode:
    if not nodes:
        return ast_number(1.0)
    if len(nodes) == 1:
        return nodes[0].deepCopy()
    return ast_apply(libsbml.AST_TIMES, *(n.deepCopy() for n in nodes))


def sum_of_terms(terms: list[Term]) -> libsbml.ASTNode:
    """The AST of sum(prod(factors) / prod(divisors)) over the terms (their signs are dropped)."""
    parts = []
    for x in terms:
        num = _product(x.factors)
        if x.divisors:
            num = ast_apply(libsbml.AST_DIVIDE, num, _product(x.divisors))
        parts.append(num)
    return parts[0] if len(parts) == 1 else ast_apply(libsbml.AST_PLUS, *parts)


def split_net_law(node: libsbml.ASTNode, name_is_nonnegative: Callable[[str], bool]):
    """(forward, reverse) ASTs of a net rate law, reverse None when the law is never negative;
    None when the law neither is non-negative nor expands into signed non-negative products.
    The ASTs returned are new copies, owned by the caller (never children of ``node``)."""
    if is_nonnegative(node, name_is_nonnegative):
        return node.deepCopy(), None
    if node_type(node) == libsbml.AST_MINUS and node.getNumChildren() == 2:
        fwd, rev = node.getChild(0), node.getChild(1)
        if is_nonnegative(fwd, name_is_nonnegative) and is_nonnegative(rev, name_is_nonnegative):
            return fwd.deepCopy(), rev.deepCopy()  # as written: keeps the model's own formulas
    terms = signed_terms(node, name_is_nonnegative)
    if terms is None:
        return None
    pos = [x for x in terms if x.sign > 0]
    neg = [x for x in terms if x.sign < 0]
    if not neg:
        return sum_of_terms(pos), None
    return (sum_of_terms(pos) if pos else ast_number(0.0)), sum_of_terms(neg)
