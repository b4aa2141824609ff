"""RL teachers of the MET: the policy-gradient estimator against the exact KL gradient, and short
trainings with the exact-FSP and VAN reward models against the exact Poisson answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import poisson

import sbml_met.met as met_pkg
from sbml_met import models
from sbml_met.met import rl
from sbml_met.met.teachers import TEACHERS
from sbml_met.metrics import hellinger

TINY = {"d_model": 32, "n_layer": 1, "n_head": 2, "d_ff": 64}


def poisson_net():
    return models.load("birth_death").with_parameters(k2=1.0)


def test_rl_teachers_are_registered():
    assert {"rlmf", "fsp-reward"} <= set(TEACHERS)


def test_policy_gradient_matches_exact_kl_gradient():
    """REINFORCE with a leave-one-out baseline is unbiased for grad KL(p || r)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    theta = torch.tensor([0.3, -0.2, 1.0, 0.0, -1.5, 0.4], requires_grad=True)
    r = np.array([0.05, 0.1, 0.4, 0.2, 0.05, 0.2])
    p = torch.softmax(theta, 0)
    exact_kl = (p * (torch.log(p) - torch.as_tensor(np.log(r), dtype=p.dtype))).sum()
    (g_exact,) = torch.autograd.grad(exact_kl, theta)
    P, m = 8000, 8
    x = torch.as_tensor(rng.choice(6, size=P * m, p=p.detach().numpy() / p.detach().numpy().sum()))
    log_p = torch.log_softmax(theta, 0)[x]
    loss, kl = rl.policy_gradient_loss(log_p, np.log(r)[x.numpy()], m)
    (g,) = torch.autograd.grad(loss, theta)
    assert kl == pytest.approx(float(exact_kl.detach()), abs=0.01)
    assert torch.allclose(g, g_exact, atol=0.01), (g, g_exact)
    # and the estimate is not trivially zero: the gradient is large compared with the tolerance
    assert float(g_exact.abs().max()) > 0.1


def test_policy_gradient_is_zero_at_the_reward():
    theta = torch.tensor([0.1, 0.5, -0.3], requires_grad=True)
    r = torch.softmax(theta, 0).detach().numpy()
    x = torch.as_tensor(np.random.default_rng(1).choice(3, size=4000, p=r / r.sum()))
    log_p = torch.log_softmax(theta, 0)[x]
    loss, kl = rl.policy_gradient_loss(log_p, np.log(r)[x.numpy()], 8)
    (g,) = torch.autograd.grad(loss, theta)
    assert abs(kl) < 1e-6 and float(g.abs().max()) < 1e-6


def test_sample_met_follows_log_prob():
    torch.manual_seed(0)
    net = met_pkg.METNet(met_pkg.METConfig(n_prompt=2, vocab=(3, 4), n_features=2, **TINY))
    f = torch.randn(1, 2, 2).expand(20000, -1, -1)
    x = rl.sample_met(net, f, torch.Generator().manual_seed(0))
    states = torch.as_tensor([[a, b] for a in range(3) for b in range(4)])
    with torch.no_grad():
        p = net.log_prob(f[:12], states).exp().numpy()
    emp = np.zeros(12)
    np.add.at(emp, (x[:, 0] * 4 + x[:, 1]).numpy(), 1.0 / len(x))
    assert abs(p.sum() - 1) < 1e-5
    assert np.abs(emp - p).max() < 0.015


def test_fsp_reward_training_reaches_poisson():
    """A few hundred policy-gradient steps with the exact reward learn birth-death."""
    met = met_pkg.train(poisson_net(), {"k1": (2.0, 8.0)}, (0.0, 4.0), teacher="fsp-reward", minutes=2,
                        seed=0, steps=800, model=TINY, batch_size=256, lr=3e-3, n_validation=8,
                        validate_every=1e9, progress=False,
                        teacher_options={"n_prompts": 128, "times_per_prompt": 8})
    assert met.validation["reference"] == "exact"
    hs = []
    for k1, t in [(3.0, 1.0), (5.0, 2.0), (7.5, 4.0)]:
        m = met.marginal("X", t, k1=k1)
        hs.append(hellinger(m.to_numpy(), poisson.pmf(np.arange(len(m)), k1 * (1 - np.exp(-t)))))
    assert max(hs) < 0.08, hs
    assert met.validation["hellinger_mean"] < 0.08


