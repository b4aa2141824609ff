"""Parameter inference for SBML networks: from one exact trajectory and from snapshot data.

- :func:`fit_trajectory`: maximum path likelihood of one (or several) exactly observed jump
  trajectories. For a continuous-time Markov chain observed at every jump, the path log-likelihood
  is ``sum_jumps log a_r(x) - integral a_0(x(t)) dt``; the path is compressed to its distinct states
  (dwell time per state, jump counts per state and reaction), so one evaluation costs one vectorised
  propensity call however long the trajectory. Optimised over log-parameters (L-BFGS-B, then Newton
  polish), standard errors from the observed information (finite-difference Hessian).
- :func:`posterior`: Bayesian posterior of rate parameters from snapshot counts of many cells (the
  MET paper's experiment). The likelihood of each cell is the marginal probability of its observed
  species (unobserved species summed out) under either the exact CME (:class:`~sbml_met.FSPSolver`,
  one shared state space for all parameter points) or a trained MET (one batched network pass per
  ensemble of walkers). Sampled with emcee's affine-invariant ensemble sampler, seeded.
"""

from __future__ import annotations

import itertools
import math
import sys
import time as _time
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import InvalidArgumentError, TrajectoryError, Unsupported, UnsupportedSBMLError
from .network import ReactionNetwork
from .results import SSAResult

_ID_COLUMNS = ("trajectory", "cell")


# =================================================================================== trajectories
@dataclass(frozen=True)
class _Path:
    """A jump path compressed to distinct states: dwell time per state and jump counts."""

    states: np.ndarray  # (u, S) distinct states
    dwell: np.ndarray  # (u,) total time spent in each
    groups: np.ndarray  # (g, R) 0/1: reactions sharing an observed state change
    jump_state: np.ndarray  # (j,) index into states
    jump_group: np.ndarray  # (j,) index into groups
    jump_count: np.ndarray  # (j,) number of such jumps
    n_jumps: int
    duration: float


def _segments_from_result(network: ReactionNetwork, traj: SSAResult):
    if traj.fired is None:
        raise InvalidArgumentError(
            "the SSAResult was recorded on a time grid; fit_trajectory needs every jump: "
            "simulate(network, [0, t_end], n=1, seed=..., record='events')")
    if traj.n != 1:
        raise InvalidArgumentError(f"expected one trajectory, got {traj.n}")
    if tuple(traj.species) != tuple(network.species):
        raise InvalidArgumentError(
            f"the trajectory's species ({', '.join(traj.species)}) differ from the network's "
            f"({', '.join(network.species)})")
    if traj.reactions and tuple(traj.reactions) != tuple(network.reaction_ids):
        raise InvalidArgumentError("the trajectory's reactions differ from the network's")
    t = np.asarray(traj.times, dtype=float)
    x = np.asarray(traj.states[0], dtype=float)
    fired = np.asarray(traj.fired, dtype=np.int64)
    # segment i: state x[i] held from t[i] to t[i+1], left by reaction fired[i+1] (-1: censored)
    return [(x[:-1], np.diff(t), fired[1:])], None


def _segments_from_table(network: ReactionNetwork, table: pd.DataFrame):
    df = table
    if {"species", "count"} <= set(df.columns):
        keys = [c for c in _ID_COLUMNS if c in df.columns] + ["time"]
        df = df.pivot_table(index=keys, columns="species", values="count", aggfunc="first").reset_index()
        df.columns.name = None
    if "time" not in df.columns:
        raise InvalidArgumentError("a trajectory table needs a 'time' column and one column per species")
    missing = [s for s in network.species if s not in df.columns]
    if missing:
        raise InvalidArgumentError(
            f"the trajectory table lacks species column(s) {', '.join(missing)}: every jump must be "
            "observed in full")
    extra = [c for c in df.columns if c not in network.species and c != "time" and c not in _ID_COLUMNS]
    if extra:
        raise InvalidArgumentError(f"unknown column(s) {', '.join(map(str, extra))} in the trajectory table; "
                                   f"species are {', '.join(network.species)}")
    idcol = next((c for c in _ID_COLUMNS if c in df.columns), None)
    nu = network.stoichiometry
    out = []
    groups: dict[tuple, int] = {}
    for _, part in (df.groupby(idcol, sort=True) if idcol else [(0, df)]):
        part = part.sort_values("time", kind="stable")
        t = part["time"].to_numpy(dtype=float)
        x = part[list(network.species)].to_numpy(dtype=float)
        if len(t) < 2:
            raise InvalidArgumentError("a trajectory needs at least two rows (start and end)")
        if not np.all(np.isfinite(t)) or np.any(np.diff(t) < 0) or not np.all(np.isfinite(x)):
            raise InvalidArgumentError("trajectory times must be finite and non-decreasing, counts finite")
        dx = np.diff(x, axis=0)
        fired = np.empty(len(dx), dtype=np.int64)
        for i, d in enumerate(dx):
            if i == len(dx) - 1 and not d.any():
                fired[i] = -1  # last row: end of observation, no jump
                continue
            match = np.flatnonzero(np.all(nu == d, axis=1))
            if match.size == 0:
                change = ", ".join(f"{s}{int(v):+d}" for s, v in zip(network.species, d) if v) or "none"
                raise TrajectoryError(
                    f"no reaction of model '{network.name}' changes the state by ({change}) as the jump "
                    f"at time {t[i + 1]:g} does")
            key = tuple(match.tolist())
            groups.setdefault(key, len(groups))
            fired[i] = -2 - groups[key]  # group code, resolved below
        out.append((x[:-1], np.diff(t), fired))
    return out, groups


