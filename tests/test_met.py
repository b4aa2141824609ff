"""Master Equation Transformer: training against exact answers, checkpoints, prompts, sampling."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.stats import poisson

import sbml_met
import sbml_met.met as met_pkg
from sbml_met import models
from sbml_met.errors import CheckpointMismatchError, ExtrapolationWarning, InvalidArgumentError
from sbml_met.met import MET, METConfig, METNet, PromptSpace, VocabularyOverflowWarning
from sbml_met.met._cme import StateSpace, batched_solve, ssa_batch
from sbml_met.metrics import hellinger

TINY = {"d_model": 32, "n_layer": 1, "n_head": 2, "d_ff": 64}


def poisson_net():
    """Immigration-death with death rate 1: X(t) ~ Poisson(k1 (1 - e^-t)) from X(0) = 0."""
    return models.load("birth_death").with_parameters(k2=1.0)


def exact_poisson(k1: float, t: float, n: int) -> np.ndarray:
    return poisson.pmf(np.arange(n), k1 * (1 - np.exp(-t)))


@pytest.fixture(scope="module")
def bd_met() -> MET:
    """A few-second MET for birth-death over k1 in [2, 8], t in [0, 4] (exact Poisson teacher)."""
    return met_pkg.train(poisson_net(), {"k1": (2.0, 8.0)}, (0.0, 4.0), teacher="poisson", minutes=2,
                         seed=0, steps=400, model=TINY, batch_size=256, lr=3e-3, n_validation=8,
                         validate_every=1e9, progress=False,
                         teacher_options={"n_prompts": 256, "times_per_prompt": 8})


def untrained_met(network, box, times, vocab, seed=0) -> MET:
    torch.manual_seed(seed)
    space = PromptSpace.build(network, box, times)
    net = METNet(METConfig(n_prompt=space.n_prompt, vocab=vocab, **TINY))
    return MET(net, space, network)


# ----------------------------------------------------------------------------------- training
def test_short_training_matches_exact_poisson(bd_met):
    assert bd_met.validation["hellinger_mean"] < 0.03
    for k1, t in [(3.0, 0.5), (5.0, 2.0), (7.5, 4.0)]:
        m = bd_met.marginal("X", t, k1=k1)
        assert m.attrs["method"] == "enumerated"
        h = hellinger(m.to_numpy(), exact_poisson(k1, t, len(m)))
        assert h < 0.05, (k1, t, h)


def test_training_is_deterministic_for_a_seed():
    kw = dict(teacher="poisson", minutes=2, seed=3, steps=15, model=TINY, validate_every=1e9,
              progress=False, teacher_options={"n_prompts": 64, "times_per_prompt": 4}, n_validation=2)
    a = met_pkg.train(poisson_net(), {"k1": (2.0, 8.0)}, (0.0, 4.0), **kw)
    b = met_pkg.train(poisson_net(), {"k1": (2.0, 8.0)}, (0.0, 4.0), **kw)
    for (k, va), vb in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(va, vb), k


def test_unknown_teacher_and_bad_box():
    with pytest.raises(InvalidArgumentError):
        met_pkg.train(poisson_net(), {"k1": (2.0, 8.0)}, (0, 4), teacher="nope", minutes=0.1)
    with pytest.raises(sbml_met.UnknownIdError):
        met_pkg.train(poisson_net(), {"kk": (2.0, 8.0)}, (0, 4), minutes=0.1)
    with pytest.raises(InvalidArgumentError):
        met_pkg.train(poisson_net(), {"k1": (8.0, 2.0)}, (0, 4), minutes=0.1)


# ----------------------------------------------------------------------------------- exact engines
def test_private_fsp_matches_poisson():
    net = poisson_net()
    ss = StateSpace(net, np.array([60]), np.array([[0]]), [{"k1": 8.0}])
    p0 = np.zeros(ss.n)
    p0[ss.index(np.array([[0]]))[0]] = 1
    P = batched_solve(ss, {"k1": np.array([2.0, 8.0])}, p0, np.array([0.5, 1.0]), 1.0, 3)
    for b, k1 in enumerate([2.0, 8.0]):
        for k in range(3):
            t = [0.5, 1.0][b] + k
            exact = exact_poisson(k1, t, 61)[ss.states[:, 0]]
            assert np.abs(P[b, k] - exact).sum() < 1e-6


def test_private_fsp_matches_solve_fsp():
    import sbml_met.fsp as fsp
    net = models.load("autoregulation")
    ss = StateSpace(net, np.array([1, 120]), net.initial_state[None, :].astype(int), [dict(net.parameters)])
    p0 = np.zeros(ss.n)
    p0[ss.index(net.initial_state[None, :].astype(int))[0]] = 1
    P = batched_solve(ss, {"rb": np.array([28.1])}, p0, np.array([2.0]), 1.0, 1)[0, 0]
    ref = fsp.solve_fsp(net, [2.0])
    for s, sid in enumerate(net.species):
        mine = np.bincount(ss.states[:, s], weights=P)
        theirs = ref.marginal(sid, 2.0).to_numpy()
        # solve_fsp truncates at tol=1e-6: compare in L1, which that bound controls
        assert np.abs(mine[: len(theirs)] - theirs).sum() + mine[len(theirs):].sum() < 5e-6


def test_batched_ssa_matches_poisson_moments():
    net = poisson_net()
    m = 4000
    rec = np.tile([0.5, 3.0], (m, 1))
    out = ssa_batch(net, {"k1": np.full(m, 6.0)}, np.zeros((m, 1)), rec, np.random.default_rng(1))
    for k, t in enumerate([0.5, 3.0]):
        lam = 6 * (1 - np.exp(-t))
        assert abs(out[:, k, 0].mean() - lam) < 5 * np.sqrt(lam / m)


TWO_BD = """
model two_birth_death
  compartment cell = 1;
  substanceOnly species A in cell = 0, B in cell = 0;
  make_a: => A; ka;
  make_b: => B; kb;
  lose_a: A => ; d*A;
  lose_b: B => ; d*B;
  ka = 2; kb = 5; d = 1;
