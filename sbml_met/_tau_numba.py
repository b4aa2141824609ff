"""The compiled adaptive tau-leaping kernel (numba), Cao, Gillespie & Petzold (2006).

Imported only when ``simulate(..., method="tau-leap")`` runs. Propensities come from the same
bytecode as the exact kernel (:mod:`sbml_met._ssa_numba`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._ssa_numba import (BAD_PROPENSITY, NEGATIVE_COUNT, OK, eval_arithmetic, eval_general, eval_product,
                         find_bad_propensity, record_failure)

N_CRITICAL = 10  # a reaction that can fire fewer times than this before a reactant runs out is critical
SSA_FACTOR = 10.0  # leap only when tau exceeds this many mean exact waiting times, else ...
SSA_STEPS = 100  # ... take this many exact steps


@njit(cache=True)
def seed(value: int) -> None:
    """Seed numba's generator (the kernel's source of randomness) in this thread."""
    np.random.seed(value)


@njit(cache=True, error_model="numpy", inline="always")
def evaluate(p_ops, p_args, consts, kind, offsets, coef, fs, foff, fsign, pptr, x, stack, a):
    """Every propensity at ``x`` into ``a``; whether all are finite and non-negative. (This and the
    per-leap helpers are inlined into the loop: called, they cost 40% of a leap.)"""
    ok = True
    for r in range(a.size):
        if kind[r] == 0:
            v = eval_product(coef, fs, foff, fsign, r, pptr[r], pptr[r + 1], x)
        elif kind[r] == 1:
            v = eval_arithmetic(p_ops, p_args, consts, offsets[r], offsets[r + 1], x, stack)
        else:
            v = eval_general(p_ops, p_args, consts, offsets[r], offsets[r + 1], x, stack)
        ok &= v >= 0.0 and v < math.inf
        a[r] = v
    return ok


@njit(cache=True, error_model="numpy", inline="always")
def _propensities(p_ops, p_args, consts, kind, offsets, coef, fs, foff, fsign, pptr, x, stack, a, info, k, t):
    """Every propensity at ``x`` into ``a``; False (with ``info`` filled) if one is negative or NaN."""
    if evaluate(p_ops, p_args, consts, kind, offsets, coef, fs, foff, fsign, pptr, x, stack, a):
        return True
    return not find_bad_propensity(a, x, k, info, t)


@njit(cache=True, error_model="numpy")
def _g(order, mult, x):
    """Cao et al.'s g_i: how much the highest-order reaction of species i amplifies its change."""
    if order <= 1:
        return 1.0
    if order == 2:
        return 2.0 if mult == 1 else 2.0 + 1.0 / (x - 1.0)
    if order == 3:
        if mult == 1:
            return 3.0
        if mult == 2:
            return 1.5 * (2.0 + 1.0 / (x - 1.0))
        return 3.0 + 1.0 / (x - 1.0) + 2.0 / (x - 2.0)
    return float(order)


@njit(cache=True, error_model="numpy", inline="always")
def _tau_noncritical(nu, consumed, a, critical, order, mult, x, eps):
    """The leap that changes no reactant's propensity by more than ``eps``: Cao et al.'s bounds on
    the mean and the SD of each reactant's change, and the same bound on its gross consumption
    (near a steady state the net change vanishes while explicit leaping still inflates the variance
    of a reactant that turns over a fraction f of itself per leap by about f/2)."""
    tau = math.inf
    R, S = nu.shape
    for i in range(S):
        if order[i] == 0:
            continue
        mu = 0.0
        var = 0.0
        use = 0.0
        for j in range(R):
            if not critical[j]:
                mu += nu[j, i] * a[j]
                var += nu[j, i] * nu[j, i] * a[j]
                use += consumed[j, i] * a[j]
        bound = max(eps * x[i] / _g(order[i], mult[i], x[i]), 1.0)
        if mu != 0.0:
            tau = min(tau, bound / abs(mu))
        if var > 0.0:
            tau = min(tau, bound * bound / var)
        if use > 0.0:
            tau = min(tau, bound / use)
    return tau


@njit(cache=True, error_model="numpy")
def _ssa_step(nu, a, a0, x, t, t_next):
    """One exact step (stopping at ``t_next`` if the next firing lies beyond it): (new t, reaction)."""
    dt = -math.log(1.0 - np.random.random()) / a0
    if t + dt > t_next:
        return t_next, -1
    threshold = np.random.random() * a0
    j = 0
    c = a[0]
    while c <= threshold and j < a.size - 1:
        j += 1
        c += a[j]
    while a[j] == 0.0:
        j -= 1
    for i in range(x.size):
        x[i] += nu[j, i]
    return t + dt, j


