"""Maximum path likelihood of exactly observed jump trajectories (:func:`fit_trajectory`).

For a continuous-time Markov chain observed at every jump, the path log-likelihood is
``sum_jumps log a_r(x) - integral a_0(x(t)) dt``; the path is compressed to its distinct states
(dwell time per state, jump counts per state and reaction), so one evaluation costs one vectorised
propensity call however long the trajectory. Optimised over log-parameters (L-BFGS-B, then Newton
polish), standard errors from the observed information (finite-difference Hessian).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import InvalidArgumentError, TrajectoryError
from ..network import ReactionNetwork
from ..results import SSAResult
from ..support import check_support
from .tables import ID_COLUMNS, long_to_wide


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
        df = long_to_wide(df, [c for c in ID_COLUMNS if c in df.columns] + ["time"])
    if "time" not in df.columns:
        raise InvalidArgumentError("a trajectory table needs a 'time' column and one column per species")
    missing = [s for s in network.species if s not in df.columns]
    if missing:
        raise InvalidArgumentError(
            f"the trajectory table lacks species column(s) {', '.join(missing)}: every jump must be "
            "observed in full")
    extra = [c for c in df.columns if c not in network.species and c != "time" and c not in ID_COLUMNS]
    if extra:
        raise InvalidArgumentError(f"unknown column(s) {', '.join(map(str, extra))} in the trajectory table; "
                                   f"species are {', '.join(network.species)}")
    idcol = next((c for c in ID_COLUMNS if c in df.columns), None)
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
    check_support(network, "infer")
    if ambiguous not in ("sum", "raise"):
        raise InvalidArgumentError(f"ambiguous must be 'sum' or 'raise', got {ambiguous!r}")
    free = _check_free(network, free)
    path = _read_path(network, trajectory, ambiguous)
    like = _PathLikelihood(network, path, free)
    u0, lb, ub = _log_start_and_bounds(network, free, start, bounds)

    def f_log(U: np.ndarray) -> np.ndarray:
        return like(np.exp(U))

    if not np.isfinite(f_log(u0[None])[0]):
        raise InvalidArgumentError(
            "the path has zero likelihood at the start values (a fired reaction has propensity 0); "
            "give start= values at which every observed jump is possible")
    res = _lbfgs(f_log, u0, lb, ub, scale=max(1.0, float(path.n_jumps)))
    u = _newton_polish(f_log, np.clip(res.x, lb, ub), lb, ub)
    return _fit_at(f_log, u, lb, ub, free, path, str(res.message))


def _read_path(network: ReactionNetwork, trajectory, ambiguous: str) -> _Path:
    """The compressed path of an SSAResult (every jump recorded) or a trajectory table."""
    if isinstance(trajectory, SSAResult):
        segs, groups = _segments_from_result(network, trajectory)
    elif isinstance(trajectory, pd.DataFrame):
        segs, groups = _segments_from_table(network, trajectory)
    else:
        raise InvalidArgumentError(f"trajectory must be an SSAResult or a DataFrame, got {type(trajectory).__name__}")
    path = _compress(network, segs, groups, ambiguous)
    if path.duration <= 0:
        raise InvalidArgumentError("the trajectory has zero duration")
    return path


def _log_start_and_bounds(network: ReactionNetwork, free: list[str], start, bounds):
    """Start point and box (log-parameters) of the search: (u0, lower, upper)."""
    x0 = np.array([float((start or {}).get(p, network.parameters[p])) for p in free])
    if np.any(~(x0 > 0)):
        raise InvalidArgumentError(f"start values must be > 0, got {dict(zip(free, x0))}")
    lb = np.full(len(free), -np.inf)
    ub = np.full(len(free), np.inf)
    for i, p in enumerate(free):
        if bounds and p in bounds:
            lo, hi = bounds[p]
            lb[i], ub[i] = math.log(max(lo, 1e-300)), math.log(hi)
    return np.log(x0), lb, ub


def _lbfgs(f_log, u0: np.ndarray, lb: np.ndarray, ub: np.ndarray, scale: float):
    """L-BFGS-B on the log-likelihood per jump, with central-difference gradients."""
    from scipy.optimize import minimize

    def objective(u, h=1e-6):
        d = len(u)
        v = f_log(np.vstack([u, u + np.eye(d) * h, u - np.eye(d) * h]))
        if not np.all(np.isfinite(v)):
            return (-v[0] if np.isfinite(v[0]) else 1e300) / scale, np.zeros(d)
        g = (v[1 : 1 + d] - v[1 + d :]) / (2 * h)
        return -v[0] / scale, -g / scale

    return minimize(objective, u0, jac=True, method="L-BFGS-B", bounds=list(zip(lb, ub)),
                    options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10})


def _newton_polish(f_log, u: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """Newton steps on the finite-difference Hessian (the optimum is sharp; L-BFGS stops early)."""
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
    return u


def _fit_at(f_log, u: np.ndarray, lb, ub, free: list[str], path: _Path, message: str) -> TrajectoryFit:
    """The fit at the optimum ``u``: standard errors from the observed information, mapped to the
    natural scale by the delta method (NaN, with a warning, where it is not positive definite)."""
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
                      f"errors are NaN", RuntimeWarning, stacklevel=3)
        cov_u = np.full_like(info, np.nan)
    cov = cov_u * np.outer(theta, theta)
    se = np.sqrt(np.diag(cov))
    at_bound = (np.isclose(u, lb) | np.isclose(u, ub)).any()
    return TrajectoryFit(
        estimates={p: float(v) for p, v in zip(free, theta)},
        standard_errors={p: float(v) for p, v in zip(free, se)},
        loglik=float(f_log(u[None])[0]), covariance=cov, n_jumps=path.n_jumps, duration=path.duration,
        converged=bool(ok and not at_bound and np.max(np.abs(g)) < 1e-6 * max(1.0, path.n_jumps)),
        message=message)
