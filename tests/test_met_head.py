"""The MET's smooth output head (METConfig.head "mixture"/"auto"): a mixture of discretized
logistic distributions on 0..V-1, checked against exact answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chi2, logistic, poisson

import sbml_met.met as met_pkg
from sbml_met import models
from sbml_met.met import MET, METConfig, METNet, PromptSpace
from sbml_met.met.model import MixtureHead, ancestral_sample
from sbml_met.metrics import hellinger

TINY = {"d_model": 32, "n_layer": 1, "n_head": 2, "d_ff": 64}


def random_head(V: int, K: int = 5, seed: int = 0, spread: float = 1.0) -> tuple[MixtureHead, torch.Tensor]:
    torch.manual_seed(seed)
    head = MixtureHead(16, V, K)
    with torch.no_grad():
        head.out.weight.normal_(0, spread)
    return head, torch.randn(4, 16)


def exact_pmf(head: MixtureHead, h: torch.Tensor) -> np.ndarray:
    """The head's pmf written out from scipy's logistic CDF (float64), tails at the end counts."""
    lw, mu, ls = (a.double().detach().numpy() for a in head.params(h))
    edges = np.concatenate([[-np.inf], np.arange(head.V - 1) + 0.5, [np.inf]])
    cdf = logistic.cdf((edges[None, None, :] - mu[:, :, None]) / np.exp(ls)[:, :, None])  # (B, K, V+1)
    return (np.exp(lw)[:, :, None] * np.diff(cdf, axis=2)).sum(axis=1)


def test_config_without_head_is_categorical_and_round_trips():
    c = METConfig.from_dict({"n_prompt": 3, "vocab": [2, 5000], "d_model": 32, "n_layer": 1, "n_head": 2,
                             "d_ff": 64, "dropout": 0.0})
    assert c.head == "categorical" and c.mixture == (False, False)
    net = METNet(c)
    assert all(isinstance(h, torch.nn.Linear) for h in net.heads)
    auto = METConfig(n_prompt=3, vocab=(2, 300, 5000), head="auto", mixture_from=512)
    assert auto.mixture == (False, False, True)
    assert METConfig.from_dict(auto.to_dict()) == auto
    assert METConfig(n_prompt=3, vocab=(2, 5), head="mixture").mixture == (True, True)
    with pytest.raises(ValueError):
        METConfig(n_prompt=3, vocab=(2,), head="gaussian")
    with pytest.raises(ValueError):
        METConfig(n_prompt=3, vocab=(2,), prompt="mean")
    pooled = METConfig(n_prompt=3, vocab=(2, 5000), head="auto", prompt="pooled")
    assert pooled.n_prompt_tokens == 1 and METConfig.from_dict(pooled.to_dict()) == pooled


def test_cached_sampling_attention_matches_the_full_forward():
    """The batched attention of mixture-head networks (one prompt, many rows) gives the same
    hidden states as the reference step and as the full causal forward pass."""
    torch.manual_seed(0)
    net = METNet(METConfig(n_prompt=4, vocab=(3000, 20, 50), head="auto", **TINY)).eval()
    f = torch.randn(1, 4, 2)
    x = torch.stack([torch.randint(0, 3000, (64,)), torch.randint(0, 20, (64,))], dim=1)
    with torch.no_grad():
        full = net.hidden(f.expand(64, -1, -1), x)
        out = {}
        for batched in (True, False):
            net.batched_attention = batched
            last, caches = net.prompt_kv(f)
            h1, caches = net.next_token(x[:, 0], 0, caches, torch.zeros(64, dtype=torch.long))
            h2, _ = net.next_token(x[:, 1], 1, caches)
            out[batched] = (h1, h2)
    for batched in (True, False):
        assert torch.allclose(out[batched][0], full[:, 1], atol=1e-5)
        assert torch.allclose(out[batched][1], full[:, 2], atol=1e-5)


@pytest.mark.parametrize("V", [1, 2, 40, 3000])
def test_mixture_pmf_sums_to_one_and_matches_scipy(V):
    head, h = random_head(V, spread=0.5)
    lp = head(h).detach().double()
    assert lp.shape == (4, V)
    assert torch.allclose(lp.exp().sum(dim=1), torch.ones(4, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(head.log_prob(h, torch.full((4,), V - 1)).detach().double(), lp[:, -1], atol=1e-4)
    if V > 1:
        ref = exact_pmf(head, h)
        assert np.allclose(ref.sum(axis=1), 1.0, atol=1e-12)
        assert np.abs(lp.exp().numpy() - ref).max() < 2e-5


def test_mixture_log_prob_is_the_full_pmf_at_the_counts():
    head, h = random_head(500, spread=0.3)
    full = head(h).detach()
    x = torch.tensor([0, 17, 250, 499])
    assert torch.allclose(head.log_prob(h, x).detach(), full[torch.arange(4), x], atol=1e-4)
    # every count of every row
    xs = torch.arange(500).repeat(4)
    hs = h.repeat_interleave(500, dim=0)
    assert torch.allclose(head.log_prob(hs, xs).detach().view(4, 500), full, atol=1e-4)


def test_point_mass_and_sharp_components_are_stable():
    head = MixtureHead(4, 1000, 2)
    with torch.no_grad():
        head.out.weight.zero_()
        head.out.bias.copy_(torch.tensor([0.0, -50.0, 0.0, 0.5, -20.0, -20.0]))  # all weight on mu=0, s tiny
    h = torch.zeros(2, 4)
    lp = head(h)
    assert torch.isfinite(lp).all() and lp[0, 0].exp() > 1 - 1e-6
    assert torch.isfinite(head.log_prob(h, torch.tensor([0, 999]))).all()
    u = torch.rand(1000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert (head.sample(torch.zeros(1000, 4), u) == 0).all()


def test_mixture_samples_follow_the_pmf_chi_square():
    head, h = random_head(60, K=4, seed=3, spread=0.3)
    h = h[:1].expand(200_000, -1)
    u = torch.rand(200_000, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = head.sample(h, u).numpy()
    p = exact_pmf(head, h[:1])[0]
    obs = np.bincount(x, minlength=60)
    keep = p * len(x) >= 5
    exp = p[keep] * len(x)
    stat = ((obs[keep] - exp) ** 2 / exp).sum() + (obs[~keep].sum() - p[~keep].sum() * len(x)) ** 2 / max(p[~keep].sum() * len(x), 1)
    assert stat < chi2.ppf(0.999, keep.sum()), stat
    assert hellinger(obs / obs.sum(), p) < 0.01


def untrained(network, box, times, vocab, head="auto", seed=0, prompt="tokens") -> MET:
    torch.manual_seed(seed)
    space = PromptSpace.build(network, box, times)
    net = METNet(METConfig(n_prompt=space.n_prompt, vocab=vocab, head=head, mixture_from=20, prompt=prompt, **TINY))
    with torch.no_grad():  # make the untrained conditionals far from flat
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return MET(net, space, network)


@pytest.mark.parametrize("prompt", ["tokens", "pooled"])
def test_auto_head_joint_log_prob_sampling_and_enumeration_agree(prompt):
    """Gene (vocab 2, categorical) then protein (vocab 40, mixture): log_prob sums to one over
    all states, equals the enumerated joint, and samples follow it (prompt as tokens or pooled)."""
    met = untrained(models.load("autoregulation"), {"rb": (1.0, 50.0)}, (0.0, 5.0), vocab=(2, 40), prompt=prompt)
    assert met.net.pos.shape[0] == (1 if prompt == "pooled" else met.config.n_prompt) + 1
    assert met.net.mixture == (False, True)
    states = np.array([(g, p) for g in range(2) for p in range(40)])
    p = np.exp(met.log_prob(states, 2.0, rb=10.0))
    assert abs(p.sum() - 1) < 1e-5
    d = met.solve([2.0], rb=10.0, prune=0.0)
    enum = np.zeros(80)
    np.add.at(enum, d.states[0][:, 0] * 40 + d.states[0][:, 1], d.probabilities[0])
    assert np.abs(enum - p).max() < 1e-5
    x = met.sample(100_000, 2.0, seed=4, rb=10.0)
    emp = np.bincount(x[:, 0] * 40 + x[:, 1], minlength=80) / len(x)
    assert hellinger(emp, p) < 0.02  # 80 cells, 10^5 samples: noise about 0.01
    keep = p * len(x) >= 5
    stat = ((emp[keep] - p[keep]) ** 2 / p[keep]).sum() * len(x)
    assert stat < chi2.ppf(0.999, keep.sum()), stat
    # the smooth embedding of a mixture species that is not last
    rev = untrained(models.load("autoregulation"), {"rb": (1.0, 50.0)}, (0.0, 5.0), vocab=(30, 40), head="mixture",
                    prompt=prompt)
    st = np.array([(a, b) for a in range(30) for b in range(40)])
    q = np.exp(rev.log_prob(st, 1.0, rb=5.0))
    assert abs(q.sum() - 1) < 1e-4
    y = rev.sample(100_000, 1.0, seed=5, rb=5.0)
    joint = np.bincount(y[:, 0] * 40 + y[:, 1], minlength=1200).reshape(30, 40) / len(y)
    q = q.reshape(30, 40)
    assert hellinger(joint.sum(1), q.sum(1)) < 0.01 and hellinger(joint.sum(0), q.sum(0)) < 0.01
    assert hellinger(joint.ravel(), q.ravel()) < 0.05  # 1200 cells: noise about 0.04


def test_mixture_head_under_a_conservation_mask():
    """A conserved pair (S + P = total): the mixture species' pmf is masked and renormalised in
    sampling and log_prob exactly as a categorical one, and no sample breaks the law."""
    from sbml_met.conservation import ConservationMask, conservation_laws

    net = models.load("dimerisation")  # A + 2 A2 = 20
    laws = conservation_laws(net)
    assert len(laws) == 1
    vocab = (24, 12)
    met = untrained(net, {"kf": (0.05, 0.2)}, (0.0, 5.0), vocab=vocab, head="mixture")
    mask = ConservationMask(laws, np.rint(net.initial_state), vocab)
    x = met.sample(100_000, 1.0, seed=0)
    assert mask.valid(x).all() and (x[:, 0] + 2 * x[:, 1] == 20).all()
    f = met.prompt_features([1.0], None, {})
    lp = met.log_prob(x[:2000], 1.0)
    assert np.isfinite(lp).all()
    from sbml_met.met.model import enumerate_joint

    states, probs = enumerate_joint(met.net, f, len(vocab), mask=mask)
    assert abs(probs.sum() - 1) < 1e-6 and mask.valid(states).all()
    lp_enum = met.log_prob(states, 1.0)
    assert np.allclose(np.exp(lp_enum), probs, atol=1e-6)
    emp = np.bincount(x[:, 1], minlength=12) / len(x)
    assert hellinger(emp, np.bincount(states[:, 1], weights=probs, minlength=12)) < 0.01


def test_ssa_teacher_with_mixture_head_learns_a_large_poisson():
    """Birth-death X(t) ~ Poisson(k1 (1 - e^-t)), k1 in [1000, 3000] (counts in the thousands):
    a short SSA-teacher training with the mixture head matches the exact law."""
    net = models.load("birth_death").with_parameters(k2=1.0)
    met = met_pkg.train(net, {"k1": (1000.0, 3000.0)}, (0.5, 3.0), teacher="ssa", minutes=3, seed=0, steps=2000,
                        model={**TINY, "head": "auto", "mixture_k": 4}, batch_size=256, lr=3e-3,
                        n_validation=2, validate_every=1e9, progress=False,
                        teacher_options={"n_prompts": 1024, "times_per_trajectory": 16, "n_reference": 500})
    assert met.net.mixture == (True,)
    V = met.config.vocab[0]
    assert V > 3000
    for k1, t in [(1500.0, 1.0), (2500.0, 2.5), (1100.0, 0.6)]:
        x = met.sample(20_000, t, seed=1, k1=k1)[:, 0]
        lam = k1 * (1 - np.exp(-t))
        ex = poisson.pmf(np.arange(V), lam)
        h = hellinger(met.marginal("X", t, k1=k1).to_numpy(), ex)
        assert h < 0.15, (k1, t, h)  # exact counts, sd 22..48: a 1% shift of the mean alone gives ~0.1
        assert abs(x.mean() - lam) < 0.02 * lam and abs(x.std() / np.sqrt(lam) - 1) < 0.4, (x.mean(), x.std(), lam)
        lp = met.log_prob(np.arange(V)[:, None], t, k1=k1)
        assert abs(np.exp(lp).sum() - 1) < 1e-4
