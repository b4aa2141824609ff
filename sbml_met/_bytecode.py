"""Rate laws as stack-machine bytecode, for the compiled per-trajectory SSA kernel.

Each channel's rate law is read from SBML math (libsbml's AST, as the loader made it: ``Reaction.math``)
and translated node by node into postfix instructions ``(opcode, argument)``; no string is ever
evaluated as code. Folding of numeric constants follows :mod:`sbml_met._math`, so the programs
compute what the vectorised closures compute. A network the translator cannot express (events,
assignment rules, time in a law, a construct it does not know) gets ``None`` and the vectorised
kernel runs it instead. Parameters defined by assignment rules are inlined (their rule's math in
place of the name); species defined by rules are not compiled.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import libsbml
import numpy as np

from scipy.special import gamma

from . import _math
from ._math import AVOGADRO, node_type

# opcodes (the kernel in _ssa_numba.py dispatches on these numbers)
CONST, SPEC, ADD, SUB, MUL, DIV, POW, NEG, DUP, SELECT = range(10)
EQ, NE, LT, LE, GT, GE, AND, OR, XOR, NOT = range(10, 20)
ABS, EXP, LN, FLOOR, CEIL, FACT, SIN, COS, TAN, ASIN, ACOS, ATAN, SINH, COSH, TANH, SQRT, ROOT, LOG = range(20, 38)

_UNARY = {
    libsbml.AST_FUNCTION_ABS: ABS, libsbml.AST_FUNCTION_EXP: EXP, libsbml.AST_FUNCTION_LN: LN,
    libsbml.AST_FUNCTION_FLOOR: FLOOR, libsbml.AST_FUNCTION_CEILING: CEIL,
    libsbml.AST_FUNCTION_FACTORIAL: FACT, libsbml.AST_FUNCTION_SIN: SIN, libsbml.AST_FUNCTION_COS: COS,
    libsbml.AST_FUNCTION_TAN: TAN, libsbml.AST_FUNCTION_ARCSIN: ASIN, libsbml.AST_FUNCTION_ARCCOS: ACOS,
    libsbml.AST_FUNCTION_ARCTAN: ATAN, libsbml.AST_FUNCTION_SINH: SINH, libsbml.AST_FUNCTION_COSH: COSH,
    libsbml.AST_FUNCTION_TANH: TANH, libsbml.AST_LOGICAL_NOT: NOT,
}
_RELATIONAL = {
    libsbml.AST_RELATIONAL_EQ: EQ, libsbml.AST_RELATIONAL_NEQ: NE, libsbml.AST_RELATIONAL_LT: LT,
    libsbml.AST_RELATIONAL_LEQ: LE, libsbml.AST_RELATIONAL_GT: GT, libsbml.AST_RELATIONAL_GEQ: GE,
}
_LOGICAL = {libsbml.AST_LOGICAL_AND: (AND, 1.0), libsbml.AST_LOGICAL_OR: (OR, 0.0),
            libsbml.AST_LOGICAL_XOR: (XOR, 0.0)}
_FOLD = {ADD: lambda a, b: a + b, MUL: lambda a, b: a * b, AND: lambda a, b: float(bool(a) and bool(b)),
         OR: lambda a, b: float(bool(a) or bool(b)), XOR: lambda a, b: float(bool(a) != bool(b))}
_DOTTED = re.compile(r"\b[A-Za-z_]\w*\.[A-Za-z_]\w*\b")


class _NotCompiled(Exception):
    """The law uses something the bytecode does not express; the vectorised kernel runs it."""


Code = list  # list[tuple[int, float | int]]; a float (not a list) is a folded constant


@dataclass(frozen=True)
class Programs:
    """All propensity programs of one network, flattened for the kernel."""

    ops: np.ndarray  # int64 (n_instructions,)
    args: np.ndarray  # int64 (n_instructions,): species or constant index
    consts: np.ndarray  # float64
    offsets: np.ndarray  # int64 (n_reactions + 1,): program r is ops[offsets[r]:offsets[r+1]]
    kind: np.ndarray  # int64 (n_reactions,): 0 a product of factors, 1 arithmetic, 2 math functions
    factors: np.ndarray  # int64 (n_factors, 3): kind (0 const, 1 count, 2 count - c, 3 c - count), a, b
    factor_ptr: np.ndarray  # int64 (n_reactions + 1,): factors of law r (kind 0 only)
    reads: tuple[frozenset[int], ...]  # species each program reads
    stack: int  # deepest stack any program needs


def compile_network(net) -> Programs | None:
    """Bytecode for every propensity of ``net``, or None where the compiled kernel must not run it."""
    if net.events or net.time_varying or any(r.species_index is not None for r in net.rules):
        return None
    try:
        return _Translator(net).programs()
    except _NotCompiled:
        return None


class _Translator:
    def __init__(self, net):
        self.net = net
        self.doc = libsbml.readSBMLFromString(net.source_sbml) if net.source_sbml else None
        model = self.doc.getModel() if self.doc is not None else None
        self.model = model
        self.functions = {}
        if model is not None:
            for i in range(model.getNumFunctionDefinitions()):
                fd = model.getFunctionDefinition(i)
                args = [fd.getArgument(j).getName() for j in range(fd.getNumArguments())]
                self.functions[fd.getId()] = (args, fd.getBody())
        self.species = {s.id: i for i, s in enumerate(net.species_info)}
        self.rules = {}
        for r in net.rules:
            rule = model.getRule(r.variable) if model is not None else None
            if rule is None or rule.getMath() is None:
                raise _NotCompiled(r.variable)
            self.rules[r.variable] = rule.getMath()
        self.consts: list[float] = []
        self.reads: set[int] = set()

    def programs(self) -> Programs:
        ops, args, offsets, reads, depth = [], [], [0], [], 1
        factors, factor_ptr, kinds = [], [0], []
        for rx in self.net.reactions:
            self.reads = set()
            code = self.law(rx)
            if not isinstance(code, list):
                code = [(-1, code)]
            code = [(CONST, self.const(arg)) if op == -1 else (op, arg) for op, arg in code]
            ops += [op for op, _ in code]
            args += [arg for _, arg in code]
            offsets.append(len(ops))
            product = _as_product(code, self.consts, self.const)
            kinds.append(0 if product is not None else (2 if any(op >= ABS for op, _ in code) else 1))
            factors += product or []
            factor_ptr.append(len(factors))
            reads.append(frozenset(self.reads))
            depth = max(depth, _depth(code))
        return Programs(np.array(ops, dtype=np.int64), np.array(args, dtype=np.int64),
                        np.array(self.consts + [0.0], dtype=float), np.array(offsets, dtype=np.int64),
                        np.array(kinds, dtype=np.int64), np.array(factors, dtype=np.int64).reshape(-1, 3),
                        np.array(factor_ptr, dtype=np.int64), tuple(reads), depth)

    def law(self, rx) -> Code | float:
        """The channel's law: its AST (local parameters named reaction.param), else the
        document's own AST when the text matches, else the parsed formula text."""
        if rx.math is not None:
            return self.node(rx.math, lambda name: name)
        node, local = self._document_law(rx)
        if node is None:
            names = {}
            text = _DOTTED.sub(lambda m: names.setdefault(m.group(0), f"__local{len(names)}"), rx.rate_law)
            node = libsbml.parseL3Formula(text)
            if node is None:
                raise _NotCompiled(rx.id)
            local = {v: k for k, v in names.items()}
        return self.node(node, lambda name: local.get(name, name))

    def _document_law(self, rx):
        if self.model is None:
            return None, {}
        r = self.model.getReaction(rx.id)
        kl = r.getKineticLaw() if r is not None else None
        if kl is None or kl.getMath() is None:
            return None, {}
        local = {kl.getParameter(j).getId(): f"{rx.id}.{kl.getParameter(j).getId()}"
                 for j in range(kl.getNumParameters())}
        copy = kl.getMath().deepCopy()
        for name, key in local.items():
            copy.renameSIdRefs(name, key)
        if libsbml.formulaToL3String(copy) != rx.rate_law:
            return None, {}
        return kl.getMath(), local

    def const(self, value: float) -> int:
        self.consts.append(float(value))
        return len(self.consts) - 1

    def name(self, key: str) -> Code | float:
        net = self.net
        if key in self.rules:  # a parameter's assignment rule, inlined
            return self.node(self.rules[key], lambda name: name)
        if key in self.species:
            i = self.species[key]
            self.reads.add(i)
            s = net.species_info[i]
            code = [(SPEC, i)]
            if not s.has_only_substance_units:
                code += [(CONST, self.const(net.compartments[s.compartment])), (DIV, 0)]
            return code
        if key in net.parameters:
            return [(CONST, self.const(net.parameters[key]))]  # a runtime load, as in _math: not folded
        if key in net.compartments:
            return [(CONST, self.const(net.compartments[key]))]
        raise _NotCompiled(key)

    def node(self, node, resolve) -> Code | float:  # noqa: C901 - one branch per AST node kind
        t = node_type(node)
        kids = lambda: [self.node(node.getChild(i), resolve) for i in range(node.getNumChildren())]  # noqa: E731
        n = node.getNumChildren()
        if t == libsbml.AST_INTEGER:
            return float(node.getInteger())
        if t in (libsbml.AST_REAL, libsbml.AST_REAL_E, libsbml.AST_RATIONAL):
            return float(node.getReal())
        constants = {libsbml.AST_CONSTANT_PI: math.pi, libsbml.AST_CONSTANT_E: math.e,
                     libsbml.AST_CONSTANT_TRUE: 1.0, libsbml.AST_CONSTANT_FALSE: 0.0,
                     libsbml.AST_NAME_AVOGADRO: AVOGADRO}
        if t in constants:
            return constants[t]
        if t == libsbml.AST_NAME:
            bound = resolve(node.getName())
            return bound if not isinstance(bound, str) else self.name(bound)
        if t == libsbml.AST_PLUS:
            return _nary(ADD, kids(), 0.0)
        if t == libsbml.AST_TIMES:
            return _nary(MUL, kids(), 1.0)
        if t in _LOGICAL:
            return _nary(_LOGICAL[t][0], [_truth(k) for k in kids()], _LOGICAL[t][1])
        if t == libsbml.AST_MINUS:
            args = kids()
            if n == 1:
                return -args[0] if not isinstance(args[0], list) else args[0] + [(NEG, 0)]
            return _binary(SUB, args[0], args[1])
        if t == libsbml.AST_DIVIDE:
            return _binary(DIV, *kids())
        if t in (libsbml.AST_POWER, libsbml.AST_FUNCTION_POWER):
            a, b = kids()
            if isinstance(a, list) and not isinstance(b, list) and b == 2.0:
                return a + [(DUP, 0), (MUL, 0)]
            return _binary(POW, a, b)
        if t == libsbml.AST_FUNCTION_ROOT:
            args = kids()
            return _unary(SQRT, args[0]) if n == 1 else _binary(ROOT, args[0], args[1])
        if t == libsbml.AST_FUNCTION_LOG:
            args = kids()
            return _binary(LOG, 10.0, args[0]) if n == 1 else _binary(LOG, args[0], args[1])
        if t in _UNARY:
            return _unary(_UNARY[t], *kids())
        if t in _RELATIONAL and n == 2:
            return _binary(_RELATIONAL[t], *kids())
        if t == libsbml.AST_FUNCTION_PIECEWISE:
            return _piecewise(kids())
        if t == libsbml.AST_FUNCTION and node.getName() in self.functions:
            arg_names, body = self.functions[node.getName()]
            if len(arg_names) != n:
                raise _NotCompiled(node.getName())
            bound = dict(zip(arg_names, kids()))
            return self.node(body, lambda nm: bound[nm] if nm in bound else resolve(nm))
        raise _NotCompiled(str(t))


