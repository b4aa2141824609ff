"""Validation against libroadrunner: correct answers pass (false alarms at most alpha, measured on
synthetic wide, heavy-tailed and 0/1 marginals), a 20% wrong rate is caught."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from scipy.stats import poisson

import sbml_met
from sbml_met import models
from sbml_met.cli import main
from sbml_met.results import Distribution, SSAResult
from sbml_met.validation import COLUMNS, _chernoff_p, _ks

# only the tests that run libroadrunner need it; the synthetic calibration tests run without it
needs_roadrunner = pytest.mark.skipif(importlib.util.find_spec("roadrunner") is None,
                                      reason="libroadrunner is not installed")


def run_gillespie(*args, **kwargs):
    pytest.importorskip("roadrunner")
    from sbml_met.tellurium import run_gillespie as run

    return run(*args, **kwargs)

BD_TIMES = np.array([0.0, 1.0, 3.0, 10.0])


def _poisson_birth_death(times, k1=10.0, k2=0.1) -> Distribution:
    """Exact CME solution of 0 -> X (k1), X -> 0 (k2 X) from X(0)=0: Poisson(k1/k2 (1 - e^-k2 t))."""
    states, probs = [], []
    for t in times:
        lam = k1 / k2 * (1 - np.exp(-k2 * t))
        x = np.arange(0, int(lam + 20 * np.sqrt(lam) + 30))
        p = poisson.pmf(x, lam) if lam > 0 else (x == 0).astype(float)
        states.append(x[p > 0, None])
        probs.append(p[p > 0])
    return Distribution(("X",), np.asarray(times, float), tuple(states), tuple(probs), method="analytic")


@pytest.fixture(scope="module")
def bd_reference():
    return run_gillespie(models.load("birth_death"), BD_TIMES, n=2000, seed=11, processes=1, progress=False)


def test_exact_answer_passes_and_wrong_rate_fails(bd_reference):
    net = models.load("birth_death")
    good = sbml_met.validate(net, _poisson_birth_death(BD_TIMES), reference=bd_reference)
    assert good.ok, good.to_frame()
    assert list(good.to_frame().columns) == COLUMNS
    bad = sbml_met.validate(net, _poisson_birth_death(BD_TIMES, k2=0.12), reference=bd_reference)
    assert not bad.ok
    failed = bad.failures()
    assert set(failed["time"]) >= {3.0, 10.0} and set(failed["species"]) == {"X"}
    assert "X at t = " in bad.summary() and "DISAGREES" in bad.summary()
    assert "OK" in good.summary()


def test_sampled_result_and_report_parts(bd_reference):
    net = models.load("birth_death")
    ssa = sbml_met.simulate(net, BD_TIMES, n=1500, seed=5)
    report = sbml_met.validate(net, ssa, reference=bd_reference)
    assert report.ok and report.n_result == 1500 and report.method == "ssa"
    df = report.to_frame()
    row = df[df["time"] == 10.0].iloc[0]
    x = ssa.states[:, 3, 0]
    assert row["mean"] == pytest.approx(x.mean()) and row["std"] == pytest.approx(x.std(ddof=1))
    y = bd_reference.states[:, 3, 0]
    se = np.sqrt(y.var(ddof=1) / y.size + x.var(ddof=1) / x.size)
    assert row["z"] == pytest.approx((x.mean() - y.mean()) / se)
    assert df.loc[df["time"] == 0.0, "noise_floor"].iloc[0] == 0.0  # no spread at t = 0
    from matplotlib.figure import Figure

    fig = report.plot()
    assert isinstance(fig, Figure) and len(fig.axes) == len(BD_TIMES)


# ------------------------------------------------------------------------------------------ calibration
SIX = ("A", "B", "C", "D", "E", "F")
WIDE = sbml_met.load_antimony("model wide\n" + "\n".join(f"J{s}: -> {s}; 1" for s in SIX) + "\n"
                              + "\n".join(f"{s} = 0" for s in SIX) + "\nend")
T4 = np.array([1.0, 2.0, 3.0, 4.0])


def _ensemble(draw, n: int, seed: int) -> SSAResult:
    """An SSAResult of n trajectories whose 6 species x 4 times are independent draws of ``draw``."""
    rng = np.random.default_rng(seed)
    return SSAResult(species=SIX, times=T4, states=draw(rng, (n, T4.size, len(SIX))).astype(float))


def _wide(rng, size, mean=1000.0, r=0.5):
    """Negative binomial with shape r: thousands of distinct counts, heavy right tail."""
    return rng.negative_binomial(r, r / (r + mean), size)


def _report_p_values(draw_a, draw_b, n: int, reps: int) -> np.ndarray:
    return np.array([sbml_met.validate(WIDE, _ensemble(draw_a, n, 2 * i),
                                       reference=_ensemble(draw_b, n, 2 * i + 1)).p_value
                     for i in range(reps)])


def _binomial_bound(rate: float, reps: int) -> float:
    return rate + 3 * np.sqrt(rate * (1 - rate) / reps)


def test_two_sample_false_alarms_on_wide_marginals_stay_below_alpha():
    # 300 reports of 72 tests each (6 species x 4 times, NB with ~4,000 distinct counts): the
    # familywise false-alarm rate at alpha = 0.2 must not exceed 0.2 beyond binomial error
    p = _report_p_values(_wide, _wide, 500, 300)
    for alpha in (0.2, 0.05, 1e-3):
        assert (p <= alpha).mean() <= _binomial_bound(alpha, 300), alpha


def test_two_sample_test_p_values_are_uniform_or_conservative():
    rep = sbml_met.validate(WIDE, _ensemble(_wide, 2000, 4), reference=_ensemble(_wide, 2000, 5))
    assert rep.ok and rep.n_tests == 72
    ps = []
    for i in range(60):  # 60 reports x 24 checks: every per-test p-value
        a, b = _ensemble(_wide, 1000, 10 + 2 * i), _ensemble(_wide, 1000, 11 + 2 * i)
        ps.append(sbml_met.validate(WIDE, a, reference=b).to_frame()[["p_mean", "p_std", "p_distribution"]])
    ps = np.concatenate([x.to_numpy() for x in ps])  # 1,440 x 3
    for col in range(3):
        for level in (0.01, 0.05, 0.2):
            assert (ps[:, col] <= level).mean() <= _binomial_bound(level, len(ps)), (col, level)
    assert (ps[:, 2] <= 0.2).mean() > 0.1  # KS is not vacuous on wide marginals: near nominal


def test_shift_of_ten_percent_in_a_wide_mean_is_detected():
    shifted = lambda rng, size: _wide(rng, size, mean=1100.0)  # noqa: E731
    rep = sbml_met.validate(WIDE, _ensemble(shifted, 10_000, 1), reference=_ensemble(_wide, 10_000, 2))
    assert not rep.ok and rep.p_value < 1e-6
    assert (rep.failures()["verdict"].str.contains("mean")).mean() > 0.5
    assert "It sees an error in a mean once it exceeds" in rep.summary()
    rel = (rep.to_frame()["detectable_shift"] / rep.to_frame()["reference_mean"]).median()
    assert 0.05 < rel < 0.10  # the summary's claim: ~7% at n = 10,000 for this spread


def test_zero_one_species_sampled_and_exact():
    rare = lambda rng, size: (rng.random(size) < 0.002).astype(int)  # noqa: E731
    p = _report_p_values(rare, rare, 500, 100)
    assert (p <= 0.2).mean() <= _binomial_bound(0.2, 100)
    often = lambda rng, size: (rng.random(size) < 0.3).astype(int)  # noqa: E731
    assert not sbml_met.validate(WIDE, _ensemble(often, 2000, 1), reference=_ensemble(rare, 2000, 2)).ok


def test_chernoff_p_bounds_the_exact_binomial_tail():
    from scipy.stats import binom

    q, n = np.array([0.999, 0.001]), 500  # a gene ON with probability 1e-3: Poisson(0.5) ONs
    for k in range(0, 12):
        exact = min(1.0, 2 * min(binom.cdf(k, n, 1e-3), binom.sf(k - 1, n, 1e-3)))
        assert _chernoff_p(np.array([0.0, 1.0]), q, k / n, n) >= exact - 1e-12
    assert _chernoff_p(np.array([0.0, 1.0]), q, 8 / n, n) < 1e-4  # and still rejects the absurd
    # a normal z on the same data would give p ~ 1e-4 at k = 4; the truth is 1.8e-3
    assert _chernoff_p(np.array([0.0, 1.0]), q, 4 / n, n) > 1.8e-3


def test_exact_reference_path_is_calibrated():
    # reference drawn from the exact pmf: the report's false-alarm rate at 0.2 stays below 0.2
    rng = np.random.default_rng(7)
    k = np.arange(20_000)
    from scipy.stats import nbinom

    q = nbinom.pmf(k, 0.5, 0.5 / 1000.5)
    q /= q.sum()
    q01 = np.array([0.998, 0.002])  # A: wide, B: a 0/1 species, rarely 1
    net = sbml_met.load_antimony("model two\nJA: -> A; 1\nJB: -> B; 1\nA = 0\nB = 0\nend")
    times = np.array([1.0, 2.0])
    states = tuple(np.array([[a, b] for a in range(2000) for b in (0, 1)]) for _ in times)
    qa = q[:2000] / q[:2000].sum()
    probs = tuple(np.outer(qa, q01).ravel() for _ in times)
    dist = Distribution(("A", "B"), times, states, probs, method="exact")
    ps = []
    for i in range(150):
        a = rng.choice(2000, size=(1000, times.size), p=qa)
        b = (rng.random((1000, times.size)) < 0.002).astype(int)
        ref = SSAResult(species=("A", "B"), times=times, states=np.stack([a, b], axis=2).astype(float))
        ps.append(sbml_met.validate(net, dist, reference=ref).p_value)
    ps = np.array(ps)
    assert (ps <= 0.2).mean() <= _binomial_bound(0.2, 150)
    wrong = SSAResult(species=("A", "B"), times=times,
                      states=np.stack([rng.choice(2000, size=(1000, 2), p=np.roll(qa, 150)),
                                       np.zeros((1000, 2))], axis=2).astype(float))
    assert not sbml_met.validate(net, dist, reference=wrong).ok


def test_ks_p_values_are_conservative_against_the_exact_law():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(2)
    small = 0
    for _ in range(30):
        a, b = rng.poisson(3.0, 300), rng.poisson(3.6, 300)  # ties everywhere
        pa = np.bincount(a, minlength=40)[:40] / 300
        pb = np.bincount(b, minlength=40)[:40] / 300
        d, p = _ks(pa, pb, 300, 300)
        exact = ks_2samp(a, b, method="exact")  # the continuous law: itself conservative on ties
        assert d == pytest.approx(exact.statistic, abs=1e-9)
        if exact.pvalue < 0.01:  # in the tail, where the verdicts are made, never below the exact law
            small += 1
            assert p >= exact.pvalue
        else:
            assert p == pytest.approx(exact.pvalue, abs=0.01)
    assert small >= 5


def test_report_over_24_wide_checks_at_n_10000_is_fast():
    import time

    a, b = _ensemble(_wide, 10_000, 1), _ensemble(_wide, 10_000, 2)
    t0 = time.perf_counter()
    rep = sbml_met.validate(WIDE, a, reference=b)
    assert time.perf_counter() - t0 < 2.0 and len(rep.to_frame()) == 24


@pytest.fixture(scope="module")
def toggle_reference():
    times = [0.0, 0.25, 0.5]  # short horizon: FSP stays small (~12,000 states) in the default suite
    return run_gillespie(models.load("toggle_switch"), times, n=2000, seed=1, processes=1, progress=False)


def _toggle_solution(net, times):
    try:
        from sbml_met.fsp import solve_fsp
    except ImportError:  # pragma: no cover - FSP not yet in this tree
        return sbml_met.simulate(net, times, n=2000, seed=3)
    return solve_fsp(net, times)


def test_toggle_switch_wrong_rate_is_caught(toggle_reference):
    net = models.load("toggle_switch")
    times = toggle_reference.times
    good = sbml_met.validate(net, _toggle_solution(net, times), reference=toggle_reference)
    bad = sbml_met.validate(net, _toggle_solution(net.with_parameters(sx=60), times),
                            reference=toggle_reference)
    assert good.ok, good.failures()
    assert not bad.ok
    failed = bad.failures()
    assert "Px" in set(failed["species"]) and set(failed["time"]) >= {0.25, 0.5}
    assert "Px at t = 0.25, 0.5" in bad.summary()


@needs_roadrunner
def test_cli_validate(tmp_path, capsys):
    out = tmp_path / "report.csv"
    code = main(["validate", "birth_death", "--method", "ssa", "--n", "500", "--times", "0:4:3",
                 "--seed", "2", "--processes", "1", "--out", str(out)])
    assert code == 0
    import pandas as pd

    df = pd.read_csv(out)
    assert list(df.columns) == COLUMNS and len(df) == 3
    assert "OK" in capsys.readouterr().out
    assert main(["validate", "no_such_model", "--times", "0:4:3"]) == 2
    assert main(["validate", "birth_death", "--times", "4:0:x"]) == 2


# ------------------------------------------------------------------------------------------ slow
@pytest.mark.slow
def test_toggle_switch_fsp_at_n_10000():
    from sbml_met.fsp import solve_fsp

    net = models.load("toggle_switch")
    times = [0.0, 1.0, 2.0, 5.0]
    ref = run_gillespie(net, times, n=10_000, seed=4, progress=False)
    assert sbml_met.validate(net, solve_fsp(net, times), reference=ref).ok
    bad = sbml_met.validate(net, solve_fsp(net.with_parameters(sx=60), times), reference=ref)
    assert not bad.ok and "Px" in set(bad.failures()["species"])


@pytest.mark.slow
@needs_roadrunner
@pytest.mark.parametrize("name,times", [("birth_death", [0, 5, 20, 50]), ("toggle_switch", [0, 2, 10]),
                                        ("autoregulation", [0, 1, 5, 10])])
def test_bundled_models_validate_at_n_10000(name, times):
    net = models.load(name)
    report = sbml_met.validate(net, sbml_met.simulate(net, times, n=10_000, seed=6), seed=7)
    assert report.ok, report.failures()


@pytest.mark.slow
@needs_roadrunner
@pytest.mark.parametrize("case", ["00001", "00003", "00011", "00019", "00020", "00030", "00036"])
def test_event_free_dsmts_cases_validate(dsmts_dir, case):
    net = sbml_met.load_sbml(dsmts_dir / case / f"{case}-sbml-l3v1.xml")
    times = np.linspace(0, 50, 6)
    report = sbml_met.validate(net, sbml_met.simulate(net, times, n=10_000, seed=8), seed=9)
    assert report.ok, report.failures()


@pytest.mark.slow
@needs_roadrunner
@pytest.mark.parametrize("name", models.list())
def test_every_bundled_model_validates(name):
    net = models.load(name)
    times = [0.0, 1.0, 5.0]
    report = sbml_met.validate(net, sbml_met.simulate(net, times, n=2000, seed=6), n_reference=2000, seed=7)
    assert report.ok, report.failures()


def test_counts_of_1e14_molecules_validate_without_a_dense_pmf():
    # a mol-based model converts to ~1e14 molecules: the pmfs are sparse over the counts held
    rng = np.random.default_rng(0)
    base = 180_664_222_800_000
    a = base + rng.poisson(50, size=(500, 2, 1)).astype(float)
    b = base + rng.poisson(50, size=(500, 2, 1)).astype(float)
    net = sbml_met.load_antimony("R: A => ; k*A\nA = 180664222800000; k = 1e-12")
    report = sbml_met.validate(net, SSAResult(("A",), np.array([0.0, 1.0]), a),
                               reference=SSAResult(("A",), np.array([0.0, 1.0]), b))
    row = report.to_frame().iloc[0]
    assert row["mean"] == pytest.approx(a[:, 0, 0].mean()) and report.ok
