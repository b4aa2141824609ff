"""The package as users install it: a wheel built from the source tree, installed without ``-e``.

An editable install sees the source tree, so a subpackage or data file missing from the wheel
goes unnoticed there. This test builds the wheel (no network: the build backend of the running
environment), checks it holds every package and data file of the source tree, installs it into a
fresh virtual environment (dependencies seen from the running one, never the source tree) and runs
every subcommand from the installed console script, plus real calls that read the bundled models
and the pretrained MET.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from sbml_met.cli import SUBCOMMANDS

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("sbml_met", "sbml_models")


def source_files() -> list[str]:
    """Every file of the packages in the source tree (git's list when there is one)."""
    try:
        out = subprocess.run(["git", "ls-files", *PACKAGE_DIRS], cwd=REPO, capture_output=True,
                             text=True, encoding="utf-8", errors="replace", check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        out = [str(p.relative_to(REPO)) for d in PACKAGE_DIRS for p in (REPO / d).rglob("*")
               if p.is_file() and "__pycache__" not in p.parts]
    return sorted(f for f in out if (REPO / f).is_file())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools", minversion="70.1")  # builds wheels without the 'wheel' package
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # build from a copy, so no build/ or egg-info lands in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for f in source_files():
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, src / f)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp / "dist"), str(src)], check=True, timeout=300)
    (whl,) = (tmp / "dist").glob("sbml_met-*.whl")
    return whl


def test_wheel_holds_every_package_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = source_files()
    missing = [f for f in expected if f not in names]
    assert not missing, f"files of the source tree missing from {wheel.name}: {missing}"
    packages = {str(p.parent.relative_to(REPO)) for d in PACKAGE_DIRS for p in (REPO / d).rglob("__init__.py")}
    assert {"sbml_met", "sbml_met/met", "sbml_met/infer", "sbml_models"} <= packages
    assert all(f"{p}/__init__.py" in names for p in packages)
    assert "sbml_met/met/pretrained/toggle_switch.met" in names and "sbml_models/toggle_switch.xml" in names


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel; the running environment's site-packages supply the dependencies."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, encoding="utf-8", errors="replace", check=True).stdout.strip())
    # a .pth line adds a directory without running the .pth files in it, so the running
    # environment's editable sbml-met (if any) stays invisible; the wheel's copy comes first
    deps = [p for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
            if Path(p).is_dir()]
    (purelib / "zz_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n", encoding="utf-8")
    run = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                         capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=300, env=clean_env())
    assert run.returncode == 0, run.stderr
    return venv


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["MPLBACKEND"] = "Agg"
    return env


def sh(venv: Path, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=timeout,
                          env={**clean_env(), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"})


def test_installed_wheel_answers_every_subcommand(installed, tmp_path):
    py, cli = installed / "bin" / "python", installed / "bin" / "sbml-met"
    # the installed copy is the one imported, and every module of it imports
    code = ("import importlib, pkgutil, sbml_met, sbml_models; print(sbml_met.__file__)\n"
            "for m in pkgutil.walk_packages(sbml_met.__path__, 'sbml_met.'):\n    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
            "import sbml_met.infer, sbml_met.met; print('ok')")
    r = sh(installed, py, "-c", code, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.split()[0]).is_relative_to(installed) and r.stdout.split()[-1] == "ok", r.stdout
    top = sh(installed, cli, "--help", cwd=tmp_path)
    assert top.returncode == 0, top.stderr
    for name in SUBCOMMANDS:
        assert name in top.stdout
        r = sh(installed, cli, name, "--help", cwd=tmp_path)
        assert r.returncode == 0 and r.stdout.startswith(f"usage: sbml-met {name}"), (name, r.stderr)
    # real calls: a bundled model (sbml_models data), exact FSP, the pretrained MET (package data)
    info = sh(installed, cli, "info", "toggle_switch", cwd=tmp_path)
    assert info.returncode == 0 and "Px" in info.stdout, info.stderr
    r = sh(installed, cli, "fsp", "birth_death", "--times", "1", "--table", "moments", "--out", "m.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    import pandas as pd

    m = pd.read_csv(tmp_path / "m.csv")
    assert len(m) >= 1 and m["mean"].notna().all()
    r = sh(installed, cli, "solve", "autoregulation", "--times", "10", "--set", "su=0.5", "--out", "d.csv",
           cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    d = pd.read_csv(tmp_path / "d.csv")
    sums = d.groupby(["time", "species"])["probability"].sum()
    assert ((sums - 1).abs() < 1e-3).all() and set(d["method"]) == {"met"}


def test_every_required_dependency_and_the_test_extras_import():
    """Tests that need libroadrunner, tellurium, numba or Dask skip where they are missing (so the
    typed refusals can be checked without them); a CI environment that lost one must fail here,
    not pass with those checks silently skipped."""
    import importlib

    required = ["libsbml", "antimony", "tellurium", "roadrunner", "torch", "numpy", "scipy", "pandas",
                "pyarrow", "tqdm", "matplotlib", "platformdirs", "threadpoolctl", "emcee", "numba",
                "distributed", "nbclient", "nbformat"]  # the last three: the 'dev' extra the tests install
    missing = []
    for name in required:
        try:
            importlib.import_module(name)
        except ImportError as e:
            missing.append(f"{name} ({e})")
    assert not missing, "missing: " + ", ".join(missing)
