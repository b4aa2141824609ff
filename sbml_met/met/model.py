r"""The Master Equation Transformer network: a small causal transformer over prompt + species tokens.

Sequence layout for a network with F free parameters and S species::

    [theta_1 .. theta_F, x0_1 .. x0_S, t]  [x_1 .. x_{S-1}]
     \_____________ prompt (P = F+S+1) ____/ \__ state tokens __/

The output at position P-1+j is the conditional p(x_{j+1} | prompt, x_1..x_j), so the joint is the
autoregressive product over species in the network's order. Each prompt token carries a small
feature vector (e.g. log-scaled and linearly scaled value) embedded by its own linear map; each
species count is embedded from its own vocabulary 0..V_s-1. Counts at or above V_s are outside the
model (log-probability -inf, with a warning): they are never wrapped or clipped.

Output heads (``METConfig.head``): ``"categorical"`` (the default, and what every checkpoint without
the field holds) gives each species one softmax over its whole vocabulary. ``"mixture"`` gives
every species, and ``"auto"`` the species whose vocabulary exceeds ``mixture_from``, a smooth head
instead (:class:`MixtureHead`): a mixture of ``mixture_k`` discretized logistic distributions on
0..V-1 (the tails below 0 and above V-1 go to the end counts, as in PixelCNN++), so its 3K numbers
per prompt share strength across neighbouring counts, and a sample or a log-probability costs O(K),
not O(V). Such a species' count enters the sequence through a smooth embedding (an MLP of
scaled, log and Fourier features of the count) instead of a lookup table. ``heads[s](h)`` still
returns the full log-pmf (B, V) for every head (FSP teachers, enumeration, conservation masks).

Prompt layout (``METConfig.prompt``): ``"tokens"`` (the default and every older checkpoint) embeds
each prompt entry as its own token, as drawn above; ``"pooled"`` embeds the whole prompt by one MLP
into a single token, so the sequence is 1 + S-1 positions long (about twice as fast to train and
sample when most prompt entries are fixed initial counts).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import VocabularyOverflowWarning  # noqa: F401 - also sbml_met.met.model.VocabularyOverflowWarning
from ._warn import user_stacklevel


HEADS = ("categorical", "mixture", "auto")
PROMPTS = ("tokens", "pooled")


@dataclass(frozen=True)
class METConfig:
    """Shape of the network. ``vocab``: count vocabulary size per species (counts 0..V-1). The
    defaults are what :func:`sbml_met.met.train` builds unless its ``model=`` says otherwise."""

    n_prompt: int
    vocab: tuple[int, ...]
    n_features: int = 2
    d_model: int = 64
    n_layer: int = 3
    n_head: int = 4
    d_ff: int = 256
    head: str = "categorical"  # "categorical" | "mixture" | "auto" (mixture where vocab > mixture_from)
    mixture_k: int = 8
    mixture_from: int = 512
    prompt: str = "tokens"  # "tokens": one token per prompt entry | "pooled": one token from an MLP of all

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"unknown MET head {self.head!r}; choose one of: {', '.join(HEADS)}")
        if self.prompt not in PROMPTS:
            raise ValueError(f"unknown MET prompt layout {self.prompt!r}; choose one of: {', '.join(PROMPTS)}")

    @property
    def n_prompt_tokens(self) -> int:
        """Sequence positions the prompt takes: n_prompt, or 1 when pooled."""
        return 1 if self.prompt == "pooled" else self.n_prompt

    @property
    def n_species(self) -> int:
        return len(self.vocab)

    @property
    def mixture(self) -> tuple[bool, ...]:
        """Per species: whether its head is a discretized-logistic mixture (else categorical)."""
        if self.head == "categorical":
            return (False,) * len(self.vocab)
        return tuple(self.head == "mixture" or v > self.mixture_from for v in self.vocab)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["vocab"] = list(self.vocab)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "METConfig":
        d = {k: v for k, v in d.items() if k in {f.name for f in fields(cls)}}  # older: "dropout"
        d["vocab"] = tuple(int(v) for v in d["vocab"])
        return cls(**d)


class _Block(nn.Module):
    def __init__(self, c: METConfig):
        super().__init__()
        self.n_head = c.n_head
        self.ln1 = nn.LayerNorm(c.d_model)
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model)
        self.proj = nn.Linear(c.d_model, c.d_model)
        self.ln2 = nn.LayerNorm(c.d_model)
        self.mlp = nn.Sequential(nn.Linear(c.d_model, c.d_ff), nn.GELU(), nn.Linear(c.d_ff, c.d_model))

    def forward(self, x: torch.Tensor, past=None, return_kv: bool = False):
        """Causal self-attention + MLP. With ``past`` = (K, V) of earlier positions (a key/value
        cache), ``x`` holds only the new positions, which attend to the cache and themselves."""
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q, k, v = (a.view(B, T, self.n_head, D // self.n_head).transpose(1, 2) for a in (q, k, v))
        if past is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            if T != 1:
                raise ValueError("cached attention takes one new position at a time")
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
            y = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, D))
        x = x + self.mlp(self.ln2(x))
        return (x, (k, v)) if return_kv else x

    def step(self, x: torch.Tensor, Kp, Vp, Ks, Vs):
        """One new position per row (x: (B, 1, D)) attending to the prompt's keys/values (Kp, Vp:
        batch B or 1, shared) and the earlier species tokens' (Ks, Vs: batch B, or None), then
        itself: (output, (Kp, Vp, Ks', Vs')) with the new token appended to Ks, Vs."""
        B, _, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q, k, v = (a.view(B, 1, self.n_head, D // self.n_head).transpose(1, 2) for a in (q, k, v))
        Ks, Vs = (k, v) if Ks is None else (torch.cat([Ks, k], dim=2), torch.cat([Vs, v], dim=2))
        scale = 1.0 / math.sqrt(D // self.n_head)
        w = torch.softmax(torch.cat([q @ Kp.transpose(-1, -2), q @ Ks.transpose(-1, -2)], dim=-1) * scale, dim=-1)
        P = Kp.shape[2]
        y = w[..., :P] @ Vp + w[..., P:] @ Vs
        x = x + self.proj(y.transpose(1, 2).reshape(B, 1, D))
        x = x + self.mlp(self.ln2(x))
        return x, (Kp, Vp, Ks, Vs)

    def step_batched(self, x: torch.Tensor, Kp, Vp, Ks, Vs):
        """:meth:`step` with the attention of many rows written as one matrix product per head
        against the shared prompt and elementwise products against the rows' own tokens (the
        same quantities, other float rounding; far faster for 10^4 rows of one prompt). Used by
        networks with a mixture head; categorical networks keep :meth:`step`'s arithmetic, so
        saved checkpoints reproduce their samples bit for bit."""
        B, _, D = x.shape
        H = self.n_head
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q, k, v = (a.view(B, H, D // H) for a in (q, k, v))
        Ks, Vs = (k[:, :, None], v[:, :, None]) if Ks is None else (torch.cat([Ks, k[:, :, None]], dim=2),
                                                                     torch.cat([Vs, v[:, :, None]], dim=2))
        scale = 1.0 / math.sqrt(D // H)
        sp = torch.einsum("bhd,hpd->bhp", q, Kp[0]) if len(Kp) == 1 else torch.einsum("bhd,bhpd->bhp", q, Kp)
        w = torch.cat([sp, (q[:, :, None, :] * Ks).sum(-1)], dim=-1) * scale
        w = (w - w.amax(dim=-1, keepdim=True)).exp_()  # softmax over ~10 keys: faster by hand on the CPU
        w = w / w.sum(dim=-1, keepdim=True)
        P = Kp.shape[2]
        y = torch.einsum("bhp,hpd->bhd", w[..., :P], Vp[0]) if len(Vp) == 1 else torch.einsum("bhp,bhpd->bhd", w[..., :P], Vp)
        y = y + (w[..., P:, None] * Vs).sum(2)
        x = x + self.proj(y.reshape(B, 1, D))
        x = x + self.mlp(self.ln2(x))
        return x, (Kp, Vp, Ks, Vs)


class MixtureHead(nn.Module):
    """p(x | h) on 0..V-1: a mixture of K discretized logistic distributions (component k: location
    mu_k, scale s_k; count x takes F_k(x + 1/2) - F_k(x - 1/2), with the mass below 0 at 0 and above
    V-1 at V-1), so the pmf sums to 1 exactly. ``forward`` gives the full log-pmf (B, V);
    :meth:`log_prob` and :meth:`sample` cost O(K) per row."""

    def __init__(self, d_model: int, vocab: int, k: int):
        super().__init__()
        self.V, self.K = int(vocab), int(k)
        self.unit = max(1.0, self.V / 4.0)  # locations in units of V/4, scales around V/40
        self.out = nn.Linear(d_model, 3 * self.K)
        with torch.no_grad():
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()
            self.out.bias[self.K : 2 * self.K] = torch.linspace(0.0, 3.0, self.K)

    def params(self, h: torch.Tensor):
        """(log mixture weights, locations, log scales), each (B, K)."""
        w, mu, ls = self.out(h).split(self.K, dim=-1)
        return (F.log_softmax(w, dim=-1), mu * self.unit,
                torch.clamp(ls + math.log(self.unit / 10.0), min=-4.0, max=math.log(self.V) + 2.0))

    def _log_bins(self, x: torch.Tensor, mu: torch.Tensor, ls: torch.Tensor) -> torch.Tensor:
        """log P_k(x) per component for counts x broadcast against mu, ls."""
        inv = torch.exp(-ls)
        a = (x + 0.5 - mu) * inv
        b = (x - 0.5 - mu) * inv
        mid = F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(-inv))  # log(sig(a) - sig(b))
        out = torch.where(x <= 0, F.logsigmoid(a), mid)
        out = torch.where(x >= self.V - 1, F.logsigmoid(-b), out)
        return torch.zeros_like(out) if self.V == 1 else out

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x_i | h_i): h (B, D), x (B,) -> (B,)."""
        lw, mu, ls = self.params(h)
        return torch.logsumexp(lw + self._log_bins(x[:, None].to(mu.dtype), mu, ls), dim=-1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Full log-pmf (B, V) (normalised: a softmax of it is the pmf itself)."""
        lw, mu, ls = self.params(h)
        x = torch.arange(self.V, device=h.device, dtype=mu.dtype)
        lp = torch.logsumexp(lw[:, :, None] + self._log_bins(x, mu[:, :, None], ls[:, :, None]), dim=1)
        return F.log_softmax(lp, dim=-1)  # removes the float rounding of the sum

    def sample(self, h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Exact inverse draws from one uniform per row (u (B,) float64): the component k with
        W_{k-1} <= u < W_k (cumulative weights), then x = clamp(round(mu_k + s_k logit(v)), 0, V-1)
        with v = (u - W_{k-1}) / w_k, itself uniform given k. Returns (B,) int64."""
        lw, mu, ls = (a.double() for a in self.params(h))
        cw = torch.cumsum(lw.exp(), dim=-1)
        cw = cw / cw[:, -1:]
        k = torch.searchsorted(cw, u[:, None].to(cw.dtype), right=True).clamp_(max=self.K - 1)
        hi = cw.gather(1, k)[:, 0]
        lo = torch.where(k[:, 0] > 0, cw.gather(1, (k - 1).clamp(min=0))[:, 0], torch.zeros_like(hi))
        v = ((u - lo) / (hi - lo).clamp_min(1e-300)).clamp(1e-12, 1 - 1e-12)
        y = mu.gather(1, k)[:, 0] + ls.gather(1, k)[:, 0].exp() * torch.log(v / (1 - v))
        return torch.floor(y + 0.5).clamp_(0, self.V - 1).long()


class SmoothCountEmbedding(nn.Module):
    """Embedding of a count 0..V-1 as an MLP of smooth features (scaled count, log count, Fourier
    features): neighbouring counts get neighbouring embeddings (large vocabularies)."""

    N_FREQ = 6

    def __init__(self, d_model: int, vocab: int):
        super().__init__()
        self.unit = max(1.0, vocab / 4.0)
        self.log_unit = math.log1p(vocab)
        self.register_buffer("freq", math.pi * 2.0 ** torch.arange(self.N_FREQ, dtype=torch.float32) / 4.0,
                             persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 + 2 * self.N_FREQ, d_model), nn.GELU(), nn.Linear(d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.float()[..., None] / self.unit
        ang = z * self.freq
        return self.mlp(torch.cat([z, torch.log1p(x.float())[..., None] / self.log_unit, ang.sin(), ang.cos()], dim=-1))


class METNet(nn.Module):
    """Causal transformer: prompt features (B, P, n_features) and counts (B, S) -> conditionals."""

    def __init__(self, config: METConfig):
        super().__init__()
        c = self.config = config
        D = c.d_model
        if c.prompt == "pooled":
            self.prompt_mlp = nn.Sequential(nn.Linear(c.n_prompt * c.n_features, c.d_ff), nn.GELU(),
                                            nn.Linear(c.d_ff, D))
        else:
            self.prompt_w = nn.Parameter(torch.randn(c.n_prompt, c.n_features, D) * 0.2)
            self.prompt_b = nn.Parameter(torch.zeros(c.n_prompt, D))
        self.mixture = c.mixture
        self.batched_attention = any(self.mixture)  # see _Block.step_batched
        table = [0 if m else v for v, m in zip(c.vocab, self.mixture)]  # lookup rows per species
        offsets = np.concatenate([[0], np.cumsum(table)[:-1]]).astype(np.int64)
        self.register_buffer("offsets", torch.as_tensor(offsets), persistent=False)
        self.count_emb = nn.Embedding(max(1, int(sum(table))), D)
        if any(self.mixture[:-1]):
            self.smooth_emb = nn.ModuleDict({str(s): SmoothCountEmbedding(D, v) for s, (v, m)
                                             in enumerate(zip(c.vocab[:-1], self.mixture[:-1])) if m})
        self.pos = nn.Parameter(torch.zeros(c.n_prompt_tokens + c.n_species - 1, D))
        self.blocks = nn.ModuleList(_Block(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(D)
        self.heads = nn.ModuleList(MixtureHead(D, v, c.mixture_k) if m else nn.Linear(D, v)
                                   for v, m in zip(c.vocab, self.mixture))
        nn.init.normal_(self.count_emb.weight, std=0.02)
        nn.init.normal_(self.pos, std=0.02)

    def prompt_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """The prompt's tokens (B, n_prompt_tokens, D) from its features (B, P, n_features)."""
        if self.config.prompt == "pooled":
            return self.prompt_mlp(features.reshape(len(features), -1))[:, None, :]
        return torch.einsum("bpf,pfd->bpd", features, self.prompt_w) + self.prompt_b

    def embed(self, s: int, counts: torch.Tensor) -> torch.Tensor:
        """Token embedding of species ``s``'s counts (any shape) -> (..., D)."""
        if self.mixture[s]:
            return self.smooth_emb[str(s)](counts)
        return self.count_emb(counts + self.offsets[s])

    def head_log_prob(self, s: int, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x_s = x | h): h (B, D), x (B,) -> (B,); O(K) for a mixture head."""
        if self.mixture[s]:
            return self.heads[s].log_prob(h, x)
        return F.log_softmax(self.heads[s](h), dim=-1).gather(1, x[:, None]).squeeze(1)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def hidden(self, features: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Final hidden states at the S predicting positions: (B, S, D).

        ``features`` (B, P, n_features); ``counts`` (B, j) with j <= S-1 leading species counts
        (j < S-1 returns only the first j+1 predicting positions)."""
        h = self.prompt_tokens(features)
        j = counts.shape[1]
        if j:
            if any(self.mixture):
                tok = torch.stack([self.embed(s, counts[:, s]) for s in range(min(j, self.config.n_species - 1))], dim=1)
            else:
                tok = self.count_emb(counts[:, : self.config.n_species - 1] + self.offsets[:j])
            h = torch.cat([h, tok], dim=1)
        h = h + self.pos[: h.shape[1]]
        for blk in self.blocks:
            h = blk(h)
        return self.ln_f(h[:, self.config.n_prompt_tokens - 1 :])

    def prompt_kv(self, features: torch.Tensor):
        """Run the prompt once for sampling: (final hidden state of its last position (B, D), the
        per-block caches: the prompt's keys/values, then those of the species tokens)."""
        h = self.prompt_tokens(features) + self.pos[: self.config.n_prompt_tokens]
        caches = []
        for blk in self.blocks:
            h, (K, V) = blk(h, return_kv=True)
            caches.append((K, V, None, None))
        return self.ln_f(h[:, -1]), caches

    def next_token(self, counts: torch.Tensor, s: int, caches, parent: torch.Tensor | None = None):
        """Append species s's ``counts`` (B,) as one new token per row, attending to the cached
        keys/values (of rows ``parent``, when given): (final hidden state (B, D), the new caches).
        The prompt's keys/values stay shared (a one-row prompt serves every row): only the species
        tokens' caches are gathered per row."""
        x = (self.embed(s, counts) + self.pos[self.config.n_prompt_tokens + s])[:, None, :]
        new = []
        for blk, (Kp, Vp, Ks, Vs) in zip(self.blocks, caches):
            if parent is not None:
                Kp, Vp = (Kp, Vp) if len(Kp) == 1 else (Kp[parent], Vp[parent])
                Ks, Vs = (None, None) if Ks is None else (Ks[parent], Vs[parent])
            x, kv = blk.step_batched(x, Kp, Vp, Ks, Vs) if self.batched_attention else blk.step(x, Kp, Vp, Ks, Vs)
            new.append(kv)
        return self.ln_f(x[:, -1]), new

    def logits(self, features: torch.Tensor, counts: torch.Tensor) -> list[torch.Tensor]:
        """Log-conditionals (full log-pmf vectors) per predicted species: list of (B, V_s)."""
        h = self.hidden(features, counts)
        return [F.log_softmax(self.heads[s](h[:, s]), dim=-1) for s in range(h.shape[1])]

    def log_prob(self, features: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Exact log p(x | prompt) for full states ``counts`` (B, S) inside the vocabulary."""
        if not any(self.mixture):
            lp = self.logits(features, counts[:, :-1])
            return sum(lp[s].gather(1, counts[:, s : s + 1]).squeeze(1) for s in range(len(lp)))
        h = self.hidden(features, counts[:, :-1])
        return sum(self.head_log_prob(s, h[:, s], counts[:, s]) for s in range(h.shape[1]))


# ---------------------------------------------------------------------------- distribution helpers
def check_vocab(counts: np.ndarray, vocab: tuple[int, ...], species: tuple[str, ...]) -> np.ndarray:
    """Boolean mask of rows inside the vocabulary; warns (never wraps) about rows outside it."""
    counts = np.asarray(counts)
    inside = np.all((counts >= 0) & (counts < np.asarray(vocab)[None, :]), axis=1)
    if not inside.all():
        bad = np.flatnonzero(~inside)[0]
        over = [f"{s}={int(c)} (vocabulary 0..{v - 1})" for s, c, v in zip(species, counts[bad], vocab)
                if not 0 <= c < v]
        warnings.warn(
            f"{int((~inside).sum())} state(s) lie outside the MET count vocabulary, e.g. "
            f"{', '.join(over)}; their probability is reported as 0 (log -inf)",
            VocabularyOverflowWarning, stacklevel=user_stacklevel())
    return inside


def _apply_mask(cond: np.ndarray, mask, prefixes: np.ndarray) -> np.ndarray:
    """Conditionals (m, V_j) restricted to the counts ``mask.allowed(prefixes)`` permits and
    renormalised (unchanged where the mask has nothing to say)."""
    allowed = mask.allowed(prefixes) if mask is not None else None
    if allowed is None:
        return cond
    cond = np.where(allowed, cond, 0.0)
    tot = cond.sum(axis=1, keepdims=True)
    return np.where(tot > 0, cond / np.where(tot > 0, tot, 1.0), allowed / allowed.sum(axis=1, keepdims=True))


@torch.no_grad()
def enumerate_joint(net: METNet, features: torch.Tensor, upto: int, max_prefixes: int = 1_000_000,
                    prune: float = 0.0, batch: int = 8192, mask=None):
    """Exact joint of species 0..upto-1 by enumeration: (states (m, upto) int64, probs (m,)).

    ``features`` is one prompt (1, P, n_features). Returns None when more than ``max_prefixes``
    prefixes would be needed. Prefixes of probability <= ``prune`` are dropped (0 keeps all).
    ``mask``: a :class:`~sbml_met.conservation.ConservationMask` (counts it rules out get 0)."""
    vocab = net.config.vocab
    prefixes = np.zeros((1, 0), dtype=np.int64)
    probs = np.ones(1)
    for s in range(upto):
        if len(prefixes) * vocab[s] > max_prefixes:
            return None
        cond = _apply_mask(conditionals(net, features, prefixes, batch), mask, prefixes)  # (m, V_s)
        joint = probs[:, None] * cond
        keep = joint > prune if prune > 0 else (joint > 0 if mask is not None else np.ones_like(joint, dtype=bool))
        r, c = np.nonzero(keep)
        prefixes = np.concatenate([prefixes[r], c[:, None]], axis=1)
        probs = joint[r, c]
    return prefixes, probs


@torch.no_grad()
def conditionals(net: METNet, features: torch.Tensor, prefixes: np.ndarray, batch: int = 8192) -> np.ndarray:
    """p(x_j | prompt, prefix) for prefixes (m, j) of one prompt: array (m, V_j) float64."""
    j = prefixes.shape[1]
    out = []
    for a in range(0, max(len(prefixes), 1), batch):
        pre = torch.as_tensor(prefixes[a : a + batch], dtype=torch.long, device=features.device)
        f = features.expand(len(pre), -1, -1)
        h = net.hidden(f, pre)[:, j]
        out.append(torch.softmax(net.heads[j](h).double(), dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.config.vocab[j]))


def _draw(net: METNet, s: int, last: torch.Tensor, inv: np.ndarray, u: torch.Tensor, mask,
          prefixes: np.ndarray, budget: int = 4_000_000) -> np.ndarray:
    """Inverse-CDF draws of species ``s`` for samples whose distinct prefix is ``inv`` (hidden
    states ``last``, one row per distinct prefix): the number of cdf entries <= u per sample.
    Distinct prefixes and samples go in chunks of about ``budget`` probabilities (large
    vocabularies with many distinct prefixes)."""
    V = net.config.vocab[s]
    if net.mixture[s] and (mask is None or mask.allowed(prefixes) is None):
        return net.heads[s].sample(last[torch.as_tensor(inv, device=last.device)], u.to(last.device)).cpu().numpy()
    order = np.argsort(inv, kind="stable")
    sinv = inv[order]
    draws = np.empty(len(inv), dtype=np.int64)
    step = max(1, budget // V)
    for a in range(0, len(last), step):
        b = min(a + step, len(last))
        if V >= LARGE_VOCAB:
            sel = order[np.searchsorted(sinv, a) : np.searchsorted(sinv, b)]
            draws[sel] = _draw_flat(net.heads[s](last[a:b]), inv[sel] - a, u[torch.as_tensor(sel)], mask, prefixes[a:b])
            continue
        cond = torch.softmax(net.heads[s](last[a:b]).double(), dim=-1).cpu().numpy()
        cond = _apply_mask(cond, mask, prefixes[a:b])
        cdf = torch.as_tensor(np.cumsum(cond, axis=1))
        cdf /= cdf[:, -1:].clone()
        bounds = np.searchsorted(sinv, np.arange(a, b + 1))
        if b - a <= 64:  # few distinct prefixes (e.g. the first species): one search per prefix
            for r in range(b - a):
                idx = torch.as_tensor(order[bounds[r] : bounds[r + 1]])
                draws[idx.numpy()] = torch.searchsorted(cdf[r], u[idx], right=True).numpy()
            continue
        for c0 in range(bounds[0], bounds[-1], step):
            idx = order[c0 : min(c0 + step, bounds[-1])]
            rows = cdf[torch.as_tensor(inv[idx] - a)]
            draws[idx] = torch.searchsorted(rows, u[torch.as_tensor(idx), None], right=True)[:, 0].numpy()
    return draws


LARGE_VOCAB = 2048  # from this vocabulary size on, draws use one flat cumulative sum per chunk


def _draw_flat(logits: torch.Tensor, rows: np.ndarray, u: torch.Tensor, mask, prefixes: np.ndarray,
               block: int = 64) -> np.ndarray:
    """Inverse-CDF draws for a large vocabulary without normalised per-row copies: sample i (of
    row ``rows[i]``) looks for its row's start + u_i x row total in the flat float64 cumulative
    sum of all rows' block sums (blocks of ``block`` counts of the unnormalised weights), then
    inside its block (rounding error below 1e-9 of a row's probability)."""
    m, V = logits.shape
    nb = -(-V // block)
    logits = logits.float().cpu()
    w = torch.zeros(m, nb * block)
    torch.exp(logits - logits.amax(dim=1, keepdim=True), out=w[:, :V])
    allowed = mask.allowed(prefixes) if mask is not None else None
    if allowed is not None:
        w[:, :V][~torch.as_tensor(allowed)] = 0.0
    w = w.reshape(m, nb, block)
    G = torch.cumsum(w.sum(dim=2).double().reshape(-1), dim=0)  # block sums of <= 64 terms <= 1
    ends = G[nb - 1 :: nb]
    starts = torch.cat([torch.zeros(1, dtype=torch.float64), ends[:-1]])
    r = torch.as_tensor(rows)
    target = starts[r] + u * (ends[r] - starts[r])
    j = torch.minimum(torch.maximum(torch.searchsorted(G, target, right=True), r * nb), r * nb + nb - 1)
    before = torch.where(j > 0, G[(j - 1).clamp_min(0)], torch.zeros((), dtype=torch.float64))
    inner = torch.cumsum(w[r, j - r * nb], dim=1, dtype=torch.float64)
    k = torch.searchsorted(inner, (target - before)[:, None], right=True)[:, 0].clamp_(0, block - 1)
    return ((j - r * nb) * block + k).clamp_(0, V - 1).numpy()


@torch.no_grad()
def ancestral_sample(net: METNet, features: torch.Tensor, n: int, generator: torch.Generator,
                     mask=None) -> np.ndarray:
    """``n`` exact ancestral samples of one prompt: array (n, S).

    The prompt is run once and its keys/values cached; species j is then drawn for all samples
    from one pass over the *distinct* prefixes only, each a single new token attending to its
    parent's cached keys/values, so the cost grows with the number of distinct prefixes, not n.
    ``mask``: a :class:`~sbml_met.conservation.ConservationMask` (counts it rules out get 0)."""
    c = net.config
    S = c.n_species
    dev = features.device
    last, caches = net.prompt_kv(features[:1])
    inv = np.zeros(n, dtype=np.int64)
    rep = np.zeros(1, dtype=np.int64)  # one sample per distinct prefix
    states = np.empty((n, S), dtype=np.int64)
    for s in range(S):
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        draws = _draw(net, s, last, inv, u, mask, states[rep, :s])
        states[:, s] = np.minimum(draws, c.vocab[s] - 1)
        if s == S - 1:
            break
        code = inv * c.vocab[s] + states[:, s]
        uc, rep, inv = np.unique(code, return_index=True, return_inverse=True)
        inv = np.asarray(inv).reshape(-1)
        last, caches = net.next_token(torch.as_tensor(uc % c.vocab[s], device=dev), s, caches,
                                      torch.as_tensor(uc // c.vocab[s], device=dev))
    return states


@torch.no_grad()
def masked_log_prob(net: METNet, features: torch.Tensor, counts: torch.Tensor, mask=None) -> torch.Tensor:
    """log p(x | prompt) for full states ``counts`` (B, S) inside the vocabulary, with the
    conditionals restricted by ``mask`` (a ConservationMask) as in sampling: -inf for a state
    that breaks a conservation law."""
    if mask is None:
        return net.log_prob(features, counts)
    x = counts.cpu().numpy()
    h = net.hidden(features, counts[:, :-1])
    out = torch.zeros(len(x), dtype=torch.float64)
    for s in range(h.shape[1]):
        if net.mixture[s] and mask.allowed(x[:, :s]) is None:  # O(K), no full pmf
            out += net.head_log_prob(s, h[:, s], counts[:, s]).double().cpu()
            continue
        l = F.log_softmax(net.heads[s](h[:, s]), dim=-1)
        cond = _apply_mask(l.double().exp().cpu().numpy(), mask, x[:, :s])
        with np.errstate(divide="ignore"):
            out += torch.as_tensor(np.log(cond[np.arange(len(x)), x[:, s]]))
    return torch.where(torch.as_tensor(mask.valid(x)), out, torch.tensor(-np.inf, dtype=torch.float64))


def default_parameter_count(config: METConfig) -> int:
    """Number of trainable parameters of a network with this config (without building it twice)."""
    return METNet(config).n_parameters()


__all__ = ["METConfig", "METNet", "MixtureHead", "SmoothCountEmbedding", "VocabularyOverflowWarning", "check_vocab", "enumerate_joint",
           "conditionals", "ancestral_sample", "masked_log_prob"]
