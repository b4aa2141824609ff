"""`sbml-met run MODEL --volume auto --met off` with otherwise default options on models this
project did not write for its code (issue 28's done-when): wall time, exit code, every verdict,
the SSA method the run chose, and whether its window shows the dynamics (the deterministic
solution at the window's end within 5% of its settling value, or two peaks inside the window).

    python bench/run_defaults.py [--models DIR_OR_FILES...] > bench/run_defaults.txt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from scipy.signal import find_peaks

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "biomodels"

# written as users write them (Antimony the Tellurium way), not for this project's code
USER_MODELS = {
    "gene_expression_tellurium.ant": """
        # two-stage gene expression, as in Tellurium's examples
        J1: -> M; km
        J2: M -> ; gm*M
        J3: M -> M + P; kp*M
        J4: P -> ; gp*P
        km = 2; gm = 0.5; kp = 5; gp = 0.2
        M = 0; P = 0
        """,
    "hill_mm_concentration.ant": """
        model hill_mm
          compartment cell = 1
          species X in cell, Y in cell
          J1: -> X; vmax*K^n/(K^n + Y^n)
          J2: X -> ; Vd*X/(Km + X)
          J3: -> Y; ky*X
          J4: Y -> ; gy*Y
          vmax = 2; K = 1; n = 2; Vd = 1; Km = 0.5; ky = 0.5; gy = 0.3
          X = 0; Y = 0
        end
        """,
    "phospho_cycle_mole.ant": """
        model phospho_cycle
          # a kinase/phosphatase cycle in mol/L in a 166 um^3 cell: ~10^5 molecules of S
          unit substance = mole
          unit volume = litre
          compartment cell = 1.66e-13
          species S in cell, Sp in cell
          J1: S -> Sp; cell*k1*S/(K1 + S)
          J2: Sp -> S; cell*k2*Sp/(K2 + Sp)
          S = 1e-6; Sp = 0
          k1 = 2e-7; K1 = 5e-7; k2 = 1e-7; K2 = 3e-7
        end
        """,
}
CURATED = ["BIOMD0000000021", "BIOMD0000000035"]  # circadian (nM, oscillates), Vilar 2002 oscillator


def window_shows_dynamics(model: Path, grid_end: float) -> str:
    """'settled' / 'N peaks' / 'NOT shown': the deterministic solution over [0, 4 x end]."""
    from sbml_met.models import load_model
    from sbml_met.window import deterministic_solution

    net = load_model(str(model), volume="auto")
    t, x = deterministic_solution(net, 4 * grid_end, points=8001)
    inside = t <= grid_end * (1 + 1e-9)
    end, settled = x[inside][-1], x[-1]
    if np.all(np.abs(end - settled) <= 0.05 * np.maximum(np.abs(settled), 1e-9)) and \
            np.all(np.ptp(x[t >= 2 * grid_end], axis=0) <= 0.05 * np.maximum(np.abs(settled), 1e-9)):
        return "settled (end within 5%)"
    peaks = max(len(find_peaks(x[inside, i], prominence=0.1 * max(np.ptp(x[:, i]), 1e-300))[0])
                for i in range(x.shape[1]))
    return f"{peaks} peaks" if peaks >= 2 else "NOT shown"


def run_one(model: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "sbml_met", "run", str(model), "--volume", "auto", "--met", "off", "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=3600)
    wall = time.perf_counter() - t0
    row = {"model": model.stem, "exit": proc.returncode, "wall_s": wall, "stderr": proc.stderr.strip()}
    manifest = out / "run.json"
    if manifest.exists():
        m = json.loads(manifest.read_text(encoding="utf-8"))
        row.update(ok=m["ok"], verdicts=m["verdicts"], method=m["method"], n=m["n"], n_reference=m["n_reference"],
                   window=m["window"], grid_end=m["grid"][-1], notes=m["notes"])
        row["window_check"] = window_shows_dynamics(model, m["grid"][-1])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="*", default=None, help="model file stems to run")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="run_defaults_"))
    models = []
    for name, text in USER_MODELS.items():
        (work / name).write_text(textwrap.dedent(text).strip() + "\n", encoding="utf-8")
        models.append(work / name)
    models += [SHARED / f"{m}.xml" for m in CURATED if (SHARED / f"{m}.xml").exists()]
    if args.only:
        models = [m for m in models if m.stem in args.only]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; load average at start "
          f"{os.getloadavg()[0]:.1f}; sbml-met run MODEL --volume auto --met off (other options default)")
    print(f"{'model':30s} {'exit':>4s} {'wall s':>7s}  {'method':10s} {'n':>6s} {'n_ref':>6s}  window check / verdicts")
    for model in models:
        r = run_one(model, work / f"out_{model.stem}")
        if "verdicts" not in r:
            print(f"{r['model']:30s} {r['exit']:4d} {r['wall_s']:7.0f}  no run.json: {r['stderr'][-300:]}")
            continue
        verdicts = ", ".join(f"{k} {v}" for k, v in r["verdicts"].items())
        print(f"{r['model']:30s} {r['exit']:4d} {r['wall_s']:7.0f}  {r['method']:10s} {r['n']:6d} {r['n_reference']:6d}  "
              f"{r['window_check']}; {verdicts}")
        print(f"{'':30s} window: {r['window']}")
        for note in r["notes"]:
            if any(w in note for w in ("tau", "fewer", "expected", "trajectories instead")):
                print(f"{'':30s} note: {note[:300]}")
        sys.stdout.flush()
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
