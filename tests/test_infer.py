"""Parameter inference: path likelihood of exact trajectories, posteriors from snapshot data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import poisson

import sbml_met
from sbml_met import models
from sbml_met.cli import main as cli_main
from sbml_met.errors import InvalidArgumentError, TrajectoryError, UnknownIdError
from sbml_met.infer import InferenceResult, TrajectoryFit, fit_trajectory, posterior
from sbml_met.infer.snapshots import _METLikelihood, _observations
from sbml_met.met import MET, METConfig, METNet, PromptSpace

TINY = {"d_model": 32, "n_layer": 1, "n_head": 2, "d_ff": 64}


# ------------------------------------------------------------------------------ path likelihood
def bd_closed_form(traj):
    """Immigration-death MLE: k1 = births / T, k2 = deaths / integral of X dt; se = estimate / sqrt(count)."""
    fired, x, t = traj.fired, traj.states[0, :, 0], traj.times
    births, deaths = (fired == 0).sum(), (fired == 1).sum()
    k1, k2 = births / t[-1], deaths / np.sum(x[:-1] * np.diff(t))
    return {"k1": k1, "k2": k2}, {"k1": k1 / np.sqrt(births), "k2": k2 / np.sqrt(deaths)}


@pytest.fixture(scope="module")
def bd_traj():
    return sbml_met.simulate(models.load("birth_death"), [0, 200], n=1, seed=11, record="events")


def test_birth_death_fit_equals_closed_form(bd_traj):
    fit = fit_trajectory(models.load("birth_death"), bd_traj, free=["k1", "k2"])
    est, se = bd_closed_form(bd_traj)
    assert isinstance(fit, TrajectoryFit) and fit.converged
    for p in ("k1", "k2"):
        assert fit.estimates[p] == pytest.approx(est[p], rel=1e-6)
        assert fit.standard_errors[p] == pytest.approx(se[p], rel=1e-3)
    assert fit.n_jumps == len(bd_traj.times) - 2
    # the reported log-likelihood is the path log-likelihood at the estimate
    x, t, f = bd_traj.states[0, :, 0], bd_traj.times, bd_traj.fired
    k1, k2 = est["k1"], est["k2"]
    ll = (f == 0).sum() * np.log(k1) + np.sum(np.log(k2 * x[:-1][f[1:] == 1])) - np.sum((k1 + k2 * x[:-1]) * np.diff(t))
    assert fit.loglik == pytest.approx(ll, rel=1e-9)
    frame = fit.to_frame()
    assert list(frame.columns[:3]) == ["parameter", "estimate", "std_error"]
    assert frame["parameter"].tolist() == ["k1", "k2"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_birth_death_rates_recovered_within_3_se(seed):
    net = models.load("birth_death")
    traj = sbml_met.simulate(net, [0, 300], n=1, seed=seed, record="events")
    fit = fit_trajectory(net, traj, free=["k1", "k2"], start={"k1": 1.0, "k2": 1.0})
    for p, true in (("k1", 10.0), ("k2", 0.1)):
        assert abs(fit.estimates[p] - true) < 3 * fit.standard_errors[p]
        assert fit.standard_errors[p] < 0.1 * true  # informative, not a trivially wide interval


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_toggle_switch_rates_recovered_within_3_se(seed):
    net = models.load("toggle_switch")
    traj = sbml_met.simulate(net, [0, 40], n=1, seed=seed, record="events")
    free = ["sx", "sy", "dx", "dy"]
    fit = fit_trajectory(net, traj, free=free, start={"sx": 20.0, "sy": 80.0, "dx": 0.5, "dy": 2.0})
    for p in free:
        true = net.parameters[p]
        assert abs(fit.estimates[p] - true) < 3 * fit.standard_errors[p], (p, fit.estimates[p])
        assert fit.standard_errors[p] < 0.2 * true
    # same answer from the network's own values as start (the optimum does not depend on the start)
    fit2 = fit_trajectory(net, traj, free=free)
    for p in free:
        assert fit2.estimates[p] == pytest.approx(fit.estimates[p], rel=1e-6)


def test_table_input_matches_ssa_result(bd_traj):
    net = models.load("birth_death")
    ref = fit_trajectory(net, bd_traj, free=["k1", "k2"])
    wide = bd_traj.wide_frame()
    long = bd_traj.to_frame()
    for table in (wide, wide.drop(columns="trajectory"), long):
        fit = fit_trajectory(net, table, free=["k1", "k2"])
        for p in ("k1", "k2"):
            assert fit.estimates[p] == pytest.approx(ref.estimates[p], rel=1e-6)
            assert fit.standard_errors[p] == pytest.approx(ref.standard_errors[p], rel=1e-3)
    # two independent copies of the path: same estimate, standard errors shrink by sqrt(2)
    two = pd.concat([wide, wide.assign(trajectory=1)], ignore_index=True)
    fit = fit_trajectory(net, two, free=["k1", "k2"])
    assert fit.estimates["k1"] == pytest.approx(ref.estimates["k1"], rel=1e-6)
    assert fit.standard_errors["k1"] == pytest.approx(ref.standard_errors["k1"] / np.sqrt(2), rel=1e-3)


def test_shared_state_change_uses_summed_propensity_or_raises():
    # autoregulation: prod_free (ru*Gu) and prod_bound (rb*(1-Gu)) both add one P; exactly one is
    # nonzero in each state, so the summed likelihood of the state path equals the fired-reaction one
    net = models.load("autoregulation")
    traj = sbml_met.simulate(net, [0, 60], n=1, seed=5, record="events")
    free = ["su", "sb", "ru", "rb"]
    ref = fit_trajectory(net, traj, free=free)
    fit = fit_trajectory(net, traj.wide_frame(), free=free)
    for p in free:
        assert fit.estimates[p] == pytest.approx(ref.estimates[p], rel=1e-6)
    with pytest.raises(TrajectoryError, match="prod_free / prod_bound"):
        fit_trajectory(net, traj.wide_frame(), free=free, ambiguous="raise")


def test_trajectory_errors(bd_traj):
    net = models.load("birth_death")
    bad = pd.DataFrame({"time": [0.0, 1.0, 2.0], "X": [0, 2, 2]})
    with pytest.raises(TrajectoryError, match=r"X\+2.*time 1"):
        fit_trajectory(net, bad, free=["k1"])
    with pytest.raises(UnknownIdError, match="nope"):
        fit_trajectory(net, bd_traj, free=["nope"])
    grid = sbml_met.simulate(net, [0, 1, 2], n=1, seed=1)
    with pytest.raises(InvalidArgumentError, match="record='events'"):
        fit_trajectory(net, grid, free=["k1"])
    with pytest.raises(InvalidArgumentError, match="Y"):
        fit_trajectory(net, pd.DataFrame({"time": [0.0, 1.0], "X": [0, 1], "Y": [0, 0]}), free=["k1"])


# ------------------------------------------------------------------------------ snapshot likelihoods
def untrained_autoreg_met(vocab=(2, 40)):
    net = models.load("autoregulation")
    torch.manual_seed(0)
    box = {"su": (1e-8, 2.0), "sb": (1e-8, 0.1), "ru": (1e-8, 10.0), "rb": (1e-8, 100.0)}
    space = PromptSpace.build(net, box, (0, 10))
    return MET(METNet(METConfig(n_prompt=space.n_prompt, vocab=vocab, **TINY)), space, net)


def test_met_likelihood_marginalises_unobserved_species_exactly():
    met = untrained_autoreg_met()
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"time": np.repeat([2.0, 10.0], 40), "P": rng.integers(0, 40, 80)})
    observed, obs, n = _observations(met.species, data)
    assert observed == ["P"] and n == 80
    like = _METLikelihood(met, ["su", "rb"], obs, observed)
    theta = np.array([[0.5, 20.0], [1.0, 50.0]])
    got = like(theta)
    for k in range(2):
        ref = 0.0
        for t in (2.0, 10.0):
            P = data.P[data.time == t].to_numpy()
            pars = dict(su=theta[k, 0], rb=theta[k, 1])
            lp0 = met.log_prob(np.c_[np.zeros_like(P), P], t, **pars)
            lp1 = met.log_prob(np.c_[np.ones_like(P), P], t, **pars)
            ref += np.logaddexp(lp0, lp1).sum()
        assert got[k] == pytest.approx(ref, rel=1e-5)
    over = pd.DataFrame({"time": [10.0], "P": [45]})
    with pytest.raises(InvalidArgumentError, match="P=45.*vocabulary 0..39"):
        _METLikelihood(met, ["su"], _observations(met.species, over)[1], ["P"])
    with pytest.raises(InvalidArgumentError, match="cannot vary parameter 'k'"):
        _METLikelihood(met, ["k"], obs, observed)


@pytest.fixture(scope="module")
def bd_cells():
    net = models.load("birth_death")
    ssa = sbml_met.simulate(net, [0, 2], n=500, seed=3)
    df = ssa.wide_frame()
    return df.loc[df["time"] == 2.0, ["time", "X"]].reset_index(drop=True)


def exact_k1_posterior(x, t=2.0, k2=0.1, lo=1.0, hi=30.0):
    """Posterior of k1 under a log-uniform prior: X(t) ~ Poisson(k1 (1 - e^-k2 t) / k2), on a fine grid."""
    g = np.geomspace(lo, hi, 40001)
    lam = g * (1 - np.exp(-k2 * t)) / k2
    ll = x.sum() * np.log(lam) - len(x) * lam
    w = np.exp(ll - ll.max())  # the prior is flat in log k1: equal weights on a geometric grid
    c = np.cumsum(w) / w.sum()
    q = {a: float(g[np.searchsorted(c, a)]) for a in (0.05, 0.5, 0.95)}
    mean = np.sum(w * g) / w.sum()
    sd = float(np.sqrt(np.sum(w * (g - mean) ** 2) / w.sum()))
    return q, sd


def test_fsp_posterior_of_birth_death_k1_matches_exact_posterior(bd_cells):
    net = models.load("birth_death")
    res = posterior(net, bd_cells, {"k1": (1.0, 30.0)}, n_walkers=16, n_steps=200, seed=1, truth={"k1": 10.0})
    assert isinstance(res, InferenceResult) and res.method == "fsp" and res.n_cells == 500
    q, sd = exact_k1_posterior(bd_cells["X"].to_numpy())
    s = res.summary().set_index("parameter").loc["k1"]
    assert s["lower"] < 10.0 < s["upper"] and bool(s["covered"])
    assert abs(s["median"] - q[0.5]) < 0.25 * sd
    assert abs(s["lower"] - q[0.05]) < 0.45 * sd
    assert abs(s["upper"] - q[0.95]) < 0.45 * sd
    assert list(res.samples.columns) == ["k1"] and len(res.samples) == 16 * 100
    assert 0.2 < res.acceptance < 0.95
    fig = res.plot()
    assert type(fig).__name__ == "Figure" and len(fig.axes) == 1


def test_posterior_is_seeded_and_thins(bd_cells):
    net = models.load("birth_death")
    kw = dict(n_walkers=4, n_steps=30, samples=50)
    a = posterior(net, bd_cells, {"k1": (1.0, 30.0)}, seed=7, **kw)
    b = posterior(net, bd_cells, {"k1": (1.0, 30.0)}, seed=7, **kw)
    c = posterior(net, bd_cells, {"k1": (1.0, 30.0)}, seed=8, **kw)
    assert len(a.samples) == 50
    pd.testing.assert_frame_equal(a.samples, b.samples)
    assert not np.allclose(a.samples["k1"], c.samples["k1"])


def test_uniform_prior_stays_in_its_box_and_finds_the_posterior(bd_cells):
    net = models.load("birth_death")
    res = posterior(net, bd_cells, {"k1": (0.0, 30.0, "uniform")}, n_walkers=8, n_steps=60, seed=1)
    q, sd = exact_k1_posterior(bd_cells["X"].to_numpy())
    assert res.prior["k1"] == (0.0, 30.0, "uniform")
    assert abs(res.samples["k1"].median() - q[0.5]) < 1.0 * sd  # short chain: loose, but far from the box


def test_met_posterior_runs_marginalised_and_seeded():
    met = untrained_autoreg_met(vocab=(2, 60))
    data = pd.DataFrame({"time": 10.0, "P": np.random.default_rng(1).poisson(10, 200)})
    kw = dict(n_walkers=8, n_steps=20, seed=3)
    a = posterior(met, data, {"su": (0.1, 2.0), "rb": (1.0, 100.0)}, **kw)
    b = posterior(met, data, {"su": (0.1, 2.0), "rb": (1.0, 100.0)}, **kw)
    assert a.method == "met" and list(a.samples.columns) == ["su", "rb"]
    pd.testing.assert_frame_equal(a.samples, b.samples)
    assert ((a.samples["su"] >= 0.1) & (a.samples["su"] <= 2.0)).all()
    fig = a.plot(truth={"su": 0.94, "rb": 28.1})
    assert len(fig.axes) == 4


def test_data_errors(bd_cells):
    net = models.load("birth_death")
    pri = {"k1": (1.0, 30.0)}
    with pytest.raises(InvalidArgumentError, match="Y"):
        posterior(net, bd_cells.assign(Y=1), pri)
    with pytest.raises(InvalidArgumentError, match="'X'.*whole"):
        posterior(net, bd_cells.assign(X=-1), pri)
    with pytest.raises(UnknownIdError, match="kk"):
        posterior(net, bd_cells, {"kk": (1.0, 2.0)})
    with pytest.raises(InvalidArgumentError, match="low < high"):
        posterior(net, bd_cells, {"k1": (0.0, 2.0)})
    with pytest.raises(InvalidArgumentError, match="n_walkers"):
        posterior(net, bd_cells, pri, n_walkers=3)
    with pytest.raises(InvalidArgumentError, match="'log' or 'uniform'"):
        posterior(net, bd_cells, {"k1": (1.0, 30.0, "normal")})
    long = pd.DataFrame({"time": 10.0, "species": ["Gu", "P"], "count": [1, 3]})
    with pytest.raises(InvalidArgumentError, match="'cell'"):
        _observations(("Gu", "P"), long)
    observed, obs, n = _observations(("Gu", "P"), long.assign(cell=[0, 0]))
    assert observed == ["Gu", "P"] and obs[0].rows.tolist() == [[1, 3]] and n == 1


def test_cli_infer_writes_samples(bd_cells, tmp_path, capsys):
    data = tmp_path / "cells.csv"
    bd_cells.to_csv(data, index=False)
    out = tmp_path / "post.csv"
    args = ["infer", "birth_death", str(data), "--free", "k1", "--prior", "k1=1:30", "--steps", "40",
            "--walkers", "4", "--seed", "2", "--out", str(out)]
    assert cli_main(args) == 0
    post = pd.read_csv(out)
    assert list(post.columns) == ["k1"] and len(post) == 4 * 20
    assert 8.0 < post["k1"].median() < 12.0
    assert cli_main(args) == 2  # refuses to overwrite
    assert cli_main(["infer", "birth_death", str(data), "--free", "k1", "--out", str(tmp_path / "x.csv")]) == 2
    assert "prior" in capsys.readouterr().err
