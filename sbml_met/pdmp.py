"""Exact simulation of networks whose propensities vary between firings (piecewise-deterministic).

Rate rules (parameters, compartment sizes or species amounts driven by an ODE), ``time`` in a rate
law (circadian forcing, ramps) and delayed events make a network a piecewise-deterministic Markov
process: between firings the continuous part follows its ODE, so the propensities a_r(t) change
with it. The next firing time T of a trajectory that last changed at t_k solves

    Lambda(T) = integral from t_k to T of a_0(s) ds = E,   E ~ Exp(1)

(the time-change representation of the jump process), and the channel that fires is r with
probability a_r(T) / a_0(T). Gillespie's direct method is the special case of constant a_0.

How: the continuous variables and Lambda are integrated together by the Dormand-Prince 5(4)
Runge-Kutta pair with adaptive steps (relative tolerance ``RTOL``), each step about 1.5 expected
waiting times long at most; in a step where Lambda passes E, the firing time is the root of the
step's 4th-order dense output for Lambda (Newton's method on a quartic, to round-off) and the
continuous state there comes from the same dense output, accurate to the integrator's tolerance.
No bound on the propensities is needed, and the answer is exact up to that tolerance (far below
sampling noise at any n a computer can run). A step that holds no firing hands its end
derivative to the next (first-same-as-last), so a firing costs about eight evaluations.

Events: a time trigger ``time >= c`` stops every trajectory at c; triggers on counts are evaluated
after every change and fire on a false -> true transition; triggers on continuous variables are
checked after every step and located by bisection of the step (to 1e-9 in time). A triggered
event with a delay d is a scheduled assignment: its values are computed at the trigger time
(SBML's useValuesFromTriggerTime; else at execution) and applied at t + d, per trajectory.

Trajectories advance side by side with numpy, each with its own clock and step length. All
random numbers come from one generator per block, so a seed gives the same numbers whatever the
number of workers (:func:`sbml_met.simulate` splits n into fixed, independently seeded blocks).
"""

from __future__ import annotations

from contextlib import nullcontext as _no_context
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import NegativeCountError, PropensityError, Unsupported, UnsupportedSBMLError
from .network import Event, ReactionNetwork
from .results import SSAResult

RTOL = 1e-8  # relative error per step of the continuous variables and of Lambda
ATOL = 1e-10
H_MIN = 1e-13  # shortest step (relative to 1 + t): a stage outside the domain even there is the model's law
T_TOL = 1e-9  # bisection width for a trigger on continuous variables (relative to 1 + t)

