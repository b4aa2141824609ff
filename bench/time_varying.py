"""Rates that vary in time: the exact engine (sbml_met.pdmp) and event-aware tau-leaping, timed.

1. A circadian birth-death model (production k (1 + sin(w t)), time in the law): the exact
   piecewise-deterministic SSA against libroadrunner's gillespie (which holds propensities fixed
   between firings, an approximation), both in one process, warmed, same n, same times; each
   one's mean at the report times against the exact Poisson mean lambda(t).
2. The same with a rate rule (a' = -r a) and a delayed event at 2 x 10^4 molecules: tau-leaping
   against the exact engine, CPU seconds per trajectory, means against lambda(t).

Run: python bench/time_varying.py  (writes nothing; bench/time_varying.txt holds a printed run).
"""

from __future__ import annotations

import time

import numpy as np
from scipy import integrate

import sbml_met
from sbml_met.tellurium import run_gillespie

CIRCADIAN = """
model circadian
  species X = 0
  J0: -> X; k*(1 + sin(w*time))
  J1: X -> ; g*X
  k = 10; w = 1; g = 1
end
"""
LARGE = """
model large
  species X = 0
  J0: -> X; a
  J1: X -> ; g*X
  a' = -r*a
  E1: at 0.5 after (time > 1): g = 2
  a = 20000; r = 0.3; g = 1
end
"""


def exact_lambda(rate, times) -> np.ndarray:
    sol = integrate.solve_ivp(lambda t, y: [rate(t) - y[0]], [0, max(times)], [0.0], t_eval=times,
                              rtol=1e-11, atol=1e-12, max_step=0.001)
    return sol.y[0]


def timed(fn):
    t0 = time.process_time()
    value = fn()
    return value, time.process_time() - t0


def circadian(n: int = 10_000) -> None:
    net = sbml_met.load_antimony(CIRCADIAN)
    grid = np.linspace(0, 10, 11)
    lam = exact_lambda(lambda t: 10 * (1 + np.sin(t)), grid)
    sbml_met.simulate(net, grid, n=50, seed=0, workers=1)  # warm both
    run_gillespie(net, grid, n=50, seed=0, processes=1)
    ssa, t_ssa = timed(lambda: sbml_met.simulate(net, grid, n=n, seed=1, workers=1))
    rr, t_rr = timed(lambda: run_gillespie(net, grid, n=n, seed=1, processes=1))
    print(f"circadian birth-death, n={n:,}, 11 times to t=10, one process (CPU s):")
    print(f"  exact SSA (pdmp)        {t_ssa:7.2f} s")
    print(f"  libroadrunner gillespie {t_rr:7.2f} s   (ratio pdmp / libroadrunner: {t_ssa / t_rr:.2f})")
    se = np.sqrt(lam[1:] / n)
    for name, res in (("pdmp", ssa), ("libroadrunner", rr)):
        z = (res.states[:, 1:, 0].mean(axis=0) - lam[1:]) / se
        print(f"  {name:<14s} mean - lambda in standard errors: max |z| = {np.abs(z).max():.2f}")


def large(n_exact: int = 10, n_leap: int = 200) -> None:
    net = sbml_met.load_antimony(LARGE)
    grid = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    g = lambda t: 1.0 if t < 1.5 else 2.0  # noqa: E731
    rhs = lambda t, y: [2e4 * np.exp(-0.3 * t) - g(t) * y[0]]  # noqa: E731
    lam = integrate.solve_ivp(rhs, [0, 2], [0.0], t_eval=grid, rtol=1e-11, atol=1e-9, max_step=0.001).y[0]
    exact, t_exact = timed(lambda: sbml_met.simulate(net, grid, n=n_exact, seed=1, workers=1))
    leap, t_leap = timed(lambda: sbml_met.simulate(net, grid, n=n_leap, seed=1, workers=1, method="tau-leap"))
    per_exact, per_leap = t_exact / n_exact, t_leap / n_leap
    print(f"rate rule + delayed event, up to {lam.max():,.0f} molecules, t to 2 (CPU s per trajectory):")
    print(f"  exact SSA (pdmp), n={n_exact}     {per_exact:8.3f} s")
    print(f"  tau-leaping, n={n_leap}, eps=0.03 {per_leap:8.4f} s   (ratio exact / tau-leap: {per_exact / per_leap:.0f}x)")
    for name, res in (("exact", exact), ("tau-leap", leap)):
        rel = res.states[:, 1:, 0].mean(axis=0) / lam[1:] - 1
        print(f"  {name:<9s} mean / lambda - 1 at t = 0.5..2: {np.array2string(rel, precision=4)}")


if __name__ == "__main__":
    print("(2-core machine shared with other jobs: timings are noisy)")
    circadian()
    large()
