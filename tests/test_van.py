"""VAN time-stepping of the CME against exact answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import poisson

import sbml_met
from sbml_met import models
from sbml_met.errors import InvalidArgumentError
from sbml_met.met.van import TinyVAN, log_T, solve_van
from sbml_met.metrics import hellinger


def birth_death():
    return models.load("birth_death").with_parameters(k1=5.0, k2=1.0)


def test_propagated_van_is_one_euler_step_of_the_cme():
    """log T q equals (I + h W) q computed by hand, on every state of the vocabulary."""
    net = birth_death()
    van = TinyVAN((27,), 8)
    with torch.no_grad():
        van.b3[0, :27] = torch.as_tensor(np.log(poisson.pmf(np.arange(27), 3.0)))
    y = np.arange(27)[:, None]
    q = np.exp(van.log_prob(torch.as_tensor(y)).detach().double().numpy())
    h, x = 0.01, np.arange(27)
    tq = q - h * (5 + x) * q
    tq[1:] += h * 5 * q[:-1]
    tq[:-1] += h * x[1:] * q[1:]
    lt = log_T(van, y, h, net, np.asarray(net.stoichiometry), np.array([27]))
    assert np.abs(np.exp(lt) - tq).max() < 1e-12


def test_tiny_van_is_normalised_and_samples_follow_it():
    torch.manual_seed(0)
    van = TinyVAN((3, 5, 4), 16)
    with torch.no_grad():
        for p in van.parameters():
            p.normal_(0, 0.5)
    st, pr = van.enumerate(prune=0.0)
    assert len(st) == 60 and abs(pr.sum() - 1) < 1e-6
    lp = van.log_prob(torch.as_tensor(st)).double().exp().detach().numpy()
    assert np.abs(lp - pr).max() < 1e-6
    x = van.sample(40000, torch.Generator().manual_seed(1))
    emp = np.zeros(60)
    np.add.at(emp, x[:, 0] * 20 + x[:, 1] * 4 + x[:, 2], 1 / len(x))
    assert np.abs(emp - pr).max() < 0.01


def test_van_birth_death_matches_poisson():
    d = solve_van(birth_death(), [0.5, 1.0], vocab=(27,), seed=0)
    assert d.method == "van" and d.metadata["estimator"] == "exact"
    for t in (0.5, 1.0):
        m = d.marginal("X", t).to_numpy()
        h = hellinger(m, poisson.pmf(np.arange(len(m)), 5 * (1 - np.exp(-t))))
        assert h < 0.03, (t, h)


@pytest.mark.slow
def test_van_sampled_estimator_birth_death():
    """The Monte-Carlo estimator (what large state spaces use) on the same problem: looser."""
    d = solve_van(birth_death(), [1.0], vocab=(27,), seed=0, estimator="sampled", batch=512)
    m = d.marginal("X", 1.0).to_numpy()
    h = hellinger(m, poisson.pmf(np.arange(len(m)), 5 * (1 - np.exp(-1.0))))
    assert h < 0.12, h


def test_van_bad_input():
    with pytest.raises(InvalidArgumentError, match="estimator"):
        solve_van(birth_death(), [1.0], vocab=(27,), estimator="magic")
    with pytest.raises(InvalidArgumentError, match="vocab"):
        solve_van(birth_death(), [1.0], vocab=(27, 3))
    with pytest.raises(InvalidArgumentError, match="times"):
        solve_van(birth_death(), [-1.0], vocab=(27,))


def test_van_autoregulation_matches_fsp():
    """Exact propagation between VAN fits (the default with an enumerable vocabulary) keeps
    track of P; the Euler kernel lost it (Hellinger 0.6-0.7)."""
    net = models.load("autoregulation")
    times = [1.0, 5.0]
    d = solve_van(net, times, seed=0)
    ref = sbml_met.solve_fsp(net, times)
    for t in times:
        for s in net.species:
            h = hellinger(d.marginal(s, t), ref.marginal(s, t))
            assert h < 0.03, (t, s, h)
    assert d.metadata["propagator"] == "expm"


def test_van_euler_kernel_still_available():
    d = solve_van(birth_death(), [0.5], vocab=(27,), seed=0, propagator="euler")
    assert d.metadata["propagator"] == "euler" and d.metadata["divergence"] == "reverse"
    m = d.marginal("X", 0.5).to_numpy()
    assert hellinger(m, poisson.pmf(np.arange(len(m)), 5 * (1 - np.exp(-0.5)))) < 0.03
    with pytest.raises(InvalidArgumentError, match="propagator"):
        solve_van(birth_death(), [0.5], vocab=(27,), propagator="rk4")
    with pytest.raises(InvalidArgumentError, match="exact estimator"):
        solve_van(birth_death(), [0.5], vocab=(27,), estimator="sampled", propagator="expm")


def test_van_bank_grid_rows_and_stacked_snapshots_agree():
    """VANBank: the prefix-wise grid evaluation, the per-row conditionals and a stack of TinyVAN
    weights all give the same normalised log-probabilities."""
    from sbml_met.met.van import VANBank, grid_states

    torch.manual_seed(0)
    vans = [TinyVAN((3, 5, 4), 8) for _ in range(3)]
    for v in vans:
        with torch.no_grad():
            for p in v.parameters():
                p.normal_(0, 0.5)
    bank = VANBank.stack([v.state_dict() for v in vans], (3, 5, 4), 8)
    X = torch.as_tensor(grid_states((3, 5, 4)))
    with torch.no_grad():
        g = bank.log_prob_grid()
        for m, v in enumerate(vans):
            assert torch.allclose(g[m], v.log_prob(X), atol=1e-5)
            assert torch.allclose(bank.log_prob(X, torch.full((60,), m)), v.log_prob(X), atol=1e-5)
    assert torch.allclose(g.exp().sum(dim=1), torch.ones(3), atol=1e-5)


def test_van_batch_matches_poisson_for_many_prompts_with_their_own_times():
    from sbml_met.met.van import solve_van_batch

    net = birth_death()
    k1 = np.array([2.0, 5.0, 8.0])
    times = np.array([[0.3, 1.0], [0.6, 2.0], [0.9, 3.0]])
    vb = solve_van_batch(net, {"k1": k1}, times, vocab=(25,), dt=0.5)
    P = np.exp(vb.log_joint)
    assert P.shape == (3, 2, 25) and np.allclose(P.sum(axis=2), 1, atol=1e-4)
    for m in range(3):
        for k in range(2):
            h = hellinger(P[m, k], poisson.pmf(np.arange(25), k1[m] * (1 - np.exp(-times[m, k]))))
            assert h < 0.01, (m, k, h)
    with pytest.raises(InvalidArgumentError):
        solve_van_batch(net, {"k1": k1}, times[:, ::-1], vocab=(25,))


def test_van_ssa_kernel_birth_death():
    """The sampled exact kernel (x ~ q_t, SSA over h, maximum likelihood) on birth-death."""
    d = solve_van(birth_death(), [0.5, 2.0], vocab=(25,), propagator="ssa", dt=0.5, max_inner=200,
                  batch=1024, lr=3e-2, n_kernel=20_000, seed=1)
    assert d.metadata["propagator"] == "ssa"
    with pytest.raises(InvalidArgumentError, match="forward"):  # a maximum-likelihood fit, nothing else
        solve_van(birth_death(), [0.5], vocab=(25,), propagator="ssa", divergence="reverse")
    for t in (0.5, 2.0):
        m = d.marginal("X", t).to_numpy()
        h = hellinger(m, poisson.pmf(np.arange(len(m)), 5 * (1 - np.exp(-t))))
        assert h < 0.03, (t, h)
