r"""Exact answers for first-order (linear-propensity) reaction networks, beyond the reach of FSP.

Two solvers, both checked against :func:`sbml_met.solve_fsp` in the tests:

* :func:`monomolecular`: the Jahnke-Huisinga (2007) class - constant inflow ``0 -> X_k``,
  conversion ``X_j -> X_k`` and degradation ``X_j -> 0`` with propensities ``c`` and ``c*X_j``.
  Started from zero counts the CME solution is a product of Poissons whose means solve the
  linear rate equations. Catalytic production ``X_j -> X_j + X_k`` is *not* in this class (it
  over-disperses X_k) and is refused, as is any other reaction outside it (each one named).
* :func:`first_order_marginals`: every first-order network - immigration ``0 -> products`` at a
  constant rate and reactions whose propensity is ``c*X_j`` with any products (catalytic
  production and branching included). Molecules then evolve independently, as a multitype
  branching process with immigration. The single-ancestor generating functions
  :math:`\phi_i(z, t) = E[z^{X(t)} | X(0) = e_i]` obey the backward Kolmogorov equations

  .. math:: \partial_t \phi_i = \sum_{r:\,i} c_r \Big(\prod_k \phi_k^{p_{rk}} - \phi_i\Big),
            \qquad \phi_i(z, 0) = z_i,

  (the sum runs over the events of one molecule of type i, ``p_r`` their offspring, the ancestor
  included when it survives), and the full generating function is

  .. math:: G(z, t) = \exp\Big(\sum_{\mathrm{imm}} k \int_0^t (\prod_k \phi_k^{p_k} - 1)\,ds\Big)
            \prod_i \phi_i^{x_i(0)}.

  The marginal of species j follows from G on the unit circle, ``z_j = exp(2 pi i m / N)`` and
  all other ``z = 1``, integrated as complex ODEs (vectorised over m and over species) and inverted
  by FFT. N is sized from the exact means and variances (:func:`first_order_moments`) and
  doubled until the top of the grid holds no probability, so the answer is not aliased.

The joint of a first-order network with catalytic reactions is correlated and not computed here.
:func:`first_order_marginals` returns a :class:`MarginalDistribution`: its ``states`` and
``probabilities`` are the comonotone (quantile) coupling of the exact marginals - one row per
segment of the merged marginal CDFs - so ``.marginal``, ``.to_frame``, ``.moments`` (means and
standard deviations) and :func:`sbml_met.compare` are exact, while ``.log_prob``, ``.sample`` and
``.joint_frame`` raise, because the rows are not the joint (``metadata["joint"] is False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.integrate import solve_ivp
from scipy.stats import poisson

from .errors import InvalidArgumentError, Unsupported, UnsupportedSBMLError
from .network import ReactionNetwork, check_times
from .results import Distribution

__all__ = ["FirstOrderNetwork", "MarginalDistribution", "ProductDistribution", "first_order",
           "first_order_marginals", "first_order_moments", "monomolecular"]

_RTOL = 1e-9  # tolerance of the linearity probe on the propensities


# ------------------------------------------------------------------------------- structure
@dataclass(frozen=True)
class FirstOrderNetwork:
    """A network read as a branching process with immigration (dynamic species only).

    ``immigration``: (rate, offspring (S,)) pairs; ``events``: (type i, rate c, offspring (S,))
    triples - a molecule of type i is replaced, at rate c, by ``offspring`` molecules."""

    species: tuple[str, ...]
    x0: np.ndarray
    immigration: tuple[tuple[float, np.ndarray], ...]
    events: tuple[tuple[int, float, np.ndarray], ...]
    sources: tuple[str, ...]  # reaction id of each immigration term, then of each event

    def drift(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean equations dm/dt = A m + b: (A (S, S), b (S,))."""
        S = len(self.species)
        A, b = np.zeros((S, S)), np.zeros(S)
        for c, p in self.immigration:
            b += c * p
        for i, c, p in self.events:
            A[:, i] += c * p
            A[i, i] -= c
        return A, b


