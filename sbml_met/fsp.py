"""Exact chemical master equation (CME) solutions by finite state projection (FSP).

The CME dp/dt = A p is solved on a finite set of states S reachable from the initial state (Munsky &
Khammash 2006). Probability that would leave S flows into absorbing *sink* states, one per face of
a bounding box of counts (below / above each dynamic species' range), one for a bound on the total
count (it cuts the box's improbable far corner) and one for reachable states not yet enumerated, so the sink mass at time t is exactly the probability that left S by t: it
bounds the 1-norm error of the answer and is reported as ``Distribution.truncation_error``.

Adaptive projection (time-stepping FSP): S starts as the reachable states in a small box around the
initial state and is integrated from output time to output time; when the lost mass would exceed
its share of ``tol`` (``tol * t / t_end``), the box faces through which the mass left are widened,
the newly reachable states enumerated (breadth-first, only along reactions with positive
propensity, so conservation laws such as a 0/1 gene are honoured automatically) and the step is
repeated from the last accepted time. The answer is therefore never silently truncated.

Integration: exp(tA) v by a Krylov method (Expokit's ``expv``, Sidje 1998) for large state sets,
and a dense matrix exponential for small ones.

Fast path for many parameter points of one model (MET training): :class:`FSPSolver` enumerates the
state space once, covering the parameter points it is given, and reuses it and its sparsity pattern
for every later parameter point; :meth:`FSPSolver.solve_batch` integrates many points together.

The state space, generator and batched integrator are the CME core's (:mod:`sbml_met.cme`); this
module adds the adaptive growth of the box, the Krylov integrator and the Distribution results.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .cme import StateSpace, exit_rates, generator, integrate, rates
from .errors import InvalidArgumentError, StateSpaceTooLargeError
from .network import ReactionNetwork, check_times
from .results import Distribution
from .support import check_support

_DENSE_MAX = 250  # state sets up to this size are exponentiated densely
_GROWTH = 0.15  # a face that leaks too much moves out by this fraction of the box width
_COURANT = 1.0  # h * max exit rate of FSPSolver's RK4 steps: keeps h*A's Gershgorin discs in RK4's stability region


# ------------------------------------------------------------------------------------ state space
def _check_network(network: ReactionNetwork) -> None:
    if not isinstance(network, ReactionNetwork):
        raise InvalidArgumentError(f"expected a ReactionNetwork, got {type(network).__name__}")
    check_support(network, "fsp")
    x0 = np.asarray(network.initial_state, dtype=float)
    dyn = network.dynamic_species
    bad = [s for s, v, d in zip(network.species, x0, dyn) if d and (v < 0 or v != round(v))]
    if bad:
        raise InvalidArgumentError(
            f"FSP needs whole, non-negative initial counts; species {', '.join(bad)} are not")


class _Space(StateSpace):
    """The adaptive FSP's state space: dynamic species only, starting as the reachable states in a
    small box around the initial state (and a bound on the total count, which cuts the box's
    improbable far corner, e.g. both toggle proteins high); :meth:`grow` widens leaking faces."""

    def __init__(self, network: ReactionNetwork, max_states: int):
        dyn = np.flatnonzero(network.dynamic_species)
        nu = np.asarray(network.stoichiometry)[:, dyn].astype(np.int64)
        x0 = np.rint(np.asarray(network.initial_state, dtype=float)[dyn]).astype(np.int64)
        step = np.abs(nu).max(axis=0) if len(nu) else np.zeros(len(dyn), np.int64)
        margin = np.maximum(4, 4 * step)
        super().__init__(network, x0[None, :], np.maximum(0, x0 - margin), x0 + margin, dims=dyn,
                         total=int(x0.sum() + margin.sum()), max_states=max_states,
                         hint=". Raise max_states, shorten the time span or loosen tol.")
        self.lo0, self.hi0 = self.lo.copy(), self.hi.copy()

    def describe(self) -> str:
        parts = []
        names = [self.network.species[i] for i in self.dims]
        for d, s in enumerate(names):
            if self.lo[d] < self.lo0[d] or self.hi[d] > self.hi0[d]:
                parts.append(f"{s} in [{self.lo[d]}, {self.hi[d]}]")
        if parts and len(names) > 1:
            parts.append(f"total count <= {self.total}")
        return "species that grew: " + (", ".join(parts) if parts else "none (many reachable states)")

    def grow(self, faces: np.ndarray, params: Sequence[Mapping[str, Any] | None]) -> None:
        """Widen the box at the given faces (2d: below species d, 2d+1: above) and explore."""
        D = len(self.dims)
        width = self.hi - self.lo + 1
        faces = self._all_violated(set(int(f) for f in faces))
        for f in faces:
            d, up = divmod(int(f), 2)
            if d >= D:
                if f == 2 * D:  # the total-count bound
                    span = self.total - int(self.lo.sum())
                    self.total += max(4, int(math.ceil(_GROWTH * span)))
                continue
            delta = max(4, int(math.ceil(_GROWTH * width[d])), 2 * int(np.abs(self.nu[:, d]).max()))
            if up:
                self.hi[d] += delta
            else:
                # stops at 0 first; below 0 only if mass still leaks there, i.e. a rate law is
                # positive at a count that would go negative (the SSA would go there too)
                self.lo[d] = max(0, self.lo[d] - delta) if self.lo[d] > 0 else self.lo[d] - delta
        self.reindex()
        self.explore(np.arange(self.n), params)

    def _all_violated(self, faces: set[int]) -> list[int]:
        """Leaks are booked on the first face they cross; a leak that crosses several faces
        (e.g. a dimerisation lowering P and raising P2) needs all of them widened."""
        out = set(faces)
        D = len(self.dims)
        for r in range(len(self.nu)):
            below, above, over = self.faces_of(self.states + self.nu[r])
            bad = (below | above).any(axis=1) | over
            if not bad.any():
                continue
            sel = np.isin(self.first_face(below[bad], above[bad], over[bad]), list(faces))
            for d in np.flatnonzero(below[bad][sel].any(axis=0)):
                out.add(2 * int(d))
            for d in np.flatnonzero(above[bad][sel].any(axis=0)):
                out.add(2 * int(d) + 1)
            if over[bad][sel].any():
                out.add(2 * D)
        return sorted(out)


# ------------------------------------------------------------------------------------ integrators
def _expv(A: sp.csr_matrix, v: np.ndarray, t: float, tol: float, anorm: float, m: int = 40,
          q: int | None = None) -> np.ndarray:
    """exp(tA) v by Krylov projection with local error control (Expokit's expv, Sidje 1998).

    ``q``: orthogonalise each new basis vector against the last ``q`` only (incomplete
    orthogonalisation, Koskela 2015); None for full Gram-Schmidt. The basis loop is memory-bound,
    so q = 4 halves the time on the toggle switch at the same accuracy (measured)."""
    n = len(v)
    m = min(m, n - 1) if n > 1 else 1
    w = np.array(v, dtype=float)
    beta = float(np.linalg.norm(w))
    if t <= 0 or beta == 0 or anorm == 0:
        return w
    btol, gamma, delta = 1e-12 * beta, 0.9, 1.2
    xm = 1.0 / m
    fact = (((m + 1) / math.e) ** (m + 1)) * math.sqrt(2 * math.pi * (m + 1))
    t_new = (1.0 / anorm) * ((fact * tol) / (4.0 * beta * anorm)) ** xm
    t_new = _round2(t_new)
    t_now = 0.0
    V = np.empty((m + 1, n))
    H = np.zeros((m + 2, m + 2))
    while t_now < t:
        t_step = min(t - t_now, t_new)
        V[0] = w / beta
        H[:] = 0.0
        mb, k1 = m, 2
        for j in range(m):
            p = A @ V[j]
            lo = 0 if q is None else max(0, j + 1 - q)
            h = V[lo: j + 1] @ p  # classical Gram-Schmidt, one pass
            p -= h @ V[lo: j + 1]
            H[lo: j + 1, j] = h
            s = float(np.linalg.norm(p))
            if s < btol:
                k1, mb = 0, j + 1
                t_step = t - t_now
                break
            H[j + 1, j] = s
            V[j + 1] = p / s
        if k1:
            H[m + 1, m] = 1.0
            avnorm = float(np.linalg.norm(A @ V[m]))
        while True:
            mx = mb + k1
            F = scipy.linalg.expm(t_step * H[:mx, :mx])
            if k1 == 0:
                err = btol
                break
            phi1 = abs(beta * F[m, 0])
            phi2 = abs(beta * F[m + 1, 0] * avnorm)
            if phi1 > 10 * phi2:
                err, xm = phi2, 1.0 / m
            elif phi1 > phi2:
                err, xm = (phi1 * phi2) / (phi1 - phi2), 1.0 / m
            else:
                err, xm = phi1, 1.0 / (m - 1)
            if err <= delta * t_step * tol:
                break
            t_step = _round2(gamma * t_step * (t_step * tol / err) ** xm)
        mx = mb + max(0, k1 - 1)
        w = (beta * F[:mx, 0]) @ V[:mx]
        beta = float(np.linalg.norm(w))
        t_now += t_step
        if beta == 0:
            break
        t_new = _round2(gamma * t_step * (t_step * tol / max(err, 1e-300)) ** xm)
    return w


def _round2(x: float) -> float:
    """Round up to two significant digits (Expokit's step-size rounding)."""
    if not np.isfinite(x) or x <= 0:
        return 1e-300 if x <= 0 else 1e300
    s = 10.0 ** (math.floor(math.log10(x)) - 1)
    return math.ceil(x / s) * s


def _one_blas_thread():
    """Context that runs BLAS single-threaded: the Krylov loop's small products are memory-bound,
    and threaded BLAS on a busy machine was measured ~10x slower than one thread. Re-entrant and
    safe from several threads at once: the limit is set by the first entry and lifted by the last
    exit (threadpoolctl's limits are process-wide)."""
    return _BLAS_LIMIT


class _BlasLimit:
    def __init__(self):
        import threading

        self._lock, self._depth, self._ctx = threading.Lock(), 0, None

    def __enter__(self):
        global _CONTROLLER
        with self._lock:
            if self._depth == 0:
                if _CONTROLLER is None:
                    try:
                        from threadpoolctl import ThreadpoolController
                    except ImportError:  # pragma: no cover - a declared dependency
                        _CONTROLLER = False
                    else:
                        _CONTROLLER = ThreadpoolController()  # inspects loaded libraries once (~0.4 ms)
                self._ctx = _CONTROLLER.limit(limits=1, user_api="blas") if _CONTROLLER else None
            self._depth += 1
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._ctx is not None:
                self._ctx.restore_original_limits()
                self._ctx = None
        return False


_BLAS_LIMIT = _BlasLimit()
_CONTROLLER = None


def _advance(A: sp.csr_matrix, p: np.ndarray, dt: float, tol: float) -> np.ndarray:
    """p(t + dt) = exp(dt A) p, dense for small sets, Krylov otherwise."""
    if dt <= 0:
        return p.copy()
    with _one_blas_thread():
        return _advance_inner(A, p, dt, tol)


def _advance_inner(A: sp.csr_matrix, p: np.ndarray, dt: float, tol: float) -> np.ndarray:
    if A.shape[0] <= _DENSE_MAX:
        return scipy.linalg.expm(dt * A.toarray()) @ p
    anorm = float(abs(A).sum(axis=0).max())
    w = _expv(A, p, dt, tol, anorm, q=4)
    # exp(tA) conserves total probability (sinks included); a projection that does not is redone
    # with full orthogonalisation
    if not abs(w.sum() - p.sum()) <= max(1e-10, 10 * tol * dt):
        w = _expv(A, p, dt, tol, anorm, q=None)
    return w


# ------------------------------------------------------------------------------------ solve_fsp
def solve_fsp(
    network: ReactionNetwork,
    times: Any,
    tol: float = 1e-6,
    max_states: int = 2_000_000,
) -> Distribution:
    """Solve the CME of ``network`` by adaptive finite state projection at ``times``.

    Returns a :class:`Distribution` (method ``"fsp"``) whose ``truncation_error[i]`` is the
    probability that left the projected state set by ``times[i]`` (at most ``tol``): the 1-norm
    distance of the answer from the exact CME solution, up to integration error (~1e-3 tol).
    Raises :class:`StateSpaceTooLargeError` when more than ``max_states`` states would be needed
    and :class:`~sbml_met.errors.UnsupportedByEngineError` (an UnsupportedSBMLError) for models with events.
    """
    _check_network(network)
    grid = check_times(times)
    tol = float(tol)
    if not (0 < tol < 1):
        raise InvalidArgumentError(f"tol must lie in (0, 1), got {tol}")
    _refuse_if_too_large(network, float(grid[-1]), max_states)
    space = _Space(network, max_states)
    space.explore(np.arange(1), [None])
    return _adaptive(space, grid, tol, None, method="fsp")


def estimate_states(network: ReactionNetwork, t_end: float) -> tuple[float, dict[str, tuple[int, int]]] | None:
    """A low estimate of the states the adaptive FSP needs on ``[0, t_end]``, known before any is
    built: each changing species spans its deterministic range (libroadrunner) plus +-2 standard
    deviations (Poisson: 2 sqrt(count)) around it (a species that stays within [0, 1]: 2 counts);
    conservation laws leave ``D - c`` free
    directions, so the product runs over the ``D - c`` narrowest spans. Returns (estimate, range
    of counts per species), or None where there is no deterministic solution. Kept on the
    network, so that ``sbml-met run``'s cost check and solve_fsp's refusal solve the ODE once."""
    return network.cached(f"fsp.estimate_states.{float(t_end)!r}", lambda: _estimate_states(network, t_end))


def _estimate_states(network: ReactionNetwork, t_end: float) -> tuple[float, dict[str, tuple[int, int]]] | None:
    from .window import deterministic_solution

    nu = np.asarray(network.stoichiometry, dtype=float)
    dims = [i for i in np.flatnonzero(network.dynamic_species) if nu.size and np.any(nu[:, i] != 0)]
    if not dims or t_end <= 0:
        return None
    try:
        _, x = deterministic_solution(network, t_end, 401)
    except Exception:  # no deterministic solution: no estimate, the adaptive FSP decides
        return None
    x = np.maximum(x[:, dims], 0.0)
    if not np.all(np.isfinite(x)):
        return None
    top, noise = x.max(axis=0), 2.0 * np.sqrt(x.max(axis=0))
    lo = np.where(top <= 1.0, 0.0, np.maximum(0.0, np.floor(x.min(axis=0) - noise)))
    hi = np.where(top <= 1.0, 1.0, np.ceil(top + noise))
    spans = hi - lo + 1
    free = int(np.linalg.matrix_rank(nu[:, dims])) if len(nu) else 0
    estimate = float(np.prod(np.sort(spans)[:free])) if free else 1.0
    return estimate, {network.species[i]: (int(a), int(b)) for i, a, b in zip(dims, lo, hi)}


def _refuse_if_too_large(network: ReactionNetwork, t_end: float, max_states: int) -> None:
    """StateSpaceTooLargeError at once (before building anything) where the estimate exceeds
    ``max_states``."""
    found = estimate_states(network, t_end)
    if found is None or found[0] <= max_states:
        return
    estimate, ranges = found
    widest = ", ".join(f"{s} in [{a:,}, {b:,}]" for s, (a, b) in
                       sorted(ranges.items(), key=lambda kv: kv[1][0] - kv[1][1])[:4])
    raise StateSpaceTooLargeError(
        f"FSP of model '{network.name}' up to t = {t_end:g} would need at least about {estimate:.2g} states "
        f"(deterministic range +-2 SD: {widest}), more than max_states={max_states:,}; use the SSA "
        "(simulate, or sbml-met run, which does), a shorter time span, or fewer molecules "
        "(a smaller volume=, --volume)")


def _adaptive(space: _Space, grid: np.ndarray, tol: float, params: Mapping[str, Any] | None,
              method: str, max_rounds: int = 200) -> Distribution:
    t_end = float(grid[-1])
    itol = min(1e-9, tol * 1e-3)
    # internal checkpoints: the output times plus a few steps so the set can grow with time
    checkpoints = np.union1d(grid, np.linspace(0.0, t_end, 9)) if t_end > 0 else grid
    p = np.zeros(space.n)
    p[0] = 1.0
    lost = 0.0
    t_now = 0.0
    out_states, out_probs, out_err = [], [], []
    built = None
    for t_next in checkpoints:
        rounds = 0
        while True:
            if built is None or built[0] != space.version:
                full = space.full()
                A = generator(rates(space.network, full, params), space.transitions(), space.n_sinks)
                built = (space.version, A, full)
            _, A, full = built
            v = np.concatenate([p, np.zeros(space.n_sinks)])
            w = _advance(A, v, float(t_next - t_now), itol)
            sinks = np.maximum(w[space.n:], 0.0)
            budget = tol * (0.5 + 0.5 * t_next / t_end if t_end > 0 else 1.0)
            if lost + sinks.sum() <= budget or rounds >= max_rounds:
                if lost + sinks.sum() > budget:
                    raise StateSpaceTooLargeError(
                        f"FSP of model '{space.network.name}' did not converge after {rounds} "
                        f"enlargements; {space.describe()}")
                break
            order = np.argsort(sinks)[::-1]
            cum = np.cumsum(sinks[order])
            # widen faces until what is left through the others is below half the remaining budget
            need = np.searchsorted(cum, sinks.sum() - 0.5 * max(budget - lost, 0.0)) + 1
            faces = order[: max(1, need)]
            faces = faces[sinks[faces] > 0]
            if space.unexplored_face in faces:
                space.explore(np.arange(space.n), [params])
            space.grow(faces, [params])
            p = np.concatenate([p, np.zeros(space.n - len(p))])
            rounds += 1
        lost += sinks.sum()
        p = np.maximum(w[: space.n], 0.0)
        t_now = float(t_next)
        if np.any(np.isclose(grid, t_next, rtol=0, atol=0)):
            for _ in range(int(np.sum(grid == t_next))):
                keep = p > 0
                out_states.append(_output_states(full[keep]))
                out_probs.append(p[keep].copy())
                out_err.append(lost)
    return Distribution(space.network.species, grid.copy(), tuple(out_states), tuple(out_probs),
                        method=method, truncation_error=np.asarray(out_err, dtype=float),
                        metadata={"n_states": space.n, "tol": tol,
                                  "box": {space.network.species[d]: (int(lo), int(hi)) for d, lo, hi in
                                          zip(space.dims, space.lo, space.hi)}})


def _output_states(full: np.ndarray) -> np.ndarray:
    r = np.rint(full)
    return r.astype(np.int64) if np.allclose(r, full) else full


# ------------------------------------------------------------------------------------ fast path
def _param_points(parameters: Any) -> list[dict[str, float]]:
    """A list of parameter dicts from a list of dicts, one dict, or a dict of equal-length arrays."""
    if parameters is None:
        return [{}]
    if isinstance(parameters, Mapping):
        arrays = {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in parameters.items()}
        sizes = {a.size for a in arrays.values()}
        if not arrays:
            return [{}]
        if len(sizes) != 1 and not sizes <= {1, max(sizes)}:
            raise InvalidArgumentError(
                f"parameter arrays must have equal lengths, got {({k: a.size for k, a in arrays.items()})}")
        k = max(sizes)
        return [{name: float(a[i] if a.size > 1 else a[0]) for name, a in arrays.items()} for i in range(k)]
    return [dict(p or {}) for p in parameters]


def _stack(network: ReactionNetwork, points: list[dict[str, float]]) -> dict[str, np.ndarray]:
    """Parameter overrides as (K, 1) arrays, which broadcast against n states in propensities;
    a point that does not name a parameter keeps the network's value."""
    names = sorted({k for p in points for k in p})
    unknown = [k for k in names if k not in network.parameters]
    if unknown:
        network.check_parameter_ids(unknown)
    return {k: np.array([[p.get(k, network.parameters[k])] for p in points], dtype=float) for k in names}


class FSPSolver:
    """FSP for many parameter points of one model, reusing one state space (MET training path).

    ``FSPSolver(network, t_max, cover=None, tol=1e-6, max_states=2_000_000)`` enumerates, once,
    the states needed (to within ``tol`` up to time ``t_max``) by every parameter point in
    ``cover`` (a list of dicts, or a dict of equal-length arrays, keyed by SBML parameter id;
    default: the network's own values; give the corners of a training box to cover the box). It
    precomputes every reaction's destination from every state, so a parameter point only costs
    one vectorised propensity evaluation and the integration.

    - ``solve(parameters=None, times=...) -> Distribution`` for one point.
    - ``solve_batch(parameters, times) -> list[Distribution]`` for many points, integrated together
      on the shared state array (a block-diagonal generator, one Taylor step matrix per output
      interval). ``solve_batch(..., as_arrays=True)`` returns ``(probabilities, truncation_error)``,
      arrays (K, n_times, n_states) and (K, n_times), over the shared states ``self.states``
      (n_states, n_species), without building Distribution objects.

    ``Distribution.truncation_error`` is the probability that left the state set by each time. If a
    point needs more than ``tol`` the state space is grown to cover it and the call is repeated
    (``self.states`` then changes), so an answer is never silently truncated. Parameters not
    given keep the network's values; ``parameters`` may only name the model's parameters.
    """

    def __init__(self, network: ReactionNetwork, t_max: float, cover: Any = None, tol: float = 1e-6,
                 max_states: int = 2_000_000):
        _check_network(network)
        self.network = network
        self.t_max = float(t_max)
        if not (np.isfinite(self.t_max) and self.t_max > 0):
            raise InvalidArgumentError(f"t_max must be a positive time, got {t_max}")
        self.tol = float(tol)
        self._space = _Space(network, max_states)
        self._space.explore(np.arange(1), [None])
        self._cover(_param_points(cover))

    # ---------------------------------------------------------------- state space
    def _cover(self, points: list[dict[str, float]]) -> None:
        grid = np.array([self.t_max])
        for p in points:
            self.network.check_parameter_ids(p)
            self._space.explore(np.arange(self._space.n), [p or None])
            _adaptive(self._space, grid, self.tol * 0.5, p or None, method="fsp")
        self._dst = self._space.transitions()
        self._full = self._space.full()
        self._out_states = _output_states(self._full)

    @property
    def states(self) -> np.ndarray:
        """The shared state array (n_states, n_species), rule species included."""
        return self._out_states

    @property
    def n_states(self) -> int:
        return self._space.n

    def generator(self, parameters: Mapping[str, float] | None = None) -> sp.csr_matrix:
        """The CME generator on the solver's state space at one parameter point (its sinks last;
        the initial state is state 0): for checks against other integrators."""
        point = {k: np.array([[float(v)]]) for k, v in (parameters or {}).items()}
        return generator(rates(self.network, self._full, point)[0], self._dst, self._space.n_sinks)

    # ---------------------------------------------------------------- solving
    def solve(self, parameters: Mapping[str, float] | None = None, times: Any = None) -> Distribution:
        """The distribution at ``times`` for one parameter point (dict by SBML parameter id)."""
        return self.solve_batch([parameters or {}], times)[0]

    def solve_batch(self, parameters: Any, times: Any, as_arrays: bool = False):
        """Distributions for many parameter points (list of dicts, or dict of arrays)."""
        if times is None:
            raise InvalidArgumentError("give the output times")
        grid = check_times(times)
        if grid[-1] > self.t_max * (1 + 1e-12):
            raise InvalidArgumentError(f"times go beyond t_max={self.t_max:g} of this FSPSolver")
        points = _param_points(parameters)
        for _ in range(20):
            probs, err = self._integrate(points, grid)
            bad = np.flatnonzero(err[:, -1] > self.tol)
            if not bad.size:
                break
            self._cover([points[i] for i in bad])
        else:  # pragma: no cover - _cover raises first
            raise StateSpaceTooLargeError("FSPSolver could not cover the parameter points")
        if as_arrays:
            return probs, err
        out = []
        for k in range(len(points)):
            st, pr = [], []
            for j in range(len(grid)):
                keep = probs[k, j] > 0
                st.append(self._out_states[keep])
                pr.append(probs[k, j, keep])
            out.append(Distribution(self.network.species, grid.copy(), tuple(st), tuple(pr),
                                    method="fsp", truncation_error=err[k].copy(),
                                    metadata={"n_states": self.n_states, "parameters": points[k]}))
        return out

    def _integrate(self, points: list[dict[str, float]], grid: np.ndarray):
        n, K = self._space.n, len(points)
        a = rates(self.network, self._full, _stack(self.network, points) if any(points) else None)
        a = np.broadcast_to(a, (K,) + a.shape[-2:])
        blocks = [generator(a[k], self._dst, self._space.n_sinks) for k in range(K)]
        p0 = np.zeros(n + self._space.n_sinks)
        p0[0] = 1.0
        w = integrate(blocks, p0, np.diff(grid, prepend=0.0), exit_rates(a), courant=_COURANT)
        return np.maximum(w[:, :, :n], 0.0), np.maximum(w[:, :, n:], 0.0).sum(axis=2)


# ------------------------------------------------------------------ many points, worker threads
def solve_points(network: ReactionNetwork, points: Sequence[Mapping[str, float]],
                 times: Sequence[Any], inits: Sequence[Mapping[str, float]] | None = None,
                 tol: float = 1e-6, max_states: int = 2_000_000, workers: int = 1,
                 deadline: float | None = None):
    """``solve_fsp`` at many parameter points, each with its own output times (and optionally its
    own initial counts), on ``workers`` threads (the sparse products release the GIL). Yields
    ``(index, Distribution)`` as points finish (not in order); starts no new point once
    ``time.monotonic()`` passes ``deadline``. Used for MET training data on state spaces too
    large to integrate side by side. Threads, not processes: nothing is re-imported or pickled,
    and a user's script needs no ``if __name__ == "__main__"`` guard."""
    import time as _time
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    n = len(points)
    inits = inits if inits is not None else [{}] * n

    def one(i: int) -> Distribution:
        net = network.with_parameters(dict(points[i])).with_initial_state(dict(inits[i]))
        return solve_fsp(net, list(times[i]), tol=tol, max_states=max_states)

    def late() -> bool:
        return deadline is not None and _time.monotonic() >= deadline

    if workers <= 1 or n <= 1:
        for i in range(n):
            if late():
                return
            yield i, one(i)
        return
    with _one_blas_thread(), ThreadPoolExecutor(max_workers=int(workers)) as pool:
        pending, nxt = {}, 0
        while pending or (nxt < n and not late()):
            while nxt < n and len(pending) < 2 * workers and not late():
                pending[pool.submit(one, nxt)] = nxt
                nxt += 1
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                yield pending.pop(fut), fut.result()