@pytest.mark.slow
def test_rlmf_training_reaches_poisson():
    """VAN reward models (exact-sum KL) for 8 Sobol prompts, then policy gradient."""
    met = met_pkg.train(poisson_net(), {"k1": (2.0, 8.0)}, (0.0, 4.0), teacher="rlmf", minutes=6,
                        seed=0, steps=600, model=TINY, batch_size=256, lr=3e-3, n_validation=8,
                        validate_every=1e9, progress=False,
                        teacher_options={"n_prompts": 8, "times_per_prompt": 4, "models_per_batch": 8, "max_prompts": 8})
    hs = []
    for k1, t in [(3.0, 1.0), (5.0, 2.0), (7.5, 4.0)]:
        m = met.marginal("X", t, k1=k1)
        hs.append(hellinger(m.to_numpy(), poisson.pmf(np.arange(len(m)), k1 * (1 - np.exp(-t)))))
    assert max(hs) < 0.1, hs


def test_conditional_policy_gradient_matches_exact_kl_gradient():
    """The chain-rule estimator (exact sums per position, rewards-to-go) is unbiased for grad KL."""
    torch.manual_seed(1)
    net = met_pkg.METNet(met_pkg.METConfig(n_prompt=2, vocab=(3, 4), n_features=2, **TINY))
    f1 = torch.randn(1, 2, 2)
    rng = np.random.default_rng(2)
    J = rng.dirichlet(np.ones(12)).reshape(1, 3, 4)
    reward = rl.DenseJointReward(J)
    states = torch.as_tensor([[a, b] for a in range(3) for b in range(4)])
    lp_all = net.log_prob(f1.expand(12, -1, -1), states)
    exact_kl = (lp_all.exp() * (lp_all - torch.as_tensor(np.log(J.reshape(-1)), dtype=lp_all.dtype))).sum()
    g_exact = torch.autograd.grad(exact_kl, list(net.parameters()), allow_unused=True)
    n, m = 40000, 8
    f = f1.expand(n, -1, -1)
    x = rl.sample_met(net, f, torch.Generator().manual_seed(3))
    items = np.zeros(n, dtype=np.int64)
    # the reward's conditionals are those of J
    lr = reward.log_conditionals(items, x.numpy())
    assert np.allclose(np.exp(lr[0][0]), J[0].sum(axis=1))
    assert np.allclose(np.exp(lr[1]), J[0][x[:, 0].numpy()] / J[0][x[:, 0].numpy()].sum(axis=1, keepdims=True))
    loss, kl = rl.conditional_policy_loss(net.logits(f, x[:, :-1]), x, lr, m)
    g = torch.autograd.grad(loss, list(net.parameters()), allow_unused=True)
    assert kl == pytest.approx(float(exact_kl.detach()), rel=0.02)
    ge = torch.cat([a.reshape(-1) for a, b in zip(g_exact, g) if a is not None])
    gc = torch.cat([b.reshape(-1) for a, b in zip(g_exact, g) if a is not None])
    assert float(ge.abs().max()) > 0.05  # a real gradient, and the estimate follows it
    assert float((gc - ge).abs().max()) < 0.1 * float(ge.abs().max()), (float((gc - ge).abs().max()), float(ge.abs().max()))
    assert float(torch.nn.functional.cosine_similarity(gc, ge, dim=0)) > 0.99


def test_state_space_beyond_int64_codes_is_refused_with_a_typed_error():
    """cascade15 with 40 counts per species has ~2^80 capped states: a StateSpaceTooLargeError
    (the RL teachers then validate against SSA), not a numpy ValueError from the state codes."""
    from sbml_met.errors import StateSpaceTooLargeError
    from sbml_met.met._cme import StateSpace

    net = models.load("cascade15")
    with pytest.raises(StateSpaceTooLargeError, match="cascade15"):
        StateSpace(net, np.full(15, 40), np.zeros((1, 15), np.int64), [{}], 50_000)


@pytest.mark.slow
def test_rlmf_per_prompt_ssa_kernel_rewards_reach_poisson():
    """The route beyond enumeration: one VAN per prompt by the SSA-drawn kernel, the snapshots
    stacked in a VANBank whose conditionals drive the chain-rule policy gradient."""
    van = {"propagator": "ssa", "dt": 1.0, "max_inner": 150, "batch": 512, "lr": 3e-2, "n_kernel": 10_000}
    met = met_pkg.train(poisson_net(), {"k1": (2.0, 8.0)}, (0.0, 4.0), teacher="rlmf", minutes=6,
                        seed=0, steps=600, model=TINY, batch_size=256, lr=3e-3, n_validation=8,
                        validate_every=1e9, progress=False,
                        teacher_options={"n_prompts": 6, "times_per_prompt": 4, "batched": False, "van": van})
    ev = [e for e in met.log if e.get("event") == "teacher"][0]
    assert ev["reward_models"] == 6 and not ev["batched"]
    hs = []
    for k1, t in [(3.0, 1.0), (5.0, 2.0), (7.5, 4.0)]:
        m = met.marginal("X", t, k1=k1)
        hs.append(hellinger(m.to_numpy(), poisson.pmf(np.arange(len(m)), k1 * (1 - np.exp(-t)))))
    assert max(hs) < 0.1, hs
