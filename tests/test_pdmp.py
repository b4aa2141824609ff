"""Rates that vary between firings (rate rules, time in laws, delayed events) against exact laws.

A birth-death process with production a(t) and degradation g*X, started at 0, is Poisson at
every time with mean lambda(t), lambda' = a(t) - g*lambda (whatever a(t) is): the exact answer the
piecewise-deterministic engine (sbml_met.pdmp) is checked against, for a(t) from time in the law,
from a rate rule on a parameter and from a rate rule on a species, and for a delayed event.
The fast tests use n = 4,000 with tolerances that a 10% error in the mean or variance breaks;
the slow ones n = 20,000 and the whole marginal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

import sbml_met
from sbml_met.metrics import hellinger

GRID = [0.0, 1.0, 2.5, 5.0, 6.5, 7.5, 10.0]

# name -> (Antimony, production a(t)); every model degrades X at g = 1
MODELS = {
    "time in law": ("""
        species X = 0
        J0: -> X; k*(1 + sin(w*time))
        J1: X -> ; g*X
        k = 10; w = 1.3; g = 1
        """, lambda t: 10 * (1 + np.sin(1.3 * t))),
    "rate rule on a parameter": ("""
        species X = 0
        J0: -> X; a
        J1: X -> ; g*X
        a' = -r*a
        a = 20; r = 0.3; g = 1
        """, lambda t: 20 * np.exp(-0.3 * t)),
    "rate rule on a species": ("""
        compartment c = 1
        species X in c = 0, A in c = 2
        J0: -> X; k*A
        J1: X -> ; g*X
        A' = -0.2*A
        k = 10; g = 1
        """, lambda t: 20 * np.exp(-0.2 * t)),
    "rate rule on a compartment": ("""
        compartment V = 1
        species X in V = 0
        J0: -> X; k*V
        J1: X -> ; g*X*V
        V' = r*V
        k = 5; g = 1; r = 0.15
        """, lambda t: 5 * np.exp(0.15 * t)),
    "delayed event on a parameter": ("""
        species X = 0
        J0: -> X; k
        J1: X -> ; g*X
        E1: at 2 after (time > 5): k = 0
        k = 10; g = 1
        """, lambda t: 10.0 * (t < 7)),
}


def exact_lambda(rate, times) -> np.ndarray:
    """lambda(t) of the Poisson law: lambda' = a(t) - lambda, lambda(0) = 0."""
    t_end = max(times)
    sol = integrate.solve_ivp(lambda t, y: [rate(t) - y[0]], [0, t_end], [0.0], t_eval=times,
                              rtol=1e-11, atol=1e-12, max_step=0.01)
    return sol.y[0]


def load(name: str):
    return sbml_met.load_antimony(MODELS[name][0])


def poisson_checks(res, lam: np.ndarray, n: int, max_h: float) -> None:
    """Mean and variance within 4 standard errors (a 10% error is more than 4.5 at n = 4,000 and
    lambda >= 2) and each marginal within Hellinger ``max_h`` of Poisson(lambda)."""
    i = res.species.index("X")
    for k, t in enumerate(res.times):
        x = res.states[:, k, i]
        if lam[k] < 1e-9:
            assert np.all(x == 0)
            continue
        assert abs(x.mean() - lam[k]) < 4 * np.sqrt(lam[k] / n), (t, x.mean(), lam[k])
        assert abs(x.var() - lam[k]) < 4 * lam[k] * np.sqrt((2 + 1 / lam[k]) / n), (t, x.var(), lam[k])
        support = np.arange(int(x.max()) + 30)
        sample = np.bincount(x.astype(int), minlength=support.size) / x.size
        assert hellinger(sample, stats.poisson.pmf(support, lam[k])) < max_h, t


@pytest.mark.parametrize("name", sorted(MODELS))
def test_birth_death_with_production_varying_in_time_is_poisson(name):
    net = load(name)
    assert net.time_varying
    res = sbml_met.simulate(net, GRID, n=4000, seed=11, workers=1)
    poisson_checks(res, exact_lambda(MODELS[name][1], GRID), 4000, max_h=0.05)


