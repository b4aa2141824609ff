"""The compiled per-trajectory SSA kernel (numba): Gillespie's direct method, two trajectories in
flight per core, propensities from the bytecode of :mod:`sbml_met._bytecode` and a dependency graph
(after a firing only the propensities that read a changed species are re-evaluated). Each event
draws its waiting time with a ziggurat (an exact exponential variate without a logarithm 99% of the
time) and its channel by comparing the running sums with the threshold without a data-dependent
branch. Each trajectory has its own seeded random stream, so its numbers depend only on the seed
and its index.

Imported only when a simulation uses it (numba's import costs half a second). Functions are
cached on disk by numba, so the compile happens once per installation, not per model: the model is
data (the bytecode), never code.
"""

from __future__ import annotations

import math

import numpy as np
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
def _ziggurat_try(word):
    """The ziggurat's first try from one 64-bit word: (value, layer, whether it is accepted)."""
    ri = word >> np.uint64(3)
    idx = ri & np.uint64(0xFF)
    ri >>= np.uint64(8)
    return np.int64(ri) * _ZIG_W[idx], idx, ri < _ZIG_K[idx]


@njit(cache=True)
def exponential(state):
    """A standard exponential variate by the ziggurat: one 64-bit draw and a table look-up 99% of
    the time, no logarithm (the kernel's loop makes the same two calls)."""
    e, idx, accepted = _ziggurat_try(_next(state))
    return e if accepted else _exponential_rest(state, idx, e)


@njit(cache=True)
def _exponential_rest(state, idx, x):
    """The ziggurat after a first try outside its layer's rectangle: the tail (r - log U) for the
    base layer, else accept ``x`` under the density's wedge, else try again."""
    while True:
        if idx == 0:
            return _ZIG_R - math.log(1.0 - uniform(state))
        if (_ZIG_F[idx - 1] - _ZIG_F[idx]) * uniform(state) + _ZIG_F[idx] < math.exp(-x):
            return x
        x, idx, accepted = _ziggurat_try(_next(state))
        if accepted:
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


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True)
def _fire(j, ch_ptr, ch_species, ch_delta, x):
    """Channel ``j`` fires: its changes added to ``x``; the entry ``p`` whose species went negative
    (``ch_species[p]``, by ``ch_delta[p]``), or -1."""
    for p in range(ch_ptr[j], ch_ptr[j + 1]):
        i = ch_species[p]
        x[i] += ch_delta[p]
        if x[i] < 0.0:
            return p
    return -1


@njit(cache=True)
def seed_trajectory(seed, k, state):
    """Trajectory ``k``'s own xoshiro256+ ``state``: four SplitMix64 outputs at positions 4k..4k+3 of
    the stream that starts at ``seed[0]``, each xor-ed with ``seed[i]`` (Vigna's recommended way to
    seed xoshiro). A trajectory's numbers depend only on the seed and its index, never on which
    other trajectories ran beside it or before it."""
    z0 = seed[0] + np.uint64(4) * np.uint64(k) * _GOLDEN
    for i in range(4):
        z = z0 + np.uint64(i + 1) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        state[i] = (z ^ (z >> np.uint64(31))) ^ seed[i]


@njit(cache=True)
def _start(k, last, x0, x, a, seed, state, idle):
    """Lane start: trajectory ``k`` from ``x0`` (the channel to refresh: R, every law), or an idle
    lane where ``k`` is past ``last`` (no propensity, nothing to refresh: channel ``idle``)."""
    if k >= last:
        a[:] = 0.0
        return idle
    x[:] = x0
    seed_trajectory(seed, k, state)
    return a.size


