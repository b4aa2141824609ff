"""Exact SSA against its peers, per core: sbml_met, COPASI's direct method (copasi-basico),
GillesPy2's C++ SSA and libroadrunner's gillespie integrator (reset/simulate loop).

    pip install -e '.[bench]'; PATH=$VIRTUAL_ENV/bin:$PATH python bench/ssa_peers.py [--quick]

Every tool loads the same SBML, runs one process and is warmed up first (numba's cached kernel,
GillesPy2's C++ build, COPASI's model load are not timed). Times are CPU seconds of the process
doing the work (the child process for GillesPy2's C++ solver), so a busy machine does not bias them;
wall seconds of sbml_met are printed too. The means at the last time are checked to agree across
tools (|difference| < 5 combined standard errors for every species). COPASI gets
``set_model_unit(quantity_unit='#')``: without it COPASI reads the amounts as moles.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

import sbml_met
from sbml_met import models

ROOT = Path(__file__).resolve().parents[1]
VILAR = [ROOT / "tests/data/biomodels/BIOMD0000000035.xml", ROOT.parent / "shared/biomodels/BIOMD0000000035.xml"]
CASES = [  # (label, SBML path, t_end, full n)
    ("birth-death, t 0..50", "birth_death", 50.0, 10_000),
    ("toggle switch, t 0..40", "toggle_switch", 40.0, 10_000),
    ("autoregulation, t 0..10", "autoregulation", 10.0, 10_000),
    ("BIOMD0000000035 Vilar, t 0..20", "vilar", 20.0, 500),
]


def _sbml_path(key: str, folder: Path) -> Path:
    if key == "vilar":
        return next(p for p in VILAR if p.exists())
    path = folder / f"{key}.xml"
    path.write_text(models.load(key).to_sbml(), encoding="utf-8")
    return path


def _cpu(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _timed(fn: Callable[[], np.ndarray], children: bool = False) -> tuple[np.ndarray, float, float]:
    """(final states, CPU seconds, wall seconds) of one call."""
    c0, w0 = _cpu(children) + (_cpu() if children else 0.0), time.perf_counter()
    out = fn()
    return out, _cpu(children) + (_cpu() if children else 0.0) - c0, time.perf_counter() - w0


# ------------------------------------------------------------------------------------------- tools
class SbmlMet:
    """sbml_met.simulate on a network loaded once, in this process (``workers=1``: per core)."""

    def __init__(self, path: Path, t_end: float, species: list[str]):
        self.net, self.t_end = sbml_met.load_sbml(path), t_end
        self.cols = [self.net.species.index(s) for s in species]

    def run(self, n: int, seed: int) -> np.ndarray:
        res = sbml_met.simulate(self.net, [0.0, self.t_end], n=n, seed=seed, progress=False, workers=1)
        return res.states[:, -1, self.cols]


class Copasi:
    """COPASI's time-course task with the direct method, one process() call per trajectory."""

    def __init__(self, path: Path, t_end: float, species: list[str]):
        import basico
        import COPASI

        self.dm = basico.load_model(str(path))
        basico.set_model_unit(quantity_unit="#")
        self.task = self.dm.getTask("Time-Course")
        self.task.setMethodType(COPASI.CTaskEnum.Method_stochastic)
        problem = self.task.getProblem()
        problem.setDuration(t_end)
        problem.setStepNumber(1)
        problem.setTimeSeriesRequested(True)
        method = self.task.getMethod()
        method.getParameter("Use Random Seed").setBoolValue(True)
        method.getParameter("Max Internal Steps").setIntValue(2_000_000_000)
        self.seed = method.getParameter("Random Seed")
        self.species = species

    def run(self, n: int, seed: int) -> np.ndarray:
        out = np.empty((n, len(self.species)))
        cols = None
        for k in range(n):
            self.seed.setUIntValue(seed + k)
            self.task.process(True)
            ts = self.task.getTimeSeries()
            if cols is None:
                titles = [ts.getTitle(i) for i in range(ts.getNumVariables())]
                cols = [titles.index(s) for s in self.species]
            last = ts.getRecordedSteps() - 1
            out[k] = [ts.getData(last, c) for c in cols]
        return out


class GillesPy:
    """GillesPy2's C++ SSA (its solver is built once, in the warm-up)."""

    def __init__(self, path: Path, t_end: float, species: list[str]):
        import gillespy2

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            self.model, _ = gillespy2.import_SBML(str(path))
        self.model.timespan(np.array([0.0, t_end / 2, t_end]))
        self.solver = gillespy2.SSACSolver(model=self.model)
        self.species = species

    def run(self, n: int, seed: int) -> np.ndarray:
        results = self.model.run(solver=self.solver, number_of_trajectories=n, seed=seed)
        return np.array([[r[s][-1] for s in self.species] for r in results])


class RoadRunner:
    """libroadrunner's gillespie integrator: reset, seed, simulate, once per trajectory."""

    def __init__(self, path: Path, t_end: float, species: list[str]):
        import roadrunner

        self.rr = roadrunner.RoadRunner(str(path))
        self.rr.setIntegrator("gillespie")
        self.rr.timeCourseSelections = ["time"] + species
        self.t_end = t_end

    def run(self, n: int, seed: int) -> np.ndarray:
        out = []
        for k in range(n):
            self.rr.reset()
            self.rr.integrator.seed = seed + k
            out.append(self.rr.simulate(0.0, self.t_end, 2)[-1, 1:])
        return np.array(out)


