"""Conservation laws (conserved moieties) of a reaction network, derived from its stoichiometry.

A conservation law is an integer vector ``c`` over the species with ``nu @ c = 0`` for the
stoichiometry ``nu`` (reactions x species): ``c . x`` never changes, whichever reaction fires.
Species that reactions do not change (boundary, constant or rule-defined species) are left out:
their columns are 0 here. :func:`conservation_laws` returns an integer basis of these vectors
(the left null space of ``nu.T``), computed in exact rational arithmetic and made of
semi-positive moieties (all coefficients >= 0, smallest support first) wherever the moieties
span the space, e.g. ``S + C + P`` and ``E + C`` for ``S + E <-> C -> E + P``.

:class:`ConservationMask` turns the laws and the totals of one initial state into masks for an
autoregressive model over the species in network order: given the counts of the species before
position j, the counts of species j that still admit a completion (inside the count
vocabulary) satisfying every law. A feasibility table over the remaining totals, built once per
initial state, makes the masks exact; a state that violates a law then has probability 0.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = ["ConservationLaws", "ConservationMask", "conservation_laws", "integer_null_space"]

MAX_TABLE = 4_000_000  # feasibility-table candidates per initial state before falling back


@dataclass(frozen=True, eq=False)
class ConservationLaws:
    """Integer conservation laws: ``matrix`` (k, n_species), ``totals`` (k,) at the network's
    initial state, ``species`` in state-vector order. ``matrix @ x`` is constant in time."""

    species: tuple[str, ...]
    matrix: np.ndarray
    totals: np.ndarray

    def __len__(self) -> int:
        return len(self.matrix)

    def __iter__(self):
        """Unpacks as ``L, totals = conservation_laws(net)``."""
        return iter((self.matrix, self.totals))

    def totals_of(self, x0) -> np.ndarray:
        """Conserved totals (k,) of an initial state (or (n, k) for states (n, n_species))."""
        return np.asarray(x0, dtype=np.int64) @ self.matrix.T

    def violated(self, states, x0) -> np.ndarray:
        """Boolean (n,): rows of ``states`` whose conserved totals differ from those of ``x0``."""
        x = np.atleast_2d(np.asarray(states, dtype=np.int64))
        return np.any(self.totals_of(x) != self.totals_of(x0)[None, :], axis=1)

    def describe(self) -> list[str]:
        """Each law as text, e.g. ``'S + C + P = 50'``."""
        return [_law_text(row, self.species) + f" = {int(t)}" for row, t in zip(self.matrix, self.totals)]


def capped_states(laws: ConservationLaws, caps, x0_low, x0_high=None) -> float:
    """How many states of the box 0 <= x <= caps the laws leave reachable (an upper bound): each
    law fixes one species given the others (those of largest caps whose columns are independent),
    times the number of conserved totals the initial counts x0_low..x0_high can make."""
    size = np.asarray(caps, dtype=float) + 1
    L = np.asarray(laws.matrix, dtype=float).reshape(-1, len(size))
    lo = np.asarray(x0_low, dtype=float)
    hi = lo if x0_high is None else np.asarray(x0_high, dtype=float)
    total, fixed = float(np.prod(size)), []
    for j in np.argsort(-size, kind="stable"):
        if len(fixed) == len(L):
            break
        if np.linalg.matrix_rank(L[:, fixed + [int(j)]]) > len(fixed):
            fixed.append(int(j))
            total /= size[j]
    return total * float(np.prod(np.abs(L) @ (hi - lo) + 1)) if len(fixed) else total


def _law_text(row: np.ndarray, species: tuple[str, ...]) -> str:
    parts = []
    for c, s in zip(row.tolist(), species):
        if c:
            sign = "-" if c < 0 else "+"
            term = s if abs(c) == 1 else f"{abs(c)} {s}"
            parts.append((sign, term))
    text = " ".join(f"{sg} {t}" for sg, t in parts)
    return text[2:] if text.startswith("+ ") else "-" + text[2:]


def conservation_laws(network) -> ConservationLaws:
    """The conservation laws of ``network`` and their totals at its initial state."""
    nu = np.asarray(network.stoichiometry, dtype=np.int64)
    dyn = np.flatnonzero(network.dynamic_species)
    S = network.n_species
    basis = _moiety_basis(nu[:, dyn]) if len(dyn) else []
    L = np.zeros((len(basis), S), dtype=np.int64)
    for i, b in enumerate(basis):
        L[i, dyn] = b
    x0 = np.rint(np.asarray(network.initial_state, dtype=float)).astype(np.int64)
    L.setflags(write=False)
    T = L @ x0
    T.setflags(write=False)
    return ConservationLaws(tuple(network.species), L, T)


# ----------------------------------------------------------------------------- exact linear algebra
def _rref(rows: list[list[Fraction]]) -> tuple[list[list[Fraction]], list[int]]:
    """Reduced row echelon form over the rationals: (rows, pivot columns)."""
    A = [list(r) for r in rows]
    n = len(A[0]) if A else 0
    pivots, r = [], 0
    for c in range(n):
        p = next((i for i in range(r, len(A)) if A[i][c] != 0), None)
        if p is None:
            continue
        A[r], A[p] = A[p], A[r]
        piv = A[r][c]
        A[r] = [v / piv for v in A[r]]
        for i in range(len(A)):
            if i != r and A[i][c] != 0:
                f = A[i][c]
                A[i] = [a - f * b for a, b in zip(A[i], A[r])]
        pivots.append(c)
        r += 1
        if r == len(A):
            break
    return A[:r], pivots


def _primitive(v) -> np.ndarray:
    """Integer vector with coprime entries and a positive first nonzero entry."""
    den = math.lcm(*(Fraction(x).denominator for x in v)) if len(v) else 1
    ints = [int(Fraction(x) * den) for x in v]
    g = math.gcd(*ints) or 1
    ints = [x // g for x in ints]
    first = next((x for x in ints if x), 1)
    return np.asarray([-x for x in ints] if first < 0 else ints, dtype=np.int64)


def integer_null_space(A: np.ndarray) -> list[np.ndarray]:
    """Integer basis of {c : A @ c = 0} for an integer matrix ``A`` (exact arithmetic)."""
    A = np.asarray(A, dtype=np.int64)
    n = A.shape[1]
    rows = [[Fraction(int(v)) for v in r] for r in A if np.any(r)]
    R, piv = _rref(rows) if rows else ([], [])
    out = []
    for f in (c for c in range(n) if c not in piv):
        v = [Fraction(0)] * n
        v[f] = Fraction(1)
        for r, p in zip(R, piv):
            v[p] = -r[f]
        out.append(_primitive(v))
    return out


def _rank(vectors: list[np.ndarray]) -> int:
    if not vectors:
        return 0
    return len(_rref([[Fraction(int(x)) for x in v] for v in vectors])[0])


def _semipositive(nu: np.ndarray, cap: int = 4000) -> list[np.ndarray] | None:
    """Minimal semi-positive invariants (c >= 0, nu @ c = 0) by the Farkas algorithm, or None
    when the intermediate tableau grows beyond ``cap`` rows."""
    n = nu.shape[1]
    D = [(nu[:, i].astype(object).tolist(), [1 if j == i else 0 for j in range(n)]) for i in range(n)]
    for r in range(nu.shape[0]):
        pos = [d for d in D if d[0][r] > 0]
        neg = [d for d in D if d[0][r] < 0]
        new = [d for d in D if d[0][r] == 0]
        for a in pos:
            for b in neg:
                fa, fb = -b[0][r], a[0][r]
                row = ([fa * x + fb * y for x, y in zip(a[0], b[0])], [fa * x + fb * y for x, y in zip(a[1], b[1])])
                g = math.gcd(*row[0], *row[1]) or 1
                new.append(([x // g for x in row[0]], [x // g for x in row[1]]))
        new = _minimal_support(new)
        if len(new) > cap:
            return None
        D = new
    return [np.asarray(d[1], dtype=np.int64) for d in D]


def _minimal_support(rows: list) -> list:
    """Drop duplicates and rows whose support contains another row's support."""
    uniq = {tuple(r[1]): r for r in rows}
    items = list(uniq.values())
    sup = [frozenset(i for i, v in enumerate(r[1]) if v) for r in items]
    return [r for r, s in zip(items, sup) if not any(t < s for t in sup)]


