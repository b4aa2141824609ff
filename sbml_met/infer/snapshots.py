"""Bayesian posterior of rate parameters from snapshot counts of many cells (:func:`posterior`).

The MET paper's experiment. The likelihood of each cell is the marginal probability of its observed
species (unobserved species summed out) under either the exact CME (:class:`~sbml_met.FSPSolver`,
one shared state space for all parameter points) or a trained MET (one batched network pass per
ensemble of walkers). Sampled with emcee's affine-invariant ensemble sampler, seeded.
"""

from __future__ import annotations

import itertools
import math
import sys
import time as _time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import InvalidArgumentError
from ..network import ReactionNetwork
from ..results import SSAResult
from ..support import check_support
from .tables import ID_COLUMNS, long_to_wide


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
        idcol = next((c for c in ID_COLUMNS if c in df.columns), None)
        if idcol is None:
            if df["species"].nunique() > 1:
                raise InvalidArgumentError(
                    "long data with several species needs a 'cell' (or 'trajectory') column to pair the "
                    "counts of one cell")
            df = pd.DataFrame({"time": df["time"].to_numpy(), str(df["species"].iloc[0]): df["count"].to_numpy()})
        else:
            df = long_to_wide(df, [idcol, "time"])
    extra = [c for c in df.columns if c not in species and c != "time" and c not in ID_COLUMNS]
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
        from ..fsp import FSPSolver

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
        from ..plot import Figure

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
    from ..met import MET

    if isinstance(model, MET):
        met, network = model, model.network
    elif isinstance(model, ReactionNetwork):
        check_support(model, "fsp")
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
