r"""Reinforcement-learning teachers of the MET (the paper's RLMF: reinforcement learning with model
feedback): the MET is the policy, its own samples the actions, and a reward model scores them.

For a prompt c (parameters, initial state, time) the loss is KL(p_MET(.|c) || r(.|c)), estimated
from the MET's own samples x_1..x_M ~ p_MET(.|c); its gradient is the policy gradient (REINFORCE)

.. math:: \nabla \mathrm{KL} = E_{x \sim p}\big[(\log p(x) - \log r(x) - b)\,\nabla \log p(x)\big],

with the baseline b the mean of ``log p - log r`` over the other samples of the same prompt
(leave-one-out: it keeps the estimate unbiased and removes most of its variance).

* ``"fsp-reward"``: r is the exact CME distribution (the private truncated FSP of the trainer),
  so the RL error is seen apart from any reward-model error.
* ``"rlmf"``: r is a variational autoregressive network solved by :func:`sbml_met.met.van.solve_van`
  for each prompt of a scrambled Sobol set, its weights kept at ``times_per_prompt`` times (the
  reward models of the paper); the MET is trained at those (prompt, time) pairs.

States a reward model gives probability 0 (outside its support or vocabulary) get the reward
``log r = log_floor`` instead of -inf, so a stray sample costs a large but finite penalty.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from ..errors import InvalidArgumentError, StateSpaceTooLargeError
from ._cme import StateSpace, batched_solve
from .teachers import Teacher, TrainContext, estimate_caps, fsp_or_ssa_reference, register_teacher
from .van import solve_van

__all__ = ["FSPRewardTeacher", "RLMFTeacher", "policy_gradient_loss", "sample_met"]


@torch.no_grad()
def sample_met(net, features: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One exact ancestral sample of the MET per row of ``features`` (B, P, F): counts (B, S)."""
    B = len(features)
    x = torch.zeros(B, 0, dtype=torch.long)
    for s in range(net.config.n_species):
        lp = net.logits(features, x)[s]
        draw = torch.multinomial(lp.exp().float(), 1, generator=generator)
        x = torch.cat([x, draw], dim=1)
    return x


def policy_gradient_loss(log_p: torch.Tensor, log_r: np.ndarray, m: int) -> tuple[torch.Tensor, float]:
    """REINFORCE surrogate of KL(p || r) for P prompts x ``m`` samples (rows grouped by prompt).

    ``log_p`` (P*m,) with gradient; ``log_r`` (P*m,) rewards. Returns (surrogate loss whose
    gradient is the KL gradient, KL estimate)."""
    f = (log_p.detach().double().numpy() - log_r).reshape(-1, m)
    if m > 1:  # leave-one-out baseline per prompt
        b = (f.sum(axis=1, keepdims=True) - f) / (m - 1)
    else:
        b = np.full_like(f, f.mean())
    adv = torch.as_tensor((f - b).reshape(-1), dtype=log_p.dtype)
    return (adv * log_p).mean(), float(f.mean())