def test_a_ten_percent_error_fails_the_checks():
    """The checks above can fail: a production 10% too high is caught."""
    name = "rate rule on a parameter"
    res = sbml_met.simulate(load(name).with_parameters(a=22.0), GRID, n=4000, seed=11, workers=1)
    with pytest.raises(AssertionError):
        poisson_checks(res, exact_lambda(MODELS[name][1], GRID), 4000, max_h=0.05)


def test_a_species_driven_by_a_rate_rule_follows_its_ode():
    res = sbml_met.simulate(load("rate rule on a species"), GRID, n=50, seed=1)
    a = res.states[:, :, res.species.index("A")]
    assert np.allclose(a, 2 * np.exp(-0.2 * np.array(GRID)), rtol=1e-7, atol=0)


def test_delayed_event_adding_molecules_with_values_at_execution():
    """At 7 (trigger at 5, delay 2) X grows by 10, read at 7: X = Poisson(lambda) + Binomial(10,
    e^-(t-7)) afterwards, every added molecule degrading on its own."""
    net = sbml_met.load_antimony("""
        species X = 0
        J0: -> X; k
        J1: X -> ; g*X
        E1: at 2 after (time > 5), fromTrigger=false: X = X + 10
        k = 5; g = 1
        """)
    assert net.events[0].delay is not None and not net.events[0].use_trigger_values
    times = [6.9, 7.0, 8.0]
    res = sbml_met.simulate(net, times, n=4000, seed=5, workers=1)
    lam = 5 * (1 - np.exp(-np.array(times)))
    survive = np.array([0.0, 1.0, np.exp(-1.0)])
    for k in range(3):
        x = res.states[:, k, 0]
        support = np.arange(60)
        pmf = np.convolve(stats.poisson.pmf(support, lam[k]), stats.binom.pmf(np.arange(11), 10, survive[k]))[:60]
        mean, var = lam[k] + 10 * survive[k], lam[k] + 10 * survive[k] * (1 - survive[k])
        assert abs(x.mean() - mean) < 4 * np.sqrt(var / 4000)
        assert hellinger(np.bincount(x.astype(int), minlength=60)[:60] / x.size, pmf) < 0.05


def test_delayed_event_values_from_the_trigger_time():
    """useValuesFromTriggerTime: X(7) = X(5) + 10 exactly, in every trajectory."""
    net = sbml_met.load_antimony("""
        species X = 0
        J0: -> X; k
        E1: at 2 after (time >= 5): X = X + 10
        k = 3
        """)
    res = sbml_met.simulate(net, [5.0, 7.0], n=300, seed=2)
    assert np.all(res.states[:, 1, 0] == res.states[:, 0, 0] + 10)


def test_a_trigger_on_a_rate_rule_variable_fires_when_it_crosses():
    """a = 20 e^(-0.3 t) falls below 5 at t = ln(4) / 0.3; the event fires there, located by
    bisection of the integration step."""
    net = sbml_met.load_antimony("""
        species X = 0, Y = 0
        J0: -> X; a
        a' = -r*a
        E1: at (a < 5): Y = 100
        a = 20; r = 0.3
        """)
    path = sbml_met.simulate(net, [0, 8], n=1, seed=3, record="events")
    y = path.states[0, :, 1]
    first = int(np.flatnonzero(y == 100)[0])
    assert path.times[first] == pytest.approx(np.log(4) / 0.3, abs=1e-7)


def test_seeded_runs_are_reproducible_whatever_the_workers():
    net = load("time in law")
    grid = [0.0, 1.0, 2.0]
    n = sbml_met.ssa.BLOCK + 40  # two independently seeded blocks
    one = sbml_met.simulate(net, grid, n=n, seed=7, workers=1)
    two = sbml_met.simulate(net, grid, n=n, seed=7, workers=2)
    assert np.array_equal(one.states, two.states)
    assert not np.array_equal(one.states, sbml_met.simulate(net, grid, n=n, seed=8, workers=1).states)


