"""Teachers: where a MET's training signal comes from. A registry so new teachers (the RL teachers
"rlmf" and "fsp-reward") plug into :func:`sbml_met.met.train` without touching the loop.

A teacher is a class with ``prepare(ctx)`` (build data, fix the count vocabulary), ``vocab``
(counts 0..V-1 per species), ``loss(net, ctx)`` -> (loss tensor, KL/NLL figure for the log) and
``reference(ctx, theta, x0, t)`` -> exact (or sampled) marginals for validation prompts.

* ``"fsp"``: distillation from exact CME distributions, loss KL(p_fsp || p_met). Each (prompt, time)
  is split into its length-(S-1) prefixes u with weight P(u) and the exact last conditional
  p(x_S | u); rows are drawn with probability P(u), so the loss is an unbiased estimate of the
  joint KL at the cost of a few rows per prompt (2 for a gene + protein model).
* ``"ssa"``: maximum likelihood on exact SSA samples, for state spaces beyond FSP.
* ``"poisson"``: the exact answer of an immigration-death network (one species; Poisson plus a
  binomial for surviving initial molecules), a tiny teacher for tests.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from scipy.stats import binom, poisson

from ..errors import InvalidArgumentError
from ._cme import StateSpace, batched_solve, ssa_batch
from .model import VocabularyOverflowWarning
from .prompts import PromptSpace

TEACHERS: dict[str, Callable[..., "Teacher"]] = {}


def register_teacher(name: str):
    """Class decorator: make a teacher available as ``train(..., teacher=name)``."""
    def deco(cls):
        TEACHERS[name] = cls
        cls.name = name
        return cls
    return deco


def get_teacher(name: str, **options) -> "Teacher":
    if name not in TEACHERS:
        raise InvalidArgumentError(f"unknown teacher {name!r}; choose one of: {', '.join(TEACHERS)}")
    return TEACHERS[name](**options)


@dataclass
class TrainContext:
    """What a teacher sees: the network, prompt space, seed, budget and generators."""

    network: Any
    space: PromptSpace
    seed: int
    deadline: float
    rng: np.random.Generator
    batch_size: int = 512
    log: list = field(default_factory=list)
    progress: bool = False
    start: float = 0.0
    state_space: Any = None

    def params_dict(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        return {p: theta[:, i] for i, p in enumerate(self.space.free)}


class Teacher:
    """Base class; see the module docstring for the protocol."""

    name = ""
    vocab: tuple[int, ...] = ()

    def prepare(self, ctx: TrainContext) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def loss(self, net, ctx: TrainContext) -> tuple[torch.Tensor, float]:  # pragma: no cover
        raise NotImplementedError

    def reference(self, ctx: TrainContext, theta, x0, t) -> list[list[np.ndarray]]:
        """Marginals per validation prompt and species (default: private FSP, else SSA)."""
        return fsp_or_ssa_reference(ctx, theta, x0, t)


# ------------------------------------------------------------------------------- helpers
def estimate_caps(ctx: TrainContext, n: int = 2048, margin: float = 3.0) -> np.ndarray:
    """Upper count bounds per species from exact SSA over the box (corners included)."""
    net, space = ctx.network, ctx.space
    theta, x0, _ = space.sobol(n, seed=ctx.seed + 104729, mode="mixed")
    corner = np.asarray(space.high)[None, :].repeat(64, axis=0)
    theta = np.concatenate([theta, corner])
    x0 = np.concatenate([x0, np.asarray(space.init_high)[None, :].repeat(64, axis=0)])
    K = 16
    rec = np.linspace(space.t_min, space.t_max, K)[None, :].repeat(len(theta), axis=0)
    out = ssa_batch(net, ctx.params_dict(theta), x0, rec, np.random.default_rng(ctx.seed + 7))
    mx = np.maximum(out.max(axis=(0, 1)), np.asarray(space.init_high))
    dyn = net.dynamic_species
    caps = np.where(dyn, np.ceil(mx + margin * np.sqrt(mx + 1) + 5), mx)
    # a species that never exceeds 1 in the SSA (e.g. a 0/1 gene) keeps its exact range
    caps = np.where(mx <= 1, mx, caps)
    return caps.astype(np.int64)


def fsp_or_ssa_reference(ctx: TrainContext, theta, x0, t, n_ssa: int = 4000) -> list[list[np.ndarray]]:
    """Exact marginals by the private FSP when the state space is small, else SSA histograms."""
    space = ctx.state_space
    S = ctx.network.n_species
    refs = []
    if space is not None:
        for i in range(len(theta)):
            p0 = np.zeros(space.n)
            p0[space.index(x0[i][None, :].astype(np.int64))[0]] = 1.0
            p = space.solve({k: v[i] for k, v in ctx.params_dict(theta).items()}, p0, np.array([t[i]]))[0]
            refs.append([np.bincount(space.states[:, s], weights=p) for s in range(S)])
        return refs
    m = len(theta)
    rep = np.repeat(np.arange(m), n_ssa)
    out = ssa_batch(ctx.network, ctx.params_dict(theta[rep]), x0[rep], t[rep][:, None],
                    np.random.default_rng(ctx.seed + 31337))[:, 0, :].astype(np.int64)
    for i in range(m):
        block = out[i * n_ssa : (i + 1) * n_ssa]
        refs.append([np.bincount(block[:, s]) / n_ssa for s in range(S)])
    return refs


class _Rows:
    """Distillation rows: prompt features per item, prefixes, row weights, dense last conditionals."""

    def __init__(self, feats, item, pre, w, tgt, ent):
        self.feats = torch.as_tensor(np.ascontiguousarray(feats))
        self.item = np.asarray(item, dtype=np.int64)
        self.pre = torch.as_tensor(np.ascontiguousarray(pre), dtype=torch.long)
        self.w = np.asarray(w, dtype=float)
        self.tgt = torch.as_tensor(np.ascontiguousarray(tgt), dtype=torch.float32)
        self.ent = torch.as_tensor(np.asarray(ent, dtype=float) / np.maximum(self.w, 1e-300), dtype=torch.float32)
        self.cdf = np.cumsum(self.w)
        self.n_items = len(feats)

    def batch_loss(self, net, rng: np.random.Generator, B: int) -> tuple[torch.Tensor, float]:
        u = rng.random(B) * self.cdf[-1]
        idx = np.minimum(np.searchsorted(self.cdf, u, side="right"), len(self.cdf) - 1)
        f = self.feats[self.item[idx]]
        pre = self.pre[idx]
        lp = net.logits(f, pre)
        ce = -(self.tgt[idx] * lp[-1]).sum(dim=1)
        for j in range(pre.shape[1]):
            ce = ce - lp[j].gather(1, pre[:, j : j + 1]).squeeze(1)
        loss = ce.mean()
        kl = float((ce.detach() - self.ent[idx]).mean()) * self.cdf[-1] / self.n_items
        return loss, kl


def rows_from_joint(states: np.ndarray, probs: np.ndarray, vlast: int, prune: float = 1e-9):
    """Split joint distributions over a fixed state list into prefix rows.

    ``states`` (n, S); ``probs`` (m, n) for m items. Returns (item, pre, w, tgt, ent)."""
    S = states.shape[1]
    uniq, inv = np.unique(states[:, : S - 1], axis=0, return_inverse=True)
    inv = np.asarray(inv).reshape(-1)
    U = len(uniq)
    m = len(probs)
    T = np.zeros((m, U, vlast))
    T[:, inv, states[:, S - 1]] = probs
    W = T.sum(axis=2)  # (m, U)
    keep = W > prune
    it, uu = np.nonzero(keep)
    w = W[it, uu]
    tgt = T[it, uu] / w[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(tgt > 0, tgt * np.log(tgt), 0.0).sum(axis=1)
    ent = w * (-np.log(w) + h)
    return it, uniq[uu], w, tgt.astype(np.float32), ent


# ------------------------------------------------------------------------------- FSP teacher
@register_teacher("fsp")
class FSPTeacher(Teacher):
    """Exact CME distributions on a truncated state space shared by all prompts."""

    def __init__(self, n_prompts: int = 2048, times_per_prompt: int = 10, chunk: int = 256,
                 caps: dict | None = None, max_states: int = 200_000):
        self.n_prompts, self.K, self.chunk = int(n_prompts), int(times_per_prompt), int(chunk)
        self.caps_override, self.max_states = caps, max_states

    def prepare(self, ctx: TrainContext) -> None:
        net, space = ctx.network, ctx.space
        caps = estimate_caps(ctx)
        for sid, c in (self.caps_override or {}).items():
            caps[net.species_index(sid)] = int(c)
        probe = [dict(zip(space.free, space.high)), dict(zip(space.free, np.sqrt(np.maximum(space.low, 1e-300) * np.asarray(space.high))))]
        starts = np.unique(ctx.space.sobol(256, ctx.seed, "uniform")[1].astype(np.int64), axis=0)
        starts = np.concatenate([starts, np.asarray(space.init_low, np.int64)[None], np.asarray(space.init_high, np.int64)[None]])
        ss = StateSpace(net, caps, np.unique(starts, axis=0), probe, self.max_states)
        ctx.state_space = ss
        self.vocab = tuple(int(v) + 1 for v in ss.states.max(axis=0))
        theta, x0, tfrac = space.sobol(self.n_prompts, ctx.seed, "mixed")
        span = space.t_max - space.t_min
        dt = span / self.K
        t0 = space.t_min + (tfrac - space.t_min) / span * dt  # a Sobol offset within the first interval
        feats, items, pres, ws, tgts, ents = [], [], [], [], [], []
        lost = 0.0
        n_done = 0
        for a in range(0, self.n_prompts, self.chunk):
            b = min(a + self.chunk, self.n_prompts)
            sl = slice(a, b)
            p0 = np.zeros((b - a, ss.n))
            p0[np.arange(b - a), ss.index(x0[sl].astype(np.int64))] = 1.0
            P = batched_solve(ss, ctx.params_dict(theta[sl]), p0, t0[sl], dt, self.K)  # (B, K, n)
            lost = max(lost, float(1 - P.sum(axis=2).min()))
            tt = t0[sl, None] + dt * np.arange(self.K)[None, :]
            f = space.features(np.repeat(theta[sl], self.K, 0), np.repeat(x0[sl], self.K, 0), tt.reshape(-1))
            it, pre, w, tgt, ent = rows_from_joint(ss.states, P.reshape(-1, ss.n), self.vocab[-1])
            feats.append(f), items.append(it + n_done * self.K), pres.append(pre), ws.append(w)
            tgts.append(tgt), ents.append(ent)
            n_done = b
            if b < self.n_prompts and time.monotonic() > ctx.deadline - 0.6 * max(ctx.deadline - ctx.start, 1):
                warnings.warn(f"FSP teacher stopped after {b} of {self.n_prompts} prompts to keep the "
                              "time budget for training")
                break
        self.rows = _Rows(np.concatenate(feats), np.concatenate(items), np.concatenate(pres),
                          np.concatenate(ws), np.concatenate(tgts), np.concatenate(ents))
        ctx.log.append({"event": "teacher", "teacher": "fsp", "prompts": n_done, "times_per_prompt": self.K,
                        "states": ss.n, "rows": len(self.rows.w), "caps": caps.tolist(),
                        "max_truncation_loss": lost})
        if lost > 1e-4:
            warnings.warn(f"FSP teacher: up to {lost:.2g} probability left the truncated state space "
                          f"(caps {dict(zip(net.species, caps.tolist()))})")

    def loss(self, net, ctx):
        return self.rows.batch_loss(net, ctx.rng, ctx.batch_size)


# ------------------------------------------------------------------------------- SSA teacher
@register_teacher("ssa")
class SSATeacher(Teacher):
    """Maximum likelihood on exact SSA samples: each trajectory has its own Sobol prompt and is
    recorded at ``times_per_trajectory`` random times."""

    def __init__(self, n_prompts: int = 32768, times_per_trajectory: int = 8, chunk: int = 8192,
                 vocab_factor: float = 1.25, vocab: tuple[int, ...] | None = None):
        self.n, self.K, self.chunk, self.vocab_factor = int(n_prompts), int(times_per_trajectory), int(chunk), vocab_factor
        self.fixed_vocab = tuple(int(v) for v in vocab) if vocab else None

    def prepare(self, ctx: TrainContext) -> None:
        net, space = ctx.network, ctx.space
        theta, x0, _ = space.sobol(self.n, ctx.seed, "mixed")
        rng = np.random.default_rng(ctx.seed + 1)
        feats, states = [], []
        done = 0
        for a in range(0, self.n, self.chunk):
            b = min(a + self.chunk, self.n)
            rec = np.sort(rng.uniform(space.t_min, space.t_max, (b - a, self.K)), axis=1)
            out = ssa_batch(net, ctx.params_dict(theta[a:b]), x0[a:b], rec, rng)
            feats.append(space.features(np.repeat(theta[a:b], self.K, 0), np.repeat(x0[a:b], self.K, 0), rec.reshape(-1)))
            states.append(out.reshape(-1, net.n_species).astype(np.int64))
            done = b
            if b < self.n and time.monotonic() > ctx.deadline - 0.7 * max(ctx.deadline - ctx.start, 1):
                warnings.warn(f"SSA teacher stopped after {b} of {self.n} trajectories to keep the time budget")
                break
        X = np.concatenate(states)
        mx = X.max(axis=0)
        self.vocab = tuple(int(v) for v in np.where(mx <= 1, mx + 1, np.ceil(mx * self.vocab_factor) + 8))
        feats = np.concatenate(feats)
        if self.fixed_vocab:
            self.vocab = self.fixed_vocab
            inside = np.all(X < np.asarray(self.vocab)[None, :], axis=1)
            if not inside.all():
                warnings.warn(f"SSA teacher: {int((~inside).sum())} samples exceed the fixed vocabulary "
                              f"{self.vocab} and are left out", VocabularyOverflowWarning)
            X, feats = X[inside], feats[inside]
        self.feats = torch.as_tensor(feats)
        self.X = torch.as_tensor(X)
        ctx.log.append({"event": "teacher", "teacher": "ssa", "trajectories": done, "samples": len(X),
                        "max_counts": mx.tolist()})

    def loss(self, net, ctx):
        idx = torch.as_tensor(ctx.rng.integers(0, len(self.X), ctx.batch_size))
        nll = -net.log_prob(self.feats[idx], self.X[idx]).mean()
        return nll, float(nll.detach())

    def reference(self, ctx, theta, x0, t):
        return fsp_or_ssa_reference(ctx, theta, x0, t)


# ------------------------------------------------------------------------------- exact birth-death
@register_teacher("poisson")
class PoissonTeacher(Teacher):
    """Exact immigration-death answer: births at a constant rate k1, deaths at k2 * X.
    X(t) = Poisson(k1/k2 (1 - e^{-k2 t})) + Binomial(X0, e^{-k2 t})."""

    def __init__(self, n_prompts: int = 1024, times_per_prompt: int = 8):
        self.n, self.K = int(n_prompts), int(times_per_prompt)

    def _rates(self, ctx, theta):
        net = ctx.network
        if net.n_species != 1 or sorted(net.stoichiometry[:, 0].tolist()) != [-1, 1]:
            raise InvalidArgumentError("teacher 'poisson' needs a one-species birth-death network")
        P = ctx.params_dict(theta)
        a = np.asarray(net.propensities(np.array([[0.0], [1.0], [2.0]]), 0.0,
                                        {k: v[:, None] for k, v in P.items()}) if P else
                       net.propensities(np.array([[0.0], [1.0], [2.0]])))
        a = a if a.ndim == 3 else np.broadcast_to(a, (len(theta),) + a.shape)
        b = int(np.flatnonzero(net.stoichiometry[:, 0] == 1)[0])
        d = int(np.flatnonzero(net.stoichiometry[:, 0] == -1)[0])
        k1, k2 = a[:, 0, b], a[:, 1, d]
        if not (np.allclose(a[:, 2, b], k1) and np.allclose(a[:, 2, d], 2 * k2) and np.allclose(a[:, 0, d], 0)):
            raise InvalidArgumentError("teacher 'poisson' needs constant births and linear deaths")
        return k1, k2

    def _pmf(self, ctx, theta, x0, t, V):
        k1, k2 = self._rates(ctx, theta)
        s = np.exp(-k2 * t)
        lam = np.where(k2 > 0, k1 / np.where(k2 > 0, k2, 1) * (1 - s), k1 * t)
        x = np.arange(V)
        out = poisson.pmf(x[None, :], lam[:, None])
        for i in np.flatnonzero(x0[:, 0] > 0):
            n0 = int(x0[i, 0])
            out[i] = np.convolve(out[i], binom.pmf(np.arange(n0 + 1), n0, s[i]))[:V]
        return out

    def prepare(self, ctx):
        space = ctx.space
        theta, x0, _ = space.sobol(self.n, ctx.seed, "mixed")
        hi = np.asarray(space.high)[None, :]
        k1, k2 = self._rates(ctx, hi)
        t_hi = np.array([space.t_max])
        lam = float(np.where(k2 > 0, k1 / np.where(k2 > 0, k2, 1) * (1 - np.exp(-k2 * t_hi)), k1 * t_hi)[0])
        lam = max(lam, float(k1[0] * space.t_max) if k2[0] == 0 else lam)
        vmax = int(max(lam + 10 * math.sqrt(lam + 1) + 10, max(space.init_high) + 10))
        self.vocab = (vmax,)
        rng = np.random.default_rng(ctx.seed + 1)
        t = rng.uniform(space.t_min, space.t_max, (self.n, self.K)).reshape(-1)
        th, xx = np.repeat(theta, self.K, 0), np.repeat(x0, self.K, 0)
        pmf = self._pmf(ctx, th, xx, t, vmax)
        it = np.arange(len(t))
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -np.where(pmf > 0, pmf * np.log(pmf), 0).sum(1)
        self.rows = _Rows(space.features(th, xx, t), it, np.zeros((len(t), 0), np.int64), pmf.sum(1),
                          pmf / pmf.sum(1, keepdims=True), ent)
        ctx.log.append({"event": "teacher", "teacher": "poisson", "items": len(t), "vocab": vmax})

    def loss(self, net, ctx):
        return self.rows.batch_loss(net, ctx.rng, ctx.batch_size)

    def reference(self, ctx, theta, x0, t):
        return [[p] for p in self._pmf(ctx, theta, x0, t, self.vocab[0])]
