"""Tau-leaping for networks with events, assignment rules and rates that vary in time.

The compiled tau-leaping kernel (:mod:`sbml_met._tau_numba`) runs networks without SBML events
or species assignment rules. This one runs the rest, on the machinery of the exact engine
(:mod:`sbml_met.pdmp`): leaps stop at every recording time, at every ``time >= c`` trigger and at
every scheduled (delayed) execution; a leap at whose end a state trigger has turned true is
bisected on its own sampled path (Poisson bridge: binomial thinning of its firings) down to an
interval of about one expected firing, and ends there, so the event fires where the leap's path
first showed the trigger true (a crossing undone within one bisection interval stays unseen, as in
any leap; tests/test_tau_events.py finds the firing time within sampling noise of the exact SSA's);
assignment rules are evaluated on every state; rate-rule
variables are integrated over each leap by the exact engine's Dormand-Prince step, and the
Poisson means use the propensities averaged over the leap (trapezoid), a leap whose total
propensity changes by more than ``epsilon`` being halved.

The leap itself is Cao, Gillespie & Petzold's (2006) as in the compiled kernel: non-critical
reactions fire Poisson numbers of times over a step bounded by ``epsilon``; critical ones (fewer
than 10 firings from exhausting a reactant) fire exactly, their integrated propensity reaching the
trajectory's Exp(1) draw; a leap that would make a count negative is retried at half the step;
where a leap would be shorter than 10 mean exact waiting times the trajectory takes an exact step.
All trajectories leap side by side with numpy, so its cost per leap does not grow with the counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .network import ReactionNetwork
from .pdmp import _Engine
from .results import SSAResult

N_CRITICAL = 10  # as the compiled kernel
SSA_FACTOR = 10.0


def simulate_event_leaping(net: ReactionNetwork, times: np.ndarray, n: int, seed: int | None,
                           epsilon: float, progress: bool = False) -> SSAResult:
    """``n`` tau-leaping trajectories of ``net`` (events, rules, rate rules allowed) at ``times``."""
    engine = _Leaper(net, np.asarray(times, dtype=float), int(n), np.random.default_rng(seed), progress,
                     float(epsilon))
    return SSAResult(net.species, engine.rec, engine.run(), method="tau-leap", seed=seed, model=net.name)


class _Leaper(_Engine):
    """The exact engine with leaps in place of single firings wherever counts allow."""

    def __init__(self, net: ReactionNetwork, times, n: int, rng, progress: bool, epsilon: float):
        super().__init__(net, times, n, rng, progress)
        self.eps = epsilon
        self.consumed = np.where(self.nu < 0, -self.nu, 0.0)  # (R, S)
        self.order, self.mult = _orders(net)
        self.smooth = not self.z_rows and not any(r.time_varying for r in net.reactions)

    def _step(self, cols: np.ndarray, stop: np.ndarray) -> None:
        """Leap where tau is long enough, an exact step elsewhere."""
        t0 = self.t[cols]
        Z0 = self._gather_z(cols)
        k1, a = self._derivatives(cols, Z0, t0)
        X = self.X[:, cols]
        a0 = a.sum(axis=0)
        critical = self._critical(a, X)
        tau1 = self._tau_noncritical(a, critical, X)
        forced = self.h_next[cols]  # half a rejected leap, for one try
        self.h_next[cols] = np.nan
        tau1 = np.where(np.isnan(forced), tau1, np.minimum(tau1, forced))
        exact = (a0 > 0) & (tau1 < SSA_FACTOR / np.where(a0 > 0, a0, 1.0))
        if exact.any():
            super()._step(cols[exact], stop[exact])
        leap = ~exact
        if leap.any():
            self._leap(cols[leap], stop[leap], Z0[:, leap], k1[:, leap], a[:, leap], critical[:, leap],
                       tau1[leap])

    def _leap(self, cols, stop, Z0, k1, a, critical, tau1) -> None:
        """One leap of each trajectory in ``cols`` (propensities ``a`` at its start)."""
        t0, L, E = self.t[cols], self.L[cols], self.E[cols]
        a_crit = np.where(critical, a, 0.0).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            tau2 = np.where(a_crit > 0, (E - L) / a_crit, np.inf)
        room = stop - t0
        tau = np.minimum(np.minimum(tau1, tau2), room)
        if not self.smooth:
            tau = np.minimum(tau, self.h[cols])
        Z, a_mean, ok = self._continuous(cols, Z0, t0, tau, k1, a)
        counts = self.rng.poisson(np.where(critical, 0.0, a_mean * tau[None, :]))
        crit = ok & (tau2 <= np.minimum(tau1, room)) & (tau >= tau2)
        pick = np.zeros_like(counts)
        if crit.any():
            pick[:, crit] = self._pick(np.where(critical, a, 0.0)[:, crit])
        X = self.X[:, cols] + self.nu.T @ (counts + pick)
        ok &= ~(X < 0).any(axis=0)
        t_new = np.where(tau >= room, stop, t0 + tau)
        if self.state_events and ok.any():  # tau and t_new may shorten
            self._locate_triggers(_Leap(cols, Z0, k1, t0, tau, counts, pick, X, Z, t_new, crit, a.sum(axis=0)), ok)
            ok &= ~(X < 0).any(axis=0)
        self.h_next[cols[~ok]] = tau[~ok] / 2
        if not ok.any():
            return
        acc = cols[ok]
        self.X[:, acc] = X[:, ok]
        self._scatter_z(acc, Z[:, ok])
        self.t[acc] = t_new[ok]
        fired = crit[ok]
        self.L[acc] = np.where(fired, 0.0, L[ok] + a_crit[ok] * tau[ok])
        self.E[acc[fired]] = self.rng.standard_exponential(int(fired.sum()))
        self.k_valid[acc] = False
        self._after_change(acc)

    def _locate_triggers(self, leap: "_Leap", ok: np.ndarray) -> None:
        """Where a state trigger is true at the end of a leap holding more than one expected
        firing, bisect the leap on its own sampled path (the Poisson bridge: the firings of the
        first half are a Binomial(K, 1/2) thinning of the K between the two ends, so nothing is
        redrawn and no future is peeked at) until the interval where the trigger turns true holds
        at most one expected firing; the leap then ends there. ``leap`` changes in place."""
        every = np.arange(ok.size)
        flip = ok & self._flipped(leap.cols, leap.X, leap.Z, leap.t_new) & (leap.a0 * leap.tau > 1.0)
        X_lo, t_lo, Z_lo, K = self.X[:, leap.cols].copy(), leap.t0.copy(), leap.Z0.copy(), leap.counts.copy()
        while flip.any():
            i = every[flip]
            K1 = self.rng.binomial(K[:, i], 0.5)
            t_mid = (t_lo[i] + leap.t_new[i]) / 2
            X_mid = X_lo[:, i] + self.nu.T @ K1
            Z_mid = Z_lo[:, i] if self.smooth else self._dp_step(
                leap.cols[i], leap.Z0[:, i], leap.t0[i], t_mid - leap.t0[i], leap.k1[:, i])[0]
            up = self._flipped(leap.cols[i], X_mid, Z_mid, t_mid)
            hi, lo = i[up], i[~up]
            leap.X[:, hi], leap.Z[:, hi], leap.t_new[hi], K[:, hi] = X_mid[:, up], Z_mid[:, up], t_mid[up], K1[:, up]
            leap.crit[hi] = False  # a critical firing closes the leap: after the trigger
            X_lo[:, lo], Z_lo[:, lo], t_lo[lo] = X_mid[:, ~up], Z_mid[:, ~up], t_mid[~up]
            K[:, lo] -= K1[:, ~up]
            flip[i] = leap.a0[i] * (leap.t_new[i] - t_lo[i]) > 1.0
        leap.tau[:] = np.where(ok, leap.t_new - leap.t0, leap.tau)

    def _flipped(self, cols: np.ndarray, X: np.ndarray, Z: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Whether a state trigger is true, having been false, at species rows ``X`` and
        continuous values ``Z`` of trajectories ``cols`` at times ``t``."""
        X, P = X.copy(), self.P[:, cols].copy()
        for j, (kind, row) in enumerate(self.z_rows):
            (X if kind == "x" else P)[row] = Z[j]
        env = self._env(cols, X, P, t)
        flipped = np.zeros(cols.size, dtype=bool)
        for j, k in enumerate(self.state_events):
            value = self.net.events[k].trigger
            now = np.broadcast_to(np.asarray(value(env) if callable(value) else value) != 0, (cols.size,))
            flipped |= now & ~self.prev[j, cols]
        return flipped

    def _continuous(self, cols, Z0, t0, tau, k1, a):
        """(continuous values at the leap's end, propensities averaged over the leap, whether the
        integration held its tolerance and the total propensity moved by at most epsilon)."""
        if self.smooth:
            return Z0, a, np.ones(cols.size, dtype=bool)
        Z5, err, a_end, _ = self._dp_step(cols, Z0, t0, tau, k1)
        a0, a0_end = a.sum(axis=0), a_end.sum(axis=0)
        ok = (err <= 1.0) & (np.abs(a0_end - a0) <= self.eps * np.maximum(a0, a0_end) + 1e-12)
        grow = 0.9 * np.maximum(err, 1e-30) ** -0.2
        self.h[cols] = np.where(err <= 1.0, np.maximum(self.h[cols], tau * np.minimum(grow, 5.0)),
                                tau * np.maximum(grow, 0.2))
        return Z5, (a + a_end) / 2, ok

    def _critical(self, a: np.ndarray, X: np.ndarray) -> np.ndarray:
        """critical[j, m]: reaction j can fire, but fewer than N_CRITICAL times before a reactant of
        trajectory m runs out."""
        with np.errstate(divide="ignore", invalid="ignore"):
            room = np.where(self.consumed[:, :, None] > 0,
                            np.floor(X[None, :, :] / self.consumed[:, :, None]), np.inf).min(axis=1)
        return (a > 0) & (room < N_CRITICAL)

    def _tau_noncritical(self, a: np.ndarray, critical: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Cao et al.'s leap bound (mean, SD and gross use of each reactant) per trajectory."""
        an = np.where(critical, 0.0, a)
        mu, var, use = self.nu.T @ an, (self.nu ** 2).T @ an, self.consumed.T @ an  # (S, m)
        bound = np.maximum(self.eps * X / _g(self.order[:, None], self.mult[:, None], X), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            tau = np.minimum(np.minimum(bound / np.abs(mu), bound ** 2 / var), bound / use)
        tau = np.where(self.order[:, None] > 0, np.nan_to_num(tau, nan=np.inf, posinf=np.inf), np.inf)
        return tau.min(axis=0) if tau.size else np.full(X.shape[1], np.inf)

    def _pick(self, a_crit: np.ndarray) -> np.ndarray:
        """One firing of a critical reaction per column, drawn proportionally to ``a_crit``."""
        c = np.cumsum(a_crit, axis=0)
        r = np.minimum((c <= self.rng.random(c.shape[1]) * c[-1]).sum(axis=0), c.shape[0] - 1)
        out = np.zeros_like(a_crit)
        out[r, np.arange(r.size)] = 1.0
        return out.astype(np.int64)


@dataclass
class _Leap:
    """One leap of trajectories ``cols``, its arrays changed in place while a trigger is located:
    start (Z0, k1, t0), length tau, non-critical firings ``counts`` and the critical one ``pick``
    (R, m), end state X, continuous values Z, end time t_new, whether the critical one fires, a0."""

    cols: np.ndarray
    Z0: np.ndarray
    k1: np.ndarray
    t0: np.ndarray
    tau: np.ndarray
    counts: np.ndarray
    pick: np.ndarray
    X: np.ndarray
    Z: np.ndarray
    t_new: np.ndarray
    crit: np.ndarray
    a0: np.ndarray


def _orders(net: ReactionNetwork) -> tuple[np.ndarray, np.ndarray]:
    """Per species: the highest order of a reaction it is a reactant of, and how many of it that
    reaction uses (Cao et al.'s g_i)."""
    index = {s: i for i, s in enumerate(net.species)}
    dynamic = net.dynamic_species
    reactant = np.zeros((net.n_reactions, net.n_species))
    for j, rx in enumerate(net.reactions):
        for s, m in rx.reactants:
            if dynamic[index[s]]:
                reactant[j, index[s]] += m
    orders = reactant.sum(axis=1)
    order, mult = np.zeros(net.n_species), np.zeros(net.n_species)
    for i in range(net.n_species):
        uses = np.flatnonzero(reactant[:, i] > 0)
        if uses.size:
            top = uses[np.argmax(orders[uses] * 10 + reactant[uses, i])]
            order[i], mult[i] = orders[top], reactant[top, i]
    return order, mult


def _g(order: np.ndarray, mult: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Cao et al.'s g_i, vectorised (as _tau_numba._g)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv1, inv2 = 1.0 / (x - 1.0), 2.0 / (x - 2.0)
        g2 = np.where(mult == 1, 2.0, 2.0 + inv1)
        g3 = np.where(mult == 1, 3.0, np.where(mult == 2, 1.5 * (2.0 + inv1), 3.0 + inv1 + inv2))
        g = np.where(order <= 1, 1.0, np.where(order == 2, g2, np.where(order == 3, g3, order)))
    return np.where(np.isfinite(g) & (g > 0), g, 1.0)