def first_order(network: ReactionNetwork, jahnke_huisinga: bool = False) -> FirstOrderNetwork:
    """Read ``network`` as a first-order network, or raise :class:`UnsupportedSBMLError` naming
    every reaction (and other element) outside the class.

    Propensities are probed numerically: each must be affine in the dynamic species counts,
    ``c0 + sum_j c_j X_j`` with every coefficient >= 0; the constant part is an immigration whose
    net change must be >= 0, each linear part c_j X_j an event of type j whose offspring
    ``e_j + nu_r`` must be >= 0. With ``jahnke_huisinga=True`` every immigration and event must
    also make at most one molecule (inflow, conversion, degradation)."""
    reasons: list[Unsupported] = []
    for ev in network.events:
        reasons.append(Unsupported(ev.id, "event (the analytic solutions assume no events)"))
    for rule in network.rules:
        if rule.species_index is not None:
            reasons.append(Unsupported(rule.variable, "species defined by an assignment rule"))
    dyn = np.flatnonzero(network.dynamic_species)
    species = tuple(network.species[i] for i in dyn)
    nu = np.asarray(network.stoichiometry)[:, dyn]
    a, coef, rand = _probe(network, dyn)
    immigration, events, imm_src, ev_src = [], [], [], []
    for r, rx in enumerate(network.reactions):
        scale = max(1.0, float(np.abs(a[:, r]).max()))
        why = _not_first_order(rx, a[:, r], coef[r], rand, scale)
        if why is not None:
            reasons.append(Unsupported(rx.id, why))
            continue
        imm, evs, bad = _branching_terms(rx, float(a[0, r]), coef[r], nu[r], species, jahnke_huisinga, scale)
        reasons += [Unsupported(rx.id, b) for b in bad]
        immigration += imm
        imm_src += [rx.id] * len(imm)
        events += evs
        ev_src += [rx.id] * len(evs)
    if reasons:
        raise UnsupportedSBMLError(reasons)
    return FirstOrderNetwork(species, np.asarray(network.initial_state, dtype=float)[dyn],
                             tuple(immigration), tuple(events), tuple(imm_src + ev_src))


