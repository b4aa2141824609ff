"""for_model: a MET for any network (bundled, cached or trained on demand), default box and
horizon, teacher choice, device selection."""

import os
import stat
import time

import numpy as np
import pytest
import torch

import sbml_met
from sbml_met import models
from sbml_met.errors import InvalidArgumentError
from sbml_met.met import default_box, default_times, for_model, run_summary
from sbml_met.met.auto import choose_teacher, rate_parameters
from sbml_met.met.train import resolve_device

GENE = """
model two_stage
  -> M; km
  M -> P; kp*M
  P -> ; gp*P
  M = 0; P = 0
  km = 2; kp = 1; gp = 1
end
"""

# not used anywhere else in the project; two conserved moieties (S + ES + P, E + ES)
ENZYME = """
model recycling_enzyme
  E + S -> ES; kon*E*S
  ES -> E + S; koff*ES
  ES -> E + P; kcat*ES
  P -> S; kr*P
  E = 4; S = 20; ES = 0; P = 0
  kon = 0.1; koff = 1; kcat = 0.5; kr = 0.2
end
"""

# a fixed number of steps, no accuracy target (target=None: trained for the budget, cached and reused as is)
QUICK = dict(steps=40, teacher_options={"n_prompts": 64, "times_per_prompt": 4}, n_validation=4, target=None)


def test_default_box_and_horizon():
    net = sbml_met.load_antimony(GENE)
    assert default_box(net) == {p: (v / 2, v * 2) for p, v in net.parameters.items()}
    t0, t1 = default_times(net)
    assert t0 == 0 and 2 <= t1 <= 20  # both relax on a time scale of 1; settled within a few of those
    hill = sbml_met.load_antimony("model h\n -> X; a*K^n/(K^n + X^n)\n X -> ; d*X\n X = 0; a = 10; K = 5; n = 2; d = 1\nend")
    assert "n" not in rate_parameters(hill) and {"a", "K", "d"} <= set(rate_parameters(hill))


def test_held_out_check_holds_the_box_corners_to_the_worst_rule_not_the_mean():
    from sbml_met.met.prompts import PromptSpace
    from sbml_met.met.train import Goal, _corners

    net = sbml_met.load_antimony(GENE)
    space = PromptSpace.build(net, default_box(net), (0.0, 5.0))
    theta, x0, t = _corners(space, 5.0, seed=0)
    lo, hi = np.asarray(space.low), np.asarray(space.high)
    assert len(theta) == 2**3 and len({tuple(r) for r in theta}) == 8 and np.all(t == 5.0)
    assert np.all((theta == lo) | (theta == hi)) and np.all(x0 == net.initial_state)
    wide = sbml_met.load_antimony("model w\n" + "".join(f" -> X; k{i}\n" for i in range(6)) + " X -> ; d*X\n X = 0; d = 1; "
                                  + "; ".join(f"k{i} = 1" for i in range(6)) + "\nend")
    many = _corners(PromptSpace.build(wide, default_box(wide), (0.0, 1.0)), 1.0, seed=0)[0]
    assert 8 <= len(many) <= 16 and len({tuple(r) for r in many}) == len(many)  # 2^7 corners: 16 drawn
    # 10 box prompts (mean 0.002), 2 corners, 1 anchor prompt; one species
    h = np.r_[np.full(10, 0.002), 0.002, 0.002, 0.001][:, None]
    goal = Goal(0.01, n_box=12, n_drawn=10, n_mean=10)
    assert goal.score(h, [[np.ones(1)]] * 13, [[np.ones(1)]] * 13)["reached"]
    h[11] = 0.05  # one corner beyond 3x the target: not reached, and the box's mean is unchanged
    sc = goal.score(h, [[np.ones(1)]] * 13, [[np.ones(1)]] * 13)
    assert not sc["reached"] and sc["hellinger_box"] == pytest.approx(0.002) and sc["hellinger_worst_prompt"] == 0.05


def test_teacher_by_state_space():
    net = sbml_met.load_antimony(ENZYME)
    name, opts = choose_teacher(net, default_box(net), default_times(net))
    assert name == "fsp" and opts["method"] == "batched" and opts["states"] <= 5 * 21
    rep = sbml_met.load_sbml(os.path.join(os.path.dirname(__file__), "data", "biomodels", "BIOMD0000000012.xml"))
    assert choose_teacher(rep, {"KM": (30.0, 50.0)}, (0.0, 40.0))[0] == "ssa"


