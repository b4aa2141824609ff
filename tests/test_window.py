"""A model the project never saw: its window, its volume and the cost of its run, chosen from it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import find_peaks

from sbml_met.cost import describe_seconds, estimate_cost
from sbml_met.errors import InvalidArgumentError
from sbml_met.models import load_model
from sbml_met.run import plan_run
from sbml_met.sbml import load_antimony
from sbml_met.window import (choose_window, deterministic_solution, nice_ceil, settling_time,
                             sedml_time_course)

GENE = """
model gene_expression
  J1: -> M; km
  J2: M -> ; dm*M
  J3: -> P; kp*M
  J4: P -> ; dp*P
  km = 10; dm = 1; kp = 2; dp = 0.2
  M = 0; P = 0
end
"""

HILL_MM = """
model signalling
  compartment cell = 1
  species S in cell, P in cell, R in cell
  J1: -> S; v0
  J2: S -> P; Vmax*S/(Km + S)
  J3: P -> ; kd*P
  J4: -> R; vr*P^n/(K^n + P^n)
  J5: R -> ; kr*R
  v0 = 0.5; Vmax = 1.2; Km = 0.8; kd = 0.3; vr = 2; K = 1.5; n = 3; kr = 0.4
  S = 0.37; P = 0.1; R = 0.05