end
"""


def test_solve_points_matches_solve_fsp_on_threads():
    from sbml_met.fsp import solve_fsp, solve_points

    net = sbml_met.load_antimony(TWO_BD)
    points = [{"ka": 1.0, "kb": 4.0}, {"ka": 3.0, "kb": 2.0}, {"ka": 6.0, "kb": 6.0}]
    times = [[0.5, 2.0], [1.0], [3.0, 4.0]]
    got = dict(solve_points(net, points, times, inits=[{}, {"A": 2}, {}], workers=2))
    assert sorted(got) == [0, 1, 2]
    for i, p in enumerate(points):
        ref = solve_fsp(net.with_parameters(p).with_initial_state({"A": 2} if i == 1 else {}), times[i])
        for t in times[i]:
            for s in ("A", "B"):
                a, b = got[i].marginal(s, t).to_numpy(), ref.marginal(s, t).to_numpy()
                assert len(a) == len(b) and np.abs(a - b).max() < 1e-12
    # the A marginal at k = 1, t = 0.5 is Poisson(1 - e^-0.5)
    assert np.abs(got[0].marginal("A", 0.5).to_numpy()[:8] - poisson.pmf(np.arange(8), 1 - np.exp(-0.5))).max() < 1e-6


def test_pointwise_fsp_teacher_is_exact_and_mirrors_symmetric_points():
    from sbml_met.met.teachers import FSPTeacher, TrainContext

    net = sbml_met.load_antimony(TWO_BD)
    space = PromptSpace.build(net, {"ka": (1.0, 6.0), "kb": (1.0, 6.0)}, (0.0, 3.0))
    import time as _t

    ctx = TrainContext(network=net, space=space, seed=0, deadline=_t.monotonic() + 600,
                       rng=np.random.default_rng(0), start=_t.monotonic())
    tch = FSPTeacher(n_prompts=3, times_per_prompt=2, method="pointwise",
                     symmetry={"ka": "kb", "A": "B"}, workers=2)
    tch.prepare(ctx)
    rows = tch.rows
    assert len(rows.J) == 2 * 3 * 2  # 3 points x 2 times, and their mirror images
    theta = np.array([[2.0, 5.0]])
    ref = tch.reference(ctx, theta, np.zeros((1, 2)), np.array([1.5]))[0]
    lam_a, lam_b = 2 * (1 - np.exp(-1.5)), 5 * (1 - np.exp(-1.5))
    assert np.abs(ref[0] - poisson.pmf(np.arange(len(ref[0])), lam_a)).max() < 1e-6
    assert np.abs(ref[1] - poisson.pmf(np.arange(len(ref[1])), lam_b)).max() < 1e-6
    # every mirrored item is the transposed joint of a Poisson pair with the rates swapped
    feats = rows.feats.numpy()
    m = len(rows.J) // 2
    for i in range(m):
        a = rows.J[i].numpy().reshape(tch.vocab)
        b = rows.J[m + i].numpy().reshape(tch.vocab)
        assert np.allclose(a.T, b)
        assert np.allclose(feats[i, 0], feats[m + i, 1]) and np.allclose(feats[i, -1], feats[m + i, -1])
    lp = rows.J.sum(dim=(1, 2)).numpy()
    assert np.all(np.abs(lp - 1) < 1e-4)
    with pytest.raises(InvalidArgumentError, match="not invariant"):
        bad = sbml_met.load_antimony(TWO_BD.replace("lose_b: B => ; d*B;", "lose_b: B => ; 2*d*B;"))
        ctx2 = TrainContext(network=bad, space=PromptSpace.build(bad, {"ka": (1.0, 6.0), "kb": (1.0, 6.0)}, (0.0, 3.0)),
                            seed=0, deadline=_t.monotonic() + 600, rng=np.random.default_rng(0), start=_t.monotonic())
        FSPTeacher(n_prompts=2, method="pointwise", symmetry={"ka": "kb", "A": "B"}).prepare(ctx2)
    with pytest.raises(InvalidArgumentError, match="method"):
        FSPTeacher(method="fast")
    with pytest.raises(InvalidArgumentError, match="time_spacing"):
        FSPTeacher(time_spacing="log")
    with pytest.raises(InvalidArgumentError, match="pointwise"):
        FSPTeacher(n_prompts=2, method="batched", time_spacing="sqrt").prepare(ctx)


def test_distillation_rows_carry_exact_prefix_conditionals():
    from sbml_met.met.teachers import rows_from_joint

    rng = np.random.default_rng(3)
    vocab = (2, 3, 4)
    states = np.array([(a, b, c) for a in range(2) for b in range(3) for c in range(4)])
    probs = rng.random((5, len(states))) ** 3
    probs /= probs.sum(axis=1, keepdims=True)
    it, pre, w, tgt, ent, ptg = rows_from_joint(states, probs, vocab)
    for r in range(len(it)):
        J = probs[it[r]].reshape(vocab)
        assert np.isclose(w[r], J[pre[r, 0], pre[r, 1]].sum())
        assert np.allclose(ptg[0][r], J.sum(axis=(1, 2)), atol=1e-6)
        row = J[pre[r, 0]].sum(axis=1)
        assert np.allclose(ptg[1][r], row / row.sum(), atol=1e-6)
        assert np.allclose(tgt[r], J[pre[r, 0], pre[r, 1]] / w[r], atol=1e-6)


def test_prompt_modes_cover_uniform_log_and_upper_three_decades():
    net = models.load("autoregulation")
    space = PromptSpace.build(net, {"su": (1e-8, 2.0), "ru": (1.0, 10.0)}, (0.0, 10.0))
    th = {m: space.sobol(3000, 0, m)[0] for m in ("uniform", "log", "log3", "mixed")}
    su = {m: v[:, 0] for m, v in th.items()}
    assert abs(np.median(su["uniform"]) - 1.0) < 0.05
    assert abs(np.median(np.log10(su["log"])) - np.log10(np.sqrt(2e-8))) < 0.1
    assert su["log3"].min() >= 2e-3 and abs(np.median(np.log10(su["log3"])) - np.log10(np.sqrt(4e-3))) < 0.1
    # ru spans one decade only: uniform in every mode
    for v in th.values():
        assert abs(np.median(v[:, 1]) - 5.5) < 0.2
    mixed = su["mixed"]
    assert np.allclose(mixed[0::3], su["uniform"][0::3]) and np.allclose(mixed[1::3], su["log"][1::3])
    assert np.allclose(mixed[2::3], su["log3"][2::3])
    with pytest.raises(InvalidArgumentError, match="log3"):
        space.sobol(4, 0, "logarithmic")


def test_narrow_boxes_carry_a_log_feature_and_older_spaces_keep_theirs():
    net = models.load("autoregulation")
    space = PromptSpace.build(net, {"su": (1e-8, 2.0), "ru": (1.0, 10.0)}, (0.0, 10.0))
    theta = np.array([[1e-4, 1.0], [1e-4, np.sqrt(10.0)], [2.0, 10.0]])
    f = space.features(theta, np.tile(net.initial_state, (3, 1)), np.zeros(3))
    # ru (one decade): linear first feature, log-scaled second (-1, 0, 1 at 1, sqrt(10), 10)
    assert np.allclose(f[:, 1, 1], [-1.0, 0.0, 1.0], atol=1e-6)
    assert np.allclose(f[:, 1, 0], 2 * (theta[:, 1] - 1.0) / 9.0 - 1, atol=1e-6)
    assert np.allclose(f[:, 0, 1], 2 * theta[:, 0] / 2.0 - 1, atol=1e-6)  # su spans decades: log first, linear second
    # a checkpoint's space saved before log features loads without them: its features are unchanged
    old = {k: v for k, v in space.to_dict().items() if k != "log_features"}
    legacy = PromptSpace.from_dict(old)
    assert not legacy.log_features and space.log_features
    g = legacy.features(theta, np.tile(net.initial_state, (3, 1)), np.zeros(3))
    assert np.allclose(g[:, 1, 1], 2 * theta[:, 1] / 10.0 - 1, atol=1e-6) and np.allclose(g[:, :, 0], f[:, :, 0])


# ----------------------------------------------------------------------------------- solver API
def test_log_prob_sums_to_one_over_enumerated_states():
    net = models.load("autoregulation")
    met = untrained_met(net, {"rb": (1.0, 50.0)}, (0.0, 5.0), vocab=(2, 30))
    states = np.array([(g, p) for g in range(2) for p in range(30)])
    lp = met.log_prob(states, 2.0, rb=10.0)
    assert abs(np.exp(lp).sum() - 1) < 1e-5
    d = met.solve([2.0], rb=10.0, prune=0.0)
    assert d.method == "met" and abs(d.probabilities[0].sum() - 1) < 1e-6
    m = met.marginal("P", 2.0, rb=10.0)
    direct = np.exp(lp).reshape(2, 30).sum(axis=0)
    assert np.allclose(m.to_numpy(), direct, atol=1e-6)


def test_counts_outside_vocabulary_warn_and_are_never_wrapped():
    net = models.load("autoregulation")
    met = untrained_met(net, {"rb": (1.0, 50.0)}, (0.0, 5.0), vocab=(2, 30))
    with pytest.warns(VocabularyOverflowWarning, match="P=30"):
        lp = met.log_prob([[1, 30], [1, 29]], 1.0)
    assert lp[0] == -np.inf and np.isfinite(lp[1])


def test_sample_is_deterministic_by_seed_and_follows_log_prob():
    net = models.load("autoregulation")
    met = untrained_met(net, {"rb": (1.0, 50.0)}, (0.0, 5.0), vocab=(2, 12))
    a = met.sample(20000, 1.0, seed=7, rb=5.0)
    b = met.sample(20000, 1.0, seed=7, rb=5.0)
    c = met.sample(20000, 1.0, seed=8, rb=5.0)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    states = np.array([(g, p) for g in range(2) for p in range(12)])
    exact = np.exp(met.log_prob(states, 1.0, rb=5.0))
    emp = np.zeros(24)
    np.add.at(emp, a[:, 0] * 12 + a[:, 1], 1)
    assert hellinger(emp / emp.sum(), exact) < 0.02


def test_extrapolation_warning_names_parameter_and_distance(bd_met):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        bd_met.sample(10, 1.0, seed=0, k1=5.0)  # inside: no warning
    with pytest.warns(ExtrapolationWarning, match=r"'k1'=12 is 4 \(67% of the box width\) above"):
        bd_met.log_prob([[3]], 1.0, k1=12.0)
    with pytest.warns(ExtrapolationWarning, match="time 9"):
        bd_met.solve([9.0], k1=5.0)
    with pytest.raises(sbml_met.UnknownIdError):
        bd_met.sample(5, 1.0, seed=0, kx=1.0)
    with pytest.raises(InvalidArgumentError, match="k2"):
        bd_met.sample(5, 1.0, seed=0, k2=2.0)  # fixed during training


# ----------------------------------------------------------------------------------- checkpoints
def test_save_load_round_trip(bd_met, tmp_path):
    path = bd_met.save(tmp_path / "bd.met")
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == ["bd.met"]
    with pytest.raises(FileExistsError):
        bd_met.save(path)
    back = met_pkg.load(path)
    x = np.arange(15)[:, None]
    assert np.allclose(back.log_prob(x, 2.0, k1=4.0), bd_met.log_prob(x, 2.0, k1=4.0))
    assert np.array_equal(back.sample(50, 2.0, seed=1, k1=4.0), bd_met.sample(50, 2.0, seed=1, k1=4.0))
    assert back.box == bd_met.box and back.times == bd_met.times
    assert back.network.fingerprint() == poisson_net().fingerprint()
    assert back.network.parameters["k2"] == 1.0
    assert back.validation["hellinger_mean"] == pytest.approx(bd_met.validation["hellinger_mean"])
    assert back.log and back.meta["teacher"] == "poisson"
    same = met_pkg.load(path, network=poisson_net())
    assert np.allclose(same.log_prob(x, 2.0, k1=4.0), bd_met.log_prob(x, 2.0, k1=4.0))


def test_checkpoint_mismatch(bd_met, tmp_path):
    path = bd_met.save(tmp_path / "bd.met")
    with pytest.raises(CheckpointMismatchError, match="toggle_switch"):
        met_pkg.load(path, network=models.load("toggle_switch"))
    (tmp_path / "junk.met").write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidArgumentError):
        met_pkg.load(tmp_path / "junk.met")


def test_cli_solve_writes_marginals_and_samples(bd_met, tmp_path):
    import pandas as pd

    from sbml_met.cli import main

    path = bd_met.save(tmp_path / "bd.met")
    out = tmp_path / "dist.parquet"
    assert main(["solve", str(path), "--times", "1,3", "--set", "k1=4", "--out", str(out)]) == 0
    df = pd.read_parquet(out)
    assert list(df.columns) == ["time", "species", "count", "probability", "method"]
    assert np.allclose(df.groupby("time")["probability"].sum(), 1, atol=1e-6)
    out2 = tmp_path / "samples.csv"
    assert main(["solve", str(path), "--times", "1", "--set", "k1=4", "--samples", "100", "--out", str(out2)]) == 0
    assert len(pd.read_csv(out2)) == 100
    assert main(["solve", str(path), "--times", "1", "--set", "k1=4", "--out", str(out)]) == 2  # exists


def test_pretrained_unknown_name():
    with pytest.raises(sbml_met.UnknownIdError):
        met_pkg.pretrained("no_such_model")


@pytest.mark.parametrize("name", ["toggle_switch", "autoregulation"])
def test_pretrained_loads_and_is_small(name):
    assert name in met_pkg.pretrained_names()  # both are bundled: a missing one is a failure, not a skip
    from importlib import resources
    from pathlib import Path

    path = Path(str(resources.files("sbml_met.met"))) / "pretrained" / f"{name}.met"
    assert path.stat().st_size < 5e6
    met = met_pkg.pretrained(name)
    assert met.network.fingerprint() == models.load(name).fingerprint()
    d = met.solve([1.0])
    assert abs(d.probabilities[0].sum() - 1) < 1e-6


# ----------------------------------------------------------------------------------- slow checks
@pytest.mark.slow
def test_pretrained_autoregulation_against_fsp_at_paper_rates():
    import sbml_met.fsp as fsp
    met = met_pkg.pretrained("autoregulation")
    net = models.load("autoregulation")
    ref = fsp.solve_fsp(net, [1.0, 10.0])
    for t in (1.0, 10.0):
        m = met.marginal("P", t)
        assert hellinger(m, ref.marginal("P", t)) < 0.02


@pytest.mark.slow
def test_pretrained_toggle_against_fsp_at_paper_rates():
    """Issue 6's target: every marginal within Hellinger 0.015 of FSP at the paper's rates."""
    import sbml_met.fsp as fsp
    met = met_pkg.pretrained("toggle_switch")
    net = models.load("toggle_switch")
    times = [1.0, 3.0, 10.0, 40.0]
    ref = fsp.solve_fsp(net, times)
    for t in times:
        for s in net.species:
            h = hellinger(met.marginal(s, t), ref.marginal(s, t))
            assert h < 0.015, (s, t, h)


@pytest.mark.slow
def test_fsp_teacher_learns_autoregulation_in_two_minutes():
    import sbml_met.fsp as fsp
    net = models.load("autoregulation")
    met = met_pkg.train(net, {"rb": (5.0, 40.0)}, (0.0, 5.0), teacher="fsp", minutes=2, seed=0,
                        progress=False, teacher_options={"n_prompts": 256})
    ref = fsp.solve_fsp(net.with_parameters(rb=20.0), [3.0])
    assert hellinger(met.marginal("P", 3.0, rb=20.0), ref.marginal("P", 3.0)) < 0.05


def test_count_vocabulary_is_one_rule_for_teachers_and_vans():
    from sbml_met.met.vocab import count_vocabulary

    mx = np.array([0, 1, 4, 100, 9])
    dyn = np.array([True, True, True, True, False])
    # 0/1 species and species no reaction changes keep 0..max; others get factor x max + sigmas sqrt + pad
    assert count_vocabulary(mx, dyn).tolist() == [1, 2, 5, 101, 10]
    assert count_vocabulary(mx, dyn, factor=1.5, pad=9).tolist() == [1, 2, 16, 160, 10]
    assert count_vocabulary(mx, dyn, sigmas=3, pad=5).tolist() == [1, 2, 4 + 7 + 5 + 1, 100 + 31 + 5 + 1, 10]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fsp_teacher_prompts_near_the_anchor_leave_no_region_of_the_box_empty(seed):
    """A quarter of the FSP teacher's prompts sit near the model's own values (4 of them at the
    box's corners); the rest must still cover the whole box. Overwriting every 4th point of a Sobol sequence emptied 16 of
    the 64 cells of an 8 x 8 grid over (ka, kb): the low bits of a Sobol index set the high bits
    of its coordinates (a birth-death MET then stayed 0.13 off at an emptied corner)."""
    import time as _t

    from sbml_met.met.teachers import FSPTeacher, TrainContext

    net = sbml_met.load_antimony(TWO_BD)
    box = {"ka": (1.0, 6.0), "kb": (1.0, 6.0)}
    space = PromptSpace.build(net, box, (0.0, 3.0))
    ctx = TrainContext(network=net, space=space, seed=seed, deadline=_t.monotonic() + 60,
                       rng=np.random.default_rng(0), start=_t.monotonic())
    own = {"ka": 2.0, "kb": 3.0}
    theta, x0, t = FSPTeacher(n_prompts=2048, anchor=own, anchor_share=0.25)._prompts(ctx)
    near = np.all(np.abs(np.log(theta / np.array([2.0, 3.0]))) <= np.log(1.25) + 1e-12, axis=1)
    corners = {(1.0, 1.0), (1.0, 6.0), (6.0, 1.0), (6.0, 6.0)}
    assert {tuple(th) for th in theta[4:17:4]} == corners  # the 4 corners take the first anchor slots after it
    assert near[::4].sum() == 512 - 4 and 0.24 <= near.mean() < 0.3  # the rest of every 4th slot
    assert np.array_equal(theta[0], [2.0, 3.0])
    spread = np.ones(len(theta), bool)
    spread[::4] = False
    cells, _, _ = np.histogram2d(theta[spread, 0], theta[spread, 1], bins=8, range=[box["ka"], box["kb"]])
    assert cells.min() >= 16, cells  # 2048 x 3/4 points over 64 cells: 24 each, none emptied
    assert np.all((t >= 0) & (t <= 3.0)) and len(np.unique(t)) == len(t)  # every prompt keeps its own time


MM_INFLOW = """
model mm_inflow
  feed: -> S; ks
  bind: E + S -> ES; kon*E*S
  unbind: ES -> E + S; koff*ES
  cat: ES -> E + P; kcat*ES
  export: P -> ; kx*P
  E = 3; S = 0; ES = 0; P = 0
  ks = 2; kon = 0.2; koff = 1; kcat = 1; kx = 0.5
end
"""


def test_sparse_pointwise_rows_hold_the_same_joints_as_dense_ones():
    """A conserved moiety (E + ES = 3) leaves 3 of 4 cells of the (E, ES) plane empty: the sparse
    rows keep only what carries probability, and rebuild the dense joints and conditionals exactly."""
    import time as _t

    from sbml_met.met.teachers import FSPTeacher, TrainContext, sequence_cross_entropy

    net = sbml_met.load_antimony(MM_INFLOW)
    space = PromptSpace.build(net, {"ks": (1.0, 3.0), "kcat": (0.5, 2.0)}, (0.0, 4.0))
    stores = {}
    for form in ("dense", "sparse"):
        ctx = TrainContext(network=net, space=space, seed=0, deadline=_t.monotonic() + 600,
                           rng=np.random.default_rng(0), start=_t.monotonic())
        tch = FSPTeacher(n_prompts=4, times_per_prompt=3, method="pointwise", rows=form, workers=1,
                         caps={"S": 30, "E": 3, "ES": 3, "P": 25})
        tch.prepare(ctx)
        assert ctx.log[-1]["rows"] == form
        stores[form] = tch
    dense, sparse = stores["dense"].rows, stores["sparse"].rows
    vocab = stores["dense"].vocab
    J = dense.J.numpy().reshape((-1,) + vocab)
    rebuilt = np.zeros_like(J)
    it, pre = sparse.item, sparse.pre.numpy()
    rebuilt[(it, *pre.T)] = (sparse.w[:, None] * sparse.tgt.numpy())
    assert torch.equal(dense.feats, sparse.feats)  # one thread: the points in the same order
    assert np.abs(rebuilt - J).max() < 1e-6
    assert len(sparse.w) < 0.3 * np.prod(vocab[:-1]) * len(J)  # the empty cells are gone
    for r in np.random.default_rng(1).choice(len(it), 20, replace=False):
        Ji = J[it[r]]
        assert np.allclose(sparse.pre_tgt[0][r], Ji.sum(axis=(1, 2, 3)), atol=1e-5)
        cond = Ji[pre[r, 0], pre[r, 1]].sum(axis=1)
        assert np.allclose(sparse.pre_tgt[2][r], cond / cond.sum(), atol=1e-5)
    # the same expected loss for one untrained net: sum over rows of P(u) x the cross-entropy
    torch.manual_seed(0)
    m = METNet(METConfig(n_prompt=space.n_prompt, vocab=vocab, **TINY))
    with torch.no_grad():
        ce = sequence_cross_entropy(m.logits(sparse.feats[it], sparse.pre), sparse.pre_tgt + [sparse.tgt])
        loss_sparse = float((torch.as_tensor(sparse.w) * ce.double()).sum()) / len(J)
        full = torch.as_tensor(np.stack(np.unravel_index(np.arange(int(np.prod(vocab))), vocab), axis=1))
        loss_dense = 0.0
        for i in range(len(J)):
            lp = m.log_prob(dense.feats[i : i + 1].expand(len(full), *dense.feats.shape[1:]), full)
            loss_dense -= float((torch.as_tensor(J[i].reshape(-1)) * lp.double()).sum())
        loss_dense /= len(J)
    assert loss_sparse == pytest.approx(loss_dense, rel=1e-4)
    with pytest.raises(InvalidArgumentError, match="rows"):
        FSPTeacher(rows="compressed")


def test_conservation_laws_shrink_the_capped_state_count_exactly_for_one_moiety():
    from sbml_met.conservation import capped_states, conservation_laws

    net = sbml_met.load_antimony(MM_INFLOW)  # E + ES = 3
    caps = np.array([30, 3, 3, 25])
    x0 = np.asarray(net.initial_state)
    grid = np.stack(np.meshgrid(*[np.arange(c + 1) for c in caps], indexing="ij"), -1).reshape(-1, 4)
    laws = conservation_laws(net)
    brute = int((~laws.violated(grid, x0)).sum())
    assert capped_states(laws, caps, x0) == brute == 31 * 4 * 26
    # initial E from 3 to 5: three totals, each bounded by the count for one
    assert capped_states(laws, caps, x0, x0 + np.array([0, 2, 0, 0])) == 3 * brute
    free = conservation_laws(sbml_met.load_antimony(TWO_BD))
    assert capped_states(free, [4, 6], [0, 0]) == 35