# Dormand-Prince 5(4): nodes, stage weights, 5th-order weights and the error weights (5th - 4th)
_C = np.array([0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0])
_A = [
    [],
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
    [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
]
_B5 = np.array([35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0])
_B4 = np.array([5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40])
_ERR = _B5 - _B4


def simulate_pdmp(net: ReactionNetwork, times: np.ndarray, n: int, seed: int | None,
                  progress: bool = False) -> SSAResult:
    """``n`` exact trajectories of a time-varying ``net`` recorded at ``times`` (sorted)."""
    from .support import check_support

    check_support(net, "ssa")
    times = np.asarray(times, dtype=float)
    if not net.events and not np.any(net.stoichiometry):  # nothing random: one stiff ODE solve
        return SSAResult(net.species, times, _deterministic(net, times, int(n)), method="ssa", seed=seed,
                         model=net.name)
    engine = _Engine(net, times, int(n), np.random.default_rng(seed), progress)
    return SSAResult(net.species, engine.rec, engine.run(), method="ssa", seed=seed, model=net.name)


def _deterministic(net: ReactionNetwork, times: np.ndarray, n: int) -> np.ndarray:
    """States (n, K, S) of a network in which no reaction changes a count and no event fires
    (an ODE model: every species boundary or driven by rate rules, as Tyson 1991's BIOMD0000000006):
    every trajectory is the rate rules' solution, found once by a stiff-capable solver instead of
    explicit steps as short as the stiffest rate allows: libroadrunner's CVODE (compiled; rtol
    1e-8), else scipy's LSODA (rtol ``RTOL``) where libroadrunner is missing or fails."""
    from scipy.integrate import solve_ivp

    try:
        from .window import deterministic_at

        states = deterministic_at(net, times)
        if np.all(np.isfinite(states)):
            return np.broadcast_to(states, (n, times.size, net.n_species)).copy()
    except Exception:  # noqa: BLE001 - no libroadrunner, or it cannot integrate this model: LSODA below
        pass
    engine = _Engine(net, times, 1, np.random.default_rng(0), False)
    engine._start()
    one = np.array([0])

    def rates(t: float, z: np.ndarray) -> np.ndarray:
        X, P = engine.X[:, one].copy(), engine.P[:, one].copy()
        for j, (kind, row) in enumerate(engine.z_rows):
            (X if kind == "x" else P)[row] = z[j]
        env = engine._env(one, X, P, np.array([t]))
        return np.array([float(np.ravel((r.math(env) if callable(r.math) else r.math) * r.amount_factor)[0])
                         for r in net.rate_rules])

    z0 = engine._gather_z(one)[:-1, 0]
    out = np.empty((times.size, net.n_species))
    if engine.z_rows:
        sol = solve_ivp(rates, (0.0, float(times[-1])), z0, method="LSODA", t_eval=times, rtol=RTOL, atol=ATOL)
        if not sol.success:
            raise UnsupportedSBMLError([Unsupported(net.rate_rules[0].variable,
                                                    f"rate rules that LSODA cannot integrate: {sol.message}")])
        zs = sol.y
    else:
        zs = np.zeros((0, times.size))
    for k, t in enumerate(times):
        engine._scatter_z(one, np.append(zs[:, k], 0.0)[:, None])
        engine.t[one] = t
        out[k] = engine._species_now(one)[:, 0]
    return np.broadcast_to(out, (n, times.size, net.n_species)).copy()


def simulate_pdmp_path(net: ReactionNetwork, t_end: float, seed: int | None,
                       between: int = 200) -> SSAResult:
    """One trajectory with every firing and event recorded (``simulate(..., record="events")``);
    where rate rules drive species, also ``between`` evenly spaced states (reaction -1), so that
    a plot of the path shows them move between firings."""
    points = between + 1 if any(r.species_index is not None for r in net.rate_rules) else 2
    engine = _Engine(net, np.linspace(0.0, float(t_end), points), 1, np.random.default_rng(seed), False)
    engine.path = ([], [], [])
    grid_states = engine.run()[0]
    times, states, fired = engine.path
    times = list(engine.rec) + times
    states = list(grid_states) + states
    fired = [-1] * points + fired
    ranked = sorted(range(len(times)), key=lambda k: (times[k], k < points))  # at a tie the record last
    return SSAResult(net.species, np.array([times[k] for k in ranked]), np.array([states[k] for k in ranked])[None],
                     method="ssa", seed=seed, model=net.name, fired=np.array([fired[k] for k in ranked]),
                     reactions=net.reaction_ids)


@dataclass
class _Scheduled:
    """Delayed executions of one event: per trajectory the time due (inf: none) and the values
    computed at the trigger (None: computed when it executes)."""

    event: int
    due: np.ndarray  # (n,)
    values: list[np.ndarray] | None


class _Engine:
    """The lock-step PDMP simulation of ``n`` trajectories; ``run()`` gives states (n, K, S)."""

    def __init__(self, net: ReactionNetwork, times: np.ndarray, n: int, rng: np.random.Generator,
                 progress: bool):
        self.net, self.n, self.rng, self.progress = net, n, rng, progress
        self.rec = times
        self.base = net.parameter_environment()
        self.nu = net.stoichiometry.astype(float)  # (R, S)
        # the parameters a trajectory may change (rate rules, event assignments), one row each
        assigned = [p for e in net.events for p, _ in e.parameter_assignments]
        self.pnames = list(dict.fromkeys([r.variable for r in net.rate_rules if r.species_index is None]
                                         + assigned))
        self.prow = {p: q for q, p in enumerate(self.pnames)}
        # continuous variables: row j of Z is rate rule j (its species row or parameter row), last Lambda
        self.z_rows = [("x", r.species_index) if r.species_index is not None else ("p", self.prow[r.variable])
                       for r in net.rate_rules]
        self.time_events = [k for k, e in enumerate(net.events) if e.trigger_time is not None]
        self.state_events = [k for k, e in enumerate(net.events) if e.trigger_time is None]
        self.continuous_triggers = bool(self.state_events) and net.time_varying
        self.out = np.empty((n, times.size, net.n_species))
        self.path: tuple[list, list, list] | None = None

    # ------------------------------------------------------------------------------- state
    def _start(self) -> None:
        n, net = self.n, self.net
        self.X = np.repeat(np.asarray(net.initial_state, dtype=float)[:, None], n, axis=1)
        self.P = np.array([np.full(n, float(self.base[p])) for p in self.pnames]).reshape(len(self.pnames), n)
        self.t = np.zeros(n)
        self.L = np.zeros(n)
        self.E = self.rng.standard_exponential(n)
        self.h = np.full(n, max(float(self.rec[-1]), 1e-6) / 64)
        self.h_next = np.full(n, np.nan)  # a shorter step forced by a rejected leap (tau-leaping)
        self.k_next = np.zeros((len(self.z_rows) + 1, n))  # dZ/dt where the last step ended
        self.k_valid = np.zeros(n, dtype=bool)
        self.trigger_hi = np.full(n, np.inf)  # bisection bound on a continuous trigger's time
        self.next_rec = np.zeros(n, dtype=np.int64)
        self.time_done = np.zeros((len(self.time_events), n), dtype=bool)
        self.prev = np.zeros((len(self.state_events), n), dtype=bool)
        self.scheduled: list[_Scheduled] = []
        every = np.arange(n)
        for j, k in enumerate(self.state_events):
            self.prev[j] = self.net.events[k].initial_value
        for j, k in enumerate(self.time_events):  # true at 0 with initialValue true: no transition
            ev = net.events[k]
            self.time_done[j] = ev.trigger_time <= 0.0 and ev.initial_value
        self._after_change(every)

    def _env(self, cols: np.ndarray, X: np.ndarray | None = None, P: np.ndarray | None = None,
             t: np.ndarray | None = None) -> dict:
        """Every SBML symbol's value for trajectories ``cols`` (optionally at other species rows
        ``X``, parameter rows ``P`` and times ``t`` of those columns), assignment rules applied."""
        base = dict(self.base)
        P = self.P[:, cols] if P is None else P
        base.update({p: P[q] for q, p in enumerate(self.pnames)})
        return self.net.environment(self.X[:, cols] if X is None else X, self.t[cols] if t is None else t, base)

    # ------------------------------------------------------------------------------- driver
    def run(self) -> np.ndarray:
        if self.n == 0 or self.rec.size == 0:
            return self.out
        self._start()
        bar = _bar(self.progress, float(self.rec[-1]))
        steps = 0
        while True:
            active = np.flatnonzero(self.next_rec < self.rec.size)
            if not active.size:
                break
            stop = self._stop_time(active)
            at = self.t[active] >= stop
            if at.any():
                self._at_stops(active[at])
                continue
            self._step(active, stop)
            steps += 1
            if bar is not None and steps % 100 == 0:
                bar.update(float(self.t[active].min()) - bar.n)
        if bar is not None:
            bar.close()
        return self.out

    def _stop_time(self, cols: np.ndarray) -> np.ndarray:
        """Where trajectories ``cols`` must stop next: a recording time, a time trigger, a
        scheduled (delayed) execution."""
        stop = self.rec[np.minimum(self.next_rec[cols], self.rec.size - 1)]
        for j, k in enumerate(self.time_events):
            c = self.net.events[k].trigger_time
            stop = np.where(~self.time_done[j, cols], np.minimum(stop, c), stop)
        for s in self.scheduled:
            stop = np.minimum(stop, s.due[cols])
        return stop

    def _at_stops(self, cols: np.ndarray) -> None:
        """Trajectories ``cols`` sit at a stop: execute what is due, then record."""
        t = self.t[cols]
        for j, k in enumerate(self.time_events):
            due = ~self.time_done[j, cols] & (self.net.events[k].trigger_time <= t)
            if due.any():
                self.time_done[j, cols[due]] = True
                self._triggered(k, cols[due])
        for s in list(self.scheduled):
            due = s.due[cols] <= t
            if due.any():
                hit = cols[due]
                values = None if s.values is None else [v[hit] for v in s.values]
                s.due[hit] = np.inf
                self._execute(s.event, hit, values)
        self.scheduled = [s for s in self.scheduled if np.isfinite(s.due).any()]
        self._record(cols)

    def _record(self, cols: np.ndarray) -> None:
        """Record trajectories ``cols`` at each of their recording times <= their clock."""
        K = self.rec.size
        while True:
            k = self.next_rec[cols]
            hit = (k < K) & (self.rec[np.minimum(k, K - 1)] <= self.t[cols])
            if not hit.any():
                return
            c = cols[hit]
            self.out[c, self.next_rec[c]] = self._species_now(c).T
            self.next_rec[c] += 1

    # ------------------------------------------------------------------------------- integration
    def _derivatives(self, cols: np.ndarray, Z: np.ndarray, t: np.ndarray,
                     trial: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(dZ/dt, propensities) of trajectories ``cols`` at continuous values ``Z`` and times ``t``.

        ``trial``: ``Z`` is a Runge-Kutta stage, not a state the path reaches: a negative or
        non-finite propensity or derivative there marks the column in ``self.trial_bad`` (the
        step is rejected and shortened) instead of raising."""
        X, P = self.X[:, cols], self.P[:, cols]
        if self.z_rows:
            X, P = X.copy(), P.copy()
            for j, (kind, row) in enumerate(self.z_rows):
                (X if kind == "x" else P)[row] = Z[j]
        env = self._env(cols, X, P, t)
        with np.errstate(all="ignore") if trial else _no_context():
            a = self.net.propensities_in(env, cols.size)
            dz = np.empty_like(Z)
            for j, rule in enumerate(self.net.rate_rules):
                dz[j] = (rule.math(env) if callable(rule.math) else rule.math) * rule.amount_factor
        dz[-1] = a.sum(axis=0)
        if trial:
            bad = ~(np.isfinite(a) & (a >= 0)).all(axis=0) | ~np.isfinite(dz).all(axis=0)
            if bad.any():
                self.trial_bad |= bad
                a[:, bad], dz[:, bad] = 0.0, 0.0
            return dz, a
        if not np.all(np.isfinite(a) & (a >= 0)):
            self._bad_propensity(a, X, t)
        if not np.all(np.isfinite(dz)):
            bad = self.net.rate_rules[int(np.flatnonzero(~np.isfinite(dz).all(axis=1))[0])].variable
            raise UnsupportedSBMLError([Unsupported(bad, "rate rule whose value is not finite")])
        return dz, a

    def _gather_z(self, cols: np.ndarray) -> np.ndarray:
        rows = [(self.X if kind == "x" else self.P)[row, cols] for kind, row in self.z_rows]
        return np.array(rows + [self.L[cols]])

    def _scatter_z(self, cols: np.ndarray, Z: np.ndarray) -> None:
        for j, (kind, row) in enumerate(self.z_rows):
            (self.X if kind == "x" else self.P)[row, cols] = Z[j]
        self.L[cols] = Z[-1]

    def _dp_step(self, cols, Z0, t0, h, k1):
        """One Dormand-Prince step of length ``h``: (Z at t0 + h, error norm, propensities there,
        the seven stage derivatives; the last is dZ/dt at the step's end)."""
        ks = [k1]
        a_end = None
        self.trial_bad = np.zeros(cols.size, dtype=bool)
        for i in range(1, 7):
            Zi = Z0 + h * sum(w * k for w, k in zip(_A[i], ks) if w)
            k, a_end = self._derivatives(cols, Zi, t0 + _C[i] * h, trial=True)
            ks.append(k)
        Z5 = Z0 + h * sum(w * k for w, k in zip(_B5, ks) if w)
        err = h * sum(w * k for w, k in zip(_ERR, ks))
        scale = ATOL + RTOL * np.maximum(np.abs(Z0), np.abs(Z5))
        norm = np.sqrt(np.mean((err / scale) ** 2, axis=0))
        bad = self.trial_bad
        if bad.any():  # a stage left the model's domain: too long a step, not a bad model ...
            stuck = bad & (h <= H_MIN * (1.0 + np.abs(t0)))
            if stuck.any():  # ... unless the shortest step does too: its end decides (raises if bad)
                j = np.flatnonzero(stuck)
                self._derivatives(cols[j], Z5[:, j], t0[j] + h[j])
            norm = np.where(bad & ~stuck, np.inf, norm)
        return Z5, norm, a_end, ks

    def _first_derivatives(self, cols: np.ndarray, Z0: np.ndarray, t0: np.ndarray) -> np.ndarray:
        """dZ/dt at the start of a step: the last step's end value where nothing jumped since
        (Dormand-Prince's first-same-as-last), else evaluated."""
        k1 = self.k_next[:, cols]
        stale = ~self.k_valid[cols]
        if stale.any():
            k1[:, stale] = self._derivatives(cols[stale], Z0[:, stale], t0[stale])[0]
        return k1

    def _step(self, cols: np.ndarray, stop: np.ndarray) -> None:
        """One integration step of every trajectory in ``cols``, ending at its next firing (found
        on the step's dense output) or at the step's end."""
        t0, E = self.t[cols], self.E[cols]
        Z0 = self._gather_z(cols)
        k1 = self._first_derivatives(cols, Z0, t0)
        h, room = self._step_length(cols, t0, stop, E - Z0[-1], k1[-1])
        Z, err, a_end, ks = self._dp_step(cols, Z0, t0, h, k1)
        ok = err <= 1.0
        grow = 0.9 * np.maximum(err, 1e-30) ** -0.2
        self.h[cols] = np.where(ok, np.where(grow >= 5.0, np.maximum(self.h[cols], 5.0 * h), h * grow),
                                h * np.maximum(grow, 0.2))
        t_new = np.where(h >= room, stop, t0 + h)
        fire = ok & (Z[-1] >= E)
        if fire.any():
            i = np.flatnonzero(fire)
            theta = _crossing(Z0[-1, i], Z[-1, i], E[i], h[i], [k[:, i] for k in ks])
            Z[:, i] = _dense(Z0[:, i], h[i], [k[:, i] for k in ks], theta)
            Z[-1, i] = E[i]
            t_new[i] = t0[i] + theta * h[i]
            a_end[:, i] = self._derivatives(cols[i], Z[:, i], t_new[i])[1]
        accept = ok.copy()
        if self.continuous_triggers and accept.any():
            accept[accept] = self._bisect_triggers(cols[accept], Z[:, accept], t_new[accept], t0[accept])
        self.k_valid[cols] = ~accept | ~fire  # rejected: k1 still holds; accepted without a firing: k7
        self.k_next[:, cols] = np.where(accept, ks[-1], k1)
        if not accept.any():
            return
        acc, fire = cols[accept], fire[accept]
        self._scatter_z(acc, Z[:, accept])
        self.t[acc] = t_new[accept]
        if self.continuous_triggers:
            self._continuous_events(acc)
        if fire.any():
            self._fire(acc[fire], a_end[:, accept][:, fire])

    def _step_length(self, cols, t0, stop, gap, a0) -> tuple[np.ndarray, np.ndarray]:
        """(step length, room to the stop): the controller's length, at most 1.5 times the firing
        guess gap / a0 (so that most steps hold their firing), half the interval where a trigger
        on continuous variables is being bisected, never past the stop."""
        with np.errstate(divide="ignore", invalid="ignore"):
            guess = np.where(a0 > 0, 1.5 * gap / a0, np.inf)
        h = np.minimum(self.h[cols], guess)
        hi = self.trigger_hi[cols] - t0
        bisect = np.where(hi > T_TOL * (1 + np.abs(t0)), hi / 2, hi)
        h = np.where(np.isfinite(hi), np.minimum(h, bisect), h)
        room = stop - t0
        return np.minimum(np.maximum(h, 1e-300), room), room

    def _bisect_triggers(self, cols, Z, t_new, t0) -> np.ndarray:
        """Which accepted steps stand: a step across which a trigger on continuous variables turns
        true is kept only when shorter than T_TOL; longer ones halve (bisection of the crossing)."""
        X, P = self.X[:, cols].copy(), self.P[:, cols].copy()
        for j, (kind, row) in enumerate(self.z_rows):
            (X if kind == "x" else P)[row] = Z[j]
        env = self._env(cols, X, P, t_new)
        flipped = np.zeros(cols.size, dtype=bool)
        for j, k in enumerate(self.state_events):
            flipped |= _truth(self.net.events[k].trigger, env, cols.size) & ~self.prev[j, cols]
        wide = flipped & (t_new - t0 > T_TOL * (1 + np.abs(t0)))
        self.trigger_hi[cols[wide]] = t_new[wide]
        self.trigger_hi[cols[~flipped]] = np.where(self.trigger_hi[cols[~flipped]] > t_new[~flipped],
                                                   self.trigger_hi[cols[~flipped]], np.inf)
        return ~wide

    def _continuous_events(self, cols: np.ndarray) -> None:
        """After a step: fire state events whose trigger turned true (located to T_TOL)."""
        self.trigger_hi[cols] = np.where(self.t[cols] >= self.trigger_hi[cols], np.inf, self.trigger_hi[cols])
        self._after_change(cols)

    # ------------------------------------------------------------------------------- jumps
    def _fire(self, cols: np.ndarray, a: np.ndarray) -> None:
        """Fire one reaction in each trajectory of ``cols`` (propensities ``a`` at the firing)."""
        c = np.cumsum(a, axis=0)
        u = self.rng.random(cols.size) * c[-1]
        r = np.minimum((c <= u).sum(axis=0), a.shape[0] - 1)
        self.X[:, cols] += self.nu[r].T
        if (self.X[:, cols] < 0).any():
            i, j = (int(v[0]) for v in np.nonzero(self.X[:, cols] < 0))
            raise NegativeCountError(self.net.reactions[r[j]].id, self.net.species[i],
                                     float(self.X[i, cols[j]] - self.nu[r[j], i]), float(self.t[cols[j]]))
        self.L[cols] = 0.0
        self.E[cols] = self.rng.standard_exponential(cols.size)
        self.k_valid[cols] = False
        self.trigger_hi[cols] = np.inf
        if self.path is not None:
            self.path[0].append(float(self.t[0]))
            self.path[2].append(int(r[0]))
        self._after_change(cols)
        if self.path is not None:
            self.path[1].append(self._path_state())

    def _after_change(self, cols: np.ndarray) -> None:
        """Fire state events whose trigger went from false to true on trajectories ``cols``."""
        if not self.state_events:
            return
        env = self._env(cols)
        for j, k in enumerate(self.state_events):
            now = _truth(self.net.events[k].trigger, env, cols.size)
            fire = now & ~self.prev[j, cols]
            self.prev[j, cols] = now
            if fire.any():
                self._triggered(k, cols[fire])
                env = self._env(cols)

    def _triggered(self, k: int, cols: np.ndarray) -> None:
        """Event ``k`` triggered on ``cols``: execute now, or schedule at t + delay."""
        ev = self.net.events[k]
        if ev.delay is None:
            self._execute(k, cols, None)
            return
        env = self._env(cols)
        delay = np.broadcast_to(np.asarray(ev.delay(env) if callable(ev.delay) else ev.delay, dtype=float),
                                (cols.size,))
        if not np.all(np.isfinite(delay) & (delay >= 0)):
            raise UnsupportedSBMLError([Unsupported(ev.id, f"event delay {float(delay.min()):g} (must be >= 0)")])
        values = self._values(ev, env, cols.size) if ev.use_trigger_values else None
        slot = next((s for s in self.scheduled if s.event == k and np.isinf(s.due[cols]).all()), None)
        if slot is None:
            width = len(ev.assignments) + len(ev.parameter_assignments)
            slot = _Scheduled(k, np.full(self.n, np.inf), None if values is None else
                              [np.zeros(self.n) for _ in range(width)])
            self.scheduled.append(slot)
        slot.due[cols] = self.t[cols] + delay
        if values is not None:
            for store, v in zip(slot.values, values):
                store[cols] = v

    def _values(self, ev: Event, env: dict, m: int) -> list[np.ndarray]:
        """The values of ``ev``'s assignments (species as amounts, then parameters) in ``env``."""
        out = [np.broadcast_to(np.asarray(f(env) if callable(f) else f, dtype=float) * factor, (m,)).copy()
               for _, f, factor in ev.assignments]
        out += [np.broadcast_to(np.asarray(f(env) if callable(f) else f, dtype=float), (m,)).copy()
                for _, f in ev.parameter_assignments]
        return out

    def _execute(self, k: int, cols: np.ndarray, values: list[np.ndarray] | None) -> None:
        """Apply event ``k``'s assignments on ``cols`` (values computed now when None)."""
        ev = self.net.events[k]
        if values is None:
            values = self._values(ev, self._env(cols), cols.size)
        for (i, _, _), v in zip(ev.assignments, values):
            if not self.net.species_info[i].continuous:
                if not np.all(np.isfinite(v) & (v >= 0)) or not np.allclose(v, np.round(v)):
                    bad = float(v[~(np.isfinite(v) & (v >= 0) & np.isclose(v, np.round(v)))][0])
                    raise UnsupportedSBMLError([Unsupported(
                        ev.id, f"assigns {bad:g} to species '{self.net.species[i]}', not a count >= 0")])
                v = np.round(v)
            self.X[i, cols] = v
        for (p, _), v in zip(ev.parameter_assignments, values[len(ev.assignments):]):
            self.P[self.prow[p], cols] = v
        self.k_valid[cols] = False
        if self.path is not None:
            self.path[0].append(float(self.t[0]))
            self.path[1].append(self._path_state())
            self.path[2].append(-1)
        self._after_change(cols)

    def _species_now(self, cols: np.ndarray) -> np.ndarray:
        """Species rows (S, m) of trajectories ``cols`` now, assignment rules applied."""
        rows = self.X[:, cols].copy()
        base = dict(self.base)
        base.update({p: self.P[q, cols] for q, p in enumerate(self.pnames)})
        self.net.apply_rules(rows, self.t[cols], base)
        return rows

    def _path_state(self) -> np.ndarray:
        """Trajectory 0's species now (a path's recorded state)."""
        return self._species_now(np.array([0]))[:, 0]

    def _bad_propensity(self, a: np.ndarray, X: np.ndarray, t: np.ndarray):
        bad = ~(np.isfinite(a) & (a >= 0))
        r, col = (int(v[0]) for v in np.nonzero(bad))
        state = dict(zip(self.net.species, X[:, col].tolist()))
        raise PropensityError(self.net.reactions[r].id, float(a[r, col]), state, float(t[col]))


# Dormand-Prince's 4th-order continuous extension (as scipy's RK45): Z(t0 + theta h) =
# Z0 + h sum_j k_j (P_j . [theta, theta^2, theta^3, theta^4])
_P = np.array([
    [1, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432],
    [0, 0, 0, 0],
    [0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799],
    [0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072],
    [0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632],
    [0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844],
    [0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423]])


def _dense(Z0: np.ndarray, h: np.ndarray, ks: list[np.ndarray], theta: np.ndarray) -> np.ndarray:
    """Z at t0 + theta h from a Dormand-Prince step's stages (its dense output)."""
    Q = np.tensordot(_P.T, np.array(ks), axes=(1, 0))  # (4, nz, m)
    powers = theta[None, :] ** np.arange(1, 5)[:, None]  # (4, m)
    return Z0 + h * np.einsum("knm,km->nm", Q, powers)


def _crossing(L0, L1, E, h, ks: list[np.ndarray]) -> np.ndarray:
    """theta in (0, 1] where the dense output of Lambda (the last row) reaches E: Newton's method
    on its quartic from the linear guess, to round-off."""
    q = np.tensordot(_P.T, np.array([k[-1] for k in ks]), axes=(1, 0))  # (4, m)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.clip(np.nan_to_num((E - L0) / (L1 - L0), nan=1.0), 0.0, 1.0)
    q0, q1, q2, q3 = h * q
    for _ in range(8):  # Horner's scheme for the quartic and its slope
        value = L0 - E + theta * (q0 + theta * (q1 + theta * (q2 + theta * q3)))
        slope = q0 + theta * (2 * q1 + theta * (3 * q2 + theta * 4 * q3))
        theta = np.clip(theta - np.divide(value, slope, out=np.zeros_like(value), where=slope > 0), 0.0, 1.0)
    return np.where(theta > 0, theta, np.finfo(float).eps)


def _truth(trigger, env: dict, m: int) -> np.ndarray:
    """A trigger's value on m states as booleans."""
    value = trigger(env) if callable(trigger) else trigger
    return np.broadcast_to(np.asarray(value) != 0, (m,)).copy()


def _bar(enabled: bool, total: float):
    from .ssa import progress_bar

    return progress_bar(enabled, total)
