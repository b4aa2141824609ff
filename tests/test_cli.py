"""The sbml-met command line: outputs, exit codes, no silent overwrites."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from sbml_met.cli import main, parse_times


def test_parse_times():
    assert parse_times("0:40:41").tolist()[:3] == [0.0, 1.0, 2.0]
    assert parse_times("1,3,40").tolist() == [1.0, 3.0, 40.0]
    assert parse_times("10").tolist() == [10.0]


def test_simulate_writes_parquet_and_csv(tmp_path, capsys):
    out = tmp_path / "traj.parquet"
    assert main(["simulate", "birth_death", "--times", "0:10:3", "--n", "20", "--seed", "1", "--out", str(out)]) == 0
    df = pd.read_parquet(out)
    assert list(df.columns) == ["trajectory", "time", "species", "count"]
    assert len(df) == 20 * 3 and set(df.time) == {0.0, 5.0, 10.0}
    out_csv = tmp_path / "m.csv"
    assert main(["simulate", "birth_death", "--times", "0,10", "--n", "20", "--seed", "1",
                 "--table", "moments", "--out", str(out_csv)]) == 0
    m = pd.read_csv(out_csv)
    assert list(m.columns) == ["time", "species", "mean", "std"]
    # same seed, same numbers as the parquet run
    assert m.loc[m.time == 10, "mean"].item() == pytest.approx(df[df.time == 10]["count"].mean())


def test_no_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "traj.csv"
    out.write_text("precious", encoding="utf-8")
    args = ["simulate", "birth_death", "--times", "0,1", "--n", "5", "--seed", "1", "--out", str(out)]
    assert main(args) == 2
    assert out.read_text(encoding="utf-8") == "precious"
    assert "exists" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    assert out.read_text(encoding="utf-8") != "precious"


def test_bad_input_exit_code_2(tmp_path, capsys):
    assert main(["info", "no_such_model"]) == 2
    assert "no model 'no_such_model'" in capsys.readouterr().err
    assert main(["simulate", "birth_death", "--times", "a:b", "--n", "5"]) == 2
    assert main(["simulate", "birth_death", "--times", "0,1", "--set", "nope=1"]) == 2
    assert main(["simulate", "birth_death", "--times", "0,1", "--out", str(tmp_path / "x.txt")]) == 2


def test_info_and_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "sbml_met", "info", "toggle_switch"],
                          capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert proc.returncode == 0
    assert "bind_x: 2 Px + Guy -> 0" in proc.stdout and "by * Px * (Px - 1) * Guy" in proc.stdout


def test_dsmts_command(dsmts_dir, tmp_path, capsys):
    out = tmp_path / "dsmts.csv"
    code = main(["dsmts", str(dsmts_dir), "--n", "1000", "--cases", "1,28", "--out", str(out)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert lines[-1] == "4 passed, 0 failed"
    table = pd.read_csv(out)
    assert {"case", "level", "time", "species", "z", "y"} <= set(table.columns)


def test_train_symmetry_flag_is_checked(tmp_path, capsys):
    out = tmp_path / "m.met"
    # birth_death has one species and parameters k1, k2: swapping them is no symmetry
    assert main(["train", "birth_death", "--box", "k1=1:5", "--box", "k2=1:5", "--times", "0:2", "--minutes",
                 "1", "--steps", "2", "--symmetry", "k1=k2", "--out", str(out)]) == 2
    assert "not invariant" in capsys.readouterr().err
    assert main(["train", "birth_death", "--box", "k1=1:5", "--times", "0:2", "--steps", "2",
                 "--symmetry", "k1", "--out", str(out)]) == 2
    assert "ID=ID" in capsys.readouterr().err
    assert main(["train", "birth_death", "--box", "k1=1:5", "--times", "0:2", "--steps", "2", "--teacher", "ssa",
                 "--symmetry", "k1=k2", "--out", str(out)]) == 2
    assert not out.exists()


def test_cli_and_files_work_under_an_ascii_locale(tmp_path):
    # CI machines and containers often run with LC_ALL=C and no UTF-8 mode: --help (x/÷) must print,
    # and a run's files (notes with ±) must be written as UTF-8, whatever the locale says
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    proc = subprocess.run([sys.executable, "-m", "sbml_met", "run", "--help"], capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    assert b"x/\\xf7 2" in proc.stdout
    out = tmp_path / "o"
    proc = subprocess.run([sys.executable, "-m", "sbml_met", "run", "birth_death", "--n", "200", "--met", "off",
                           "--times", "0,1,2", "--out", str(out)], capture_output=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    assert "birth_death" in (out / "report.html").read_text(encoding="utf-8")