def test_an_ode_model_runs_as_its_ode():
    """BIOMD0000000006 (Tyson 1991) is all rate rules: the run is libroadrunner's ODE solution."""
    roadrunner = pytest.importorskip("roadrunner")
    from pathlib import Path

    path = Path(__file__).parent / "data" / "biomodels" / "BIOMD0000000006.xml"
    net = sbml_met.load_sbml(path)
    grid = np.linspace(0, 20, 5)
    res = sbml_met.simulate(net, grid, n=2, seed=1)
    rr = roadrunner.RoadRunner(str(path))
    rr.getIntegrator().setValue("relative_tolerance", 1e-10)
    rr.getIntegrator().setValue("absolute_tolerance", 1e-14)
    ref = rr.simulate(0, 20, 5, ["time", "u", "v"])
    for col, sid in ((1, "u"), (2, "v")):
        assert np.allclose(res.states[0, :, res.species.index(sid)], ref[:, col], rtol=1e-5, atol=1e-9)


def test_an_ode_model_runs_through_its_stiff_spike():
    """Tyson 1991 to t = 100, through its spikes (u rises 100-fold in a fraction of a time unit):
    a too-long trial step's Runge-Kutta stages reach u < 0 (a negative propensity k6*u), which
    must shorten the step, not end the run with a PropensityError (the ODE keeps u >= 0)."""
    from pathlib import Path

    path = Path(__file__).parent / "data" / "biomodels" / "BIOMD0000000006.xml"
    net = sbml_met.load_sbml(path)
    grid = np.array([50.0, 100.0])  # few stops: long steps, as the model's own horizon gives
    res = sbml_met.simulate(net, grid, n=2, seed=1)
    k4, k6, kappa, alpha = 180.0, 1.0, 0.015, 0.018 / 180.0

    def rhs(t, y):
        u, v = y
        return [k4 * (v - u) * (alpha + u * u) - k6 * u, kappa - k6 * u]

    ref = integrate.solve_ivp(rhs, (0, 100), [0.0, 0.0], method="LSODA", rtol=1e-11, atol=1e-13, t_eval=grid).y
    for row, sid in ((0, "u"), (1, "v")):
        assert np.allclose(res.states[:, :, res.species.index(sid)], ref[row], rtol=1e-5, atol=1e-8)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_poisson_laws_at_twenty_thousand(name):
    res = sbml_met.simulate(load(name), GRID, n=20_000, seed=21)
    poisson_checks(res, exact_lambda(MODELS[name][1], GRID), 20_000, max_h=0.025)


def test_sbml_met_run_on_a_time_varying_model_says_what_it_skipped(tmp_path):
    """`sbml-met run` with default engines: the exact SSA runs; FSP, MET (and libroadrunner's
    gillespie, which refuses rate rules) are skipped with every reason stated."""
    import json

    import pandas as pd

    from sbml_met.cli import main

    model = tmp_path / "forced.ant"
    model.write_text("""model forced
      species X = 0
      J0: -> X; a*(1 + sin(w*time))
      J1: X -> ; g*X
      a' = -r*a
      E1: at 2 after (time > 5): g = 2
      a = 10; r = 0.1; w = 1; g = 1
    end
    """, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", str(model), "--out", str(out), "--n", "400", "--n-reference", "400",
                 "--no-figures"]) == 0
    notes = " ".join(json.loads((out / "run.json").read_text(encoding="utf-8"))["notes"])
    for words in ("FSP skipped", "MET skipped", "validation skipped: libroadrunner", "rate rule", "depends on time",
                  "delay"):
        assert words in notes, words
    moments = pd.read_csv(out / "moments.csv").query("method == 'ssa' and species == 'X'")
    lam = exact_lambda(lambda t: 10 * np.exp(-0.1 * t) * (1 + np.sin(t)), [1.0, 5.0])
    for t, want in zip([1.0, 5.0], lam):
        got = moments[np.isclose(moments.time, t)]["mean"].iloc[0]
        assert abs(got - want) < 5 * np.sqrt(want / 400)