def test_tiny_budget_caches_and_reuses(tmp_path):
    net = sbml_met.load_antimony(GENE)
    old = os.umask(0o022)
    try:
        met = for_model(net, minutes=0.3, seed=1, cache_dir=tmp_path, progress=False, **QUICK)
    finally:
        os.umask(old)
    assert met.meta["source"] == "trained" and met.meta["teacher"] == "fsp"
    path = met.meta["path"]
    assert os.path.dirname(path) == str(tmp_path) and stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert np.isfinite(met.validation["hellinger_mean"]) and met.validation["reference"] == "exact"
    summary = run_summary(met)
    assert summary["held_out"]["n_prompts"] == 4 and summary["box"] == {k: list(v) for k, v in default_box(net).items()}
    t0 = time.monotonic()
    again = for_model(net, minutes=0.3, cache_dir=tmp_path, progress=False, **QUICK)
    assert time.monotonic() - t0 < 5 and again.meta["source"] == "cache" and again.meta["path"] == path
    x = met.sample(200, 3.0, seed=4)
    assert np.array_equal(again.sample(200, 3.0, seed=4), x)
    # a box the cached MET does not hold retrains (and caches beside it)
    other = for_model(net, box={"kp": (0.5, 8.0)}, minutes=0.3, cache_dir=tmp_path, progress=False, **QUICK)
    assert other.meta["source"] == "trained" and other.meta["path"] != path and other.box == {"kp": (0.5, 8.0)}
    assert len(list(tmp_path.glob("*.met"))) == 2
    # a box inside a cached one is served from the cache (gp is free in the first MET, so another
    # gp is answered too); a network whose fixed values differ from a MET's is not
    assert for_model(net.with_parameters(gp=0.8), box={"kp": (0.5, 2.0)}, cache_dir=tmp_path,
                     target=None).meta["path"] == path
    assert for_model(net, box={"kp": (4.0, 8.0)}, cache_dir=tmp_path, target=None).meta["path"] == other.meta["path"]
    assert for_model(net.with_parameters(gp=0.8), box={"kp": (4.0, 8.0)}, minutes=0.2, cache_dir=tmp_path,
                     progress=False, **QUICK).meta["source"] == "trained"


def test_a_broken_cache_file_is_skipped(tmp_path):
    net = sbml_met.load_antimony(GENE)
    (tmp_path / f"two_stage-{net.fingerprint()[:16]}-000000000000.met").write_bytes(b"not a checkpoint")
    met = for_model(net, box={"km": (1.0, 3.0)}, minutes=0.2, cache_dir=tmp_path, progress=False, **QUICK)
    assert met.meta["source"] == "trained"


@pytest.mark.parametrize("name", ["toggle_switch", "autoregulation"])
def test_bundled_met_is_used(tmp_path, name):
    t0 = time.monotonic()
    met = for_model(models.load(name), cache_dir=tmp_path)
    assert met.meta["source"] == "bundled" and time.monotonic() - t0 < 10
    assert not list(tmp_path.iterdir())


def test_device_selection_on_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InvalidArgumentError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidArgumentError, match="no CUDA"):
            resolve_device("cuda")
    from sbml_met.met import train

    met = train(sbml_met.load_antimony(GENE), {"kp": (0.5, 2.0)}, (0.0, 5.0), minutes=1, progress=False,
                device="cpu", **QUICK)
    assert met.meta["device"] == "cpu" and next(met.net.parameters()).device.type == "cpu"


@pytest.mark.slow
def test_unseen_model_with_moieties_within_001_of_fsp(tmp_path):
    """A 5-minute budget on a model nobody prepared: held-out marginals within mean Hellinger 0.01
    of exact FSP, and both conserved totals exact."""
    from scipy.stats import qmc

    from sbml_met.metrics import hellinger

    net = sbml_met.load_antimony(ENZYME)
    met = for_model(net, minutes=5, cache_dir=tmp_path, progress=False)
    assert met.meta["teacher"] == "fsp" and met.validation["reference"] == "exact"
    assert met.validation["hellinger_mean"] <= 0.01
    laws = met.conservation
    assert sorted(laws.describe()) == ["E + ES = 4", "S + ES + P = 20"]
    u = qmc.Sobol(d=len(met.box) + 1, scramble=True, seed=99).random(6)
    lo, hi = np.array([b[0] for b in met.box.values()]), np.array([b[1] for b in met.box.values()])
    dists = []
    for row in u:
        theta = dict(zip(met.box, lo + row[:-1] * (hi - lo)))
        t = float(met.times[1] * max(row[-1], 0.05))
        exact = sbml_met.solve_fsp(net.with_parameters(theta), [t])
        mine = met.marginals_all(t, **theta)
        for s, sp in enumerate(net.species):
            dists.append(hellinger(mine[s], exact.marginal(sp, t).to_numpy()))
        x = met.sample(2000, t, seed=1, **theta)
        assert not laws.violated(x, net.initial_state).any()
    assert np.mean(dists) <= 0.01


