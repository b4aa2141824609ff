"""Private exact engines for MET teachers, batched over parameter points.

* :class:`StateSpace`: a truncated CME state space enumerated once by breadth-first search from
  the initial state(s) with the network's stoichiometry and propensities, reused for every prompt;
  :meth:`StateSpace.solve` integrates the CME generator for one parameter point at several times
  (probability leaving the truncation goes to a sink and is reported). Used when
  :func:`sbml_met.solve_fsp` is not available and for validation references.
* :func:`ssa_batch`: Gillespie's direct method in lock-step for many trajectories that each have
  their own parameter values, initial state and recording times (exact; no events).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import expm_multiply

from ..errors import InvalidArgumentError, PropensityError, StateSpaceTooLargeError


class StateSpace:
    """Enumerated truncated state space (counts per species capped at ``caps``)."""

    def __init__(self, network, caps: np.ndarray, starts: np.ndarray, probe: list[Mapping[str, float]],
                 max_states: int = 200_000):
        self.network = network
        self.caps = np.asarray(caps, dtype=np.int64)
        self.radix = self.caps + 1
        if float(np.sum(np.log2(self.radix.astype(float)))) >= 62:  # state codes must fit an int64
            raise StateSpaceTooLargeError(
                f"the capped state space of '{network.name}' has about 2^{np.sum(np.log2(self.radix)):.0f} states "
                f"(caps {dict(zip(network.species, self.caps.tolist()))}); use teacher='ssa'")
        self.nu = np.asarray(network.stoichiometry, dtype=np.int64)
        starts = np.atleast_2d(np.asarray(starts, dtype=np.int64))
        if np.any(starts > self.caps):
            raise InvalidArgumentError("initial counts exceed the state-space caps")
        seen = np.unique(self._code(starts))
        frontier = seen
        while frontier.size:
            x = self._decode(frontier)
            live = np.zeros((len(x), len(self.nu)), dtype=bool)
            for params in probe:
                a = np.atleast_2d(network.propensities(x, 0.0, params))
                live |= a > 0
            new = []
            for r in range(len(self.nu)):
                y = x[live[:, r]] + self.nu[r]
                y = y[np.all((y >= 0) & (y <= self.caps), axis=1)]
                if len(y):
                    new.append(self._code(y))
            if not new:
                break
            cand = np.unique(np.concatenate(new))
            frontier = np.setdiff1d(cand, seen, assume_unique=True)
            seen = np.union1d(seen, frontier)
            if seen.size > max_states:
                raise StateSpaceTooLargeError(
                    f"the truncated state space of '{network.name}' exceeds {max_states} states "
                    f"(caps {dict(zip(network.species, self.caps.tolist()))}); use teacher='ssa'")
        self.codes = seen
        self.states = self._decode(seen)
        self.n = len(seen)
        # transitions: for each reaction, source index -> destination index (-1: leaves the space)
        self.dest = np.full((len(self.nu), self.n), -1, dtype=np.int64)
        for r in range(len(self.nu)):
            y = self.states + self.nu[r]
            ok = np.all((y >= 0) & (y <= self.caps), axis=1)
            pos = np.searchsorted(self.codes, self._code(np.where(ok[:, None], y, 0)))
            pos = np.minimum(pos, self.n - 1)
            hit = ok & (self.codes[pos] == self._code(np.where(ok[:, None], y, 0)))
            self.dest[r] = np.where(hit, pos, -1)

    def _code(self, x: np.ndarray) -> np.ndarray:
        return np.ravel_multi_index(tuple(np.asarray(x, dtype=np.int64).T), tuple(self.radix))

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        return np.stack(np.unravel_index(codes, tuple(self.radix)), axis=1).astype(np.int64)

    def index(self, x: np.ndarray) -> np.ndarray:
        """Positions of states ``x`` (m, S) in the space (-1 where absent)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.int64))
        ok = np.all((x >= 0) & (x <= self.caps), axis=1)
        c = self._code(np.where(ok[:, None], x, 0))
        pos = np.minimum(np.searchsorted(self.codes, c), self.n - 1)
        return np.where(ok & (self.codes[pos] == c), pos, -1)

    def generator(self, params: Mapping[str, float]) -> sp.csc_matrix:
        """CME generator A (dp/dt = A p) on the space; outflow past the caps is lost (to a sink)."""
        a = np.atleast_2d(self.network.propensities(self.states, 0.0, params))  # (n, R)
        if not np.all(np.isfinite(a)) or (a < 0).any():
            r = int(np.argwhere(~(np.isfinite(a) & (a >= 0)))[0, 1])
            raise PropensityError(self.network.reaction_ids[r], float("nan"), {}, 0.0)
        src = np.tile(np.arange(self.n), len(self.nu))
        dst = self.dest.reshape(-1)
        val = a.T.reshape(-1)
        keep = (dst >= 0) & (val > 0)
        rows = np.concatenate([dst[keep], np.arange(self.n)])
        cols = np.concatenate([src[keep], np.arange(self.n)])
        vals = np.concatenate([val[keep], -a.sum(axis=1)])
        return sp.csc_matrix((vals, (rows, cols)), shape=(self.n, self.n))

    def solve(self, params: Mapping[str, float], p0: np.ndarray, times: np.ndarray) -> np.ndarray:
        """p(t) for each time (K, n); times sorted, >= 0."""
        A = self.generator(params)
        times = np.asarray(times, dtype=float)
        out = np.empty((len(times), self.n))
        K = len(times)
        if K > 1 and np.allclose(np.diff(times), times[1] - times[0], rtol=1e-9, atol=1e-12) and times[1] > times[0]:
            out[:] = expm_multiply(A, p0, start=times[0], stop=times[-1], num=K, endpoint=True)
        else:
            p, t0 = p0, 0.0
            for k, t in enumerate(times):
                if t > t0:
                    p = expm_multiply(A * (t - t0), p)
                out[k], t0 = p, t
        return np.clip(out, 0.0, None)