end
"""


def test_nice_ceil():
    assert [nice_ceil(x) for x in (0.7, 1.0, 1.3, 2.2, 3, 7, 29, 0.031)] == [1, 1, 2, 2.5, 5, 10, 50, 0.05]


def test_settling_time_of_an_exponential_approach():
    t = np.linspace(0, 20, 2001)
    x = (100 * (1 - np.exp(-t)))[:, None]
    assert settling_time(t, x) == pytest.approx(np.log(100), abs=0.02)  # within 1% of 100
    assert settling_time(t[:401], x[:401]) is None  # t <= 4: still moving at the end


def test_window_of_a_tellurium_model_reaches_its_steady_state():
    net = load_antimony(GENE)
    w = choose_window(net)
    assert w.kind == "steady" and "settles" in w.how
    end = w.grid[-1]
    p_end = 100 * (1 - (np.exp(-0.2 * end) - 0.2 * np.exp(-end)) / 0.8)  # exact P(t), steady value 100
    assert abs(p_end - 100) < 1.0 and end <= 100  # within 1%, not absurdly long
    assert len(w.report_times) == 4 and w.report_times[-1] == end


def test_window_of_an_oscillator_holds_at_least_two_peaks():
    net = load_model("repressilator")
    w = choose_window(net)
    assert w.kind == "oscillation"
    t, x = deterministic_solution(net, w.grid[-1])
    peaks = max(len(find_peaks(x[:, i], prominence=0.1 * np.ptp(x[:, i]))[0]) for i in range(x.shape[1]))
    assert peaks >= 2


def test_window_from_sedml_beside_the_model(tmp_path):
    model = tmp_path / "gene.xml"
    from sbml_met.sbml import antimony_to_sbml

    model.write_text(antimony_to_sbml(GENE), encoding="utf-8")
    (tmp_path / "sim.sedml").write_text(
        '<?xml version="1.0"?><sedML xmlns="http://sed-ml.org/sed-ml/level1/version3" level="1" version="3">'
        '<listOfSimulations><uniformTimeCourse id="s" initialTime="0" outputStartTime="0" outputEndTime="30" '
        'numberOfPoints="60"/></listOfSimulations><listOfModels><model id="m" source="gene.xml" '
        'language="urn:sedml:language:sbml"/></listOfModels></sedML>', encoding="utf-8")
    assert sedml_time_course(model) == (0.0, 30.0, 60, "sim.sedml")
    w = choose_window(load_model(str(model)), model)
    assert w.kind == "sedml" and w.grid[-1] == 30 and len(w.grid) == 61 and "SED-ML" in w.how


def test_volume_auto_converts_a_concentration_model_and_keeps_counts(tmp_path):
    path = tmp_path / "signalling.ant"
    path.write_text(HILL_MM, encoding="utf-8")
    net = load_model(str(path), volume="auto")
    assert any("--volume auto: volume=1000" in n for n in net.notes)
    assert np.all(net.initial_state == np.round(net.initial_state)) and net.initial_state[0] == 370
    counts = tmp_path / "gene.ant"
    counts.write_text(GENE, encoding="utf-8")
    kept = load_model(str(counts), volume="auto")
    assert any("no conversion" in n for n in kept.notes)
    assert load_model(str(path), volume="100").initial_state[0] == 37
    # starting from zero the amounts are whole, but Michaelis-Menten and Hill laws read concentrations
    # that never reach 10: as counts that would be a handful of molecules, so auto converts
    zero = tmp_path / "signalling_from_zero.ant"
    zero.write_text(HILL_MM.replace("S = 0.37; P = 0.1; R = 0.05", "S = 0; P = 0; R = 0"), encoding="utf-8")
    converted = load_model(str(zero), volume="auto")
    note = next(n for n in converted.notes if n.startswith("--volume auto"))
    assert "volume=" in note and "saturating laws (J2, J4)" in note, note
    with pytest.raises(InvalidArgumentError, match="--volume"):
        load_model(str(path), volume="big")


def test_expected_events_match_the_analytic_integral():
    net = load_antimony("model bd\n J1: -> X; k\n J2: X -> ; d*X\n k = 10; d = 0.2; X = 0\nend")
    T = 30.0
    cost = estimate_cost(net, T)
    mean_integral = 50 * (T - (1 - np.exp(-0.2 * T)) / 0.2)  # integral of E[X](t)
    assert cost.events == pytest.approx(10 * T + 0.2 * mean_integral, rel=1e-3)
    assert describe_seconds(30) == "about 30 s" and describe_seconds(600) == "about 10 min"


def test_plan_takes_fewer_exact_trajectories_then_leaps_and_direct_forces_exact():
    grid = np.linspace(0, 10, 11)
    # 10^5 molecules: 10,000 exact trajectories take about half an hour, 500+ fit the budget: exact
    mid = plan_run(load_antimony("model mid\n J1: -> X; k\n J2: X -> ; d*X\n k = 1e5; d = 1; X = 100000\nend"), grid)
    assert mid.method == "direct" and 500 <= mid.n < 10_000
    assert any("exact trajectories instead" in note for note in mid.notes)
    # 10^7 molecules: not even 500 exact trajectories fit, by far (10^6 sat at that bound: 500 exact
    # trajectories fitted or not with the machine's speed): tau-leaping
    net = load_antimony("model big\n J1: -> X; k\n J2: X -> ; d*X\n k = 1e7; d = 1; X = 10000000\nend")
    plan = plan_run(net, grid)
    assert plan.method == "tau-leap"
    assert any("tau-leaping instead" in note and "--method direct" in note for note in plan.notes)
    assert plan.n_reference < 10_000 and any("--n-reference" in note for note in plan.notes)
    forced = plan_run(net, grid, method="direct", n=20, n_reference=20)
    assert forced.method == "direct" and forced.n == 20 and forced.n_reference == 20
    assert any("exact SSA of 20 trajectories" in line for line in forced.lines)
    small = plan_run(load_model("birth_death"), np.linspace(0, 50, 51))
    assert small.method == "direct" and small.n == 10_000 and not small.notes


def test_fsp_refuses_at_once_where_its_state_space_cannot_fit():
    from sbml_met.errors import StateSpaceTooLargeError
    from sbml_met.fsp import estimate_states, solve_fsp

    net = load_antimony(HILL_MM.replace("S = 0.37", "S = 37").replace("P = 0.1", "P = 10").replace("R = 0.05", "R = 5")
                        .replace("v0 = 0.5", "v0 = 500").replace("Km = 0.8", "Km = 80").replace("K = 1.5", "K = 1500"))
    estimate, ranges = estimate_states(net, 50.0)
    assert estimate > 1e6 and set(ranges) == {"S", "P", "R"}
    with pytest.raises(StateSpaceTooLargeError, match="would need at least about"):
        solve_fsp(net, [0.0, 50.0], max_states=300_000)  # before building any state
    small, _ = estimate_states(load_model("birth_death"), 50.0)
    assert 100 < small < 200  # X spans about [0, 115]: the adaptive FSP builds a few hundred states


def test_run_on_an_unseen_model_takes_its_window_and_says_how(tmp_path):
    import json

    from sbml_met.run import run

    path = tmp_path / "gene.ant"
    path.write_text(GENE, encoding="utf-8")
    lines = []
    report = run(str(path), out_dir=tmp_path / "out", n=300, n_reference=300, figures=False, met="off",
                 log=lines.append)
    manifest = json.loads((tmp_path / "out" / "run.json").read_text(encoding="utf-8"))
    assert manifest["grid"][-1] == 50 and "settles" in manifest["window"] and report.ok
    assert manifest["times"] == [5.0, 16.5, 33.5, 50.0]
    assert any("expected" in line and "reaction events per trajectory" in line for line in lines)
    assert "time window: from the deterministic solution" in report.text()


def test_plan_shortens_the_reference_span_where_even_few_trajectories_do_not_fit():
    net = load_antimony("model big\n J1: -> X; k\n J2: X -> ; d*X\n k = 1e5; d = 1; X = 100000\nend")
    plan = plan_run(net, np.linspace(0, 100, 11), method="tau-leap", n=100)
    assert plan.reference_end is not None and plan.reference_end < 100
    assert plan.n_reference == 100
    assert any(f"on 0 to {plan.reference_end:g}" in note for note in plan.notes)


def test_run_validates_on_the_shortened_span_and_draws_every_figure(tmp_path, monkeypatch):
    import json

    import sbml_met.run as run_module

    monkeypatch.setattr(run_module, "REFERENCE_BUDGET_S", 1e-4)  # no full-window reference fits
    report = run_module.run("birth_death", out_dir=tmp_path / "bd", n=400, seed=2, met="off", log=lambda m: None)
    manifest = json.loads((tmp_path / "bd" / "run.json").read_text(encoding="utf-8"))
    assert any("trajectories on 0 to" in note for note in report.notes)
    assert set(report.verdicts) == {"ssa", "fsp"} and report.ok
    assert (tmp_path / "bd" / "marginals.png").is_file() and manifest["n_reference"] == 100


def test_run_leaves_out_fsp_that_would_take_longer_than_its_budget():
    from sbml_met.run import _fsp_too_slow

    grid = np.linspace(0, 10, 11)
    big = load_antimony("model big\n J1: -> X; k\n J2: X -> ; d*X\n k = 1e6; d = 1; X = 1000000\nend")
    note = _fsp_too_slow(big, grid, plan_run(big, grid, method="direct", n=20, n_reference=20))
    assert note and note.startswith("FSP skipped") and "solve_fsp runs it anyway" in note
    small = load_model("birth_death")
    assert _fsp_too_slow(small, grid, plan_run(small, grid, n=20, n_reference=20)) is None
