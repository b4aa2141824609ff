"""The compiled per-trajectory SSA kernel (numba): Gillespie's direct method, one trajectory after
another, propensities from the bytecode of :mod:`sbml_met._bytecode` and a dependency graph (after
a firing only the propensities that read a changed species are re-evaluated). Each event draws its
waiting time with a ziggurat (an exact exponential variate without a logarithm 99% of the time) and
its channel by comparing the running sums with the threshold without a data-dependent branch.

Imported only when a simulation uses it (numba's import costs half a second). Functions are
cached on disk by numba, so the compile happens once per installation, not per model: the model is
data (the bytecode), never code.
"""

from __future__ import annotations

import math

import numpy as np
import numba
from numba import njit

from ._bytecode import (
    ABS, ACOS, ADD, AND, ASIN, ATAN, CEIL, CONST, COS, COSH, DIV, DUP, EQ, EXP, FACT, FLOOR, GE, GT, LE, LN,
    LOG, LT, MUL, NE, NEG, NOT, OR, POW, ROOT, SELECT, SIN, SINH, SPEC, SQRT, SUB, TAN, TANH, XOR,
)

ROUNDOFF = 8 * np.finfo(float).eps
OK, NEGATIVE_COUNT, BAD_PROPENSITY = 0, 1, 2


@njit(cache=True, error_model="numpy")
def _unary(op, a):
    if op == NEG:
        return -a
    if op == EXP:
        return math.exp(a)
    if op == LN:
        return math.log(a) if a > 0 else (-math.inf if a == 0 else math.nan)
    if op == ABS:
        return abs(a)
    if op == NOT:
        return 1.0 if a == 0 else 0.0
    if op == FLOOR:
        return math.floor(a)
    if op == CEIL:
        return math.ceil(a)
    if op == FACT:
        return math.gamma(a + 1.0)
    if op == SQRT:
        return math.sqrt(a) if a >= 0 else math.nan
    if op == SIN:
        return math.sin(a)
    if op == COS:
        return math.cos(a)
    if op == TAN:
        return math.tan(a)
    if op == ASIN:
        return math.asin(a) if abs(a) <= 1 else math.nan
    if op == ACOS:
        return math.acos(a) if abs(a) <= 1 else math.nan
    if op == ATAN:
        return math.atan(a)
    if op == SINH:
        return math.sinh(a)
    if op == COSH:
        return math.cosh(a)
    return math.tanh(a)


@njit(cache=True, error_model="numpy")
def _binary(op, a, b):
    if op == POW:
        return a ** b
    if op == ADD:
        return a + b
    if op == MUL:
        return a * b
    if op == DIV:
        return a / b
    if op == EQ:
        return 1.0 if a == b else 0.0
    if op == NE:
        return 1.0 if a != b else 0.0
    if op == LT:
        return 1.0 if a < b else 0.0
    if op == LE:
        return 1.0 if a <= b else 0.0
    if op == GT:
        return 1.0 if a > b else 0.0
    if op == GE:
        return 1.0 if a >= b else 0.0
    if op == AND:
        return 1.0 if (a != 0 and b != 0) else 0.0
    if op == OR:
        return 1.0 if (a != 0 or b != 0) else 0.0
    if op == XOR:
        return 1.0 if ((a != 0) != (b != 0)) else 0.0
    if op == ROOT:
        return b ** (1.0 / a)
    return (math.log(b) if b > 0 else (-math.inf if b == 0 else math.nan)) / math.log(a)  # LOG


@njit(cache=True, inline="always")
def _leaf(op, arg, consts, x, stack, sp):
    """The value a leaf instruction pushes: a constant, a count, or the top of the stack again."""
    if op == CONST:
        return consts[arg]
    if op == SPEC:
        return x[arg]
    return stack[sp - 1]


@njit(cache=True, error_model="numpy", inline="always")
def eval_arithmetic(ops, args, consts, start, stop, x, stack):
    """Run a program of constants, counts, arithmetic, comparisons and logic (no calls: a call
    to a math function inside this loop makes every program several times slower)."""
    sp = 0
    for pc in range(start, stop):
        op = ops[pc]
        if op == CONST or op == SPEC or op == DUP:  # push a value
            stack[sp] = _leaf(op, args[pc], consts, x, stack, sp)
            sp += 1
        elif op == NEG:
            stack[sp - 1] = -stack[sp - 1]
        elif op == NOT:
            stack[sp - 1] = 1.0 if stack[sp - 1] == 0 else 0.0
        elif op == SELECT:
            sp -= 2
            stack[sp - 1] = stack[sp] if stack[sp - 1] != 0 else stack[sp + 1]
        else:
            sp -= 1
            a, b = stack[sp - 1], stack[sp]
            if op == MUL:
                v = a * b
            elif op == ADD:
                v = a + b
            elif op == SUB:
                v = a - b
                if abs(v) <= ROUNDOFF * max(abs(a), abs(b)):
                    v = 0.0
            elif op == DIV:
                v = a / b
            elif op == POW:
                v = a ** b
            elif op == EQ:
                v = 1.0 if a == b else 0.0
            elif op == NE:
                v = 1.0 if a != b else 0.0
            elif op == LT:
                v = 1.0 if a < b else 0.0
            elif op == LE:
                v = 1.0 if a <= b else 0.0
            elif op == GT:
                v = 1.0 if a > b else 0.0
            elif op == GE:
                v = 1.0 if a >= b else 0.0
            elif op == AND:
                v = 1.0 if (a != 0 and b != 0) else 0.0
            elif op == OR:
                v = 1.0 if (a != 0 or b != 0) else 0.0
            else:
                v = 1.0 if ((a != 0) != (b != 0)) else 0.0  # XOR
            stack[sp - 1] = v
    return stack[0]


