"""Exact stochastic simulation (Gillespie's direct method) with two kernels.

The compiled kernel (numba) runs trajectories two at a time on one core (the CPU overlaps their
work): every rate law is translated into bytecode for a small stack machine
(:mod:`sbml_met._bytecode`, read from the libsbml AST; no string is evaluated) and after each firing
only the propensities that read a changed species are re-evaluated. Its cost is per event, whatever
the number of trajectories, so ten trajectories of a model with many events take a tenth of a
hundred. Each trajectory draws from its own stream, seeded by the seed and its index, so trajectory
k is the same whatever ``n``, the progress bar or the number of workers. It runs every network
without SBML events and assignment rules.

The vectorised kernel runs the rest (events, rules, a construct the bytecode lacks, numba missing).
All trajectories advance in lock-step with numpy: each step evaluates the propensities of every
active trajectory at once, draws its waiting time and reaction, and records the state at the output
times it passes. The algorithm is exact, not an approximation: it is Gillespie's direct method run
for many trajectories side by side.

Networks whose propensities vary between firings (rate rules, time in a law, delayed events) run
on the piecewise-deterministic engine :mod:`sbml_met.pdmp` instead, exact as well.

Events: a trigger ``time >= c`` splits the run at c (memorylessness makes stopping a trajectory at c
and restarting it exact); state triggers are checked after every firing and fire on a false -> true
transition, with assignments evaluated before any is applied.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from dataclasses import replace
from typing import Any, Mapping

import numpy as np

from .errors import (CountOverflowError, InvalidArgumentError, NegativeCountError, PropensityError, RuleValueWarning,
                     Unsupported, UnsupportedSBMLError)
from .network import ReactionNetwork, check_times
from .results import MAX_EXACT_COUNT, SSAResult

METHODS = ("direct",)
RECORDS = ("grid", "events")
KERNELS = ("auto", "compiled", "vectorised")


def simulate(
    network: ReactionNetwork,
    times: Any,
    n: int = 1000,
    seed: int | None = None,
    method: str = "direct",
    record: str = "grid",
    progress: bool | None = None,
    kernel: str = "auto",
    epsilon: float = 0.03,
    client: Any = None,
    workers: int | None = None,
) -> SSAResult:
    """Simulate ``n`` exact SSA trajectories of ``network`` and record them at ``times``.

    ``record="events"`` (with n=1) records every jump of one trajectory between 0 and
    ``max(times)`` instead of a grid. ``progress`` shows a tqdm bar (default: when stderr is a
    terminal). ``kernel="auto"`` takes the compiled kernel whenever the network allows it (see the
    module notes): the choice depends on the network only, never on ``n`` or the machine, and the
    same ``seed`` with the same kernel gives the same numbers. ``method="tau-leap"`` runs adaptive
    tau-leaping with error control ``epsilon`` instead (:mod:`sbml_met.tau_leap`, approximate).

    More than ``BLOCK`` trajectories run in blocks of ``BLOCK``, block 0 seeded with ``seed`` and
    block b with the b-th child of ``SeedSequence(seed)``: on ``client``'s Dask workers, on
    ``workers`` local processes (default: all cores; 1: here), the numbers are the same.
    """
    result = _simulate(network, times, n, seed, method, record, progress, kernel, epsilon, client, workers)
    return checked_result(network, result)


def checked_result(network: ReactionNetwork, result: SSAResult) -> SSAResult:
    """``result`` with the species defined by assignment rules (and continuous ones, that rate
    rules drive) marked as values, not counts (a RuleValueWarning where a rule's value turned
    negative); a count beyond 2^53 raises CountOverflowError."""
    info = network.species_info
    counted = [i for i, s in enumerate(info) if not (s.rule or s.continuous)]
    states = result.states
    big = np.abs(states[..., counted]) >= MAX_EXACT_COUNT  # x + 1 == x from 2^53 on
    if big.any():
        k, j, i = (int(v[0]) for v in np.nonzero(big))
        raise CountOverflowError(info[counted[i]].id, float(states[k, j, counted[i]]), float(result.times[j]))
    values = tuple(s.id for s in info if s.rule or s.continuous)
    negative = [s.id for s in info if s.rule and np.any(states[..., info.index(s)] < 0)]
    if negative:
        warnings.warn(RuleValueWarning(
            f"species defined by assignment rules took negative values: {', '.join(negative)} (the "
            "model's algebra, not molecule counts: returned in the table's value column)"), stacklevel=3)
    return replace(result, noncounted=values) if values else result


def _simulate(
    network: ReactionNetwork,
    times: Any,
    n: int = 1000,
    seed: int | None = None,
    method: str = "direct",
    record: str = "grid",
    progress: bool | None = None,
    kernel: str = "auto",
    epsilon: float = 0.03,
    client: Any = None,
    workers: int | None = None,
) -> SSAResult:
    """:func:`simulate` without the checks of :func:`checked_result`."""
    if method not in METHODS + ("tau-leap",):
        raise InvalidArgumentError(
            f"unknown SSA method {method!r}; choose one of: {', '.join(METHODS + ('tau-leap',))}")
    if method == "tau-leap" and record != "grid":
        raise InvalidArgumentError("method='tau-leap' records on a grid: use record='grid'")
    if kernel not in KERNELS:
        raise InvalidArgumentError(f"unknown SSA kernel {kernel!r}; choose one of: {', '.join(KERNELS)}")
    if record not in RECORDS:
        raise InvalidArgumentError(f"unknown record mode {record!r}; choose one of: {', '.join(RECORDS)}")
    if int(n) < 1:
        raise InvalidArgumentError(f"n must be >= 1, got {n}")
    grid = check_times(times)
    if progress is None:
        progress = sys.stderr.isatty()
    if record == "events":
        if int(n) != 1:
            raise InvalidArgumentError("record='events' records one trajectory: use n=1")
        if network.time_varying or network.events:
            from .pdmp import simulate_pdmp_path

            return simulate_pdmp_path(network, float(grid[-1]), seed)
        return _simulate_events(network, float(grid[-1]), np.random.default_rng(seed), seed)
    if int(n) > BLOCK:
        return _in_blocks(network, grid, int(n), seed, progress, kernel, method, epsilon, client, workers)
    return _one_block(network, grid, int(n), seed, progress, kernel, method, epsilon)


BLOCK = 2500  # trajectories per independently seeded block (the unit of parallel work)


def _in_blocks(network, grid, n, seed, progress, kernel, method, epsilon, client, workers) -> SSAResult:
    """``n`` trajectories as seeded blocks of BLOCK on local processes or a Dask client."""
    from .parallel import child_seeds, fresh_seed, map_chunks

    if seed is None:
        seed = fresh_seed()
    seeds = [seed] + child_seeds(seed, (n - 1) // BLOCK)
    sizes = [min(BLOCK, n - b * BLOCK) for b in range(len(seeds))]
    tasks = [(network, grid, size, s, kernel, method, epsilon) for size, s in zip(sizes, seeds)]
    parts = map_chunks(_block_task, tasks, client=client, workers=workers, progress=progress,
                       desc="SSA blocks")
    states = np.concatenate([p.states for p in parts], axis=0)
    return SSAResult(network.species, grid, states, method=parts[0].method, seed=seed, model=network.name)


def _block_task(task: tuple) -> SSAResult:
    network, grid, size, seed, kernel, method, epsilon = task
    return _one_block(network, grid, size, seed, False, kernel, method, epsilon)


def _one_block(network, grid, n, seed, progress, kernel, method, epsilon) -> SSAResult:
    """``n`` trajectories in this process (one seeded stream)."""
    if method == "tau-leap":
        from .tau_leap import simulate_tau_leap

        return simulate_tau_leap(network, grid, n=n, seed=seed, epsilon=epsilon, progress=progress)
    if network.time_varying and kernel != "compiled":
        from .pdmp import simulate_pdmp

        return simulate_pdmp(network, grid, n, seed, progress)
    compiled = None if kernel == "vectorised" else compiled_kernel(network)
    if kernel == "compiled" and compiled is None:
        raise InvalidArgumentError(
            "the compiled SSA kernel does not run this network (SBML events, assignment rules, a math "
            "construct it lacks, or numba not installed); use kernel='auto'")
    if compiled is not None:
        states = compiled.simulate(grid, int(n), seed, progress)
    else:
        states = simulate_lockstep(network, grid, int(n), np.random.default_rng(seed), progress=progress)
    return SSAResult(network.species, grid, states, method="ssa", seed=seed, model=network.name)


def compiled_kernel(net: ReactionNetwork) -> "_CompiledKernel | None":
    """The compiled kernel for ``net`` (cached on the network), or None where it does not apply."""
    def build() -> "_CompiledKernel | None":
        if importlib.util.find_spec("numba") is None:
            return None
        from ._bytecode import compile_network

        programs = compile_network(net)
        kernel = _CompiledKernel(net, programs) if programs is not None else None
        return kernel if kernel is not None and kernel.agrees() else None

    return net.cached("ssa_kernel", build)


class _CompiledKernel:
    """A network's bytecode, stoichiometry and dependency graph in the arrays the kernel takes."""

    def __init__(self, net: ReactionNetwork, programs):
        from . import _ssa_numba

        self.net, self.p, self.numba = net, programs, _ssa_numba
        nu = net.stoichiometry.astype(float)
        changed = [np.flatnonzero(row) for row in nu]
        self.ch_ptr = np.cumsum([0] + [c.size for c in changed]).astype(np.int64)
        self.ch_species = np.concatenate(changed + [np.zeros(0, np.int64)]).astype(np.int64)
        self.ch_delta = np.concatenate([row[c] for row, c in zip(nu, changed)] + [np.zeros(0)])
        deps = [[r for r, reads in enumerate(programs.reads) if reads & set(c.tolist())] for c in changed]
        deps.append(list(range(net.n_reactions)))  # the start of a trajectory: every law
        deps.append([])  # an idle lane of the kernel: none
        self.dep_ptr = np.cumsum([0] + [len(d) for d in deps]).astype(np.int64)
        self.dep_reactions = np.array([r for d in deps for r in d], dtype=np.int64)

        self.laws = (programs.ops, programs.args, programs.consts, programs.kind, programs.offsets,
                     *_product_arrays(programs, net.n_reactions))

    def propensities(self, x: np.ndarray) -> np.ndarray:
        """Every propensity at counts ``x`` as the kernel computes it."""
        from . import _tau_numba

        a = np.zeros(self.net.n_reactions)
        _tau_numba.evaluate(*self.laws, np.asarray(x, dtype=float), np.empty(self.p.stack), a)
        return a

    def agrees(self) -> bool:
        """The bytecode gives the vectorised propensities on a few states (a guard, not a proof)."""
        rng = np.random.default_rng(0)
        x0 = np.asarray(self.net.initial_state, dtype=float)
        for x in [x0] + [x0 + rng.integers(0, 20, x0.size) for _ in range(4)]:
            with np.errstate(all="ignore"):
                want = self.net.propensities(x)
            if not np.allclose(self.propensities(x), want, rtol=1e-12, atol=0, equal_nan=True):
                return False
        return True

    def simulate(self, grid: np.ndarray, n: int, seed: int | None, progress: bool) -> np.ndarray:
        """``n`` trajectories on ``grid``: array (n, len(grid), n_species)."""
        p, net = self.p, self.net
        words = np.random.SeedSequence(seed).generate_state(4, np.uint64)  # each trajectory's stream from these
        out = np.empty((n, grid.size, net.n_species))
        info = np.zeros(5 + net.n_species)
        x0 = np.asarray(net.initial_state, dtype=float)
        chunk = max(1, n // 100) if progress else n
        products_only = bool(np.all(p.kind == 0))  # every law a product: the tighter loop
        bar = progress_bar(progress, float(grid[-1]))
        for first in range(0, n, chunk):
            last = min(n, first + chunk)
            status = self.numba.run(*self.laws, x0, self.ch_ptr, self.ch_species, self.ch_delta, self.dep_ptr,
                                    self.dep_reactions, grid, out[first:last], first, last, p.stack, words, info,
                                    products_only)
            if status != self.numba.OK:
                self._raise(status, info)
            if bar is not None:
                bar.update(float(grid[-1]) * (last - first) / n)
        if bar is not None:
            bar.close()
        return out

    def _raise(self, status: int, info: np.ndarray):
        net = self.net
        r, i, value, t = int(info[1]), int(info[2]), float(info[3]), float(info[4])
        if status == self.numba.NEGATIVE_COUNT:
            raise NegativeCountError(net.reactions[r].id, net.species[i], value, t)
        state = dict(zip(net.species, info[5:].tolist()))
        raise PropensityError(net.reactions[r].id, value, state, t)


def simulate_lockstep(network: ReactionNetwork, times: Any, n: int, rng: np.random.Generator,
                      params: Mapping[str, Any] | None = None, x0: Any = None,
                      progress: bool = False) -> np.ndarray:
    """Gillespie's direct method for ``n`` trajectories in lock-step (the vectorised kernel):
    states (n, K, n_species).

    ``times``: sorted recording times, one grid (K,) for every trajectory or one row per
    trajectory (n, K). ``params``: parameter values by SBML id overriding the network's, scalars
    or one value per trajectory (n,). ``x0``: initial counts (n_species,) or one row per trajectory
    (n, n_species); default the network's. SBML events, assignment rules and error checks as in
    :func:`simulate`; each trajectory stops after its last recording time."""
    if network.time_varying:  # it would hold rate-rule variables and time-dependent laws fixed
        raise InvalidArgumentError(
            f"model '{network.name}' has rates that vary between firings (rate rules, time in a law or "
            "delayed events): the lock-step kernel does not follow them; use sbml_met.simulate (its "
            "time-varying engine, sbml_met.pdmp)")
    return _LockStep(network, times, int(n), rng, progress, params, x0).run()


class _LockStep:
    """The lock-step simulation; ``run()`` returns the recorded states (n, K, n_species)."""

    def __init__(self, net: ReactionNetwork, times, n: int, rng, progress: bool, params=None, x0=None):
        self.net, self.n, self.rng, self.progress = net, n, rng, progress
        times = np.asarray(times, dtype=float)
        if times.ndim not in (1, 2) or (times.ndim == 2 and times.shape[0] != n) or np.isnan(times).any() \
                or (np.diff(times, axis=-1) < 0).any():
            raise InvalidArgumentError(f"recording times must be sorted, of shape (K,) or ({n}, K); "
                                       f"got shape {times.shape}")
        self.rec = np.broadcast_to(times, (n, times.shape[-1]))  # (n, K)
        # a trajectory stops when its next firing would pass its last recording time
        self.stop = np.nextafter(self.rec[:, -1], np.inf) if times.shape[-1] else np.zeros(n)
        self.params = {k: np.broadcast_to(np.asarray(v, dtype=float), (n,)) for k, v in (params or {}).items()}
        start = net.initial_state if x0 is None else x0
        self.x0 = np.broadcast_to(np.asarray(start, dtype=float), (n, net.n_species))
        self.base = net.parameter_environment()
        self.nu_t = np.ascontiguousarray(net.stoichiometry.T.astype(float))  # (S, R)
        self.has_rules = any(r.species_index is not None for r in net.rules)
        self.time_events = sorted((e for e in net.events if e.trigger_time is not None),
                                  key=lambda e: e.trigger_time)
        self.state_events = [e for e in net.events if e.trigger_time is None]
        self.out = np.empty((n, times.shape[-1], net.n_species))
        self.next_rec = np.zeros(n, dtype=np.int64)
        self.prev_trigger = np.zeros((len(self.state_events), n), dtype=bool)

    def _env(self, traj: np.ndarray) -> dict:
        """Parameter environment of trajectories ``traj`` (the shared one without per-trajectory values)."""
        if not self.params:
            return self.base
        env = dict(self.base)
        env.update({k: v[traj] for k, v in self.params.items()})
        return env

    def _next_time(self, traj: np.ndarray) -> np.ndarray:
        """Next recording time of trajectories ``traj`` (inf once all are recorded)."""
        k, K = self.next_rec[traj], self.rec.shape[1]
        return np.where(k < K, self.rec[traj, np.minimum(k, K - 1)], np.inf)

    # -------------------------------------------------------------------------------------- driver
    def run(self) -> np.ndarray:
        n = self.n
        if n == 0 or self.rec.shape[1] == 0:
            return self.out
        X = np.array(self.x0.T, dtype=float, order="C")  # (S, n), a copy
        every = np.arange(n)
        if self.has_rules:
            self.net.apply_rules(X, 0.0, self._env(every))
        t_end = float(self.rec[:, -1].max())
        # a state event fires at t = 0 when its trigger goes from initialValue (false) to true
        for k, ev in enumerate(self.state_events):
            self.prev_trigger[k] = ev.initial_value
        if self.state_events:
            self._after_change(X, every, 0.0)
        bar = progress_bar(self.progress, t_end)
        t0 = 0.0
        for ev in self.time_events + [None]:
            if ev is not None and ev.trigger_time > t_end:
                continue
            horizon = t_end if ev is None else max(float(ev.trigger_time), 0.0)
            X = self._segment(X, t0, horizon, inclusive=ev is None, bar=bar)
            if ev is not None:
                fire = np.ones(n, dtype=bool)
                if ev.trigger_time <= 0.0 and ev.initial_value:
                    fire[:] = False
                self._fire(ev, X, every, fire, horizon)
                self._after_change(X, every, horizon)
                t0 = horizon
        if bar is not None:
            bar.close()
        return self.out

    def _segment(self, X: np.ndarray, t0: float, horizon: float, inclusive: bool, bar) -> np.ndarray:
        """Advance every trajectory from t0 to ``horizon`` (or its last recording time); record the
        times passed.

        A trajectory whose next firing would pass its limit is finished: its state is kept and
        its clock set to infinity, so it stays inert (it fires the null reaction) until enough
        trajectories have finished to make compacting the arrays worth a copy.
        """
        net = self.net
        limit = np.minimum(np.inf if inclusive else horizon, self.stop)
        idx = np.arange(self.n)
        env = self._env(idx)
        Xa = X.copy()
        ta = np.full(self.n, t0)
        next_t = self._next_time(idx)
        # per species row: its change for each reaction, plus a last "null reaction" column of 0
        nu_rows = [(i, np.append(self.nu_t[i], 0.0)) for i in range(net.n_species) if self.nu_t[i].any()]
        null = net.n_reactions
        consumed = [i for i, change in nu_rows if (change < 0).any()]
        track = self.has_rules or bool(self.state_events)
        a = None
        steps = 0
        while idx.size:
            m = idx.size
            a = net.propensity_rows(Xa, ta, env, out=a if a is not None and a.shape[1] == m else None)
            if (a < 0).any():
                self._bad_propensity(a, Xa, ta)
            c = _running_sum(a, m)
            a0 = c[-1]
            if not np.isfinite(a0).all():
                self._bad_propensity(a, Xa, ta)
            with np.errstate(divide="ignore", invalid="ignore"):
                tn = ta + self.rng.standard_exponential(m) / a0
            tn[np.isnan(tn)] = np.inf  # finished (inf) trajectories whose a0 is 0
            self._record(idx, Xa, next_t, np.minimum(tn, limit))
            done = tn >= limit
            r = _choose(c, self.rng.random(m) * a0)
            r[done] = null
            for i, change in nu_rows:
                Xa[i] += change[r]
            if consumed and (Xa[consumed] < 0).any():
                self._negative_count(Xa, r, ta)
            ta = np.where(done, np.inf, tn)
            if track:
                cols = np.flatnonzero(~done)
                sub = Xa[:, cols]
                self._after_change(sub, idx[cols], ta[cols])
                Xa[:, cols] = sub
            n_done = int(np.count_nonzero(done))
            if n_done == m or 2 * n_done > m or (n_done and m < 64):
                X[:, idx[done]] = Xa[:, done]
                keep = ~done
                idx, Xa, ta, next_t, limit = idx[keep], Xa[:, keep], ta[keep], next_t[keep], limit[keep]
                env = self._env(idx)
            steps += 1
            if bar is not None and steps % 200 == 0 and idx.size:
                bar.update(max(float(np.min(ta)) if np.isfinite(ta).any() else horizon, bar.n) - bar.n)
        if bar is not None:
            bar.update(max(horizon - bar.n, 0))
        return X

    def _record(self, idx: np.ndarray, Xa: np.ndarray, next_t: np.ndarray, before: np.ndarray) -> None:
        """Record active trajectory j (global index idx[j], state Xa[:, j]) at each of its
        recording times before ``before[j]``; ``next_t`` is advanced in place."""
        hit = next_t < before
        while hit.any():
            rows = np.flatnonzero(hit)
            traj = idx[rows]
            self.out[traj, self.next_rec[traj]] = Xa[:, rows].T
            self.next_rec[traj] += 1
            next_t[rows] = self._next_time(traj)
            hit = next_t < before

    # -------------------------------------------------------------------------------------- events
    def _after_change(self, X: np.ndarray, traj: np.ndarray, t) -> None:
        """Re-apply assignment rules and fire state events on columns ``traj`` that just changed."""
        env = self._env(traj)
        if self.has_rules:
            self.net.apply_rules(X, t, env)
        for k, ev in enumerate(self.state_events):
            now = self._trigger(ev, X, t, env)
            fire = now & ~self.prev_trigger[k, traj]
            if fire.any():
                self._fire(ev, X, traj, fire, t)
                env = self._env(traj)
                if self.has_rules:
                    self.net.apply_rules(X, t, env)
                now = self._trigger(ev, X, t, env)
            self.prev_trigger[k, traj] = now

    def _trigger(self, ev, X: np.ndarray, t, env: dict) -> np.ndarray:
        env = self.net.environment(X, t, env)
        val = ev.trigger(env) if callable(ev.trigger) else ev.trigger
        return np.broadcast_to(np.asarray(val) != 0, (X.shape[1],)).copy()

    def _fire(self, ev, X: np.ndarray, traj: np.ndarray, fire: np.ndarray, t) -> None:
        """Apply ``ev``'s assignments to the columns of X (trajectories ``traj``) where ``fire``."""
        if not np.any(fire):
            return
        if ev.parameter_assignments:
            self._assign_parameters(ev, X, traj, t)
        cols = np.flatnonzero(fire)
        env = self.net.environment(X[:, cols], t, self._env(traj[cols]))
        values = []
        for i, math, factor in ev.assignments:
            v = np.broadcast_to(np.asarray(math(env) if callable(math) else math, dtype=float) * factor,
                                (cols.size,))
            if not np.all(np.isfinite(v)) or (v < 0).any() or not np.allclose(v, np.round(v)):
                bad = v[~(np.isfinite(v) & (v >= 0) & np.isclose(v, np.round(v)))][0]
                raise UnsupportedSBMLError([Unsupported(
                    ev.id, f"assigns {bad:g} to species '{self.net.species[i]}', not a count >= 0")])
            values.append((i, np.round(v)))
        for i, v in values:
            X[i, cols] = v

    def _assign_parameters(self, ev, X: np.ndarray, traj: np.ndarray, t) -> None:
        """A time-triggered event's parameter assignments (it fires on every trajectory): one value
        for all, or one per trajectory where per-trajectory parameters are involved."""
        if not self.params:
            env = self.net.environment(X[:, :1], t, self.base)
            self.base.update({p: float(np.asarray(m(env) if callable(m) else m).reshape(-1)[0])
                              for p, m in ev.parameter_assignments})
            return
        env = self.net.environment(X, t, self._env(traj))
        new = {p: np.asarray(m(env) if callable(m) else m, dtype=float) for p, m in ev.parameter_assignments}
        for p, v in new.items():
            full = np.array(np.broadcast_to(self.params.get(p, self.base.get(p, np.nan)), (self.n,)))
            full[traj] = v
            self.params[p] = full

    def _negative_count(self, X: np.ndarray, fired: np.ndarray, t: np.ndarray):
        i, col = (int(v[0]) for v in np.nonzero(X < 0))
        r = int(fired[col])
        before = X[i, col] - self.net.stoichiometry[r, i]
        raise NegativeCountError(self.net.reactions[r].id, self.net.species[i], float(before), float(t[col]))

    def _bad_propensity(self, a: np.ndarray, X: np.ndarray, t: np.ndarray):
        bad = ~(np.isfinite(a) & (a >= 0))
        r, col = (int(v[0]) for v in np.nonzero(bad))
        state = dict(zip(self.net.species, X[:, col].tolist()))
        raise PropensityError(self.net.reactions[r].id, float(a[r, col]), state, float(t[col]))


def _product_arrays(p, n_reactions: int) -> tuple[np.ndarray, ...]:
    """Product laws as the kernel takes them: coef[r] (the constant factors multiplied in order)
    and per factor its species, offset and sign (count: +1*(x - 0); x - c: +1*(x - c); c - x:
    -1*(x - c)). Constants move in front of the counts: the value can differ in its last bit."""
    coef, fs, foff, fsign, ptr = np.ones(n_reactions), [], [], [], [0]
    for r in range(n_reactions):
        for kind, a, b in p.factors[p.factor_ptr[r]:p.factor_ptr[r + 1]] if p.kind[r] == 0 else []:
            if kind == 0:
                coef[r] *= p.consts[a]
                continue
            species, offset = (a, 0.0) if kind == 1 else ((a, p.consts[b]) if kind == 2 else (b, p.consts[a]))
            fs.append(species)
            foff.append(offset)
            fsign.append(-1.0 if kind == 3 else 1.0)
        ptr.append(len(fs))
    return (coef, np.array(fs, dtype=np.int64), np.array(foff, dtype=float), np.array(fsign, dtype=float),
            np.array(ptr, dtype=np.int64))


def _running_sum(a: np.ndarray, m: int) -> np.ndarray:
    """Cumulative sum over reactions (axis 0); a row loop is several times faster than
    np.cumsum(axis=0) on a (n_reactions, m) array."""
    if a.shape[0] == 0:
        return np.zeros((1, m))
    c = np.empty_like(a)
    c[0] = a[0]
    for r in range(1, a.shape[0]):
        np.add(c[r - 1], a[r], out=c[r])
    return c


def _choose(c: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Index of the first reaction whose cumulative propensity exceeds ``threshold`` (the direct
    method's choice; reactions of zero propensity are never chosen)."""
    r = np.zeros(threshold.shape, dtype=np.intp)
    for row in c[:-1]:
        r += row <= threshold
    return r


def progress_bar(enabled: bool, total: float):
    """A tqdm bar over simulated time (None when disabled), for the SSA and tau-leaping."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="SSA", unit="time", leave=False,
                bar_format="{l_bar}{bar}| t={n:.3g}/{total:.3g} [{elapsed}<{remaining}]")


class estimated_progress:
    """A context manager: a tqdm bar on stderr that fills over ``seconds`` (an estimate, said so),
    ticking from a thread, for calls whose own progress is coarse (one trajectory runs in one
    call of the kernel); it stops at 99% until the work is done. Nothing when not ``enabled``."""

    def __init__(self, seconds: float, enabled: bool, desc: str = "SSA"):
        self.seconds, self.enabled, self.desc = float(seconds), bool(enabled), desc
        self._stop, self._thread, self._bar = None, None, None

    def __enter__(self):
        if not self.enabled or not np.isfinite(self.seconds) or self.seconds <= 0:
            return self
        import threading
        import time

        from tqdm.auto import tqdm

        self._bar = tqdm(total=100, desc=f"{self.desc} (estimated {self.seconds:.0f} s)", leave=False,
                         bar_format="{l_bar}{bar}| [{elapsed}<{remaining}]")
        self._stop, start = threading.Event(), time.perf_counter()

        def tick():
            while not self._stop.wait(0.5):
                done = min(99, int(100 * (time.perf_counter() - start) / self.seconds))
                self._bar.update(done - self._bar.n)

        self._thread = threading.Thread(target=tick, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._stop.set()
            self._thread.join()
            self._bar.close()
        return False


def _simulate_events(net: ReactionNetwork, t_end: float, rng, seed) -> SSAResult:
    """One trajectory with every jump recorded (for path-likelihood inference)."""
    from .support import check_support

    check_support(net, "ssa-path")
    base = net.parameter_environment()
    nu = net.stoichiometry.astype(float)
    x = np.asarray(net.initial_state, dtype=float).copy().reshape(-1, 1)
    times, states, fired = [0.0], [x[:, 0].copy()], [-1]
    t = 0.0
    while True:
        a = net.propensity_rows(x, t, base)[:, 0]
        if not np.all(np.isfinite(a)) or (a < 0).any():
            r = int(np.flatnonzero(~(np.isfinite(a) & (a >= 0)))[0])
            raise PropensityError(net.reactions[r].id, float(a[r]), dict(zip(net.species, x[:, 0])), t)
        c = np.cumsum(a)
        a0 = c[-1] if c.size else 0.0
        if a0 <= 0:
            break
        u1, u2 = rng.random(2)
        t = t - np.log1p(-u1) / a0
        if t > t_end:
            break
        r = int(np.searchsorted(c, u2 * a0, side="right"))
        x[:, 0] += nu[r]
        if (x[:, 0] < 0).any():
            i = int(np.flatnonzero(x[:, 0] < 0)[0])
            raise NegativeCountError(net.reactions[r].id, net.species[i], float(x[i, 0] - nu[r, i]), t)
        if net.rules:
            net.apply_rules(x, t, base)
        times.append(t)
        states.append(x[:, 0].copy())
        fired.append(r)
    times.append(t_end)
    states.append(x[:, 0].copy())
    fired.append(-1)
    return SSAResult(net.species, np.array(times), np.array(states)[None, :, :], method="ssa",
                     seed=seed, model=net.name, fired=np.array(fired), reactions=net.reaction_ids)