def _as_product(code: list, consts: list, add_const) -> list | None:
    """Factors (kind, a, b) of a program that multiplies counts, counts less a constant (either way
    round) and constant subexpressions (``c1/2``, ``k*V``, a division by a constant: folded into one
    constant with the numpy functions _math uses); None for any other program. Runs the program on
    symbols: a stack entry is a constant's value or a list of factors."""
    stack: list = []
    for op, arg in code:
        if op == CONST:
            stack.append(consts[arg])
        elif op == SPEC:
            stack.append([(1, arg, 0)])
        elif op == DUP and stack:
            stack.append(stack[-1])
        elif op in (ADD, SUB, MUL, DIV, POW) and len(stack) >= 2:
            b, a = stack.pop(), stack.pop()
            value = _product_step(op, a, b, add_const)
            if value is None:
                return None
            stack.append(value)
        else:
            return None
    if len(stack) != 1:
        return None
    return stack[0] if isinstance(stack[0], list) else [(0, add_const(stack[0]), 0)]  # a constant law


def _product_step(op: int, a, b, add_const):
    """One operation of _as_product's symbolic run: a constant, a list of factors, or None."""
    const_a, const_b = not isinstance(a, list), not isinstance(b, list)
    if const_a and const_b:
        return float(a + b) if op == ADD else (float(a * b) if op == MUL else _fold(op, a, b))
    if op in (MUL, DIV) and const_b and b == 1.0:  # x/1 (a species in a compartment of size 1), x*1
        return a
    if op == MUL and const_a and a == 1.0:
        return b
    as_factors = lambda v: v if isinstance(v, list) else [(0, add_const(v), 0)]  # noqa: E731
    if op == MUL:
        return as_factors(a) + as_factors(b)
    if op == DIV and const_b:
        return as_factors(a) + [(0, add_const(_fold(DIV, 1.0, b)), 0)]
    if op == SUB and const_b and len(a) == 1 and a[0][0] == 1:
        return [(2, a[0][1], add_const(b))]  # count - c
    if op == SUB and const_a and len(b) == 1 and b[0][0] == 1:
        return [(3, add_const(a), b[0][1])]  # c - count
    return None


