"""Speed: sbml_met.simulate against libroadrunner's gillespie integrator (via run_gillespie),
measured in one run on this machine, both sides treated alike.

    python bench/ssa_vs_roadrunner.py [--n 10000] [--seed 1]

For each model both sides start from the same SBML text and load it inside the timing
(sbml_met.load_sbml + simulate; run_gillespie loads its RoadRunner), after one untimed warm-up
call each (numba's kernel compiled or loaded, roadrunner's libraries loaded), and run the same n
trajectories on the same number of processes: one (``workers=1`` / ``processes=1``) and all
cores. Each time is the median of ``--repeats`` calls. Prints the wall times and the ratios
(roadrunner time / sbml_met time) at one process and at all cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import sbml_met
from sbml_met import models
from sbml_met.tellurium import run_gillespie

CASES = [("birth_death", np.linspace(0, 50, 51)), ("toggle_switch", np.linspace(0, 40, 41)),
         ("autoregulation", np.linspace(0, 10, 11))]


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    print(f"n = {args.n} trajectories per model; {cores} cores; median of {args.repeats} calls; both sides load "
          f"the model's SBML inside the timing, both warmed by one untimed call")
    print(f"{'model':<15} {'rr 1p s':>8} {'sm 1p s':>8} {'ratio 1p':>9} {f'rr {cores}p s':>8} {f'sm {cores}p s':>8} "
          f"{f'ratio {cores}p':>9}")
    for name, times in CASES:
        sbml = models.load(name).to_sbml()

        def ours(workers: int, n: int = args.n):
            return sbml_met.simulate(sbml_met.load_sbml(sbml), times, n=n, seed=args.seed, workers=workers,
                                     progress=False)

        def theirs(processes: int, n: int = args.n):
            return run_gillespie(sbml, times, n=n, seed=args.seed, processes=processes, progress=False)

        row = []
        for p in (1, cores):
            ours(p, 10), theirs(p, 10)  # warm-up, untimed
            t_rr, t_sm = median_time(lambda: theirs(p), args.repeats), median_time(lambda: ours(p), args.repeats)
            row += [t_rr, t_sm, t_rr / t_sm]
        print(f"{name:<15} {row[0]:8.2f} {row[1]:8.2f} {row[2]:9.1f} {row[3]:8.2f} {row[4]:8.2f} {row[5]:9.1f}",
              flush=True)
    print("ratio = roadrunner time / sbml_met time, same n, same process count")


if __name__ == "__main__":
    main()