# --------------------------------------------------------------------------------------------- main
def _agree(ref: np.ndarray, other: np.ndarray) -> float:
    """Largest |mean difference| in combined standard errors over the species."""
    se = np.sqrt(ref.var(0, ddof=1) / len(ref) + other.var(0, ddof=1) / len(other))
    diff = np.abs(ref.mean(0) - other.mean(0))
    z = np.where(se > 0, diff / np.where(se > 0, se, 1), np.where(diff > 0, np.inf, 0.0))
    return float(z.max())


def bench_case(label: str, path: Path, t_end: float, ns: list[int], seed: int) -> list[str]:
    net = sbml_met.load_sbml(path)
    species = [s for s, info in zip(net.species, net.species_info) if info.changes_by_reactions]
    tools = {name: cls(path, t_end, species) for name, cls in
             [("sbml_met", SbmlMet), ("COPASI", Copasi), ("GillesPy2 C++", GillesPy), ("roadrunner", RoadRunner)]}
    for tool in tools.values():  # warm-up: caches, compiles, first loads
        tool.run(2, seed)
    rows = []
    for n in ns:
        times, finals, wall = {}, {}, 0.0
        repeats = max(1, 200 // n)  # small n: the mean of several calls (CPU clocks tick coarsely)
        for name, tool in tools.items():
            finals[name], cpu, w = _timed(lambda: np.concatenate([tool.run(n, seed + 7919 * r)
                                                                  for r in range(repeats)]),
                                          children=name == "GillesPy2 C++")
            times[name] = cpu / repeats
            wall = w / repeats if name == "sbml_met" else wall
        z = max(_agree(finals["sbml_met"], finals[k]) for k in tools if k != "sbml_met")
        sm = times["sbml_met"]
        rows.append(f"| {label} | {n} | {sm:.4f} ({wall:.4f} wall) | {times['COPASI']:.4f} "
                    f"({times['COPASI'] / sm:.1f}x) | {times['GillesPy2 C++']:.4f} "
                    f"({times['GillesPy2 C++'] / sm:.1f}x) | {times['roadrunner']:.4f} "
                    f"({times['roadrunner'] / sm:.1f}x) | {z:.1f} {'ok' if z < 5 else 'DISAGREE'} |")
        print(rows[-1], flush=True)
    return rows


DIMER = (ROOT / "tests" / "data" / "dimer_concentration.ant").read_text(encoding="utf-8")  # concentrations: converted with volume=


def _hellinger(x: np.ndarray, y: np.ndarray) -> float:
    bins = np.linspace(min(x.min(), y.min()), max(x.max(), y.max()) + 1, 41)
    p, q = np.histogram(x, bins)[0] / len(x), np.histogram(y, bins)[0] / len(y)
    return float(np.sqrt(0.5 * np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)))


def tau_leap_table(folder: Path, seed: int) -> None:
    """Exact SSA against method="tau-leap" (epsilon 0.03): CPU time and accuracy at the last time."""
    from sbml_met.sbml import antimony_to_sbml

    dimer = folder / "dimer.xml"
    dimer.write_text(antimony_to_sbml(DIMER), encoding="utf-8")
    cases = [("birth-death at 10^4 copies, t 0..50", models.load("birth_death").with_parameters(k1=1000.0)
              .with_initial_state(X=10_000), 50.0, 10_000, "X"),
             ("Schlogl, t 0..5", models.load("schlogl"), 5.0, 2000, "X"),
             ("dimerisation, load_sbml(volume=1000), t 0..3", sbml_met.load_sbml(dimer, volume=1000.0), 3.0,
              2000, "M")]
    print("\n| model | n | exact CPU s | tau-leap CPU s | speed-up | mean exact / tau | SD exact / tau "
          "| Hellinger tau vs exact (floor: exact vs exact) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, net, t_end, n, sp in cases:
        i = net.species.index(sp)
        run = lambda m, s: sbml_met.simulate(net, [0.0, t_end], n=n, seed=s, method=m,  # noqa: E731
                                             progress=False, workers=1).states[:, -1, i]
        run("direct", seed), run("tau-leap", seed)  # warm-up
        exact, t_exact, _ = _timed(lambda: run("direct", seed))
        leap, t_leap, _ = _timed(lambda: run("tau-leap", seed + 1))
        again = run("direct", seed + 2)
        print(f"| {label} | {n} | {t_exact:.3f} | {t_leap:.3f} | {t_exact / t_leap:.1f}x | "
              f"{exact.mean():.1f} / {leap.mean():.1f} | {exact.std():.1f} / {leap.std():.1f} | "
              f"{_hellinger(leap, exact):.4f} ({_hellinger(again, exact):.4f}) |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="n = 10 only")
    ap.add_argument("--tau-only", action="store_true", help="only the tau-leaping table")
    args = ap.parse_args()
    print(f"CPU seconds per tool, one process each ({os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}); (Nx) = that tool's CPU time / sbml_met's; z = largest mean "
          "difference at the last time in combined standard errors")
    print("| model | n | sbml_met | COPASI direct | GillesPy2 C++ | roadrunner | means agree (z) |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, key, t_end, full in [] if args.tau_only else CASES:
            bench_case(label, _sbml_path(key, Path(tmp)), t_end, [10] if args.quick else [10, full], args.seed)
        tau_leap_table(Path(tmp), args.seed)


if __name__ == "__main__":
    main()
