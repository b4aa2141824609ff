"""Bad input gets a clear error that names the element and the way forward, before any work."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import sbml_met
from sbml_met.cli import main
from sbml_met.errors import SBMLParseError


def _ant(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_info_refuses_a_negative_initial_propensity(tmp_path, capsys):
    path = _ant(tmp_path, "neg.ant", "model m\n J1: X => ; k*X\n k = -10; X = 5\nend\n")
    assert main(["info", path]) == 2
    err = capsys.readouterr().err
    assert "J1 (-50)" in err and "negative" in err and "signs" in err


def test_a_reaction_name_without_its_colon_is_refused():
    with pytest.raises(SBMLParseError, match=r"line 2: 'J1 X -> ; k\*X'.*'J1: X -> ; k\*X'"):
        sbml_met.load_antimony("model m\n J1 X -> ; k*X\n k = 1; X = 5\nend\n")
    net = sbml_met.load_antimony("model m\n X -> ; k*X\n k = 1; X = 5\nend\n")  # unnamed on purpose: fine
    assert net.n_reactions == 1


def test_a_model_without_model_end_is_named_after_its_file(tmp_path):
    assert sbml_met.load_antimony(" J1: X -> ; k*X\n k = 1; X = 5\n").name == "model"
    path = _ant(tmp_path, "decay.ant", " J1: X -> ; k*X\n k = 1; X = 5\n")
    assert sbml_met.models.load_model(path).name == "decay"


def test_no_negative_zero_propensity_in_the_summary():
    net = sbml_met.load_antimony("model m\n J1: X => ; k*X\n k = -0; X = 5\nend\n")
    a0 = net.summary()["initial_propensity"].to_numpy()
    assert a0[0] == 0 and not np.signbit(a0[0])


def test_existing_out_is_refused_before_simulating(tmp_path, capsys, monkeypatch):
    out = tmp_path / "traj.parquet"
    out.write_text("mine", encoding="utf-8")

    def no_work(*args, **kwargs):
        raise AssertionError("simulated before checking --out")

    monkeypatch.setattr("sbml_met.ssa.simulate", no_work)
    assert main(["simulate", "birth_death", "--times", "0:10:11", "--out", str(out)]) == 2
    assert out.read_text(encoding="utf-8") == "mine" and "--force" in capsys.readouterr().err
    assert main(["simulate", "birth_death", "--times", "0:10:11", "--out", str(tmp_path / "t.txt")]) == 2
    assert ".csv or .parquet" in capsys.readouterr().err


def test_sweep_met_without_met_gives_command_line_advice(tmp_path, capsys):
    points = tmp_path / "points.csv"
    pd.DataFrame({"su": [0.5]}).to_csv(points, index=False)
    assert main(["sweep", "autoregulation", str(points), "--method", "met", "--times", "1"]) == 2
    err = capsys.readouterr().err
    assert "--met CHECKPOINT" in err and "met=" not in err


def test_sweep_met_refuses_a_negative_rate_as_fsp_does():
    met = sbml_met.met.pretrained("autoregulation")
    net = met.network
    name = next(iter(met.box))
    inside = float(np.sqrt(met.box[name][0] * met.box[name][1]))
    points = {name: [inside, -1.0]}
    fsp = sbml_met.sweep(net, points, [1.0], method="fsp", workers=1, table="moments")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an ExtrapolationWarning would fail here
        out = sbml_met.sweep(net, points, [1.0], method="met", met=met, workers=1, table="moments")
    assert out[out.point == 0]["error"].isna().all()
    assert fsp[fsp.point == 1]["error"].notna().all() and out[out.point == 1]["error"].notna().all()
    assert "PropensityError" in out[out.point == 1]["error"].iloc[0] or "training box" in out[out.point == 1]["error"].iloc[0]


def test_infer_without_met_asks_for_prior_in_command_line_terms(tmp_path, capsys):
    data = tmp_path / "cells.csv"
    pd.DataFrame({"time": [1.0, 1.0], "P": [3, 4]}).to_csv(data, index=False)
    assert main(["infer", "autoregulation", str(data), "--free", "su", "--out", str(tmp_path / "post.csv")]) == 2
    err = capsys.readouterr().err
    assert "--prior su=LOW:HIGH" in err and "--met" in err


def test_volume_errors_name_the_command_line_flag(tmp_path, capsys):
    path = _ant(tmp_path, "conc.ant", "model c\n J1: S -> P; k*S\n k = 0.1; S = 0.37; P = 0\nend\n")
    assert main(["info", path]) == 2
    assert "--volume" in capsys.readouterr().err
    assert main(["info", path, "--volume", "auto"]) == 0
    captured = capsys.readouterr()
    assert "--volume auto: volume=" in captured.err and "S=370" in captured.out


def test_simulate_says_its_expected_time_before_a_long_call(capsys):
    from sbml_met.cli import announce_cost

    net = sbml_met.load_antimony("model big\n J1: -> X; k\n J2: X -> ; d*X\n k = 1e6; d = 1; X = 1000000\nend")
    seconds = announce_cost(net, np.linspace(0, 100, 11), 1, "simulate")
    err = capsys.readouterr().err
    assert seconds > 10 and "expected 2e+08 reaction events per trajectory; 1 exact SSA trajectory" in err
    assert announce_cost(net, np.linspace(0, 1e-6, 2), 1, "simulate") < 2 and capsys.readouterr().err == ""