@njit(cache=True, error_model="numpy", inline="always")
def _mark_critical(a, x, consumed, critical):
    """critical[j]: reaction j can fire, but fewer than N_CRITICAL times before a reactant runs out."""
    R, S = consumed.shape
    for j in range(R):
        lim = math.inf
        for i in range(S):
            if consumed[j, i] > 0:
                lim = min(lim, math.floor(x[i] / consumed[j, i]))
        critical[j] = a[j] > 0.0 and lim < N_CRITICAL


@njit(cache=True, error_model="numpy", inline="always")
def _exact_steps(p_ops, p_args, consts, kind, offsets, coef, fs, foff, fsign, pptr, nu, a, a0, x, t, t_next,
                 stack, info, k, counts):
    """Up to SSA_STEPS exact steps, stopping at ``t_next``: (status, t)."""
    for _ in range(SSA_STEPS):
        t, j = _ssa_step(nu, a, a0, x, t, t_next)
        if j < 0:
            break
        counts[1] += 1
        for i in range(x.size):
            if x[i] < 0.0:
                record_failure(info, x, k, j, i, x[i] - nu[j, i], t)
                return NEGATIVE_COUNT, t
        if not _propensities(p_ops, p_args, consts, kind, offsets, coef, fs, foff, fsign, pptr, x, stack, a,
                             info, k, t):
            return BAD_PROPENSITY, t
        a0 = a.sum()
        if a0 == 0.0:
            return OK, t_next
    return OK, t


@njit(cache=True, error_model="numpy", inline="always")
def _pick_critical(a, critical, a0c):
    """A critical reaction drawn with probability proportional to its propensity."""
    threshold = np.random.random() * a0c
    c = 0.0
    jc = -1
    for j in range(a.size):
        if critical[j]:
            jc = j
            c += a[j]
            if c > threshold:
                break
    return jc


@njit(cache=True, error_model="numpy")
def run(p_ops, p_args, consts, kind, offsets, coef, fs, foff, fsign, pptr, x0, nu, consumed, order, mult, eps,
        grid, out, first, last, stack_size, info, counts):
    """Trajectories ``first..last-1`` by adaptive tau-leaping; the status (as the exact kernel's).

    ``consumed[j, i]``: molecules of i reaction j uses up (> 0 where it lowers the count). ``counts``
    accumulates [leaps, exact steps].
    """
    R, S = nu.shape
    T = grid.size
    a = np.zeros(R)
    kfire = np.zeros(R)
    critical = np.zeros(R, dtype=np.bool_)
    stack = np.empty(stack_size)
    x = np.empty(S)
    y = np.empty(S)
    for k in range(first, last):
        x[:] = x0
        t = 0.0
        nxt = 0
        while True:
            while nxt < T and grid[nxt] <= t:
                out[k - first, nxt] = x
                nxt += 1
            if nxt == T:
                break
            t_next = grid[nxt]
            if not _propensities(p_ops, p_args, consts, kind, offsets, coef, fs, foff, fsign, pptr, x, stack, a, info, k, t):
                return BAD_PROPENSITY
            a0 = a.sum()
            if a0 == 0.0:
                t = t_next
                continue
            _mark_critical(a, x, consumed, critical)
            tau1 = _tau_noncritical(nu, consumed, a, critical, order, mult, x, eps)
            while True:
                if tau1 < SSA_FACTOR / a0:
                    status, t = _exact_steps(p_ops, p_args, consts, kind, offsets, coef, fs, foff, fsign, pptr, nu,
                                             a, a0, x, t, t_next, stack, info, k, counts)
                    if status != OK:
                        return status
                    break
                a0c = 0.0
                for j in range(R):
                    if critical[j]:
                        a0c += a[j]
                tau2 = -math.log(1.0 - np.random.random()) / a0c if a0c > 0.0 else math.inf
                tau = min(tau1, tau2, t_next - t)
                for j in range(R):
                    kfire[j] = 0.0 if critical[j] else float(np.random.poisson(a[j] * tau))
                if tau2 <= tau1 and tau2 <= t_next - t:  # one critical reaction fires, exactly once
                    kfire[_pick_critical(a, critical, a0c)] = 1.0
                y[:] = x
                for j in range(R):
                    if kfire[j] > 0.0:
                        for i in range(S):
                            y[i] += nu[j, i] * kfire[j]
                if y.min() < 0.0:  # never a negative count: a shorter leap
                    tau1 = tau / 2.0
                    continue
                x[:] = y
                t = t_next if tau == t_next - t else t + tau
                counts[0] += 1
                break
    return OK
