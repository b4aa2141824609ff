"""Benchmark of finite state projection on the bundled models at the MET paper's times.

Prints, per case: states, wall time, peak Python/numpy memory (tracemalloc) and the probability
lost (truncation error). For the MET training path (autoregulation, 10 output times) it compares
FSPSolver (state space reused, batched Taylor/RK4 steps) with scipy's expm_multiply on the same
generator, measured in the same run, and reports the largest pmf difference between the two.

Targets: toggle switch at t = 1, 3, 10, 40 under 10 s; autoregulation at one parameter point with
10 output times under 0.05 s on the reused state space.

Run: python bench/fsp.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc

import numpy as np
import scipy.sparse.linalg as spla

import sbml_met.models
from sbml_met.errors import SbmlMetError
from sbml_met.fsp import FSPSolver, solve_fsp


def measure(fn, memory: bool = True):
    """(result, wall seconds, CPU seconds, peak MiB): timed without tracemalloc, whose hooks slow
    numpy allocations, then run once more under tracemalloc for the peak (memory=False skips)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = float("nan")
    if memory:
        tracemalloc.start()
        fn()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return out, wall, cpu, peak


def row(name, n, wall, cpu, mem, err):
    print(f"{name:<58} {n:>7} {wall:>8.3f} {cpu:>8.3f} {mem:>9.1f} {err:>9.2e}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the toggle switch")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(wall times on a shared machine; CPU times are this process's own)")
    print(f"{'case':<58} {'states':>7} {'wall_s':>8} {'cpu_s':>8} {'peak_MiB':>9} {'lost':>9}")

    bd = sbml_met.models.load("birth_death")
    d, w, c, m = measure(lambda: solve_fsp(bd, [1, 3, 10, 40]))
    row("birth_death solve_fsp t=1,3,10,40", d.metadata["n_states"], w, c, m, d.truncation_error[-1])

    ar = sbml_met.models.load("autoregulation")
    times = np.linspace(1.0, 10.0, 10)
    d, w, c, m = measure(lambda: solve_fsp(ar, times))
    row("autoregulation solve_fsp t=1..10 (10 times)", d.metadata["n_states"], w, c, m, d.truncation_error[-1])

    corners = [dict(su=su, sb=sb, ru=ru, rb=rb) for su in (0.0, 2.0) for sb in (0.0, 0.1)
               for ru in (0.0, 10.0) for rb in (0.0, 100.0)]
    solver, w, c, m = measure(lambda: FSPSolver(ar, t_max=10.0, cover=corners))
    row("autoregulation FSPSolver build (su<=2,sb<=.1,ru<=10,rb<=100)", solver.n_states, w, c, m, 0.0)
    point = dict(su=0.94, sb=0.01, ru=8.4, rb=28.1)
    solver.solve(point, times)  # warm
    runs = [measure(lambda: solver.solve(point, times), memory=False) for _ in range(7)]
    w_fast, c_fast = float(np.median([r[1] for r in runs])), float(np.median([r[2] for r in runs]))
    d, _, _, m = measure(lambda: solver.solve(point, times))
    row("autoregulation FSPSolver.solve, 1 point, 10 times (median of 7)", solver.n_states, w_fast,
        c_fast, m, d.truncation_error[-1])

    # reference in the same run: expm_multiply on the same generator and state space
    A = solver.generator(point).tocsc()
    v0 = np.zeros(A.shape[0])
    v0[0] = 1.0
    def expm():
        return spla.expm_multiply(A, v0, start=1.0, stop=10.0, num=10, endpoint=True)

    expm()  # warm, as the solver was
    refs = [measure(expm, memory=False) for _ in range(7)]  # the same statistic: median of 7
    ref = refs[-1][0]
    w_ref, c_ref = float(np.median([r[1] for r in refs])), float(np.median([r[2] for r in refs]))
    probs, _ = solver.solve_batch([point], times, as_arrays=True)
    diff = float(np.abs(probs[0] - ref[:, : solver.n_states]).max())
    row("autoregulation expm_multiply reference, same states (median of 7)", solver.n_states, w_ref, c_ref, float("nan"), 0.0)
    print(f"  FSPSolver.solve vs expm_multiply: {c_ref / c_fast:.1f}x less CPU, max |pmf diff| {diff:.1e}")

    rng = np.random.default_rng(0)
    K = 100
    batch = {"su": rng.uniform(0, 2, K), "sb": rng.uniform(0, 0.1, K), "ru": rng.uniform(0, 10, K),
             "rb": rng.uniform(0, 100, K)}
    (probs, err), w, c, m = measure(lambda: solver.solve_batch(batch, times, as_arrays=True))
    row(f"autoregulation FSPSolver.solve_batch, {K} random points", solver.n_states, w, c, m, float(err.max()))
    print(f"  per point: {w / K * 1e3:.1f} ms wall, {c / K * 1e3:.1f} ms CPU")

    for name in ("dimerisation", "telegraph", "schlogl", "repressilator", "cascade15"):
        net = sbml_met.models.load(name)
        try:
            d, w, c, m = measure(lambda: solve_fsp(net, [1, 5, 10], max_states=300_000))
            row(f"{name} solve_fsp t=1,5,10", d.metadata["n_states"], w, c, m, d.truncation_error[-1])
        except SbmlMetError as e:  # expected for the models too large for FSP
            print(f"{name:<58} {type(e).__name__} (max_states=300,000): {str(e).split(';')[1].strip()}")

    if not args.quick:
        ts = sbml_met.models.load("toggle_switch")
        d, w, c, m = measure(lambda: solve_fsp(ts, [1, 3, 10, 40]))
        row("toggle_switch solve_fsp t=1,3,10,40", d.metadata["n_states"], w, c, m, d.truncation_error[-1])


if __name__ == "__main__":
    main()
