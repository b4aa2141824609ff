"""Compile libsbml math ASTs into vectorised numpy closures.

A compiled expression is either a Python float (a constant, folded at compile time) or a callable
``f(env) -> array`` where ``env`` maps SBML ids (species, parameters, compartments, rule variables)
and ``TIME`` to scalars or numpy arrays; arrays broadcast, so one call evaluates a rate law over
many states (and, if parameter values are arrays, over many parameter points). No strings are
evaluated: the closures are built node by node from libsbml's AST.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import libsbml
import numpy as np

TIME = "__time__"
AVOGADRO = 6.02214076e23

Compiled = Any  # float | Callable[[dict], np.ndarray]


class MathCompileError(Exception):
    """Raised inside the compiler; the loader turns it into a typed SbmlMetError with context."""

    def __init__(self, feature: str, unsupported: bool = True):
        super().__init__(feature)
        self.feature = feature
        self.unsupported = unsupported


def _lift(c: Compiled) -> Callable[[dict], Any]:
    if callable(c):
        return c
    return lambda env, _v=c: _v


def _nary(op: Callable, args: list[Compiled], identity: float) -> Compiled:
    """Fold an associative, commutative n-ary operation, pre-computing its constant part."""
    folded: Any = identity
    funcs: list[Callable[[dict], Any]] = []
    for a in args:
        if callable(a):
            funcs.append(a)
        else:
            folded = op(folded, a)
    if not funcs:
        return float(folded)
    terms = funcs if folded == identity else funcs + [_lift(float(folded))]
    if len(terms) == 1:
        return terms[0]
    if len(terms) == 2:
        f, g = terms
        return lambda env: op(f(env), g(env))

    def call(env):
        acc = terms[0](env)
        for h in terms[1:]:
            acc = op(acc, h(env))
        return acc

    return call


def _unary(fn: Callable, a: Compiled) -> Compiled:
    if not callable(a):
        return float(fn(a))
    return lambda env: fn(a(env))


def _binary(fn: Callable, a: Compiled, b: Compiled) -> Compiled:
    if not callable(a) and not callable(b):
        return float(fn(a, b))
    fa, fb = _lift(a), _lift(b)
    return lambda env: fn(fa(env), fb(env))


def _factorial(x):
    from scipy.special import gamma  # imported on first use: import sbml_met stays fast

    return gamma(np.asarray(x, dtype=float) + 1.0)


_ROUNDOFF = 8 * np.finfo(float).eps


def subtract(a, b):
    """a - b, with a difference within a few ulps of its operands set to exactly 0.

    ``Et - E`` of two equal totals computed along different paths gives +-1e-15, which must not
    become a negative propensity (or a spurious positive one) downstream.
    """
    d = np.subtract(a, b)
    tiny = np.abs(d) <= _ROUNDOFF * np.maximum(np.abs(a), np.abs(b))
    if np.ndim(d) == 0:
        return 0.0 if tiny else d
    return np.where(tiny, 0.0, d)


def safe_divide(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(a, b)


def power(a, b):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.power(np.asarray(a, dtype=float), b)


def log_base(base, x):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(x) / np.log(base)


def ln(x):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(x)


def root(degree, x):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.power(np.asarray(x, dtype=float), 1.0 / np.asarray(degree, dtype=float))


_UNARY = {
    libsbml.AST_FUNCTION_ABS: np.abs,
    libsbml.AST_FUNCTION_EXP: np.exp,
    libsbml.AST_FUNCTION_LN: ln,
    libsbml.AST_FUNCTION_FLOOR: np.floor,
    libsbml.AST_FUNCTION_CEILING: np.ceil,
    libsbml.AST_FUNCTION_FACTORIAL: lambda x: _factorial(x),
    libsbml.AST_FUNCTION_SIN: np.sin,
    libsbml.AST_FUNCTION_COS: np.cos,
    libsbml.AST_FUNCTION_TAN: np.tan,
    libsbml.AST_FUNCTION_ARCSIN: np.arcsin,
    libsbml.AST_FUNCTION_ARCCOS: np.arccos,
    libsbml.AST_FUNCTION_ARCTAN: np.arctan,
    libsbml.AST_FUNCTION_SINH: np.sinh,
    libsbml.AST_FUNCTION_COSH: np.cosh,
    libsbml.AST_FUNCTION_TANH: np.tanh,
    libsbml.AST_LOGICAL_NOT: np.logical_not,
}

_RELATIONAL = {
    libsbml.AST_RELATIONAL_EQ: np.equal,
    libsbml.AST_RELATIONAL_NEQ: np.not_equal,
    libsbml.AST_RELATIONAL_LT: np.less,
    libsbml.AST_RELATIONAL_LEQ: np.less_equal,
    libsbml.AST_RELATIONAL_GT: np.greater,
    libsbml.AST_RELATIONAL_GEQ: np.greater_equal,
}

_UNSUPPORTED_NODES = {
    libsbml.AST_FUNCTION_DELAY: "delay() in math",
    libsbml.AST_LAMBDA: "lambda outside a function definition",
}


def node_type(node: libsbml.ASTNode) -> int:
    """The AST node's type code as an int, whichever SWIG module wrapped the node.

    Once tellurium is imported, libsedml's SWIG proxies can take over libsbml's ASTNode type, and
    ``node.getType()`` then returns the enum as an opaque pointer; libsbml's own C function reads it.
    """
    t = node.getType()
    if isinstance(t, int):
        return t
    return int(libsbml._libsbml.ASTNode_getType(node))


def _node_name(node: libsbml.ASTNode) -> str:
    name = node.getName()
    return name if name is not None else ""


def compile_math(
    node: libsbml.ASTNode,
    resolve: Callable[[str], Compiled],
    functions: dict[str, tuple[list[str], libsbml.ASTNode]],
) -> Compiled:
    """Compile one AST node; ``resolve`` maps a name to a compiled leaf, ``functions`` holds the
    model's function definitions (argument names, body), which are inlined at each call."""
    t = node_type(node)
    n = node.getNumChildren()
    kids = lambda: [compile_math(node.getChild(i), resolve, functions) for i in range(n)]  # noqa: E731

    leaf = _leaf(node, t, resolve)
    if leaf is not None:
        return leaf
    if t in _UNSUPPORTED_NODES:
        raise MathCompileError(_UNSUPPORTED_NODES[t])
    if t == libsbml.AST_FUNCTION:
        return _inline_call(node, kids, resolve, functions)
    for build in (_arithmetic, _logical):
        out = build(t, n, kids)
        if out is not None:
            return out
    # L3v2 additions and anything else (rateOf, distrib functions, csymbol functions, ...)
    label = libsbml.formulaToL3String(node) or str(t)
    raise MathCompileError(f"math construct not supported: {label}")