@njit(cache=True, error_model="numpy")
def run(p_ops, p_args, consts, kind, offsets, coef, fs, foff, fsign, pptr, x0, ch_ptr, ch_species, ch_delta,
        dep_ptr, dep_reactions, grid, out, first, last, stack_size, seed, info, products_only):
    """Trajectories ``first..last-1`` from ``x0`` into ``out[k - first]`` (direct method); the status.

    Two trajectories are in flight at once (lanes a and b, scalar helpers shared): one
    event's work is a chain of dependent loads and sums, and the CPU overlaps two independent
    chains (1.2-1.5x faster than one lane). A lane takes the next trajectory when its own ends, so
    each trajectory draws from its own seeded stream (``seed_trajectory``). ``dep_ptr[j]..
    dep_ptr[j+1]`` lists the channels to refresh after channel j fires; entry R lists every
    channel and entry R + 1 none (an idle lane). On an error ``info`` holds [trajectory, reaction,
    species, value, time] and the state follows.
    """
    R = offsets.size - 1
    T = grid.size
    t_end = grid[T - 1]
    stack = np.empty(stack_size)
    xa, xb = np.empty(x0.size), np.empty(x0.size)
    aa, ab, ca, cb = np.zeros(R), np.zeros(R), np.zeros(R), np.zeros(R)
    sa, sb = np.zeros(4, np.uint64), np.zeros(4, np.uint64)
    ka, kb, knext = first, first + 1, first + 2
    ja, jb = _start(ka, last, x0, xa, aa, seed, sa, R + 1), _start(kb, last, x0, xb, ab, seed, sb, R + 1)
    ta = tb = 0.0
    na, nb = (0 if ka < last else T), (0 if kb < last else T)
    while ka < last or kb < last:
        bad = False
        for p in range(dep_ptr[ja], dep_ptr[ja + 1]):
            r = dep_reactions[p]
            if products_only or kind[r] == 0:
                v = eval_product(coef, fs, foff, fsign, r, pptr[r], pptr[r + 1], xa)
            elif kind[r] == 1:
                v = eval_arithmetic(p_ops, p_args, consts, offsets[r], offsets[r + 1], xa, stack)
            else:
                v = eval_general(p_ops, p_args, consts, offsets[r], offsets[r + 1], xa, stack)
            bad |= not (v >= 0.0)
            aa[r] = v
        for p in range(dep_ptr[jb], dep_ptr[jb + 1]):
            r = dep_reactions[p]
            if products_only or kind[r] == 0:
                v = eval_product(coef, fs, foff, fsign, r, pptr[r], pptr[r + 1], xb)
            elif kind[r] == 1:
                v = eval_arithmetic(p_ops, p_args, consts, offsets[r], offsets[r + 1], xb, stack)
            else:
                v = eval_general(p_ops, p_args, consts, offsets[r], offsets[r + 1], xb, stack)
            bad |= not (v >= 0.0)
            ab[r] = v
        a0a = a0b = 0.0
        for r in range(R):
            a0a += aa[r]
            ca[r] = a0a
            a0b += ab[r]
            cb[r] = a0b
        if bad or a0a == math.inf or a0b == math.inf:
            if find_bad_propensity(aa, xa, ka, info, ta) or find_bad_propensity(ab, xb, kb, info, tb):
                return BAD_PROPENSITY
        e, idx, accepted = _ziggurat_try(_next(sa))  # exponential(sa), its first try inline
        if not accepted:
            e = _exponential_rest(sa, idx, e)
        tna = ta + e / a0a if a0a > 0.0 else math.inf
        e, idx, accepted = _ziggurat_try(_next(sb))  # exponential(sb), its first try inline
        if not accepted:
            e = _exponential_rest(sb, idx, e)
        tnb = tb + e / a0b if a0b > 0.0 else math.inf
        while na < T and grid[na] < tna:
            out[ka - first, na] = xa
            na += 1
        while nb < T and grid[nb] < tnb:
            out[kb - first, nb] = xb
            nb += 1
        if a0a > 0.0:  # both lanes' channels, before either may end (the two selections overlap)
            ja = _select(aa, ca, uniform(sa) * a0a)
        if a0b > 0.0:
            jb = _select(ab, cb, uniform(sb) * a0b)
        if tna > t_end:
            if ka < last:
                ka, knext = knext, knext + 1
                ja, ta, na = _start(ka, last, x0, xa, aa, seed, sa, R + 1), 0.0, (0 if ka < last else T)
        else:
            p = _fire(ja, ch_ptr, ch_species, ch_delta, xa)
            if p >= 0:
                record_failure(info, xa, ka, ja, ch_species[p], xa[ch_species[p]] - ch_delta[p], tna)
                return NEGATIVE_COUNT
            ta = tna
        if tnb > t_end:
            if kb < last:
                kb, knext = knext, knext + 1
                jb, tb, nb = _start(kb, last, x0, xb, ab, seed, sb, R + 1), 0.0, (0 if kb < last else T)
        else:
            p = _fire(jb, ch_ptr, ch_species, ch_delta, xb)
            if p >= 0:
                record_failure(info, xb, kb, jb, ch_species[p], xb[ch_species[p]] - ch_delta[p], tnb)
                return NEGATIVE_COUNT
            tb = tnb
    return OK


@njit(cache=True)
def record_failure(info, x, k, r, i, value, t):
    info[0], info[1], info[2], info[3], info[4] = k, r, i, value, t
    info[5:5 + x.size] = x