def _emit(value: Code | float) -> Code:
    """Code that pushes ``value``; a folded constant becomes an inline constant instruction."""
    if isinstance(value, list):
        return value
    return [(-1, float(value))]  # placeholder resolved by _resolve_consts


def _truth(value: Code | float) -> Code | float:
    return value if isinstance(value, list) else float(value != 0)


def _nary(op: int, args: list, identity: float) -> Code | float:
    """As _math._nary: constants folded first, variable terms left to right, the folded constant last."""
    folded = identity
    terms = []
    for a in args:
        if isinstance(a, list):
            terms.append(a)
        else:
            folded = _FOLD[op](folded, a)
    if not terms:
        return float(folded)
    if folded != identity:
        terms.append(_emit(folded))
    code = list(terms[0])
    for term in terms[1:]:
        code += term + [(op, 0)]
    return code


def _unary(op: int, a: Code | float) -> Code | float:
    if not isinstance(a, list):
        return _fold(op, a)
    return a + [(op, 0)]


def _binary(op: int, a: Code | float, b: Code | float) -> Code | float:
    if not isinstance(a, list) and not isinstance(b, list):
        return _fold(op, a, b)
    return _emit(a) + _emit(b) + [(op, 0)]


def _piecewise(args: list) -> Code | float:
    pieces = [(args[i], args[i + 1]) for i in range(0, len(args) - 1, 2)]
    result = args[-1] if len(args) % 2 == 1 else float("nan")
    for value, cond in reversed(pieces):
        if not isinstance(cond, list):
            result = value if cond else result
        else:
            result = cond + _emit(value) + _emit(result) + [(SELECT, 0)]
    return result


