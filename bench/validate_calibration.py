"""Measured false-alarm rate and power of ``sbml_met.validate`` (issue 16).

For five models, sample sizes n = 500, 2,000 and 10,000 and several independent repetitions, one
libroadrunner ensemble B (n trajectories) is the reference of these reports:

* rr-rr: a second, independent libroadrunner ensemble A of the same SBML (both sides sampled);
* ssa-rr: sbml-met's SSA ensemble (n trajectories);
* fsp-rr: the exact FSP distribution (where the state space fits);
* ssa+5% / +10% / +20%: SSA of the model with one rate constant off by that much (power).

Each report's familywise p-value (``ValidationReport.p_value``) is computed once; the report is
flagged at level a exactly when p_value <= a, so one run gives the false-alarm rate at
alpha = 0.001 (the default), 0.05 and 0.2. The table prints flagged/reports per row, and for
the pooled null rows the Clopper-Pearson 95% upper bound on the rate.

    python bench/validate_calibration.py            # full run (~40 minutes on 2 cores: 576 reports)
    python bench/validate_calibration.py --quick    # ~2 minutes, code check only
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import sbml_met
from sbml_met.network import ReactionNetwork
from sbml_met.tellurium import run_gillespie

ROOT = Path(__file__).resolve().parents[1]
ALPHAS = (1e-3, 0.05, 0.2)
SIZES = (500, 2000, 10_000)
SHIFTS = (0.05, 0.10, 0.20)
BIRTH_DEATH_1E4 = """model birth_death_1e4
  birth: -> X; kb
  death: X -> ; kd * X
  kb = 100; kd = 0.01; X = 10000