def _probe(network: ReactionNetwork, dyn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Propensities at probe states (n_probe, R): zero counts, each dynamic species at 1 and 3
    alone, then 4 random states; with the linear coefficients (R, S) and the random states (4, S)."""
    S = len(dyn)
    base = np.asarray(network.initial_state, dtype=float).copy()
    base[dyn] = 0.0
    rng = np.random.default_rng(12345)
    probes = [base]
    for j in range(S):
        for m in (1.0, 3.0):
            x = base.copy()
            x[dyn[j]] = m
            probes.append(x)
    rand = rng.integers(0, 25, size=(4, S)).astype(float)
    for row in rand:
        x = base.copy()
        x[dyn] = row
        probes.append(x)
    a = np.atleast_2d(network.propensities(np.array(probes), 0.0))  # (n_probe, R)
    a0 = a[0]
    coef = np.stack([a[1 + 2 * j] - a0 for j in range(S)], axis=1) if S else np.zeros((len(a0), 0))  # (R, S)
    return a, coef, rand


def _not_first_order(rx, a: np.ndarray, coef: np.ndarray, rand: np.ndarray, scale: float) -> str | None:
    """Why one reaction's probed propensities ``a`` are not affine with coefficients >= 0 (or None)."""
    S = len(coef)
    lin_ok = True
    for j in range(S):
        if abs(a[2 + 2 * j] - (a[0] + 3 * coef[j])) > _RTOL * scale:
            lin_ok = False
    if np.any(np.abs(a[1 + 2 * S:] - (a[0] + rand @ coef)) > _RTOL * scale):
        lin_ok = False
    if not np.all(np.isfinite(a)) or not lin_ok:
        return f"propensity '{rx.rate_law}' is not linear in the species counts (not a first-order reaction)"
    if a[0] < -_RTOL * scale or np.any(coef < -_RTOL * scale):
        return (f"propensity '{rx.rate_law}' decreases as a species count grows (negative coefficient; "
                "not a first-order reaction)")
    return None


def _branching_terms(rx, a0: float, coef: np.ndarray, nu: np.ndarray, species: tuple[str, ...],
                     jahnke_huisinga: bool, scale: float) -> tuple[list, list, list[str]]:
    """One affine reaction as (immigration terms, events, reasons it is outside the class)."""
    immigration, events, reasons = [], [], []
    if a0 > _RTOL * scale:
        if np.any(nu < 0):
            reasons.append(f"constant propensity '{rx.rate_law}' but the reaction consumes species (not first order)")
        elif jahnke_huisinga and nu.sum() > 1:
            reasons.append(f"inflow {rx.equation()} makes {int(nu.sum())} molecules; the Jahnke-Huisinga "
                           "class allows 0 -> X_k only")
        else:
            immigration.append((float(a0), nu.astype(float)))
    for j in np.flatnonzero(coef > _RTOL * scale):
        off = nu.copy()
        off[j] += 1
        if np.any(off < 0):
            reasons.append(f"propensity proportional to {species[j]} but {rx.equation()} consumes other "
                           "species (not first order)")
        elif jahnke_huisinga and off.sum() > 1:
            what = ("catalytic production (the catalyst survives and makes another molecule)"
                    if off[j] >= 1 else "production of more than one molecule")
            reasons.append(f"{rx.equation()} is {what}: outside the Jahnke-Huisinga monomolecular class, "
                           "whose solution from zero counts is a product of Poissons; use "
                           "sbml_met.analytic.first_order_marginals for exact marginals")
        elif not (off[j] == 1 and off.sum() == 1):  # X_j -> X_j changes nothing
            events.append((int(j), float(coef[j]), off.astype(float)))
    return immigration, events, reasons


# ------------------------------------------------------------------------------- moments
def first_order_moments(network: ReactionNetwork, times: Sequence[float] | np.ndarray,
                        fo: FirstOrderNetwork | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact means (T, S) and covariances (T, S, S) of the dynamic species of a first-order
    network, from the closed linear moment equations dm/dt = A m + b,
    dC/dt = A C + C A^T + D(m) (D: the diffusion matrix sum_r a_r(m) nu_r nu_r^T)."""
    fo = fo or first_order(network)
    grid = check_times(times)
    A, b = fo.drift()
    S = len(fo.species)
    imm = [(c, p) for c, p in fo.immigration]
    evs = [(i, c, p - np.eye(S)[i]) for i, c, p in fo.events]

    def rhs(_t, y):
        m, C = y[:S], y[S:].reshape(S, S)
        D = np.zeros((S, S))
        for c, p in imm:
            D += c * np.outer(p, p)
        for i, c, d in evs:
            D += c * m[i] * np.outer(d, d)
        return np.concatenate([A @ m + b, (A @ C + C @ A.T + D).reshape(-1)])

    y0 = np.concatenate([fo.x0, np.zeros(S * S)])
    tt = np.unique(np.concatenate([[0.0], grid]))
    sol = solve_ivp(rhs, (0.0, float(tt[-1])), y0, t_eval=tt, method="DOP853", rtol=1e-11, atol=1e-12)
    if not sol.success:  # pragma: no cover - linear ODE
        raise InvalidArgumentError(f"moment equations failed: {sol.message}")
    idx = np.searchsorted(tt, grid)
    Y = sol.y[:, idx].T
    return Y[:, :S], Y[:, S:].reshape(-1, S, S)


# ------------------------------------------------------------------------------- distributions
def _coupling(pmfs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Comonotone coupling of marginals: rows (m, S) and probabilities (m,) with exactly these
    marginals (one row per segment between the merged CDF breakpoints)."""
    cdfs = [np.cumsum(p) / max(p.sum(), 1e-300) for p in pmfs]
    breaks = np.unique(np.concatenate([[0.0]] + [np.clip(c[:-1], 0.0, 1.0) for c in cdfs] + [[1.0]]))
    w = np.diff(breaks)
    keep = w > 0
    mid = (breaks[:-1] + breaks[1:])[keep] / 2
    states = np.stack([np.minimum(np.searchsorted(c, mid, side="right"), len(c) - 1) for c in cdfs], axis=1)
    total = np.array([p.sum() for p in pmfs]).min()
    return states.astype(np.int64), w[keep] * total


@dataclass(frozen=True, eq=False)
class MarginalDistribution(Distribution):
    """Exact per-species marginals stored as a comonotone coupling (see the module docstring).

    ``.marginal``, ``.to_frame``, ``.moments`` are exact; the rows are not the joint, so
    ``log_prob``, ``sample`` and ``joint_frame`` raise :class:`InvalidArgumentError`."""

    def _no_joint(self, what: str):
        raise InvalidArgumentError(
            f"this {self.method!r} result holds exact per-species marginals only (metadata['joint'] is "
            f"False); {what} needs the joint distribution, which is not available")

    def log_prob(self, states, time):  # type: ignore[override]
        self._no_joint("log_prob")

    def sample(self, n, time, seed=None):  # type: ignore[override]
        self._no_joint("sample")

    def joint_frame(self, time):  # type: ignore[override]
        self._no_joint("joint_frame")


@dataclass(frozen=True, eq=False)
class ProductDistribution(MarginalDistribution):
    """Independent species (product form): marginals stored as in :class:`MarginalDistribution`,
    plus exact ``log_prob`` and ``sample`` from the product of the marginals
    (``metadata["pmfs"][time index][species index]``)."""

    def log_prob(self, states, time):  # type: ignore[override]
        j = self._t(time)
        x = np.atleast_2d(np.asarray(states, dtype=np.int64))
        if x.shape[1] != len(self.species):
            raise InvalidArgumentError(f"states need {len(self.species)} columns ({', '.join(self.species)})")
        out = np.zeros(len(x))
        for s, pmf in enumerate(self.metadata["pmfs"][j]):
            ok = (x[:, s] >= 0) & (x[:, s] < len(pmf))
            with np.errstate(divide="ignore"):
                out += np.where(ok, np.log(pmf[np.clip(x[:, s], 0, len(pmf) - 1)]), -np.inf)
        return out

    def sample(self, n, time, seed=None):  # type: ignore[override]
        j = self._t(time)
        rng = np.random.default_rng(seed)
        cols = [rng.choice(len(p), size=int(n), p=p / p.sum()) for p in self.metadata["pmfs"][j]]
        return np.stack(cols, axis=1).astype(np.int64)


def _full_species(network: ReactionNetwork, fo: FirstOrderNetwork, pmfs_dyn: list[np.ndarray]) -> list[np.ndarray]:
    """Marginals of every species: dynamic ones from ``pmfs_dyn``, the others a point mass."""
    out, k = [], 0
    for i, dynamic in enumerate(network.dynamic_species):
        if dynamic:
            out.append(pmfs_dyn[k])
            k += 1
        else:
            v = int(round(float(network.initial_state[i])))
            p = np.zeros(v + 1)
            p[v] = 1.0
            out.append(p)
    return out


def _marginals_result(cls, network, grid, per_time, method, metadata) -> Distribution:
    states, probs, lost = [], [], []
    for pmfs in per_time:
        st, pr = _coupling(pmfs)
        states.append(st)
        probs.append(pr)
        lost.append(max(0.0, 1.0 - min(float(p.sum()) for p in pmfs)))
    meta = dict(metadata, joint=False, storage="comonotone coupling of exact marginals", pmfs=per_time)
    return cls(tuple(network.species), np.asarray(grid, dtype=float), tuple(states), tuple(probs),
               method=method, truncation_error=np.asarray(lost), metadata=meta)


def monomolecular(network: ReactionNetwork, times: Sequence[float] | np.ndarray, *,
                  tail: float = 1e-14, max_states: int = 1_000_000) -> Distribution:
    """Exact CME solution of a Jahnke-Huisinga monomolecular network started from zero counts:
    a product of Poissons whose means solve the linear rate equations (method "analytic").

    Raises :class:`UnsupportedSBMLError` naming each reaction outside the class (catalytic
    production, bimolecular or nonlinear rate laws, ...). Every dynamic species must start at 0
    (multinomial parts for initial molecules are not implemented: use
    :func:`first_order_marginals`, which handles them, for the marginals). Returns the joint as
    a :class:`Distribution` when the product of the per-species supports (Poisson mass above
    ``1 - tail``) has at most ``max_states`` states, else a :class:`ProductDistribution` (exact
    marginals, log_prob and sampling; no enumerated joint)."""
    fo = first_order(network, jahnke_huisinga=True)
    grid = check_times(times)
    nonzero = [s for s, v in zip(fo.species, fo.x0) if v != 0]
    if nonzero:
        raise InvalidArgumentError(
            "monomolecular() needs every species to start at 0 (product-Poisson solution); "
            f"these start above 0: {', '.join(nonzero)}. Use first_order_marginals() for exact marginals")
    means, _ = first_order_moments(network, grid, fo)
    per_time = []
    for lam in means:
        pmfs = []
        for m in np.maximum(lam, 0.0):
            top = int(poisson.isf(tail, m)) + 1 if m > 0 else 0
            pmfs.append(poisson.pmf(np.arange(top + 1), m))
        per_time.append(_full_species(network, fo, pmfs))
    meta = {"reference": "Jahnke & Huisinga 2007: product of Poissons", "means": means}
    sizes = [int(np.prod([len(p) for p in pm], dtype=float)) for pm in per_time]
    if max(sizes) > max_states:
        return _marginals_result(ProductDistribution, network, grid, per_time, "analytic", meta)
    states, probs, lost = [], [], []
    for pm in per_time:
        grids = np.meshgrid(*[np.arange(len(p)) for p in pm], indexing="ij")
        st = np.stack([g.reshape(-1) for g in grids], axis=1).astype(np.int64)
        pr = np.ones(len(st))
        for s, p in enumerate(pm):
            pr *= p[st[:, s]]
        keep = pr > 0
        states.append(st[keep])
        probs.append(pr[keep])
        lost.append(max(0.0, 1.0 - float(pr.sum())))
    return Distribution(tuple(network.species), grid, tuple(states), tuple(probs), method="analytic",
                        truncation_error=np.asarray(lost), metadata=dict(meta, joint=True))


def _pgf_marginals(fo: FirstOrderNetwork, grid: np.ndarray, N: np.ndarray, rtol: float, atol: float) -> list[list[np.ndarray]]:
    """Marginal pmfs (per time, per dynamic species) on grids of N[j] points, by integrating the
    backward equations on the unit circle and inverting by FFT."""
    S = len(fo.species)
    # evaluation points: block j holds N[j] points with z_j on the circle, other z = 1
    offs = np.concatenate([[0], np.cumsum(N)])
    M = int(offs[-1])
    z = np.ones((S, M), dtype=complex)
    for j in range(S):
        z[j, offs[j]:offs[j + 1]] = np.exp(2j * np.pi * np.arange(N[j]) / N[j])
    # one reduced system per block would be smaller; all S types over all M points is simple and exact
    events = [(i, c, np.flatnonzero(p), p[np.flatnonzero(p)].astype(int)) for i, c, p in fo.events]
    imm = [(c, np.flatnonzero(p), p[np.flatnonzero(p)].astype(int)) for c, p in fo.immigration]

    def prod_pow(F, idx, pw):
        out = np.ones(F.shape[1], dtype=complex)
        for k, e in zip(idx, pw):
            out = out * (F[k] ** e if e != 1 else F[k])
        return out

    def rhs(_t, y):
        F = y[: S * M].reshape(S, M)
        dF = np.zeros_like(F)
        for i, c, idx, pw in events:
            dF[i] += c * (prod_pow(F, idx, pw) - F[i])
        dL = np.zeros(M, dtype=complex)
        for c, idx, pw in imm:
            dL += c * (prod_pow(F, idx, pw) - 1.0)
        return np.concatenate([dF.reshape(-1), dL])

    y0 = np.concatenate([z.reshape(-1), np.zeros(M, dtype=complex)])
    tt = np.unique(np.concatenate([[0.0], grid]))
    sol = solve_ivp(rhs, (0.0, float(tt[-1])), y0, t_eval=tt, method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:  # pragma: no cover
        raise InvalidArgumentError(f"generating-function equations failed: {sol.message}")
    out = []
    for k in np.searchsorted(tt, grid):
        y = sol.y[:, k]
        F, L = y[: S * M].reshape(S, M), y[S * M:]
        G = np.exp(L)
        for i in np.flatnonzero(fo.x0 > 0):
            G = G * F[i] ** int(round(fo.x0[i]))
        pm = []
        for j in range(S):
            g = G[offs[j]:offs[j + 1]]
            p = np.fft.fft(g).real / N[j]
            pm.append(np.clip(p, 0.0, None))
        out.append(pm)
    return out


def first_order_marginals(network: ReactionNetwork, times: Sequence[float] | np.ndarray, *,
                          sds: float = 12.0, rtol: float = 1e-10, atol: float = 1e-13,
                          max_points: int = 1 << 16) -> Distribution:
    """Exact marginal distribution of every species of a first-order network (method
    "analytic"), by the generating function of the multitype branching process with immigration
    (see the module docstring). Catalytic production is handled; initial molecules too.

    Returns a :class:`MarginalDistribution`: ``.marginal(species, time)``, ``.to_frame()``,
    ``.moments()`` are exact (``metadata["pmfs"][time index][species index]`` holds the pmfs);
    no joint is claimed. Raises :class:`UnsupportedSBMLError` naming every reaction that is not
    first order. ``sds``: the FFT grid covers at least mean + sds * sd (then doubles until no
    probability above 1e-13 sits in the grid's top 10%, so nothing aliases)."""
    fo = first_order(network)
    grid = check_times(times)
    S = len(fo.species)
    if S == 0:
        per_time = [_full_species(network, fo, []) for _ in grid]
        return _marginals_result(MarginalDistribution, network, grid, per_time, "analytic", {})
    means, cov = first_order_moments(network, grid, fo)
    sd = np.sqrt(np.maximum(np.diagonal(cov, axis1=1, axis2=2), 0.0))
    need = np.max(means + sds * sd, axis=0) + 16
    N = (2 ** np.ceil(np.log2(np.maximum(need, 16)))).astype(int)
    while True:
        pmf = _pgf_marginals(fo, grid, N, rtol, atol)
        grow = np.zeros(S, dtype=bool)
        for pm in pmf:
            for j, p in enumerate(pm):
                if p[int(0.9 * N[j]):].sum() > 1e-13:
                    grow[j] = True
        if not grow.any():
            break
        if np.any(N[grow] * 2 > max_points):
            bad = [fo.species[j] for j in np.flatnonzero(grow)]
            raise InvalidArgumentError(f"counts of {', '.join(bad)} need more than {max_points} points")
        N = np.where(grow, 2 * N, N)
    trimmed = []
    for pm in pmf:
        row = []
        for p in pm:
            nz = np.flatnonzero(p > 1e-300)
            row.append(p[: (nz[-1] + 1 if nz.size else 1)])
        trimmed.append(_full_species(network, fo, row))
    meta = {"reference": "multitype branching process with immigration: generating function + FFT",
            "fft_points": dict(zip(fo.species, N.tolist())), "means": means, "covariances": cov}
    return _marginals_result(MarginalDistribution, network, grid, trimmed, "analytic", meta)