def _fold(op: int, *values: float) -> float:
    """A constant operation folded at compile time with the numpy functions _math uses."""
    with np.errstate(all="ignore"):
        return float(_NUMPY[op](*values))


def _depth(code: Code) -> int:
    depth = best = 0
    for op, _ in code:
        depth += 1 if op in (CONST, SPEC, DUP, -1) else (-2 if op in (SELECT, ROOT, LOG) else
                                                         (0 if op in _PURE_UNARY else -1))
        best = max(best, depth)
    return best


_PURE_UNARY = {NEG, NOT, ABS, EXP, LN, FLOOR, CEIL, FACT, SIN, COS, TAN, ASIN, ACOS, ATAN, SINH, COSH,
               TANH, SQRT}

_NUMPY = {
    SUB: _math.subtract, DIV: _math.safe_divide, POW: _math.power, ROOT: _math.root, LOG: _math.log_base,
    EQ: np.equal, NE: np.not_equal, LT: np.less, LE: np.less_equal, GT: np.greater, GE: np.greater_equal,
    NEG: np.negative, NOT: np.logical_not, ABS: np.abs, EXP: np.exp, LN: _math.ln, FLOOR: np.floor,
    CEIL: np.ceil, FACT: lambda x: gamma(x + 1.0), SIN: np.sin, COS: np.cos, TAN: np.tan, ASIN: np.arcsin,
    ACOS: np.arccos, ATAN: np.arctan, SINH: np.sinh, COSH: np.cosh, TANH: np.tanh, SQRT: np.sqrt,
}
