"""Why the held-out check of an on-demand MET includes the box's corners (issue 27).

A birth-death MET trained by ``for_model`` with default options (box x/÷ 2, 8-minute cap) is
scored against the exact Poisson law on a 6 x 5 grid of (k1, k2) that runs to the box's edges,
at 5 times of its window. Two arms, same seed, fresh cache each: the held-out check as it is,
and the same check without its corner prompts (as before commit "corners"). Both stop when
their check passes; the grid shows what each check let through.

    python bench/met_corners.py        # about 5-10 minutes on 2 cores; output in met_corners.txt
"""

from __future__ import annotations

import importlib
import os
import tempfile
import time
import warnings
from unittest import mock

import numpy as np
from scipy.stats import poisson

import sbml_met
from sbml_met.met import for_model
from sbml_met.metrics import hellinger

from met_on_demand import MODELS  # bench/ is on the path of a script run from it

train_module = importlib.import_module("sbml_met.met.train")  # the module, not the function it exports
BIRTH_DEATH = MODELS["birth_death"]  # the model of bench/met_on_demand.py
K1 = (5, 6, 8, 10, 14, 20)
K2 = (0.25, 0.35, 0.5, 0.7, 1.0)


def grid_errors(met) -> np.ndarray:
    """(k1, k2, t, Hellinger) over the grid, against Poisson(k1/k2 (1 - exp(-k2 t)))."""
    T = met.times[1]
    rows = []
    for k1 in K1:
        for k2 in K2:
            for t in (0.05 * T, 0.1 * T, 0.33 * T, 0.66 * T, T):
                m = np.asarray(met.marginal("X", t, k1=k1, k2=k2))
                exact = poisson.pmf(np.arange(len(m) + 200), k1 / k2 * (1 - np.exp(-k2 * t)))
                rows.append((k1, k2, t, hellinger(m, exact)))
    return np.array(rows)


def arm(net, corners: bool) -> None:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        empty = lambda space, t, seed, limit=16: (np.zeros((0, len(space.free))),  # noqa: E731
                                                  np.zeros((0, len(space.species))), np.zeros(0))
        with mock.patch.object(train_module, "_corners", train_module._corners if corners else empty):
            met = for_model(net, minutes=8, cache_dir=tmp, progress=False, seed=0)
    wall = time.perf_counter() - t0
    g = grid_errors(met)
    worst = g[np.argmax(g[:, 3])]
    v = met.validation
    print(f"{'with' if corners else 'without':7s} corners: {wall:5.0f} s, {met.meta['steps']:6d} steps, "
          f"reached {v.get('reached')}; held-out mean {v['hellinger_mean']:.4f}; grid mean {g[:, 3].mean():.4f}, "
          f"grid max {worst[3]:.4f} at k1={worst[0]:g} k2={worst[1]:g} t={worst[2]:.3g}; "
          f"grid points over 0.01: {int((g[:, 3] > 0.01).sum())}/{len(g)}", flush=True)


def main() -> None:
    import torch

    net = sbml_met.load_antimony(BIRTH_DEATH)
    print(f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), load average "
          f"{os.getloadavg()[0]:.1f}; birth-death, default box k1 in [5, 20], k2 in [0.25, 1]; grid {len(K1)} x "
          f"{len(K2)} x 5 times; Hellinger of the X marginal against the exact Poisson law")
    for corners in (False, True):
        arm(net, corners)


if __name__ == "__main__":
    main()