def test_a_path_shows_a_continuous_species_between_firings():
    """record="events": every firing, and for species a rate rule drives, 200 states between."""
    path = sbml_met.simulate(load("rate rule on a species"), [0, 10], n=1, seed=4, record="events")
    assert np.all(np.diff(path.times) >= 0) and path.times[0] == 0 and path.times[-1] == 10
    grid = path.fired == -1
    assert grid.sum() == 201
    a = path.states[0, :, path.species.index("A")]
    assert np.allclose(a, 2 * np.exp(-0.2 * path.times), rtol=1e-7)
    x = path.states[0, :, path.species.index("X")]
    assert np.all(np.abs(np.diff(x[~grid])) <= 1)  # one molecule per firing


def test_a_trigger_mixing_time_and_counts_and_a_parameter_set_at_a_state_trigger():
    """`time > 5 && time < 6` fires at 5 (then production stops: Poisson again); `X >= 15` sets k
    to 0 in the trajectory that reaches 15, at that firing, so X never passes 15."""
    net = sbml_met.load_antimony("""
        species X = 0
        J0: -> X; k
        J1: X -> ; g*X
        E1: at (time > 5 && time < 6): k = 0
        k = 10; g = 1
        """)
    assert net.time_varying and net.events[0].trigger_time is None
    res = sbml_met.simulate(net, GRID, n=4000, seed=6, workers=1)
    poisson_checks(res, exact_lambda(lambda t: 10.0 * (t < 5), GRID), 4000, max_h=0.05)
    capped = sbml_met.load_antimony("""
        species X = 0
        J0: -> X; k
        J1: X -> ; g*X
        E1: at (X >= 15): k = 0
        k = 10; g = 0.1
        """)
    res = sbml_met.simulate(capped, np.linspace(0, 20, 41), n=300, seed=2)
    x = res.states[:, :, 0]
    assert x.max() == 15 and np.all(np.diff(x, axis=1)[x[:, :-1] >= 15] <= 0)


def test_the_lockstep_kernel_refuses_what_it_cannot_follow():
    from sbml_met.errors import InvalidArgumentError
    from sbml_met.ssa import simulate_lockstep

    with pytest.raises(InvalidArgumentError, match="pdmp"):
        simulate_lockstep(load("rate rule on a parameter"), [0, 1], 5, np.random.default_rng(0))


@pytest.mark.parametrize("solver", ["cvode", "lsoda"])
def test_an_ode_model_is_solved_once_by_a_stiff_solver(solver, monkeypatch):
    # Tyson 1991 (BIOMD0000000006): every species boundary or driven by rate rules, k4 = 180 (stiff);
    # no reaction changes a count, so every trajectory is the ODE's solution (was > 20 s per pair of
    # trajectories with explicit steps); libroadrunner's CVODE solves it, scipy's LSODA where
    # libroadrunner fails: both must match an independent CVODE run of the original file
    roadrunner = pytest.importorskip("roadrunner")
    from sbml_met import window
    from sbml_met.models import load_model

    path = Path(__file__).parent / "data" / "biomodels" / "BIOMD0000000006.xml"
    net = load_model(str(path))
    if solver == "lsoda":
        monkeypatch.setattr(window, "deterministic_at", lambda *a: (_ for _ in ()).throw(RuntimeError("none")))
    times = np.linspace(0, 100, 11)
    res = sbml_met.simulate(net, times, n=50, seed=1)
    assert np.ptp(res.states, axis=0).max() == 0.0  # every trajectory alike
    rr = roadrunner.RoadRunner(str(path))
    ode = np.asarray(rr.simulate(0, 100, 11, ["time"] + [f"[{s}]" for s in net.species]))[:, 1:]
    assert np.allclose(res.states[0], ode, rtol=2e-3, atol=1e-6)
