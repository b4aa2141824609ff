"""BIOMD0000000120 (Chan 2004, T-cell receptor activation) as the sweep runs it (volume auto):
the exact SSA mean of 200 trajectories beside libroadrunner's deterministic solution of the same
converted network, around the time-triggered switch, to show where and why the sweep's ODE check
differs (stochastic trajectories switch lck_active on at scattered times around the ODE's switch).

    python bench/biomodels_120_switch.py > bench/biomodels_120_switch.txt
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import sbml_met
from sbml_met.models import load_model
from sbml_met.window import deterministic_at

PATH = Path(__file__).resolve().parents[2] / "shared" / "biomodels" / "BIOMD0000000120.xml"


def main() -> None:
    net = load_model(str(PATH), volume="auto")
    times = np.array([0, 5, 10, 12, 15, 18, 22, 24, 30, 44, 55.0])
    mean = sbml_met.simulate(net, times, n=200, seed=1).states.mean(axis=0)
    ode = deterministic_at(net, times)
    print(f"{net.name}: {net.notes[-1][:120]}")
    print("SSA mean of 200 trajectories (seed 1) | libroadrunner deterministic solution, molecules")
    print(f"{'t':>5s} " + " ".join(f"{s:>22s}" for s in net.species))
    for k, t in enumerate(times):
        cells = " ".join(f"{m:10.1f} | {o:9.1f}" for m, o in zip(mean[k], ode[k]))
        print(f"{t:5g} {cells}")
    rel = np.abs(mean - ode) / np.maximum(ode, 1e-300)
    for label, rows in (("before the switch (t <= 18)", times <= 18), ("around it (t = 22, 24, 30)", (times > 18) & (times <= 30)),
                        ("late (t >= 44)", times >= 44)):
        big = ode[rows] >= 100
        print(f"largest relative difference {label}, deterministic count >= 100: {rel[rows][big].max():.1%}")

if __name__ == "__main__":
    main()
