"""Validation against libroadrunner: correct answers pass, a 20% wrong rate is caught."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import poisson

import sbml_met
from sbml_met import models
from sbml_met.cli import main
from sbml_met.results import Distribution
from sbml_met.validate import COLUMNS, _noise_floor

pytest.importorskip("roadrunner")
from sbml_met.tellurium import run_gillespie  # noqa: E402

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


def test_noise_floor_is_calibrated():
    # the floor at level L must be exceeded by sampling noise about L of the time
    rng = np.random.default_rng(0)
    q = poisson.pmf(np.arange(200), 30.0)
    q /= q.sum()
    floor = _noise_floor(q, 1000, None, 0.05, rng)
    draws = rng.multinomial(1000, q, size=4000) / 1000
    h = np.sqrt(np.clip(1 - np.sqrt(draws * q).sum(axis=1), 0, None))
    assert 0.025 < (h > floor).mean() < 0.08


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
@pytest.mark.parametrize("name,times", [("birth_death", [0, 5, 20, 50]), ("toggle_switch", [0, 2, 10]),
                                        ("autoregulation", [0, 1, 5, 10])])
def test_bundled_models_validate_at_n_10000(name, times):
    net = models.load(name)
    report = sbml_met.validate(net, sbml_met.simulate(net, times, n=10_000, seed=6), seed=7)
    assert report.ok, report.failures()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["00001", "00003", "00011", "00019", "00020", "00030", "00036"])
def test_event_free_dsmts_cases_validate(dsmts_dir, case):
    net = sbml_met.load_sbml(dsmts_dir / case / f"{case}-sbml-l3v1.xml")
    times = np.linspace(0, 50, 6)
    report = sbml_met.validate(net, sbml_met.simulate(net, times, n=10_000, seed=8), seed=9)
    assert report.ok, report.failures()


@pytest.mark.slow
@pytest.mark.parametrize("name", models.list())
def test_every_bundled_model_validates(name):
    net = models.load(name)
    times = [0.0, 1.0, 5.0]
    report = sbml_met.validate(net, sbml_met.simulate(net, times, n=2000, seed=6), n_reference=2000, seed=7)
    assert report.ok, report.failures()
