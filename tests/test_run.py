"""The main job end to end on a small model: tables, figures, verdicts, no overwriting."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from sbml_met.cli import main
from sbml_met.run import run


def test_run_birth_death_writes_tidy_tables(tmp_path):
    out = tmp_path / "bd"
    report = run("birth_death", out_dir=out, n=800, n_reference=800, seed=3, figures=True,
                 log=lambda m: None, met="off")
    assert report.ok and set(report.verdicts) == {"ssa", "fsp"}
    for name in ("summary.csv", "moments.csv", "marginals.csv", "validation.csv", "marginals.png", "run.json"):
        assert (out / name).is_file(), name
    moments = pd.read_csv(out / "moments.csv")
    assert list(moments.columns) == ["time", "species", "method", "mean", "std"]
    fsp = moments[moments.method == "fsp"].set_index("time")["mean"]
    exact = 100 * (1 - np.exp(-0.1 * fsp.index.to_numpy()))
    assert np.allclose(fsp.to_numpy(), exact, atol=1e-4)
    marg = pd.read_csv(out / "marginals.csv")
    assert {"time", "species", "method", "count", "probability"} <= set(marg.columns)
    sums = marg.groupby(["method", "time"])["probability"].sum()
    assert np.allclose(sums, 1.0, atol=1e-5)
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["ok"] is True


def test_run_refuses_a_folder_of_other_files(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    assert main(["run", "birth_death", "--out", str(tmp_path), "--n", "50", "--n-reference", "50",
                 "--no-figures"]) == 2
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert "--force" in capsys.readouterr().err


def test_run_draws_every_engine_on_the_dense_grid(tmp_path):
    from PIL import Image

    out = tmp_path / "bd"
    old = os.umask(0o022)
    try:
        run("birth_death", out_dir=out, times=np.linspace(0, 20, 21), n=300, n_reference=300, seed=2,
            log=lambda m: None, met="off")
    finally:
        os.umask(old)
    moments = pd.read_csv(out / "moments.csv")
    for method in ("ssa", "fsp", "tellurium"):  # every engine on the SSA's 21 times, not just the report times
        assert moments[moments.method == method]["time"].nunique() == 21, method
    for name in ("marginals.png", "moments.png", "distributions.png", "trajectories.png"):
        with Image.open(out / name) as im:
            assert im.size[0] > 300 and im.size[1] > 150
            assert np.asarray(im.convert("L")).std() > 5  # something is drawn
    for path in out.iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path.name


def test_time_axis_label_from_the_sbml_units():
    import libsbml

    from sbml_met import load_sbml, models
    from sbml_met.run import time_label

    net = models.load("birth_death")
    assert time_label(net) == "time"
    doc = libsbml.readSBMLFromString(net.to_sbml())
    doc.getModel().setTimeUnits("second")
    assert time_label(load_sbml(libsbml.writeSBMLToString(doc))) == "time (s)"


def test_run_met_auto_trains_caches_validates_and_reuses(tmp_path, monkeypatch):
    """A 24-second MET need not be accurate; what the run says about it must be true: the exit
    code follows the verdicts, and the held-out accuracy it reports is the MET's distance from
    exact FSP at the recorded held-out prompts, recomputed here."""
    import sbml_met
    from sbml_met.metrics import hellinger

    monkeypatch.setenv("SBML_MET_CACHE_DIR", str(tmp_path / "cache"))
    args = ["run", "birth_death", "--n", "300", "--n-reference", "300", "--no-figures", "--met-minutes", "0.4"]
    rc = main(args + ["--out", str(tmp_path / "a")])
    first = json.loads((tmp_path / "a" / "run.json").read_text(encoding="utf-8"))
    assert rc == (0 if first["ok"] else 1) and first["ok"] == all(first["verdicts"].values())
    assert "met" in first["verdicts"] and first["met"]["source"] == "trained"
    assert first["met"]["teacher"] == "fsp" and first["met"]["box"]["k1"] == pytest.approx([5, 20])
    held = first["met"]["held_out"]
    assert held["reference"] == "exact" and held["n_prompts"] >= 8
    # 24 seconds do not reach the target: the run says so, in its notes and run.json
    assert first["met"]["validated"] is False and first["met"]["target"] == 0.01
    assert any("not validated" in n and "more minutes" in n for n in first["notes"])
    cached = list((tmp_path / "cache").glob("*.met"))
    assert len(cached) == 1 and cached[0].stat().st_mode & 0o777 == 0o666 & ~_umask()
    met = sbml_met.met.load(cached[0])
    v = met.validation
    assert held["hellinger_mean"] == pytest.approx(np.mean(v["hellinger"]), abs=1e-12)
    assert held["hellinger_max"] == pytest.approx(np.max(v["hellinger"]), abs=1e-12)
    prompts = v["validation_prompts"]
    for i in range(3):
        theta, t = dict(zip(met.box, prompts["theta"][i])), float(prompts["time"][i])
        assert prompts["init"][i] == [0.0]  # the model's initial state
        exact = sbml_met.solve_fsp(met.network.with_parameters(theta), [t], tol=1e-8).marginal("X", t).to_numpy()
        mine = met.marginals_all(t, **theta)[0]
        assert hellinger(mine, exact) == pytest.approx(v["hellinger"][i][0], abs=0.01)  # the FSP teacher's caps lose < 1e-2
    # the next run trains the cached, not yet validated MET on instead of starting afresh
    rc = main(args + ["--out", str(tmp_path / "b")])
    second = json.loads((tmp_path / "b" / "run.json").read_text(encoding="utf-8"))
    assert rc == (0 if second["ok"] else 1)
    assert second["met"]["source"] == "trained" and second["met"]["continued_from"] == str(cached[0])
    assert second["met"]["total_steps"] == first["met"]["steps"] + second["met"]["steps"]
    # with --met-minutes large enough the accuracy target is what stops it
    assert len(list((tmp_path / "cache").glob("*.met"))) == 1
    rc = main(["run", "birth_death", "--n", "50", "--n-reference", "50", "--no-figures", "--met", "off",
               "--out", str(tmp_path / "c")])
    third = json.loads((tmp_path / "c" / "run.json").read_text(encoding="utf-8"))
    assert rc == (0 if third["ok"] else 1) and "met" not in third["verdicts"]


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old
