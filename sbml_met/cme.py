"""The chemical master equation (CME) core: state spaces, generators and a batched integrator.

The exact engines share it: finite state projection (:mod:`sbml_met.fsp`), the MET's FSP teacher
(:mod:`sbml_met.met._cme`) and the VAN's exact estimator (:mod:`sbml_met.met.van`).

* :class:`StateSpace`: a finite set of states (counts of some species, the ``dims``) inside a box
  ``lo <= x <= hi`` and optionally under a bound on the total count, indexed by position. It grows
  by breadth-first exploration along the reactions whose propensity is positive at any of some
  parameter points (so conservation laws such as a 0/1 gene are honoured automatically), or holds
  every state of a box (:meth:`StateSpace.box`). :meth:`StateSpace.transitions` gives every
  reaction's destination from every state, or the *sink* through which it leaves the set.
* :func:`rates`: checked propensities of states, at one or many parameter points at once.
* :func:`generator`: the sparse CME generator A (dp/dt = A p, column = source state); mass leaving
  the set flows into absorbing sinks, or is lost when there are none.
* :func:`integrate`: many parameter points on one shared state space, side by side: classical RK4
  (the degree-4 Taylor polynomial of exp(hA), for a linear system the same thing), either as an
  explicit step matrix applied repeatedly (small systems) or matrix-free.

The adaptive FSP (its box grows where probability leaks) and the teacher's capped box are the same
:class:`StateSpace` with different parameters.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from .errors import InvalidArgumentError, NegativeCountError, PropensityError, StateSpaceTooLargeError

__all__ = ["StateSpace", "exit_rates", "generator", "grid_states", "integrate", "rates"]

_MAP_MAX = 1 << 25  # box volume up to which a dense index map is used
_EXPLICIT_MAX = 1_000_000  # unknowns (points x states) up to which integrate builds the step matrix


def grid_states(vocab: Sequence[int]) -> np.ndarray:
    """Every state with counts 0..V_s-1 per species, row-major: (prod V, S) int64."""
    V = np.asarray(vocab, dtype=np.int64)
    grids = np.meshgrid(*[np.arange(v) for v in V], indexing="ij")
    return np.stack([g.reshape(-1) for g in grids], axis=1).astype(np.int64)


class _Index:
    """Maps integer-coded states to their positions; dense array when the box is small enough."""

    def __init__(self, volume: int):
        self.dense = volume <= _MAP_MAX
        if self.dense:
            self.map = np.full(volume, -1, dtype=np.int64)
        else:
            self.keys = np.empty(0, dtype=np.int64)
            self.pos = np.empty(0, dtype=np.int64)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        if self.dense:
            return self.map[keys]
        if not len(self.keys):
            return np.full(len(keys), -1, dtype=np.int64)
        i = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[i] == keys, self.pos[i], -1)

    def add(self, keys: np.ndarray, start: int) -> None:
        idx = np.arange(start, start + len(keys), dtype=np.int64)
        if self.dense:
            self.map[keys] = idx
        else:
            k = np.concatenate([self.keys, keys])
            p = np.concatenate([self.pos, idx])
            order = np.argsort(k, kind="stable")
            self.keys, self.pos = k[order], p[order]


class StateSpace:
    """States of ``network`` (counts of the species ``dims``, default all) inside the box
    ``lo <= x <= hi`` (and ``sum(x) <= total`` when given), starting from ``starts`` (m, D).

    ``explore(frontier, params)`` adds the states reachable inside the box along reactions with
    positive propensity at any of ``params`` (a list of parameter dicts; None: the network's
    values). More than ``max_states`` states raise :class:`StateSpaceTooLargeError` (its message
    ends with :meth:`describe` and ``hint``); a reaction leading to a negative count raises
    :class:`NegativeCountError` when ``check_negative`` (a rate law that is positive where it
    should not be), and otherwise just leaves the box. States keep the order they were found in
    (index 0 = the first start) until :meth:`sort` orders them by their code in the box.

    The box may change (``lo``, ``hi``, ``total`` set, then :meth:`reindex`): :attr:`version`
    changes whenever the box or the states do. Sinks (``n_sinks = 2 D + 2``): 2d / 2d+1 below /
    above species d's range, 2D over the total-count bound, 2D+1 (:attr:`unexplored_face`) a
    state inside the box that is not (yet) in the set.
    """

    def __init__(self, network, starts: np.ndarray, lo: Any, hi: Any, *, dims: Any = None,
                 total: int | None = None, max_states: int = 2_000_000, check_negative: bool = True,
                 hint: str = ""):
        self.network = network
        self.dims = np.arange(network.n_species) if dims is None else np.asarray(dims, dtype=np.int64)
        self.nu = np.asarray(network.stoichiometry)[:, self.dims].astype(np.int64)  # (R, D)
        self.template = np.asarray(network.initial_state, dtype=float)
        self.has_rules = any(r.species_index is not None for r in network.rules)
        self.lo = np.array(np.broadcast_to(lo, len(self.dims)), dtype=np.int64)
        self.hi = np.array(np.broadcast_to(hi, len(self.dims)), dtype=np.int64)
        self.total = None if total is None else int(total)
        self.max_states, self.check_negative, self.hint = int(max_states), bool(check_negative), hint
        starts = np.atleast_2d(np.asarray(starts, dtype=np.int64))
        if not self.inbox(starts).all():
            raise InvalidArgumentError("initial counts lie outside the state-space box")
        self.version = 0
        self.states = starts[:0]
        self.reindex()
        _, first = np.unique(self.keys(starts), return_index=True)
        self._append(starts[np.sort(first)])

    @classmethod
    def box(cls, network, vocab: Sequence[int], **kwargs) -> "StateSpace":
        """Every state with counts 0..vocab_s-1 of every species, row-major (:func:`grid_states`)."""
        V = np.asarray(vocab, dtype=np.int64)
        return cls(network, grid_states(V), 0, V - 1, **kwargs)

    # ---------------------------------------------------------------- coding
    def reindex(self) -> None:
        """Rebuild the index after the box (``lo``, ``hi``, ``total``) changed."""
        self.version += 1
        width = self.hi - self.lo + 1
        volume = 1
        for w in width:
            volume *= int(w)
        if volume >= (1 << 62):
            raise StateSpaceTooLargeError(
                f"the box of counts of model '{self.network.name}' holds about 2^{math.log2(volume):.0f} "
                f"states, too many to index ({self.describe()}){self.hint}")
        self.strides = np.cumprod(np.concatenate([[1], width[::-1][:-1]]))[::-1].astype(np.int64)
        self._index = _Index(volume)
        self._index.add(self.keys(self.states), 0)

    def keys(self, y: np.ndarray) -> np.ndarray:
        """Codes of in-box states y (m, D): row-major positions in the box."""
        return ((y - self.lo) * self.strides).sum(axis=1) if len(y) else np.empty(0, np.int64)

    def faces_of(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """below (m, D), above (m, D) and over-total (m,) masks of states y."""
        over = y.sum(axis=1) > self.total if self.total is not None else np.zeros(len(y), dtype=bool)
        return y < self.lo, y > self.hi, over

    def inbox(self, y: np.ndarray) -> np.ndarray:
        below, above, over = self.faces_of(y)
        return ~((below | above).any(axis=1) | over)

    def index(self, y: np.ndarray) -> np.ndarray:
        """Positions of states y (m, D) in the set, -1 where absent."""
        y = np.atleast_2d(np.asarray(y, dtype=np.int64))
        ok = self.inbox(y)
        out = np.full(len(y), -1, dtype=np.int64)
        out[ok] = self._index.lookup(self.keys(y[ok]))
        return out

    def sort(self) -> None:
        """Order the states by their code in the box."""
        self.states = self.states[np.argsort(self.keys(self.states), kind="stable")]
        self.reindex()

    @property
    def n(self) -> int:
        return len(self.states)

    @property
    def n_sinks(self) -> int:
        return 2 * len(self.dims) + 2

    @property
    def unexplored_face(self) -> int:
        return 2 * len(self.dims) + 1

    def describe(self) -> str:
        """What the error messages say about the box."""
        return "box " + ", ".join(f"{self.network.species[d]} in [{lo}, {hi}]"
                                  for d, lo, hi in zip(self.dims, self.lo, self.hi))

    def full(self, y: np.ndarray | None = None) -> np.ndarray:
        """Full state rows (m, n_species): the counts of ``dims``, the other species at their
        initial values, species defined by assignment rules derived."""
        y = self.states if y is None else y
        x = np.repeat(self.template[None, :], len(y), axis=0)
        x[:, self.dims] = y
        if self.has_rules:
            rows = np.ascontiguousarray(x.T)
            self.network.apply_rules(rows)
            x = rows.T
        return x

    # ---------------------------------------------------------------- exploration
    def positive(self, y: np.ndarray, params: Sequence[Mapping[str, Any] | None]) -> np.ndarray:
        """(m, R) mask of reactions with positive propensity at any of ``params``."""
        x = self.full(y)
        mask = np.zeros((len(y), len(self.nu)), dtype=bool)
        for p in params:
            a = np.asarray(self.network.propensities(x, parameters=p), dtype=float)
            mask |= (a.reshape(-1, len(y), len(self.nu)) > 0).any(axis=0)
        return mask

    def explore(self, frontier: np.ndarray, params: Sequence[Mapping[str, Any] | None]) -> None:
        """Breadth-first closure from the states at positions ``frontier`` inside the box."""
        while frontier.size and len(self.nu):
            src, r = np.nonzero(self.positive(self.states[frontier], params))
            if not src.size:
                break
            y = self.states[frontier[src]] + self.nu[r]
            if self.check_negative:
                below = np.argwhere(y < 0)
                if below.size:
                    k, d = (int(v) for v in below[0])
                    raise NegativeCountError(self.network.reaction_ids[r[k]],
                                             self.network.species[self.dims[d]],
                                             float(self.states[frontier[src[k]], d]), None)
            y = y[self.inbox(y)]
            keys = self.keys(y)
            new = self._index.lookup(keys) < 0
            keys, first = np.unique(keys[new], return_index=True)
            if not keys.size:
                break
            start = self.n
            self._append(y[new][first])
            frontier = np.arange(start, self.n)

    def _append(self, y: np.ndarray) -> None:
        if self.n + len(y) > self.max_states:
            raise StateSpaceTooLargeError(
                f"the state space of model '{self.network.name}' needs more than max_states="
                f"{self.max_states} states (reached {self.n + len(y)}); {self.describe()}{self.hint}")
        self._index.add(self.keys(y), self.n)
        self.states = np.concatenate([self.states, y])
        self.version += 1

    def first_face(self, below: np.ndarray, above: np.ndarray, over: np.ndarray) -> np.ndarray:
        """The sink a leak is booked on: the first species range it leaves, else the total bound."""
        D = len(self.dims)
        return np.where(below.any(axis=1), 2 * below.argmax(axis=1),
                        np.where(above.any(axis=1), 2 * above.argmax(axis=1) + 1, 2 * D))

    def transitions(self) -> np.ndarray:
        """(n, R) destination of every reaction from every state: its position, or -1 - sink."""
        out = np.empty((self.n, len(self.nu)), dtype=np.int64)
        unexplored = -1 - self.unexplored_face
        for r in range(len(self.nu)):
            y = self.states + self.nu[r]
            below, above, over = self.faces_of(y)
            ok = ~((below | above).any(axis=1) | over)
            dst = np.full(self.n, unexplored, dtype=np.int64)
            dst[ok] = self._index.lookup(self.keys(y[ok]))
            dst[ok & (dst < 0)] = unexplored
            bad = ~ok
            if bad.any():
                dst[bad] = -1 - self.first_face(below[bad], above[bad], over[bad])
            out[:, r] = dst
        return out


# ------------------------------------------------------------------------------------ generators
def rates(network, rows: np.ndarray, parameters: Mapping[str, Any] | None = None,
          clip: bool = False) -> np.ndarray:
    """Propensities (n, R) of full state rows (n, n_species), or (K, n, R) for parameter arrays of
    shape (K, 1) (K points at once), checked finite and >= 0 (:class:`PropensityError` names the
    reaction, its value and the state). ``clip``: negative values become 0 instead (a box of
    counts may hold states the network never reaches, where a law such as k*(1-G) is negative)."""
    a = np.asarray(network.propensities(rows, parameters=parameters), dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if clip:
        a = np.maximum(a, 0.0)
    ok = np.isfinite(a) & (a >= 0)
    if not ok.all():
        where = np.argwhere(~ok)[0]
        i, r = int(where[-2]), int(where[-1])
        raise PropensityError(network.reaction_ids[r], float(a[tuple(where)]),
                              dict(zip(network.species, rows[i])), 0.0)
    return a


def exit_rates(a: np.ndarray) -> np.ndarray:
    """The largest total exit rate over the states, per parameter point: a (..., n, R) -> (...)."""
    return a.sum(axis=-1).max(axis=-1) if a.size else np.zeros(a.shape[:-2])


def generator(a: np.ndarray, dst: np.ndarray, n_sinks: int = 0) -> sp.csr_matrix:
    """Sparse CME generator (column = source) from propensities ``a`` (n, R) and destinations
    ``dst`` (n, R) (:meth:`StateSpace.transitions`): n states plus ``n_sinks`` absorbing sinks, a
    leak into sink f landing in row n + f; with ``n_sinks=0`` leaking mass is lost."""
    n, R = a.shape
    src = np.repeat(np.arange(n), R)
    d = dst.reshape(-1)
    vals = a.reshape(-1)
    keep = vals > 0
    if n_sinks:
        rows = np.where(d >= 0, d, n - 1 - d)
    else:
        rows = d
        keep &= d >= 0
    rows = np.concatenate([rows[keep], np.arange(n)])
    cols = np.concatenate([src[keep], np.arange(n)])
    data = np.concatenate([vals[keep], -a.sum(axis=1)])
    N = n + n_sinks
    return sp.csr_matrix((data, (rows, cols)), shape=(N, N))


# ------------------------------------------------------------------------------------ integrator
_TAYLOR_DEGREE = 4  # degree of the Taylor step polynomial (classical RK4 for a linear system)


def integrate(generators: Sequence[sp.csr_matrix], p0: np.ndarray, spans: np.ndarray,
              exit_rate: np.ndarray, courant: float = 1.0, explicit: bool | None = None) -> np.ndarray:
    """Probabilities of K parameter points after each of J intervals: (K, J, N).

    ``generators``: K generators (N, N) on one shared state space (:func:`generator`); ``p0``
    (N,) or (K, N); ``spans`` (J,) or (K, J): point k advances by ``spans[k, j]`` in interval j;
    ``exit_rate`` (K,): each point's largest exit rate (:func:`exit_rates`). Interval j takes
    n_j = ceil(max_k spans[k, j] exit_rate[k] / ``courant``) classical RK4 steps for every point (its
    own step spans[k, j] / n_j), which keeps each step's h A inside RK4's stability region for
    ``courant`` up to ~1.4. ``explicit`` (default: up to 10^6 unknowns): build the step
    polynomial once per step size and apply it as one sparse matrix; else apply A four times
    per step."""
    K, N = len(generators), generators[0].shape[0]
    spans = np.asarray(spans, dtype=float)
    spans = np.broadcast_to(spans, (K, spans.shape[-1]))
    exit_rate = np.broadcast_to(np.asarray(exit_rate, dtype=float), (K,))
    A = sp.block_diag(generators, format="csr")
    if explicit is None:
        explicit = K * N <= _EXPLICIT_MAX
    v = np.array(np.broadcast_to(np.asarray(p0, dtype=float), (K, N))).reshape(-1)
    out = np.empty((K, spans.shape[1], N))
    cache: dict[bytes, sp.csr_matrix] = {}
    for j in range(spans.shape[1]):
        reach = float(np.max(spans[:, j] * exit_rate)) if K else 0.0
        steps = int(math.ceil(reach / courant)) if reach > 0 else 0
        if steps:
            h = spans[:, j] / steps
            key = np.round(h, 15).tobytes()
            if key not in cache:
                cache[key] = _scaled(A, np.repeat(h, N))
                if explicit:
                    cache[key] = _taylor_matrix(cache[key])
            v = (_repeat_matvec if explicit else _repeat_taylor)(cache[key], v, steps)
        out[:, j] = v.reshape(K, N)
    return out


def _scaled(A: sp.csr_matrix, row_factor: np.ndarray) -> sp.csr_matrix:
    """A with row i multiplied by row_factor[i]."""
    hA = A.copy()
    hA.data = hA.data * np.repeat(row_factor, np.diff(hA.indptr))
    return hA


def _taylor_matrix(hA: sp.csr_matrix) -> sp.csr_matrix:
    """I + hA + (hA)^2/2 + (hA)^3/6 + (hA)^4/24, the RK4 step matrix."""
    identity = sp.identity(hA.shape[0], format="csr")
    M, term = identity.copy(), identity
    for q in range(1, _TAYLOR_DEGREE + 1):
        term = (hA @ term) / q
        M = M + term
    return M.tocsr()


def _kernels():
    """The compiled repeated products (:mod:`sbml_met._sparse_numba`), or None without numba."""
    try:
        from . import _sparse_numba
    except ImportError:  # pragma: no cover - numba missing
        return None
    return _sparse_numba


def _csr(M: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # unsigned views of scipy's indices (never negative): numba then skips negative-index wraparound
    unsigned = {4: np.uint32, 8: np.uint64}
    return (M.indptr.view(unsigned[M.indptr.itemsize]), M.indices.view(unsigned[M.indices.itemsize]),
            np.ascontiguousarray(M.data, dtype=float))


def _repeat_matvec(M: sp.csr_matrix, v: np.ndarray, steps: int) -> np.ndarray:
    """M^steps v."""
    kernels = _kernels()
    if kernels is None:  # pragma: no cover
        for _ in range(steps):
            v = M @ v
        return v
    return kernels.repeat_matvec(*_csr(M), np.array(v, dtype=float), int(steps))


def _repeat_taylor(hA: sp.csr_matrix, v: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` RK4 steps matrix-free, Horner's form v + hA(v + hA/2 (v + hA/3 (v + hA/4 v)))."""
    kernels = _kernels()
    if kernels is None:  # pragma: no cover
        v = np.array(v, dtype=float)
        for _ in range(steps):
            w = v.copy()
            for q in range(_TAYLOR_DEGREE, 0, -1):
                w = (hA @ w) / q + v
            v = w
        return v
    return kernels.repeat_taylor(*_csr(hA), np.array(v, dtype=float), int(steps), _TAYLOR_DEGREE)