def test_an_ssa_taught_met_gets_smooth_heads_for_wide_marginals(tmp_path):
    """The repressilator as downloaded: too large for FSP, so SSA teaches, and the proteins'
    vocabularies (thousands of counts) get mixture heads; the small mRNA ones stay categorical."""
    rep = sbml_met.load_sbml(os.path.join(os.path.dirname(__file__), "data", "biomodels", "BIOMD0000000012.xml"))
    met = for_model(rep, {"KM": (30.0, 50.0)}, minutes=0.5, seed=1, cache_dir=tmp_path, progress=False,
                    times=(0.0, 40.0), steps=20, n_validation=2,
                    teacher_options={"n_prompts": 256, "times_per_trajectory": 2, "n_reference": 50})
    assert met.meta["teacher"] == "ssa" and met.config.head == "auto"
    wide = [v > met.config.mixture_from for v in met.config.vocab]
    assert any(wide) and not all(wide) and list(met.config.mixture) == wide
    x = met.sample(200, 20.0, seed=0, KM=40.0)
    assert x.shape == (200, rep.n_species) and np.all(x >= 0) and np.all(x < np.asarray(met.config.vocab))


TINY = """
model tiny_birth_death
  J1: -> X; k1
  J2: X -> ; k2*X
  X = 0
  k1 = 3; k2 = 1
end
"""


def test_accuracy_drives_training_on_a_tiny_model(tmp_path):
    """for_model trains until its held-out error reaches the target, then stops; its answers
    agree with exact FSP (solved here, independently) at the model's own values and at points of
    the box it never saw, and every answer's table says it is an approximation and how good."""
    from sbml_met.metrics import hellinger

    net = sbml_met.load_antimony(TINY)
    t0 = time.monotonic()
    met = for_model(net, minutes=3, cache_dir=tmp_path, progress=False, times=np.linspace(0, 4, 9))
    assert met.meta["validated"] and met.validation["target"] == 0.01
    assert time.monotonic() - t0 < 170  # stopped by the accuracy, not the 3-minute cap
    assert met.validation["hellinger_mean"] <= 0.01 and met.validation["anchor_detectability"] <= 0.5
    points = [{}, {"k1": 1.7, "k2": 0.6}, {"k1": 5.5, "k2": 1.8}, {"k1": 2.2, "k2": 1.5}]
    dists = []
    for theta in points:
        exact = sbml_met.solve_fsp(net.with_parameters(theta) if theta else net, [0.5, 1.3, 4.0])
        mine = met.solve([0.5, 1.3, 4.0], **theta)
        for t in (0.5, 1.3, 4.0):
            p, q = mine.marginal("X", t).to_numpy(), exact.marginal("X", t).to_numpy()
            dists.append(hellinger(p, q))
    assert np.mean(dists) <= 0.01 and max(dists[:3]) <= 0.02, dists
    table = mine.to_frame()
    assert table.attrs["approximation"] and table.attrs["box"] == {"k1": [1.5, 6.0], "k2": [0.5, 2.0]}
    assert table.attrs["held_out_hellinger_mean"] == met.validation["hellinger_mean"]
    # a wrong answer fails: the exact marginal of another parameter point is far from this one's
    other = sbml_met.solve_fsp(net.with_parameters({"k1": 4.5}), [4.0]).marginal("X", 4.0).to_numpy()
    assert hellinger(met.marginals_all(4.0)[0], other) > 0.05


def test_conservation_laws_bound_the_teacher_caps():
    """E + ES = 5 bounds both counts by 5, where SSA-estimated caps with their margin said 18:
    the FSP teacher's state space and the MET's count vocabulary shrink to what can happen."""
    from sbml_met.met.teachers import conserved_bounds

    net = sbml_met.load_antimony("model mm\n feed: -> S; ks\n bind: E + S -> ES; kon*E*S\n"
                                 " unbind: ES -> E + S; koff*ES\n cat: ES -> E + P; kcat*ES\n"
                                 " export: P -> ; kx*P\n E = 5; S = 0; ES = 0; P = 0\n"
                                 " ks = 2; kon = 0.2; koff = 1; kcat = 1; kx = 0.25\nend")
    big = np.iinfo(np.int64).max
    assert conserved_bounds(net, net.initial_state).tolist() == [big, 5, 5, big]
    assert conserved_bounds(net, [0, 7, 2, 0]).tolist() == [big, 9, 9, big]  # from the largest initial counts
    enzyme = sbml_met.load_antimony("model e\n E + S -> ES; kon*E*S\n ES -> E + S; koff*ES\n ES -> E + P; kcat*ES\n"
                                    " E = 10; S = 30; ES = 0; P = 0; kon = 0.05; koff = 1; kcat = 0.5\nend")
    assert conserved_bounds(enzyme, enzyme.initial_state).tolist() == [10, 30, 10, 30]