_CONSTANTS = {
    libsbml.AST_CONSTANT_PI: math.pi,
    libsbml.AST_CONSTANT_E: math.e,
    libsbml.AST_CONSTANT_TRUE: 1.0,
    libsbml.AST_CONSTANT_FALSE: 0.0,
    libsbml.AST_NAME_AVOGADRO: AVOGADRO,
}


def _leaf(node: libsbml.ASTNode, t: int, resolve: Callable[[str], Compiled]) -> Compiled | None:
    """A number, constant, time or name; None for any other node."""
    if t == libsbml.AST_INTEGER:
        return float(node.getInteger())
    if t in (libsbml.AST_REAL, libsbml.AST_REAL_E, libsbml.AST_RATIONAL):
        return float(node.getReal())
    if t in _CONSTANTS:
        return _CONSTANTS[t]
    if t == libsbml.AST_NAME_TIME:
        return lambda env: env[TIME]
    if t == libsbml.AST_NAME:
        return resolve(_node_name(node))
    return None


def _arithmetic(t: int, n: int, kids: Callable[[], list[Compiled]]) -> Compiled | None:
    """+, -, *, /, powers, roots, logarithms and unary functions; None for any other node."""
    if t == libsbml.AST_PLUS:
        return _nary(np.add, kids(), 0.0)
    if t == libsbml.AST_TIMES:
        return _nary(np.multiply, kids(), 1.0)
    if t == libsbml.AST_MINUS:
        args = kids()
        if n == 1:
            return _unary(np.negative, args[0])
        return _binary(subtract, args[0], args[1])
    if t == libsbml.AST_DIVIDE:
        a, b = kids()
        return _binary(safe_divide, a, b)
    if t in (libsbml.AST_POWER, libsbml.AST_FUNCTION_POWER):
        a, b = kids()
        if not callable(b) and b == 2.0 and callable(a):
            return lambda env: a(env) * a(env)
        return _binary(power, a, b)
    if t == libsbml.AST_FUNCTION_ROOT:
        args = kids()
        return _unary(np.sqrt, args[0]) if n == 1 else _binary(root, args[0], args[1])
    if t == libsbml.AST_FUNCTION_LOG:
        args = kids()
        return _binary(log_base, 10.0, args[0]) if n == 1 else _binary(log_base, args[0], args[1])
    if t in _UNARY:
        (a,) = kids()
        return _unary(_UNARY[t], a)
    return None