@njit(cache=True, error_model="numpy")
def eval_general(ops, args, consts, start, stop, x, stack):
    """Run any program (math functions included)."""
    sp = 0
    for pc in range(start, stop):
        op = ops[pc]
        if op == SUB:
            sp -= 1
            a, b = stack[sp - 1], stack[sp]
            d = a - b
            stack[sp - 1] = 0.0 if abs(d) <= ROUNDOFF * max(abs(a), abs(b)) else d
        elif op == CONST or op == SPEC or op == DUP:  # push a value
            stack[sp] = _leaf(op, args[pc], consts, x, stack, sp)
            sp += 1
        elif op == SELECT:
            sp -= 2
            stack[sp - 1] = stack[sp] if stack[sp - 1] != 0 else stack[sp + 1]
        elif op == ROOT or op == LOG or op < ABS and op != NEG and op != NOT:
            sp -= 1
            stack[sp - 1] = _binary(op, stack[sp - 1], stack[sp])
        else:
            stack[sp - 1] = _unary(op, stack[sp - 1])
    return stack[0]


@njit(cache=True)
def uniform(state):
    """A double in [0, 1) from xoshiro256+ (``state``: 4 uint64, updated in place)."""
    return (_next(state) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


def _ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Marsaglia & Tsang's (2000) 256-layer ziggurat for the standard exponential, for 53-bit
    integers (the layout of numpy's ``random_standard_exponential``)."""
    m2 = 2.0 ** 53
    de = te = _ZIG_R
    ve = 3.949659822581572e-3  # the area of each layer
    ke, we, fe = np.zeros(256, np.uint64), np.zeros(256), np.zeros(256)
    q = ve / math.exp(-de)
    ke[0], we[0], we[255], fe[0], fe[255] = np.uint64(de / q * m2), q / m2, de / m2, 1.0, math.exp(-de)
    for i in range(254, 0, -1):
        de = -math.log(ve / de + math.exp(-de))
        ke[i + 1] = np.uint64(de / te * m2)
        te = de
        fe[i], we[i] = math.exp(-de), de / m2
    return ke, we, fe


_ZIG_R = 7.697117470131487  # where the exponential's tail begins
_ZIG_K, _ZIG_W, _ZIG_F = _ziggurat_tables()


@njit(cache=True, inline="always")
def _next(state):
    """The next 64 bits of xoshiro256+ (``uniform``'s generator, without the conversion)."""
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    result = s0 + s3
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = (s3 << np.uint64(45)) | (s3 >> np.uint64(19))
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3
    return result


@njit(cache=True)
def exponential(state):
    """A standard exponential variate by the ziggurat: one 64-bit draw and a table look-up 99% of
    the time, no logarithm (the kernels inline the first try and call ``_exponential_rest``)."""
    ri = _next(state) >> np.uint64(3)
    idx = ri & np.uint64(0xFF)
    ri >>= np.uint64(8)
    e = np.int64(ri) * _ZIG_W[idx]
    return e if ri < _ZIG_K[idx] else _exponential_rest(state, idx, e)


@njit(cache=True)
def _exponential_rest(state, idx, x):
    """The ziggurat after a first try outside its layer's rectangle: the tail (r - log U) for the
    base layer, else accept ``x`` under the density's wedge, else start again."""
    if idx == 0:
        return _ZIG_R - math.log(1.0 - uniform(state))
    if (_ZIG_F[idx - 1] - _ZIG_F[idx]) * uniform(state) + _ZIG_F[idx] < math.exp(-x):
        return x
    while True:
        ri = _next(state) >> np.uint64(3)
        idx = ri & np.uint64(0xFF)
        ri >>= np.uint64(8)
        x = np.int64(ri) * _ZIG_W[idx]
        if ri < _ZIG_K[idx]:
            return x
        if idx == 0:
            return _ZIG_R - math.log(1.0 - uniform(state))
        if (_ZIG_F[idx - 1] - _ZIG_F[idx]) * uniform(state) + _ZIG_F[idx] < math.exp(-x):
            return x


@njit(cache=True)
def _select(a, cum, threshold):
    """The channel of the direct method: the first j with a[0] + ... + a[j] > threshold (prefix
    sums ``cum``; counted without a data-dependent branch), never one whose propensity is 0."""
    R = a.size
    j = 0
    for r in range(R - 1):
        j += cum[r] <= threshold
    while a[j] == 0.0:  # round-off at the top end never picks a channel that cannot fire
        j -= 1
    return j


@njit(cache=True)
def find_bad_propensity(a, x, k, info, t):
    """After a propensity came out negative, NaN or infinite: fill ``info`` (True) or, where
    every propensity is fine (a sum that overflowed), False."""
    for r in range(a.size):
        v = a[r]
        if not (v >= 0.0 and v < math.inf):
            record_failure(info, x, k, r, -1, v, t)
            return True
    return False


@njit(cache=True, error_model="numpy")
def eval_product(coef, fs, foff, fsign, r, start, stop, x):
    """A mass-action-like law: coef[r] times factors sign * (count - offset) (a count, a count less a
    constant, or a constant less a count), with _math's round-off rule for each difference."""
    v = coef[r]
    for q in range(start, stop):
        xs = x[fs[q]]
        off = foff[q]
        if off == 0.0:
            v *= xs
        else:
            f = fsign[q] * (xs - off)
            if abs(f) <= ROUNDOFF * max(abs(xs), abs(off)):
                f = 0.0
            v *= f
    return v


@njit(cache=True, error_model="numpy")
def run(p_ops, p_args, consts, kind, offsets, coef, fs, foff, fsign, pptr, x0, ch_ptr, ch_species, ch_delta,
        dep_ptr, dep_reactions, grid, out, first, last, stack_size, state, info, products_only):
    """Trajectories ``first..last-1`` from ``x0`` into ``out[k - first]`` (direct method); the status.

    ``kind[r]``: 0 product law (``coef[r]`` and factors ``pptr[r]..pptr[r+1]``), 1 arithmetic program, 2
    program with math functions; ``products_only`` (every law a product) skips that dispatch, as
    fast as a separate loop was. ``dep_ptr[j]..dep_ptr[j+1]`` lists the channels to re-evaluate after
    channel j fires; entry R lists every channel. On an error ``info`` holds [trajectory, reaction,
    species, value, time] and the state follows.
    """
    R = offsets.size - 1
    T = grid.size
    t_end = grid[T - 1]
    a = np.zeros(R)
    cum = np.zeros(R)
    stack = np.empty(stack_size)
    x = np.empty(x0.size)
    for k in range(first, last):
        x[:] = x0
        t = 0.0
        nxt = 0
        j = R  # the virtual "start" channel: evaluate every law
        while True:
            bad = False
            for p in range(dep_ptr[j], dep_ptr[j + 1]):
                r = dep_reactions[p]
                if products_only or kind[r] == 0:
                    v = eval_product(coef, fs, foff, fsign, r, pptr[r], pptr[r + 1], x)
                elif kind[r] == 1:
                    v = eval_arithmetic(p_ops, p_args, consts, offsets[r], offsets[r + 1], x, stack)
                else:
                    v = eval_general(p_ops, p_args, consts, offsets[r], offsets[r + 1], x, stack)
                bad |= not (v >= 0.0)
                a[r] = v
            a0 = 0.0
            for r in range(R):
                a0 += a[r]
                cum[r] = a0
            if bad or a0 == math.inf:
                if find_bad_propensity(a, x, k, info, t):
                    return BAD_PROPENSITY
            ri = _next(state) >> np.uint64(3)  # exponential(state), its first try inline
            idx = ri & np.uint64(0xFF)
            ri >>= np.uint64(8)
            e = np.int64(ri) * _ZIG_W[idx]
            if ri >= _ZIG_K[idx]:
                e = _exponential_rest(state, idx, e)
            tn = t + e / a0 if a0 > 0.0 else math.inf
            while nxt < T and grid[nxt] < tn:
                out[k - first, nxt] = x
                nxt += 1
            if tn > t_end:
                break
            j = _select(a, cum, uniform(state) * a0)
            for p in range(ch_ptr[j], ch_ptr[j + 1]):
                i = ch_species[p]
                x[i] += ch_delta[p]
                if x[i] < 0.0:
                    record_failure(info, x, k, j, i, x[i] - ch_delta[p], tn)
                    return NEGATIVE_COUNT
            t = tn
    return OK


@njit(cache=True)
def record_failure(info, x, k, r, i, value, t):
    info[0], info[1], info[2], info[3], info[4] = k, r, i, value, t
    info[5:5 + x.size] = x