def _compress(network: ReactionNetwork, segments, groups, ambiguous: str) -> _Path:
    R = network.n_reactions
    if groups is None:  # fired reactions known exactly
        group_rows = np.eye(R)
        code = lambda f: f  # noqa: E731
    else:
        amb = [k for k in groups if len(k) > 1]
        if amb and ambiguous == "raise":
            ids = network.reaction_ids
            raise TrajectoryError(
                "the state change of some jumps matches several reactions ("
                + "; ".join(" / ".join(ids[r] for r in k) for k in amb)
                + "): the fired reaction is ambiguous (pass ambiguous='sum' for the exact likelihood "
                  "of the observed state path)")
        group_rows = np.zeros((len(groups), R))
        for k, g in groups.items():
            group_rows[g, list(k)] = 1.0
        code = lambda f: np.where(f <= -2, -2 - f, -1)  # noqa: E731
    X = np.concatenate([s[0] for s in segments])
    dt = np.concatenate([s[1] for s in segments])
    fired = np.concatenate([code(s[2]) for s in segments])
    states, inv = np.unique(X, axis=0, return_inverse=True)
    inv = np.asarray(inv).reshape(-1)
    dwell = np.bincount(inv, weights=dt, minlength=len(states))
    jumped = fired >= 0
    pairs = inv[jumped] * len(group_rows) + fired[jumped]
    up, cnt = np.unique(pairs, return_counts=True)
    return _Path(states, dwell, group_rows, up // len(group_rows), up % len(group_rows), cnt.astype(float),
                 int(jumped.sum()), float(dt.sum()))


class _PathLikelihood:
    """Vectorised path log-likelihood over K parameter points."""

    def __init__(self, network: ReactionNetwork, path: _Path, free: Sequence[str]):
        self.network, self.path, self.free = network, path, list(free)

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        theta = np.atleast_2d(theta)
        K = len(theta)
        pars = {p: theta[:, i : i + 1] for i, p in enumerate(self.free)}
        P = self.path
        a = self.network.propensities(P.states, parameters=pars)
        a = np.broadcast_to(a, (K,) + (len(P.states), self.network.n_reactions))
        with np.errstate(divide="ignore", invalid="ignore"):
            ag = np.einsum("kur,gr->kug", a, P.groups)[:, P.jump_state, P.jump_group]
            jump = (P.jump_count * np.log(ag)).sum(axis=1)
        exit_ = (a.sum(axis=2) * P.dwell).sum(axis=1)
        out = jump - exit_
        return np.where(np.isfinite(out), out, -np.inf)


@dataclass(frozen=True)
class TrajectoryFit:
    """Maximum path-likelihood estimates of free rate parameters (SBML ids), natural scale."""

    estimates: dict[str, float]
    standard_errors: dict[str, float]
    loglik: float
    covariance: np.ndarray = field(repr=False)
    n_jumps: int = 0
    duration: float = 0.0
    converged: bool = True
    message: str = ""

    def to_frame(self) -> pd.DataFrame:
        """One row per parameter: parameter, estimate, std_error, lower, upper (95% Wald interval
        on the log scale, which stays positive), n_jumps, duration."""
        est = np.array(list(self.estimates.values()))
        se = np.array([self.standard_errors[p] for p in self.estimates])
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.exp(1.959963984540054 * se / est)
        return pd.DataFrame({"parameter": list(self.estimates), "estimate": est, "std_error": se,
                             "lower": est / f, "upper": est * f, "n_jumps": self.n_jumps,
                             "duration": self.duration})


def _check_free(network: ReactionNetwork, free: Sequence[str]) -> list[str]:
    free = [free] if isinstance(free, str) else list(free)
    if not free:
        raise InvalidArgumentError("give at least one free parameter, e.g. free=['k1']")
    if len(set(free)) != len(free):
        raise InvalidArgumentError(f"free parameters repeat: {free}")
    for p in free:
        network.check_parameter_ids([p])
    return free