def _logical(t: int, n: int, kids: Callable[[], list[Compiled]]) -> Compiled | None:
    """Relations, and/or/xor and piecewise (as 0/1 floats); None for any other node."""
    if t in _RELATIONAL:
        args = kids()
        if n == 2:
            return _binary(lambda x, y, f=_RELATIONAL[t]: f(x, y).astype(float), args[0], args[1])
        pairs = [_binary(_RELATIONAL[t], args[i], args[i + 1]) for i in range(n - 1)]
        return _nary(lambda x, y: np.logical_and(x, y).astype(float), pairs, 1.0)
    if t == libsbml.AST_LOGICAL_AND:
        return _nary(lambda x, y: np.logical_and(x, y).astype(float), kids(), 1.0)
    if t == libsbml.AST_LOGICAL_OR:
        return _nary(lambda x, y: np.logical_or(x, y).astype(float), kids(), 0.0)
    if t == libsbml.AST_LOGICAL_XOR:
        return _nary(lambda x, y: np.logical_xor(x, y).astype(float), kids(), 0.0)
    if t == libsbml.AST_FUNCTION_PIECEWISE:
        return _piecewise(kids())
    return None


def _inline_call(node: libsbml.ASTNode, kids, resolve, functions) -> Compiled:
    """A call of a function definition, its body compiled with the arguments bound."""
    name = _node_name(node)
    if name not in functions:
        raise MathCompileError(f"call of undefined function '{name}'", unsupported=False)
    arg_names, body = functions[name]
    n = node.getNumChildren()
    if len(arg_names) != n:
        raise MathCompileError(
            f"function '{name}' takes {len(arg_names)} arguments, got {n}", unsupported=False
        )
    bound = dict(zip(arg_names, kids()))
    inner = lambda nm: bound[nm] if nm in bound else resolve(nm)  # noqa: E731
    return compile_math(body, inner, functions)


def _piecewise(args: list[Compiled]) -> Compiled:
    pieces = [(args[i], args[i + 1]) for i in range(0, len(args) - 1, 2)]
    otherwise: Compiled = args[-1] if len(args) % 2 == 1 else float("nan")
    result = otherwise
    for value, cond in reversed(pieces):
        result = _where(cond, value, result)
    return result


def _where(cond: Compiled, a: Compiled, b: Compiled) -> Compiled:
    if not callable(cond):
        return a if cond else b
    fa, fb = _lift(a), _lift(b)
    return lambda env: np.where(cond(env) != 0, fa(env), fb(env))


def piecewise_constants(node: libsbml.ASTNode) -> list[float]:
    """Numeric constants that appear as piecewise branch values (to spot negative propensities)."""
    found: list[float] = []
    if node_type(node) == libsbml.AST_FUNCTION_PIECEWISE:
        n = node.getNumChildren()
        for i in range(0, n, 2):
            child = node.getChild(i)
            if child.isNumber():
                found.append(float(child.getValue()))
            elif node_type(child) == libsbml.AST_MINUS and child.getNumChildren() == 1:
                if child.getChild(0).isNumber():
                    found.append(-float(child.getChild(0).getValue()))
    for i in range(node.getNumChildren()):
        found.extend(piecewise_constants(node.getChild(i)))
    return found


def names_in(node: libsbml.ASTNode) -> set[str]:
    """All identifiers an AST mentions (``TIME`` for the time symbol)."""
    out: set[str] = set()
    t = node_type(node)
    if t == libsbml.AST_NAME:
        out.add(_node_name(node))
    elif t == libsbml.AST_NAME_TIME:
        out.add(TIME)
    for i in range(node.getNumChildren()):
        out |= names_in(node.getChild(i))
    return out
