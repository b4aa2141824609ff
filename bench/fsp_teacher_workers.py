"""The pointwise FSP teacher's exact solves on one process, two threads and two processes.

The teacher of a MET whose state space is too large to integrate all prompts side by side runs
`solve_fsp` per parameter point. Its Krylov steps are many small sparse products driven from
Python, which hold the interpreter lock, so threads do not run them side by side; processes do.
The work is the teacher's own: 256 Sobol points of the default box (each rate parameter x/÷ 2)
of a dimerisation written the Tellurium way (bench/met_unseen.py), 16 output times each up to
the default horizon, tol 1e-6. The process pool is started (and warmed on 16 points) before it
is timed, as the teacher reuses it across calls; PyTorch is loaded first, as it is when a MET
trains, so the pool's children come from a fork server (each chunk unpickles the network).

    python bench/fsp_teacher_workers.py      # the output is copied to fsp_teacher_workers.txt
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np


def main() -> None:
    import torch  # noqa: F401  (as in training: the pool then uses a fork server)

    import sbml_met
    from met_unseen import MODELS
    from sbml_met.fsp import solve_points
    from sbml_met.met.auto import default_box, default_times
    from sbml_met.met.prompts import PromptSpace
    from sbml_met.met.teachers import _pointwise_chunk
    from sbml_met.parallel import map_until

    net = sbml_met.load_antimony(MODELS["dimerisation"])
    box, times = default_box(net), default_times(net)
    theta, _, _ = PromptSpace.build(net, box, times).sobol(256, 1, "uniform")
    points = [dict(zip(box, map(float, th))) for th in theta]
    grid = [list(np.linspace(times[0], times[1], 17)[1:])] * len(points)
    inits = [{}] * len(points)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.1f}")
    print(f"dimerisation, {len(points)} points of the default box, 16 times each in (0, {times[1]:g}]\n")

    def chunks(pts):
        return [(net, pts[a : a + 8], grid[a : a + 8], inits[a : a + 8], 1e-6, 200_000, (1000, 1000), "marginals")
                for a in range(0, len(pts), 8)]

    map_until(_pointwise_chunk, chunks(points[:16]), 2)  # start and warm the pool
    runs = {"one process": lambda: list(solve_points(net, points, grid, inits, workers=1)),
            "two threads": lambda: list(solve_points(net, points, grid, inits, workers=2)),
            "two processes": lambda: map_until(_pointwise_chunk, chunks(points), 2)}
    took = {}
    for name, fn in runs.items():
        t0 = time.perf_counter()
        fn()
        took[name] = time.perf_counter() - t0
    print(f"{'how':16s} {'s':>7s} {'vs one process':>15s}")
    for name, s in took.items():
        print(f"{name:16s} {s:7.1f} {took['one process'] / s:14.2f}x")
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