class _RLTeacher(Teacher):
    """The shared RL loop: items (prompt features + a reward), MET samples, policy gradient."""

    def __init__(self, samples_per_prompt: int = 16, log_floor: float = -30.0):
        self.m = int(samples_per_prompt)
        self.log_floor = float(log_floor)
        self.gen: torch.Generator | None = None

    def log_reward(self, items: np.ndarray, x: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def loss(self, net, ctx: TrainContext):
        if self.gen is None:
            self.gen = torch.Generator().manual_seed(ctx.seed + 4242)
        P = max(1, ctx.batch_size // self.m)
        items = ctx.rng.integers(0, len(self.feats), P)
        f = self.feats[torch.as_tensor(np.repeat(items, self.m))]
        was_training = net.training
        net.eval()
        x = sample_met(net, f, self.gen)
        net.train(was_training)
        log_p = net.log_prob(f, x)
        log_r = np.maximum(self.log_reward(np.repeat(items, self.m), x.numpy()), self.log_floor)
        return policy_gradient_loss(log_p, log_r, self.m)


@register_teacher("fsp-reward")
class FSPRewardTeacher(_RLTeacher):
    """RL with the exact CME distribution as reward (see the module docstring)."""

    def __init__(self, n_prompts: int = 1024, times_per_prompt: int = 10, chunk: int = 256,
                 samples_per_prompt: int = 16, log_floor: float = -30.0, max_states: int = 200_000):
        super().__init__(samples_per_prompt, log_floor)
        self.n_prompts, self.K, self.chunk, self.max_states = int(n_prompts), int(times_per_prompt), int(chunk), max_states

    def prepare(self, ctx: TrainContext) -> None:
        net, space = ctx.network, ctx.space
        caps = estimate_caps(ctx)
        probe = [dict(zip(space.free, space.high)),
                 dict(zip(space.free, np.sqrt(np.maximum(space.low, 1e-300) * np.asarray(space.high))))]
        starts = np.unique(space.sobol(256, ctx.seed, "uniform")[1].astype(np.int64), axis=0)
        starts = np.unique(np.concatenate([starts, np.asarray(space.init_low, np.int64)[None],
                                           np.asarray(space.init_high, np.int64)[None]]), axis=0)
        ss = StateSpace(net, caps, starts, probe, self.max_states)
        ctx.state_space = ss
        self.vocab = tuple(int(v) + 1 for v in ss.states.max(axis=0))
        theta, x0, tfrac = space.sobol(self.n_prompts, ctx.seed, "mixed")
        span = space.t_max - space.t_min
        dt = span / self.K
        t0 = space.t_min + (tfrac - space.t_min) / span * dt
        feats, logp = [], []
        for a in range(0, self.n_prompts, self.chunk):
            b = min(a + self.chunk, self.n_prompts)
            p0 = np.zeros((b - a, ss.n))
            p0[np.arange(b - a), ss.index(x0[a:b].astype(np.int64))] = 1.0
            Pr = batched_solve(ss, ctx.params_dict(theta[a:b]), p0, t0[a:b], dt, self.K)
            tt = t0[a:b, None] + dt * np.arange(self.K)[None, :]
            feats.append(space.features(np.repeat(theta[a:b], self.K, 0), np.repeat(x0[a:b], self.K, 0), tt.reshape(-1)))
            with np.errstate(divide="ignore"):
                logp.append(np.log(Pr.reshape(-1, ss.n)).astype(np.float32))
        self.feats = torch.as_tensor(np.concatenate(feats))
        self.logp = np.concatenate(logp)
        self.space = ss
        ctx.log.append({"event": "teacher", "teacher": "fsp-reward", "prompts": self.n_prompts,
                        "times_per_prompt": self.K, "states": ss.n, "caps": caps.tolist()})

    def log_reward(self, items, x):
        idx = self.space.index(x)
        out = np.full(len(x), -np.inf)
        ok = idx >= 0
        out[ok] = self.logp[items[ok], idx[ok]]
        return out


@register_teacher("rlmf")
class RLMFTeacher(_RLTeacher):
    """RL with VAN reward models (see the module docstring). ``van`` holds keyword arguments of
    :func:`solve_van`; ``budget_fraction`` of the time budget at most goes to reward models."""

    def __init__(self, n_prompts: int = 64, times_per_prompt: int = 8, samples_per_prompt: int = 16,
                 log_floor: float = -30.0, budget_fraction: float = 0.5, van: dict | None = None,
                 validation_fsp: bool = True):
        super().__init__(samples_per_prompt, log_floor)
        self.n_prompts, self.K = int(n_prompts), int(times_per_prompt)
        self.budget_fraction = float(budget_fraction)
        self.van = dict(van or {})
        self.validation_fsp = validation_fsp

    def prepare(self, ctx: TrainContext) -> None:
        net, space = ctx.network, ctx.space
        theta, x0, _ = space.sobol(self.n_prompts, ctx.seed, "mixed")
        span = space.t_max - space.t_min
        times = space.t_min + span * (np.arange(self.K) + 1) / self.K
        # one count vocabulary for all reward models and the MET, from exact SSA over the box
        caps = estimate_caps(ctx)
        vocab = tuple(int(c) + 1 for c in caps)
        self.vocab = vocab
        self.models, feats = [], []
        deadline = ctx.start + self.budget_fraction * (ctx.deadline - ctx.start)
        t_first = time.monotonic()
        for i in range(self.n_prompts):
            prm = {p: float(theta[i, j]) for j, p in enumerate(space.free)}
            nw = net.with_parameters(**prm) if prm else net
            init = {s: float(x0[i, k]) for k, s in enumerate(net.species) if net.dynamic_species[k]}
            nw = nw.with_initial_state(**init)
            try:
                d = solve_van(nw, times, vocab=vocab, seed=ctx.seed + i, keep_models=True, n_samples=2000,
                              max_prefixes=1, max_seconds=max(deadline - time.monotonic(), 1.0), **self.van)
            except TimeoutError as e:
                warnings.warn(f"rlmf teacher: reward model {i + 1} did not fit the time budget ({e})")
                break
            self.models.append(d.metadata["van"])
            feats.append(space.features(np.repeat(theta[i:i + 1], self.K, 0), np.repeat(x0[i:i + 1], self.K, 0), times))
            per = (time.monotonic() - t_first) / (i + 1)
            if i + 1 < self.n_prompts and time.monotonic() + per > deadline:
                warnings.warn(f"rlmf teacher: {i + 1} of {self.n_prompts} VAN reward models fit the time budget")
                break
        if not self.models:
            raise InvalidArgumentError(
                f"rlmf teacher: not one VAN reward model of '{net.name}' fits {self.budget_fraction:.0%} of the "
                "time budget; give more minutes or fewer times_per_prompt")
        self.feats = torch.as_tensor(np.concatenate(feats))
        ctx.log.append({"event": "teacher", "teacher": "rlmf", "reward_models": len(self.models),
                        "times_per_prompt": self.K, "vocab": list(vocab),
                        "seconds_per_model": (time.monotonic() - t_first) / max(len(self.models), 1)})
        if self.validation_fsp:  # an exact state space for validation only, where one is small
            try:
                probe = [dict(zip(space.free, space.high))]
                starts = np.unique(np.concatenate([np.asarray(space.init_low, np.int64)[None],
                                                   np.asarray(space.init_high, np.int64)[None]]), axis=0)
                ctx.state_space = StateSpace(net, caps, starts, probe, 50_000)
            except StateSpaceTooLargeError:
                ctx.state_space = None

    def log_reward(self, items, x):
        out = np.empty(len(x))
        for it in np.unique(items):
            rows = items == it
            out[rows] = self.models[it // self.K].log_prob(x[rows], int(it % self.K))
        return out

    def reference(self, ctx, theta, x0, t):
        return fsp_or_ssa_reference(ctx, theta, x0, t)