def _hessian(f, u: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian of f (vectorised over rows) at u by central differences, one call."""
    d = len(u)
    E = np.eye(d) * h
    pts = [u]
    pts += [u + E[i] for i in range(d)] + [u - E[i] for i in range(d)]
    pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
    for i, j in pairs:
        pts += [u + E[i] + E[j], u + E[i] - E[j], u - E[i] + E[j], u - E[i] - E[j]]
    v = f(np.array(pts))
    f0, fp, fm = v[0], v[1 : 1 + d], v[1 + d : 1 + 2 * d]
    g = (fp - fm) / (2 * h)
    H = np.diag((fp - 2 * f0 + fm) / h**2)
    for k, (i, j) in enumerate(pairs):
        a, b, c, e = v[1 + 2 * d + 4 * k : 5 + 2 * d + 4 * k]
        H[i, j] = H[j, i] = (a - b - c + e) / (4 * h * h)
    return g, H


def fit_trajectory(
    network: ReactionNetwork,
    trajectory: SSAResult | pd.DataFrame,
    free: Sequence[str],
    start: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    ambiguous: str = "sum",
) -> TrajectoryFit:
    """Maximum path likelihood of exactly observed jump trajectories over the ``free`` parameters.

    ``trajectory``: an :class:`SSAResult` from ``simulate(network, [0, t_end], n=1, seed=...,
    record="events")`` (fired reactions known), or a table of jump times and states (``time`` plus
    one column per species, or long ``time``/``species``/``count``; an optional ``trajectory`` or
    ``cell`` column holds several independent paths, whose log-likelihoods add). In a table the
    fired reaction is read from the state change; a change no reaction makes raises
    :class:`TrajectoryError`. When several reactions make the same change, ``ambiguous="sum"``
    (default) uses the sum of their propensities, which is the exact likelihood of the observed
    state path, and ``ambiguous="raise"`` refuses. The last row, if the state did not change, marks
    the end of observation. ``start`` (default: the network's values) and ``bounds`` are by SBML id.
    Standard errors come from the observed information in log-parameters, mapped to the natural
    scale by the delta method.
    """
    from scipy.optimize import minimize

    if not isinstance(network, ReactionNetwork):
        raise InvalidArgumentError(f"expected a ReactionNetwork, got {type(network).__name__}")
    if network.events:
        raise UnsupportedSBMLError([Unsupported(e.id, "event (path likelihood needs a pure jump process)")
                                    for e in network.events])
    if ambiguous not in ("sum", "raise"):
        raise InvalidArgumentError(f"ambiguous must be 'sum' or 'raise', got {ambiguous!r}")
    free = _check_free(network, free)
    if isinstance(trajectory, SSAResult):
        segs, groups = _segments_from_result(network, trajectory)
    elif isinstance(trajectory, pd.DataFrame):
        segs, groups = _segments_from_table(network, trajectory)
    else:
        raise InvalidArgumentError(f"trajectory must be an SSAResult or a DataFrame, got {type(trajectory).__name__}")
    path = _compress(network, segs, groups, ambiguous)
    if path.duration <= 0:
        raise InvalidArgumentError("the trajectory has zero duration")
    like = _PathLikelihood(network, path, free)
    x0 = np.array([float((start or {}).get(p, network.parameters[p])) for p in free])
    if np.any(~(x0 > 0)):
        raise InvalidArgumentError(f"start values must be > 0, got {dict(zip(free, x0))}")
    lb = np.full(len(free), -np.inf)
    ub = np.full(len(free), np.inf)
    for i, p in enumerate(free):
        if bounds and p in bounds:
            lo, hi = bounds[p]
            lb[i], ub[i] = math.log(max(lo, 1e-300)), math.log(hi)
    scale = max(1.0, float(path.n_jumps))

    def f_log(U: np.ndarray) -> np.ndarray:
        return like(np.exp(U))

    l0 = f_log(np.log(x0)[None])[0]
    if not np.isfinite(l0):
        raise InvalidArgumentError(
            "the path has zero likelihood at the start values (a fired reaction has propensity 0); "
            "give start= values at which every observed jump is possible")

    def objective(u):
        v, g = _grad(u)
        return -v / scale, -g / scale

    def _grad(u, h=1e-6):
        d = len(u)
        pts = np.vstack([u, u + np.eye(d) * h, u - np.eye(d) * h])
        v = f_log(pts)
        if not np.all(np.isfinite(v)):
            return (v[0], np.zeros(d)) if np.isfinite(v[0]) else (-1e300, np.zeros(d))
        return v[0], (v[1 : 1 + d] - v[1 + d :]) / (2 * h)

    res = minimize(objective, np.log(x0), jac=True, method="L-BFGS-B",
                   bounds=list(zip(lb, ub)), options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10})
    u = np.clip(res.x, lb, ub)
    # Newton polish on the finite-difference Hessian (the optimum is sharp; L-BFGS stops early)
    for _ in range(8):
        g, H = _hessian(f_log, u, 1e-4)
        try:
            step = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)) or np.max(np.abs(step)) > 1.0:
            break
        new = np.clip(u + step, lb, ub)
        if f_log(new[None])[0] < f_log(u[None])[0] - 1e-9 * abs(f_log(u[None])[0]):
            break
        u = new
        if np.max(np.abs(step)) < 1e-10:
            break
    g, H = _hessian(f_log, u, 1e-4)
    theta = np.exp(u)
    info = -H
    try:
        cov_u = np.linalg.inv(info)
        ok = np.all(np.linalg.eigvalsh(info) > 0)
    except np.linalg.LinAlgError:
        cov_u, ok = np.full_like(info, np.nan), False
    if not ok:
        warnings.warn(f"the observed information is not positive definite at the optimum: the free "
                      f"parameters {', '.join(free)} are not all identifiable from this path; standard "
                      f"errors are NaN", RuntimeWarning, stacklevel=2)
        cov_u = np.full_like(info, np.nan)
    cov = cov_u * np.outer(theta, theta)
    se = np.sqrt(np.diag(cov))
    at_bound = (np.isclose(u, lb) | np.isclose(u, ub)).any()
    return TrajectoryFit(
        estimates={p: float(v) for p, v in zip(free, theta)},
        standard_errors={p: float(v) for p, v in zip(free, se)},
        loglik=float(f_log(u[None])[0]), covariance=cov, n_jumps=path.n_jumps, duration=path.duration,
        converged=bool(ok and not at_bound and np.max(np.abs(g)) < 1e-6 * max(1.0, path.n_jumps)),
        message=str(res.message))


# =================================================================================== snapshot data
@dataclass(frozen=True)
class _Obs:
    """Observed cells at one time: distinct rows of the observed species and their multiplicities."""

    time: float
    rows: np.ndarray  # (m, n_observed) int
    counts: np.ndarray  # (m,)


def _observations(species: Sequence[str], data: Any) -> tuple[list[str], list[_Obs], int]:
    """Observed species (network order) and per-time distinct rows from a tidy table."""
    if isinstance(data, SSAResult):
        data = data.wide_frame()
    if not isinstance(data, pd.DataFrame):
        raise InvalidArgumentError(f"data must be a DataFrame (time + species columns), got {type(data).__name__}")
    df = data
    if "time" not in df.columns:
        raise InvalidArgumentError("data needs a 'time' column")
    if {"species", "count"} <= set(df.columns):
        unknown = sorted(set(df["species"].astype(str)) - set(species))
        if unknown:
            raise InvalidArgumentError(f"data names unknown species {', '.join(unknown)}; species are "
                                       f"{', '.join(species)}")
        idcol = next((c for c in _ID_COLUMNS if c in df.columns), None)
        if idcol is None:
            if df["species"].nunique() > 1:
                raise InvalidArgumentError(
                    "long data with several species needs a 'cell' (or 'trajectory') column to pair the "
                    "counts of one cell")
            df = pd.DataFrame({"time": df["time"].to_numpy(), str(df["species"].iloc[0]): df["count"].to_numpy()})
        else:
            df = df.pivot_table(index=[idcol, "time"], columns="species", values="count",
                                aggfunc="first").reset_index()
            df.columns.name = None
    extra = [c for c in df.columns if c not in species and c != "time" and c not in _ID_COLUMNS]
    if extra:
        raise InvalidArgumentError(f"unknown column(s) {', '.join(map(str, extra))} in data; species are "
                                   f"{', '.join(species)}")
    observed = [s for s in species if s in df.columns]
    if not observed:
        raise InvalidArgumentError(f"data has no species column; species are {', '.join(species)}")
    vals = df[observed].to_numpy(dtype=float)
    t = df["time"].to_numpy(dtype=float)
    if not np.all(np.isfinite(vals)) or np.any(vals < 0) or np.any(vals != np.round(vals)):
        bad = next(s for j, s in enumerate(observed)
                   if not np.all(np.isfinite(vals[:, j]) & (vals[:, j] >= 0) & (vals[:, j] == np.round(vals[:, j]))))
        raise InvalidArgumentError(f"counts of species '{bad}' must be whole numbers >= 0 (no missing values)")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise InvalidArgumentError("data times must be finite and >= 0")
    out = []
    for tv in np.unique(t):
        rows, cnt = np.unique(vals[t == tv].astype(np.int64), axis=0, return_counts=True)
        out.append(_Obs(float(tv), rows, cnt.astype(float)))
    return observed, out, len(df)


class _FSPLikelihood:
    """Exact marginal log-likelihood of snapshot data from the CME, over K parameter points."""

    method = "fsp"

    def __init__(self, network: ReactionNetwork, free: list[str], obs: list[_Obs], observed: list[str],
                 cover: list[dict], tol: float = 1e-6):
        from .fsp import FSPSolver

        self.network, self.free, self.obs = network, free, obs
        self.cols = [network.species_index(s) for s in observed]
        self.times = np.array([o.time for o in obs])
        t_max = float(self.times.max())
        if t_max <= 0:
            raise InvalidArgumentError("data at time 0 only carry no information about rates")
        self.solver = FSPSolver(network, t_max, cover=cover, tol=tol)
        self._maps_for = -1

    def _maps(self):
        import scipy.sparse as sp

        if self._maps_for != self.solver.n_states:
            st = np.rint(self.solver.states[:, self.cols]).astype(np.int64)
            maps = []
            for o in self.obs:
                lookup = {tuple(r): i for i, r in enumerate(o.rows.tolist())}
                r_idx, s_idx = [], []
                for j, row in enumerate(map(tuple, st.tolist())):
                    i = lookup.get(row)
                    if i is not None:
                        r_idx.append(i), s_idx.append(j)
                maps.append(sp.csr_matrix((np.ones(len(r_idx)), (r_idx, s_idx)),
                                          shape=(len(o.rows), len(st))))
            self.maps = maps
            self._maps_for = self.solver.n_states
        return self.maps

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        theta = np.atleast_2d(theta)
        pars = {p: theta[:, i] for i, p in enumerate(self.free)}
        grid = np.unique(self.times)
        times = grid if grid[0] > 0 else grid[1:]
        probs, _ = self.solver.solve_batch(pars, times, as_arrays=True)
        maps = self._maps()
        out = np.zeros(len(theta))
        for o, M in zip(self.obs, maps):
            if o.time == 0:
                st = self.solver.states[0, self.cols]
                ok = np.all(o.rows == np.rint(st), axis=1)
                out += np.where(ok.all(), 0.0, -np.inf)
                continue
            j = int(np.searchsorted(times, o.time))
            lik = (M @ probs[:, j, :].T).T  # (K, m)
            with np.errstate(divide="ignore"):
                out += (o.counts * np.log(np.maximum(lik, 1e-300))).sum(axis=1)
        return out


class _METLikelihood:
    """Marginal log-likelihood of snapshot data under a trained MET, over K parameter points.

    The MET is autoregressive in species order, so species after the last observed one drop out
    exactly; unobserved species before it are summed over their count vocabulary. Every (cell row,
    hidden values) sequence shares the prefix conditionals, computed once per distinct prefix."""

    method = "met"

    def __init__(self, met, free: list[str], obs: list[_Obs], observed: list[str], max_hidden: int = 100_000):
        import torch

        self.torch = torch
        self.met, self.free, self.obs = met, free, obs
        sp_ = met.space
        for p in free:
            if p not in sp_.free:
                raise InvalidArgumentError(
                    f"this MET cannot vary parameter '{p}'; its free parameters are {', '.join(sp_.free)}")
        self.pidx = [sp_.free.index(p) for p in free]
        self.theta0, self.x0 = sp_.resolve(met.network, {}, None)
        vocab = met.config.vocab
        cols = [met.network.species_index(s) for s in observed]
        L = max(cols) + 1
        hidden = [s for s in range(L) if s not in cols]
        n_comb = int(np.prod([vocab[h] for h in hidden])) if hidden else 1
        if n_comb > max_hidden:
            raise InvalidArgumentError(
                f"marginalising unobserved species {', '.join(met.species[h] for h in hidden)} needs "
                f"{n_comb} terms per cell (more than {max_hidden}); observe them or reorder species")
        combos = np.array(list(itertools.product(*[range(vocab[h]) for h in hidden])), dtype=np.int64).reshape(n_comb, len(hidden))
        self.L, self.C = L, n_comb
        self.prep = []
        for o in obs:
            over = o.rows >= np.asarray([vocab[c] for c in cols])[None, :]
            if over.any():
                i, j = np.argwhere(over)[0]
                raise InvalidArgumentError(
                    f"data count {observed[j]}={int(o.rows[i, j])} at time {o.time:g} lies outside the MET "
                    f"count vocabulary 0..{vocab[cols[j]] - 1}: this MET cannot give it a probability")
            m = len(o.rows)
            seq = np.zeros((m * n_comb, L), dtype=np.int64)
            seq[:, cols] = np.repeat(o.rows, n_comb, axis=0)
            if hidden:
                seq[:, hidden] = np.tile(combos, (m, 1))
            pre, inv = np.unique(seq[:, : L - 1], axis=0, return_inverse=True)
            self.prep.append((torch.as_tensor(pre), np.asarray(inv).reshape(-1), seq))
        self.check = lambda th: sp_.check(th, self.x0, np.array([o.time for o in obs]), stacklevel=5)

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        torch = self.torch
        theta = np.atleast_2d(theta)
        K = len(theta)
        th = np.repeat(self.theta0[None], K, 0)
        th[:, self.pidx] = theta
        sp_ = self.met.space
        out = np.zeros(K)
        with torch.inference_mode():
            for o, (pre, inv, seq) in zip(self.obs, self.prep):
                f = torch.as_tensor(sp_.features(th, np.repeat(self.x0[None], K, 0), np.full(K, o.time)))
                U = pre.shape[0]
                feats = f.repeat_interleave(U, dim=0)
                counts = pre.repeat(K, 1)
                lps = self.met.net.logits(feats, counts)  # L tensors (K*U, V_s)
                tot = np.zeros((K, len(seq)))
                for s in range(self.L):
                    lp = lps[s].reshape(K, U, -1).double().numpy()
                    tot += lp[:, inv, seq[:, s]]
                tot = tot.reshape(K, len(o.rows), self.C)
                mx = tot.max(axis=2, keepdims=True)
                with np.errstate(invalid="ignore"):
                    lm = (mx + np.log(np.exp(tot - mx).sum(axis=2, keepdims=True)))[:, :, 0]
                out += (o.counts * lm).sum(axis=1)
        return np.where(np.isfinite(out), out, -np.inf)


# =================================================================================== posterior
@dataclass(frozen=True, eq=False)
class InferenceResult:
    """Posterior draws of free parameters (one column per SBML id) and how they were obtained."""

    samples: pd.DataFrame
    prior: dict[str, tuple[float, float, str]]
    method: str
    truth: dict[str, float] | None = None
    log_posterior: np.ndarray | None = field(default=None, repr=False)
    acceptance: float = float("nan")
    seconds: float = float("nan")
    n_cells: int = 0
    seed: int | None = None

    def summary(self, level: float = 0.9) -> pd.DataFrame:
        """Per parameter: median and the central ``level`` interval (lower, upper); with the true
        values known, also ``truth`` and ``covered``."""
        q = (1 - level) / 2
        rows = []
        for p in self.samples.columns:
            x = self.samples[p].to_numpy()
            row = {"parameter": p, "median": float(np.median(x)), "lower": float(np.quantile(x, q)),
                   "upper": float(np.quantile(x, 1 - q)), "method": self.method}
            if self.truth and p in self.truth:
                row["truth"] = float(self.truth[p])
                row["covered"] = bool(row["lower"] <= row["truth"] <= row["upper"])
            rows.append(row)
        return pd.DataFrame(rows)

    def plot(self, truth: Mapping[str, float] | None = None, bins: int = 40):
        """Corner-style figure: 1-D marginal histograms on the diagonal, pairwise scatter below,
        true values (``truth`` or the stored ones) as lines. Log axes for log-uniform priors whose draws
        span more than a decade. Returns a :class:`sbml_met.plot.Figure` (an image in Jupyter)."""
        from .plot import Figure

        truth = dict(truth if truth is not None else (self.truth or {}))
        names = list(self.samples.columns)
        d = len(names)
        fig = Figure(figsize=(2.4 * d + 0.6, 2.4 * d + 0.4))
        axes = fig.subplots(d, d, squeeze=False)
        def spans_decades(x):
            return x.min() > 0 and x.max() / x.min() > 10

        # log axes where the prior is log-uniform and the draws span more than a decade
        logs = {p: self.prior.get(p, (0, 0, "uniform"))[2] == "log" and spans_decades(self.samples[p].to_numpy())
                for p in names}
        for i, pi in enumerate(names):
            for j, pj in enumerate(names):
                ax = axes[i, j]
                if j > i:
                    ax.set_axis_off()
                    continue
                xj = self.samples[pj].to_numpy()
                if i == j:
                    a, b = xj.min(), xj.max()
                    if b <= a:  # all draws equal: give the histogram a width
                        a, b = a - 0.5 * max(abs(a), 1e-12), b + 0.5 * max(abs(b), 1e-12)
                    edges = np.geomspace(a, b, bins + 1) if logs[pj] else np.linspace(a, b, bins + 1)
                    ax.hist(xj, bins=edges, color="C0", alpha=0.8)
                    ax.set_yticks([])
                    if pj in truth:
                        ax.axvline(truth[pj], color="C3")
                else:
                    ax.scatter(xj, self.samples[pi].to_numpy(), s=1, alpha=0.2, color="C0", rasterized=True)
                    if pj in truth:
                        ax.axvline(truth[pj], color="C3", lw=0.8)
                    if pi in truth:
                        ax.axhline(truth[pi], color="C3", lw=0.8)
                    if logs[pi]:
                        ax.set_yscale("log")
                if logs[pj]:
                    ax.set_xscale("log")
                if i == d - 1:
                    ax.set_xlabel(pj)
                if j == 0 and i > 0:
                    ax.set_ylabel(pi)
        fig.suptitle(f"posterior ({self.method} likelihood, {self.n_cells} cells)")
        fig.tight_layout()
        return fig


def _parse_prior(prior: Mapping[str, Any] | None, met) -> dict[str, tuple[float, float, str]]:
    if prior is None:
        if met is None:
            raise InvalidArgumentError("give a prior: {parameter id: (low, high)}")
        prior = dict(met.box)
    if not isinstance(prior, Mapping) or not prior:
        raise InvalidArgumentError("prior must be a non-empty dict {parameter id: (low, high)}")
    out = {}
    for p, spec in prior.items():
        if isinstance(spec, (tuple, list)) and len(spec) in (2, 3):
            lo, hi = float(spec[0]), float(spec[1])
            scale = str(spec[2]) if len(spec) == 3 else "log"
        elif spec is None and met is not None and p in met.box:
            (lo, hi), scale = met.box[p], "log"
        else:
            raise InvalidArgumentError(f"prior for '{p}' must be (low, high) or (low, high, 'log'|'uniform')")
        if scale not in ("log", "uniform"):
            raise InvalidArgumentError(f"prior scale for '{p}' must be 'log' or 'uniform', got {scale!r}")
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi) or (scale == "log" and lo <= 0):
            raise InvalidArgumentError(
                f"prior for '{p}' must have 0 {'<' if scale == 'log' else '<='} low < high, got ({lo}, {hi})")
        out[str(p)] = (lo, hi, scale)
    return out


def posterior(
    model: Any,
    data: Any,
    prior: Mapping[str, Any] | None = None,
    *,
    n_walkers: int | None = None,
    n_steps: int = 1000,
    burn: int | None = None,
    samples: int | None = None,
    seed: int | None = 0,
    truth: Mapping[str, float] | None = None,
    progress: bool | None = None,
    fsp_tol: float = 1e-6,
    search: int = 100,
) -> InferenceResult:
    """Posterior of the prior's parameters given snapshot counts of cells.

    ``model``: a :class:`ReactionNetwork` (exact likelihood by FSP, shared state space across
    parameter points) or a trained MET (``sbml_met.met.MET``; fast). ``data``: a tidy table with
    ``time`` and one column per observed species (one row per cell), or long ``time``/``species``/
    ``count`` (with a ``cell`` column when several species are observed); species not in the data
    are marginalised. ``prior``: {SBML id: (low, high)} log-uniform, or (low, high, "uniform");
    for a MET, default its training box. Parameters not in the prior keep the model's values.

    Sampler: emcee's affine-invariant ensemble (``n_walkers``, default max(16, 4 d)), started in a
    small ball around the posterior mode, found by differential evolution over the prior box (at
    most ``search`` generations of 15 d points) and refined by Nelder-Mead; ``n_steps`` steps of which
    the first ``burn`` (default half) are discarded; ``samples`` thins the draws to that many.
    Same ``seed``, same draws. Progress bar (tqdm) when ``progress`` (default: stderr is a terminal).
    """
    t0 = _time.perf_counter()
    from .met import MET

    if isinstance(model, MET):
        met, network = model, model.network
    elif isinstance(model, ReactionNetwork):
        met, network = None, model
    else:
        raise InvalidArgumentError(f"model must be a ReactionNetwork or a MET, got {type(model).__name__}")
    pri = _parse_prior(prior, met)
    free = list(pri)
    for p in free:
        network.check_parameter_ids([p])
    observed, obs, n_cells = _observations(network.species, data)
    if int(search) < 1:
        raise InvalidArgumentError(f"search must be >= 1 generation, got {search}")
    d = len(free)
    nw = int(n_walkers) if n_walkers else max(16, 4 * d)
    if nw < 2 * d or nw % 2:
        raise InvalidArgumentError(f"n_walkers must be even and >= 2 x {d} free parameters, got {nw}")
    if int(n_steps) < 2:
        raise InvalidArgumentError(f"n_steps must be >= 2, got {n_steps}")
    if burn is not None and not 0 <= int(burn) < int(n_steps):
        raise InvalidArgumentError(f"burn must lie in [0, n_steps), got {burn}")
    if samples is not None and int(samples) < 1:
        raise InvalidArgumentError(f"samples must be >= 1, got {samples}")
    if met is not None:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny batches: one thread is fastest, and fair against FSP
        try:
            return _posterior(met, network, data, pri, free, observed, obs, n_cells, t0, n_walkers, n_steps,
                              burn, samples, seed, truth, progress, fsp_tol, search)
        finally:
            torch.set_num_threads(threads)
    return _posterior(met, network, data, pri, free, observed, obs, n_cells, t0, n_walkers, n_steps, burn,
                      samples, seed, truth, progress, fsp_tol, search)


def _posterior(met, network, data, pri, free, observed, obs, n_cells, t0, n_walkers, n_steps, burn, samples,
               seed, truth, progress, fsp_tol, search) -> InferenceResult:
    import emcee
    from scipy.optimize import differential_evolution, minimize

    d = len(free)
    lo = np.array([pri[p][0] for p in free])
    hi = np.array([pri[p][1] for p in free])
    islog = np.array([pri[p][2] == "log" for p in free])
    zlo = np.where(islog, np.log(np.where(islog, lo, 1.0)), lo)
    zhi = np.where(islog, np.log(hi), hi)

    def to_theta(Z):
        return np.where(islog, np.exp(Z), Z)

    if met is not None:
        like = _METLikelihood(met, free, obs, observed)
        corners = np.repeat(like.theta0[None], 2, 0)
        corners[0, like.pidx], corners[1, like.pidx] = lo, hi
        for c in corners:
            like.check(c)
    else:
        cover = [dict(zip(free, hi)), {}]
        like = _FSPLikelihood(network, free, obs, observed, cover, tol=fsp_tol)

    def log_post(Z: np.ndarray) -> np.ndarray:
        Z = np.atleast_2d(Z)
        inside = np.all((Z >= zlo) & (Z <= zhi), axis=1)
        out = np.full(len(Z), -np.inf)
        if inside.any():
            # log-uniform: flat in z = log(theta); uniform: flat in theta (= z)
            out[inside] = like(to_theta(Z[inside]))
        return out

    rng = np.random.default_rng(seed)
    # start: the posterior mode, found globally by differential evolution over the prior box (the
    # likelihood can have poor local modes near the box's corners) and refined by Nelder-Mead;
    # walkers start in a small ball there
    width = zhi - zlo

    def neg(Z):  # DE's vectorised layout: Z (d, S) -> (S,)
        v = -log_post(np.asarray(Z).T)
        return np.where(np.isfinite(v), v, 1e300)

    de = differential_evolution(neg, list(zip(zlo, zhi)), vectorized=True, updating="deferred",
                                popsize=15, maxiter=int(search), tol=1e-3, init="sobol", polish=False,
                                seed=int(rng.integers(2**31)))
    if not de.fun < 1e300:
        raise InvalidArgumentError("the likelihood is zero everywhere the search looked in the prior box; "
                                   "check the data, times and prior")
    opt = minimize(lambda z: float(neg(z[:, None])[0]), de.x, method="Nelder-Mead",
                   options={"maxfev": 100 * d, "xatol": 1e-4, "fatol": 1e-3,
                            "initial_simplex": np.vstack([de.x, de.x + np.diag(0.01 * width)])})
    centre = opt.x if opt.fun < de.fun else de.x
    nw = int(n_walkers) if n_walkers else max(16, 4 * d)
    burn = n_steps // 2 if burn is None else int(burn)
    p0 = centre + 1e-3 * width * rng.standard_normal((nw, d))
    p0 = np.clip(p0, zlo + 1e-9 * width, zhi - 1e-9 * width)
    sampler = emcee.EnsembleSampler(nw, d, log_post, vectorize=True)
    sampler.random_state = np.random.RandomState(int(rng.integers(2**31))).get_state()
    if progress is None:
        progress = sys.stderr.isatty()
    sampler.run_mcmc(p0, n_steps, progress=bool(progress))
    chain = sampler.get_chain(discard=burn, flat=True)
    lp = sampler.get_log_prob(discard=burn, flat=True)
    if samples is not None:
        keep = np.linspace(0, len(chain) - 1, min(int(samples), len(chain))).round().astype(int)
        chain, lp = chain[keep], lp[keep]
    theta = to_theta(chain)
    return InferenceResult(
        samples=pd.DataFrame(theta, columns=free), prior=pri, method=like.method,
        truth=dict(truth) if truth else None, log_posterior=lp,
        acceptance=float(np.mean(sampler.acceptance_fraction)), seconds=_time.perf_counter() - t0,
        n_cells=n_cells, seed=seed)


__all__ = ["TrajectoryFit", "TrajectoryError", "InferenceResult", "fit_trajectory", "posterior"]
