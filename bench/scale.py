"""One vs two workers on this machine: an FSP sweep, an SSA sweep, a toggle-switch ensemble and
MET teacher data (FSP per parameter point on one vs two Dask worker processes); wall times, speed-ups, the per-task overhead, and what
100 nodes would give on paper (overhead x tasks).

    python bench/scale.py [--points 256] [--n 100000] [--scheduler tcp://HOST:PORT]

With ``--scheduler`` the two-worker column runs on that Dask cluster instead of local processes.
"""

from __future__ import annotations

import argparse
import inspect
import time

import numpy as np
import pandas as pd

import sbml_met


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def overhead_per_task(workers: int, client) -> float:
    """Seconds a chunk costs beyond its work: a sweep of trivial FSP points (one state)."""
    net = sbml_met.load_antimony("R: A => B; k*A\nA = 0; B = 0; k = 1")
    points = pd.DataFrame({"k": np.linspace(1, 2, 64)})
    sbml_met.sweep(net, points.iloc[:4], [1], workers=workers, client=client)  # warm the pool
    seconds, _ = timed(sbml_met.sweep, net, points, [1], workers=workers, client=client)
    return seconds / 64


def rows(args, client) -> list[tuple[str, float, float, int]]:
    out = []
    autoreg = sbml_met.models.load("autoregulation")
    k = args.points
    points = pd.DataFrame({"su": np.linspace(0.3, 2.0, k), "rb": np.geomspace(5, 60, k)})
    two = dict(workers=2, client=client)
    sbml_met.sweep(autoreg, points.iloc[:4], [1], **two)  # start the pool outside the timing
    t1, a = timed(sbml_met.sweep, autoreg, points, [1, 5, 10], method="fsp", workers=1)
    t2, b = timed(sbml_met.sweep, autoreg, points, [1, 5, 10], method="fsp", **two)
    assert a.equals(b), "the FSP sweep differs between one and two workers"
    out.append((f"FSP sweep, {k} autoregulation points", t1, t2, len(points)))
    toggle = sbml_met.models.load("toggle_switch")
    tp = pd.DataFrame({"sx": np.linspace(20, 60, 32)})
    for where in (dict(workers=1), two):  # load the compiled SSA kernel (0.5 s per process, once) untimed
        sbml_met.sweep(toggle, tp.iloc[:8], [1], method="ssa", n=4, seed=0, table="moments", **where)
    t1, a = timed(sbml_met.sweep, toggle, tp, [10], method="ssa", n=2000, seed=1, workers=1, table="moments")
    t2, b = timed(sbml_met.sweep, toggle, tp, [10], method="ssa", n=2000, seed=1, table="moments", **two)
    assert a.equals(b), "the SSA sweep differs between one and two workers"
    out.append(("SSA sweep, 32 toggle points x 2,000", t1, t2, len(tp)))
    if "workers" in inspect.signature(sbml_met.simulate).parameters:
        grid = np.linspace(0, 40, 41)
        t1, a = timed(sbml_met.simulate, toggle, grid, n=args.n, seed=1, workers=1)
        t2, b = timed(sbml_met.simulate, toggle, grid, n=args.n, seed=1, **two)
        assert np.array_equal(a.states, b.states), "the ensemble differs between one and two workers"
        out.append((f"toggle ensemble, {args.n:,} trajectories", t1, t2, 0))
    out.append(teacher_row(args.teacher_points))
    return out


def teacher_row(points: int) -> tuple[str, float, float, int]:
    """Seconds of FSP teacher data (pointwise solve_fsp, toggle switch) on a Dask LocalCluster of
    one and of two worker processes; the data, hence the weights, are identical."""
    from distributed import Client, LocalCluster

    from sbml_met.met import train

    toggle = sbml_met.models.load("toggle_switch")
    kw = dict(teacher="fsp", steps=1, n_validation=1, minutes=30, progress=False,
              teacher_options={"method": "pointwise", "n_prompts": points, "times_per_prompt": 4})
    seconds, weights = [], []
    for n_workers in (1, 2):
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            met = train(toggle, {"sx": (25.0, 75.0)}, (0.0, 20.0), client=client, **kw)
        seconds.append(met.meta["teacher_seconds"])
        weights.append(met.net.state_dict())
    assert all((a == b).all() for a, b in zip(weights[0].values(), weights[1].values())), "teacher data differ"
    return (f"MET teacher data, FSP at {points} toggle points", seconds[0], seconds[1], points)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=256)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--teacher-points", type=int, default=48)
    p.add_argument("--scheduler", default=None, help="Dask scheduler address for the 2-worker column")
    args = p.parse_args()
    client = None
    if args.scheduler:
        from distributed import Client

        client = Client(args.scheduler)
    print(f"{'work':44s} {'1 worker s':>11s} {'2 workers s':>12s} {'speed-up':>9s}")
    for name, t1, t2, _ in rows(args, client):
        print(f"{name:44s} {t1:11.2f} {t2:12.2f} {t1 / t2:9.2f}")
    per_task = overhead_per_task(2, client)
    print(f"\nper-task overhead (64 trivial FSP points, 2 workers): {per_task * 1e3:.1f} ms")
    tasks = 10_000
    print(f"on paper, 100 nodes x 2 cores: a {tasks:,}-point sweep whose points take 1 s each runs in "
          f"~{tasks / 200 + tasks * per_task / 200:.0f} s (work {tasks / 200:.0f} s + overhead "
          f"{tasks * per_task / 200:.1f} s), against {tasks:,} s on one core")


if __name__ == "__main__":
    main()
