"""Time to 10,000 samples of one prompt: MET vs libroadrunner gillespie vs solve_fsp.

    python bench/met_speed.py [toggle_switch] [autoregulation] [--n 10000] [--time T]

MET: ``MET.sample`` (exact ancestral sampling batched over distinct prefixes; one torch thread).
Roadrunner: ``sbml_met.tellurium.run_gillespie`` with one process (the same single core). FSP:
``solve_fsp`` at the prompt. All at the model's own (paper's) rates, measured in this run, each
side warmed by one untimed call and timed as the median of ``--repeats`` calls.
Target (issue 6): MET >= 200x faster than roadrunner on the toggle switch.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import torch

from sbml_met import models
from sbml_met.met import pretrained

DEFAULT_TIME = {"toggle_switch": 40.0, "autoregulation": 10.0}


def clock(fn, repeat: int):
    """Median wall time of ``repeat`` calls after one untimed warm-up call, and the last result."""
    fn()
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def roadrunner(net, t: float, n: int):
    try:
        from sbml_met.tellurium import run_gillespie
    except ImportError:  # plain roadrunner loop
        import roadrunner as rr_mod

        def run():
            r = rr_mod.RoadRunner(net.to_sbml())
            r.setIntegrator("gillespie")
            out = np.empty((n, len(net.species)))
            for i in range(n):
                r.reset()
                r.getIntegrator().setValue("seed", i + 1)
                res = r.simulate(0, t, 2)
                out[i] = [res[-1, r.timeCourseSelections.index(f"[{s}]")] if f"[{s}]" in r.timeCourseSelections
                          else res[-1, r.timeCourseSelections.index(s)] for s in net.species]
            return out
        return run, "plain roadrunner loop"
    return (lambda: run_gillespie(net, [0.0, t], n=n, seed=1, processes=1, progress=False)), \
        "sbml_met.tellurium.run_gillespie, 1 process"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=["toggle_switch", "autoregulation"])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--time", type=float, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)
    from sbml_met.fsp import solve_fsp

    for name in args.names:
        t = args.time if args.time is not None else DEFAULT_TIME[name]
        met = pretrained(name)
        net = models.load(name)
        t_met, x = clock(lambda: met.sample(args.n, t, seed=1), args.repeats)
        run, how = roadrunner(net, t, args.n)
        t_rr, _ = clock(run, args.repeats)
        t_fsp, _ = clock(lambda: solve_fsp(net, [t]), args.repeats)
        print(f"{name} at its own rates, t={t:g}, n={args.n}:")
        print(f"  MET sample        {t_met:9.4f} s")
        print(f"  roadrunner        {t_rr:9.4f} s  ({how})  -> MET is {t_rr / t_met:8.1f}x faster")
        print(f"  solve_fsp         {t_fsp:9.4f} s                                   -> MET is {t_fsp / t_met:8.1f}x faster",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