def _moiety_basis(nu: np.ndarray) -> list[np.ndarray]:
    """Basis of the left null space: semi-positive moieties first (smallest support, then
    lexicographic), completed by exact integer null-space vectors where they do not span it."""
    null = integer_null_space(nu)
    if not null:
        return []
    cands = _semipositive(nu) or []
    cands.sort(key=lambda v: (int(np.count_nonzero(v)), [-int(x) for x in v]))
    basis: list[np.ndarray] = []
    for v in cands + null:
        if len(basis) == len(null):
            break
        if _rank(basis + [v]) > len(basis):
            basis.append(v)
    return basis


# ----------------------------------------------------------------------------- masks
class ConservationMask:
    """Exact masks for autoregressive sampling in network species order, for one initial state.

    ``allowed(prefix)`` for prefixes (m, j) of the first j species counts gives a boolean (m, V_j)
    array of counts of species j that still admit a completion inside ``vocab`` satisfying every
    law (None where species j is in no law). ``valid(states)`` says which full states satisfy them.
    """

    def __init__(self, laws: ConservationLaws, x0, vocab: tuple[int, ...]):
        self.L = np.asarray(laws.matrix, dtype=np.int64)
        self.T = laws.totals_of(x0)
        self.vocab = tuple(int(v) for v in vocab)
        self.positions = [j for j in range(self.L.shape[1]) if np.any(self.L[:, j])]
        self.exact = True
        self.tables = self._tables()

    def valid(self, states) -> np.ndarray:
        x = np.atleast_2d(np.asarray(states, dtype=np.int64))
        return np.all(x @ self.L.T == self.T[None, :], axis=1)

    def remaining(self, prefix: np.ndarray) -> np.ndarray:
        """Totals still to be accounted for by the species after the prefix: (m, k)."""
        j = prefix.shape[1]
        return self.T[None, :] - prefix.astype(np.int64) @ self.L[:, :j].T

    def allowed(self, prefix: np.ndarray) -> np.ndarray | None:
        j = prefix.shape[1]
        if j not in self.positions:
            return None
        R = self.remaining(np.asarray(prefix))
        x = np.arange(self.vocab[j], dtype=np.int64)
        out = np.empty((len(R), len(x)), dtype=bool)
        step = max(1, 2_000_000 // max(len(x) * len(self.T), 1))
        for a in range(0, len(R), step):
            cand = R[a : a + step, None, :] - x[None, :, None] * self.L[:, j][None, None, :]
            out[a : a + step] = self._ok(self.positions.index(j) + 1, cand)
        out[~out.any(axis=1)] = True  # no completion inside the vocabulary: leave the row unmasked
        return out

    # ------------------------------------------------------------------ feasibility
    def _bounds(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Range of the totals the law species from ``level`` on can still make up."""
        rest = self.positions[level:]
        L = self.L[:, rest]
        V = np.asarray([self.vocab[j] - 1 for j in rest], dtype=np.int64)
        return (np.minimum(L, 0) * V).sum(axis=1), (np.maximum(L, 0) * V).sum(axis=1)

    def _ok(self, level: int, cand: np.ndarray) -> np.ndarray:
        """Whether remaining totals ``cand`` (..., k) can be completed by law species from ``level`` on."""
        lo, hi = self._bounds(level)
        inside = np.all((cand >= lo) & (cand <= hi), axis=-1)
        if level == len(self.positions):
            return inside & np.all(cand == 0, axis=-1)
        if not self.exact:
            return inside & self._gcd_ok(level, cand)
        keys = self._key(level, np.where(inside[..., None], cand, lo))
        table = self.tables[level]
        pos = np.minimum(np.searchsorted(table, keys), len(table) - 1)
        return inside & (table[pos] == keys) if len(table) else np.zeros_like(inside)

    def _gcd_ok(self, level: int, cand: np.ndarray) -> np.ndarray:
        g = np.gcd.reduce(np.abs(self.L[:, self.positions[level:]]), axis=1)
        return np.all((g == 0) | (cand % np.maximum(g, 1) == 0), axis=-1)

    def _key(self, level: int, R: np.ndarray) -> np.ndarray:
        lo, hi = self._bounds(level)
        radix = np.concatenate([[1], np.cumprod(hi - lo + 1)[:-1]]).astype(np.int64)
        return ((R - lo) * radix).sum(axis=-1)

    def _tables(self) -> list[np.ndarray]:
        """Sorted keys of the feasible remaining totals before each law species (forward
        reachable from the totals, then kept where a completion exists)."""
        P = len(self.positions)
        spans = [np.prod((h - l + 1).astype(float)) for l, h in (self._bounds(i) for i in range(P + 1))]
        if max(spans, default=1) > 2**62:
            return self._give_up("the totals' range is too wide")
        reach = [self.T[None, :]]
        for i, j in enumerate(self.positions):
            x = np.arange(self.vocab[j], dtype=np.int64)
            if len(reach[-1]) * len(x) > MAX_TABLE:
                return self._give_up(f"more than {MAX_TABLE} candidate totals")
            cand = (reach[-1][:, None, :] - x[None, :, None] * self.L[:, j]).reshape(-1, len(self.T))
            lo, hi = self._bounds(i + 1)
            cand = cand[np.all((cand >= lo) & (cand <= hi), axis=1)]
            reach.append(np.unique(cand, axis=0))
        feas = [None] * (P + 1)
        feas[P] = reach[P][np.all(reach[P] == 0, axis=1)]
        tables = [np.zeros(0, np.int64)] * (P + 1)
        tables[P] = np.sort(self._key(P, feas[P]))
        for i in range(P - 1, -1, -1):
            j = self.positions[i]
            x = np.arange(self.vocab[j], dtype=np.int64)
            cand = reach[i][:, None, :] - x[None, :, None] * self.L[:, j]
            self.tables = tables
            ok = self._ok(i + 1, cand).any(axis=1)
            tables[i] = np.sort(self._key(i, reach[i][ok]))
        return tables

    def _give_up(self, why: str) -> list[np.ndarray]:
        warnings.warn(f"conservation laws: {why}; counts are masked by bounds and divisibility only, "
                      "so a rare dead end can still break a law", RuntimeWarning, stacklevel=3)
        self.exact = False
        return []