end"""


@dataclass(frozen=True)
class Case:
    """One model of the bench: its times, repetitions per n, the rate perturbed for power."""

    name: str
    times: tuple[float, ...]
    reps: tuple[int, int, int]  # repetitions at n = 500, 2,000, 10,000
    rate: str | None  # parameter scaled by 1 + shift for the power rows (None: no power rows)
    fsp: bool


CASES = (
    Case("BIOMD0000000012", (5.0, 10.0, 20.0), (10, 20, 2), "eff", False),  # repressilator
    Case("BIOMD0000000035", (1.0, 2.0, 4.0), (6, 3, 1), None, False),  # Vilar oscillator
    Case("toggle_switch", (5.0, 40.0), (10, 20, 2), "sx", True),
    Case("birth_death_1e4", (5.0, 20.0, 50.0), (10, 5, 2), "kd", True),
    Case("telegraph", (1.0, 5.0), (10, 5, 2), "kon", True),  # G is a 0/1 gene
)


def load(name: str) -> ReactionNetwork:
    """The network of a bench case."""
    if name.startswith("BIOMD"):
        for folder in (ROOT / "tests" / "data" / "biomodels", ROOT.parent / "shared" / "biomodels"):
            if (folder / f"{name}.xml").is_file():
                return sbml_met.load_sbml(folder / f"{name}.xml")
        raise FileNotFoundError(f"{name}.xml is in neither tests/data/biomodels nor ../shared/biomodels")
    if name == "birth_death_1e4":
        return sbml_met.load_antimony(BIRTH_DEATH_1E4)
    return sbml_met.models.load(name)


def seed_of(*key: int) -> int:
    """An independent 31-bit seed for every (run seed, case, n, repetition, stream)."""
    return int(np.random.SeedSequence(list(key)).generate_state(1)[0] >> 1)


def one_repetition(ci: int, case: Case, n: int, r: int, seed: int, processes: int, exact) -> list[dict]:
    """Every report of one repetition of one case at one n: rows of (model, n, comparison, p_value)."""
    net, times = load(case.name), list(case.times)
    key = (seed, ci, n, r)
    ref = run_gillespie(net, times, n=n, seed=seed_of(*key, 0), processes=processes, progress=False)
    results = {"rr-rr": run_gillespie(net, times, n=n, seed=seed_of(*key, 1), processes=processes, progress=False),
               "ssa-rr": sbml_met.simulate(net, times, n=n, seed=seed_of(*key, 2))}
    if exact is not None:
        results["fsp-rr"] = exact
    for shift in SHIFTS if case.rate else ():
        wrong = net.with_parameters(**{case.rate: net.parameters[case.rate] * (1 + shift)})
        results[f"ssa+{shift:.0%}"] = sbml_met.simulate(wrong, times, n=n, seed=seed_of(*key, 3))
    return [dict(model=case.name, n=n, comparison=c, p_value=sbml_met.validate(net, res, reference=ref).p_value)
            for c, res in results.items()]


def run_all(reps_of, seed: int, processes: int, deadline: float) -> tuple[list[dict], bool]:
    """Round r runs repetition r of every (case, n) that has one, so a time budget that ends the
    run early leaves every case with its first repetitions (seeds as in a full run)."""
    exact = {ci: sbml_met.solve_fsp(load(c.name), list(c.times)) if c.fsp else None for ci, c in enumerate(CASES)}
    rows, r = [], 0
    while any(r < k for c in CASES for k in reps_of(c)):
        for ci, case in enumerate(CASES):
            for n, k in zip(SIZES, reps_of(case)):
                if r >= k:
                    continue
                if time.monotonic() > deadline:
                    return rows, False
                rows += one_repetition(ci, case, n, r, seed, processes, exact[ci])
        print(f"# round {r + 1} done ({len(rows)} reports)", file=sys.stderr, flush=True)
        r += 1
    return rows, True


def upper_95(k: int, n: int) -> float:
    """Clopper-Pearson one-sided 95% upper bound on a rate seen k times in n."""
    from scipy.stats import beta

    return 1.0 if k >= n else float(beta.ppf(0.95, k + 1, n - k))


def table(rows: list[dict]) -> pd.DataFrame:
    """flagged/reports at each alpha per (model, n, comparison), and pooled null rows."""
    df = pd.DataFrame(rows)
    groups = [((m, f"{n:,}", c), g) for (m, n, c), g in df.groupby(["model", "n", "comparison"], sort=False)]
    null = df[~df["comparison"].str.startswith("ssa+")]
    groups += [(("ALL (correct results)", "all", c), g) for c, g in null.groupby("comparison", sort=False)]
    groups += [(("ALL (correct results)", "all", "any"), null)]
    out = []
    for (model, n, comparison), g in groups:
        row = dict(model=model, n=n, comparison=comparison, reports=len(g))
        for a in ALPHAS:
            k = int((g["p_value"] <= a).sum())
            row[f"flagged@{a:g}"] = f"{k}/{len(g)}" + (f" (<={upper_95(k, len(g)):.3f})"
                                                        if model.startswith("ALL") else "")
        out.append(row)
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1-2 repetitions at n = 500, 2,000 only")
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--processes", type=int, default=2, help="roadrunner worker processes")
    p.add_argument("--out", type=Path, default=None, help="also write every report's p-value as CSV")
    p.add_argument("--sizes", default="500,2000,10000", help="the n of the run, a subset of 500,2000,10000")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="start no repetition after this; the table holds the rounds that ran (said below it)")
    a = p.parse_args(argv)
    sizes = {int(x) for x in a.sizes.split(",")}

    def reps_of(case: Case) -> tuple[int, ...]:
        reps = (2, 1, 0) if a.quick else case.reps
        return tuple(k if n in sizes else 0 for n, k in zip(SIZES, reps))

    t0 = time.perf_counter()
    deadline = time.monotonic() + (a.budget_minutes * 60 if a.budget_minutes else float("inf"))
    rows, complete = run_all(reps_of, a.seed, a.processes, deadline)
    if a.out:
        pd.DataFrame(rows).to_csv(a.out, index=False)
    rates = {c.name: c.rate for c in CASES}
    print("False alarms (rr-rr, ssa-rr, fsp-rr: correct results) and power (ssa+x%: rate "
          + ", ".join(f"{k}: {v}" for k, v in rates.items() if v) + " times 1 + x) of sbml_met.validate;")
    print("a report is flagged at alpha when its familywise p-value <= alpha; ALL rows: (<= 95% upper bound)")
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(table(rows).to_string(index=False))
    print(f"{len(rows)} reports in {time.perf_counter() - t0:.0f} s; sizes {sorted(sizes)}; "
          + ("every repetition ran" if complete else f"stopped by --budget-minutes {a.budget_minutes:g} "
             "(every case keeps its first repetitions; see the reports column)"))


if __name__ == "__main__":
    main()