def ssa_batch(network, params: Mapping[str, np.ndarray], x0: np.ndarray, rec: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    """Exact SSA for m trajectories with per-trajectory parameters ``params`` (id -> (m,)),
    initial states ``x0`` (m, S) and sorted recording times ``rec`` (m, K): states (m, K, S)."""
    if network.has_events:
        raise InvalidArgumentError("the batched SSA teacher does not support events")
    m, K = rec.shape
    S = network.n_species
    nu = network.stoichiometry.T.astype(float)  # (S, R)
    base = network.parameter_environment()
    out = np.empty((m, K, S))
    X = np.array(np.asarray(x0, dtype=float).T, order="C")  # (S, m)
    has_rules = any(r.species_index is not None for r in network.rules)
    P = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    t = np.zeros(m)
    nr = np.zeros(m, dtype=np.int64)
    gi = np.arange(m)
    while gi.size:
        env = dict(base)
        env.update(P)
        if has_rules:
            network.apply_rules(X, t, env)
        a = network.propensity_rows(X, t, env)
        a = np.broadcast_to(a, (a.shape[0], gi.size))
        c = np.cumsum(a, axis=0)
        a0 = c[-1]
        if (a < 0).any() or not np.all(np.isfinite(a0)):
            j = int(np.argwhere(~((a >= 0).all(axis=0) & np.isfinite(a0)))[0, 0])
            r = int(np.argmin(a[:, j]))
            raise PropensityError(network.reaction_ids[r], float(a[r, j]),
                                  dict(zip(network.species, X[:, j])), float(t[j]))
        with np.errstate(divide="ignore"):
            tau = rng.exponential(1.0, gi.size) / a0
        tn = t + tau
        # record every grid time passed before this jump
        while True:
            nxt = rec[gi, np.minimum(nr, K - 1)]
            hit = (nr < K) & (nxt < tn)
            if not hit.any():
                break
            out[gi[hit], nr[hit]] = X[:, hit].T
            nr[hit] += 1
        alive = nr < K
        if not alive.all():
            gi, X, t, tn, nr, c, a0 = gi[alive], X[:, alive], t[alive], tn[alive], nr[alive], c[:, alive], a0[alive]
            P = {k: v[alive] for k, v in P.items()}
            if not gi.size:
                break
        u = rng.random(gi.size) * a0
        r = (c < u).sum(axis=0)
        r = np.minimum(r, nu.shape[1] - 1)
        X = X + nu[:, r]
        t = tn
    return out


def batched_solve(space: StateSpace, params: Mapping[str, np.ndarray], p0: np.ndarray, t0: np.ndarray,
                  dt_out: float, K: int, courant: float = 1.4) -> np.ndarray:
    """p(t) for B parameter points at times t0_b + k*dt_out, k < K: array (B, K, n).

    Classical RK4 on the truncated CME, all points side by side (torch, float64); the step of each
    point is at most ``courant`` / (its largest exit rate), which keeps RK4 stable and damps the
    fast, unpopulated modes. ``params``: id -> (B,) values; ``p0``: (n,) or (B, n)."""
    import torch

    B = len(t0)
    S = space.states
    a = np.asarray(space.network.propensities(S, 0.0, {k: np.asarray(v, float)[:, None] for k, v in params.items()}))
    a = np.broadcast_to(a, (B, space.n, len(space.nu))) if a.ndim == 3 else np.broadcast_to(a, (B,) + a.shape)
    bad = ~(np.isfinite(a) & (a >= 0))
    if bad.any():
        b, j, r = (int(v) for v in np.argwhere(bad)[0])
        raise PropensityError(space.network.reaction_ids[r], float(a[b, j, r]),
                              dict(zip(space.network.species, S[j].tolist())), 0.0)
    rho = a.sum(axis=2).max(axis=1)  # (B,)
    R = len(space.nu)
    exit_rate = torch.as_tensor(np.ascontiguousarray(a.sum(axis=2)))  # (B, n)
    full_grid = space.n == int(np.prod(space.radix))
    terms = []  # (rate (B, m), source index or slice, destination index or slice)
    strides = np.array([int(np.prod(space.radix[i + 1:])) for i in range(len(space.radix))])
    for r in range(R):
        ok = space.dest[r] >= 0
        ar = np.where(ok[None, :], a[:, :, r], 0.0)
        if not ar.any():
            continue
        if full_grid:
            off = int(space.nu[r] @ strides)
            src = slice(0, space.n - off) if off >= 0 else slice(-off, space.n)
            dst = slice(off, space.n) if off >= 0 else slice(0, space.n + off)
            terms.append((torch.as_tensor(np.ascontiguousarray(ar[:, src])), src, dst))
        else:
            idx = np.flatnonzero(ok)
            terms.append((torch.as_tensor(np.ascontiguousarray(ar[:, idx])), torch.as_tensor(idx),
                          torch.as_tensor(space.dest[r][idx])))

    def f(P):
        out = -exit_rate * P
        for ar, src, dst in terms:
            if isinstance(src, slice):
                out[:, dst] += ar * P[:, src]
            else:
                out.index_add_(1, dst, ar * P[:, src])
        return out

    def integrate(P, T, n):
        h = torch.as_tensor(T / n)[:, None]
        for _ in range(int(n)):
            k1 = f(P)
            k2 = f(P + 0.5 * h * k1)
            k3 = f(P + 0.5 * h * k2)
            k4 = f(P + h * k3)
            P = P + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return P

    P = torch.as_tensor(np.broadcast_to(np.asarray(p0, float), (B, space.n)).copy())
    out = np.empty((B, K, space.n))
    t0 = np.asarray(t0, dtype=float)
    n0 = int(np.ceil(np.max(t0 * rho) / courant)) if np.max(t0) > 0 else 0
    if n0:
        P = integrate(P, t0, n0)
    out[:, 0] = P.numpy()
    n1 = int(np.ceil(dt_out * rho.max() / courant))
    for k in range(1, K):
        P = integrate(P, np.full(B, dt_out), n1)
        out[:, k] = P.numpy()
    return np.clip(out, 0.0, None)
