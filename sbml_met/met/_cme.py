"""Exact engines for MET teachers, batched over parameter points.

* :class:`StateSpace`: the FSP teacher's state space, a :class:`sbml_met.cme.StateSpace` capped at
  ``caps`` counts per species, enumerated once by breadth-first search from the initial state(s)
  and reused for every prompt; :meth:`StateSpace.solve` integrates the CME for one parameter point
  at several times (probability leaving the caps is lost and reported); used for validation
  references. :func:`batched_solve` integrates many parameter points side by side
  (:func:`sbml_met.cme.integrate`).
* :func:`ssa_batch`: Gillespie's direct method in lock-step for many trajectories that each have
  their own parameter values, initial state and recording times (exact; no events).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import expm_multiply

from .. import cme
from ..errors import InvalidArgumentError
from ..ssa import simulate_lockstep
from ..support import check_support


class StateSpace(cme.StateSpace):
    """Truncated state space of every species, counts capped at ``caps``: the states reachable
    from ``starts`` (m, S) along reactions with positive propensity at any of the ``probe``
    parameter points, in the order of their codes (row-major in the box 0..caps)."""

    def __init__(self, network, caps: np.ndarray, starts: np.ndarray, probe: list[Mapping[str, float]],
                 max_states: int = 200_000):
        self.caps = np.asarray(caps, dtype=np.int64)
        self.radix = self.caps + 1
        check_support(network, "met-fsp")
        starts = np.atleast_2d(np.asarray(starts, dtype=np.int64))
        if np.any(starts > self.caps):
            raise InvalidArgumentError("initial counts exceed the state-space caps")
        super().__init__(network, starts, 0, self.caps, max_states=max_states, check_negative=False,
                         hint="; use teacher='ssa'")
        self.explore(np.arange(self.n), probe)
        self.sort()
        self.dst = self.transitions()  # (n, R): destination, or < 0 where a reaction leaves the caps

    def generator(self, params: Mapping[str, float]) -> sp.csc_matrix:
        """CME generator A (dp/dt = A p) on the space; outflow past the caps is lost."""
        return cme.generator(cme.rates(self.network, self.states, params), self.dst).tocsc()

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
    initial states ``x0`` (m, S) and sorted recording times ``rec`` (m, K): states (m, K, S).
    The lock-step direct method of :func:`sbml_met.ssa.simulate_lockstep`; no SBML events."""
    check_support(network, "met-ssa")
    rec = np.asarray(rec, dtype=float)
    return simulate_lockstep(network, rec, rec.shape[0], rng, params=params, x0=x0)


def batched_solve(space: StateSpace, params: Mapping[str, np.ndarray], p0: np.ndarray, t0: np.ndarray,
                  dt_out: float, K: int, courant: float = 1.4) -> np.ndarray:
    """p(t) for B parameter points at times t0_b + k*dt_out, k < K: array (B, K, n).

    Classical RK4 on the truncated CME, all points side by side (:func:`sbml_met.cme.integrate`);
    the step of each point is at most ``courant`` / (its largest exit rate), which keeps RK4 stable
    and damps the fast, unpopulated modes. ``params``: id -> (B,) values; ``p0``: (n,) or (B, n)."""
    B = len(t0)
    a = cme.rates(space.network, space.states, {k: np.asarray(v, float)[:, None] for k, v in params.items()})
    a = np.broadcast_to(a, (B,) + a.shape[-2:])
    gens = [cme.generator(a[b], space.dst) for b in range(B)]
    spans = np.concatenate([np.asarray(t0, dtype=float)[:, None], np.full((B, K - 1), float(dt_out))], axis=1)
    return np.clip(cme.integrate(gens, p0, spans, cme.exit_rates(a), courant=courant), 0.0, None)
