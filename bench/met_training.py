"""What the RL route costs: MET accuracy against exact FSP vs wall-clock training minutes on the
autoregulation box (issue 7), for the teachers

* ``fsp``        distillation from exact CME distributions (issue 6),
* ``fsp-reward`` policy gradient (REINFORCE) with the exact FSP log-probabilities as reward,
* ``rlmf``       policy gradient with VAN reward models (``solve_van``, one per Sobol prompt).

    python bench/met_training.py [--minutes 60] [--teachers fsp,fsp-reward,rlmf] [--n 16]
                                 [--out bench/met_training.png] [--seed 0]

Each teacher trains for ``--minutes`` (teacher preparation included); the trainer's own
validation (exact FSP marginals of 16 fixed prompts, never trained on) gives the Hellinger curve
over wall-clock time, and at the end every MET is scored on ``--n`` held-out Sobol prompts (a seed
used nowhere else) against ``solve_fsp``: marginal Hellinger of both species. Prints a table,
saves the curves as a plot. Target: rlmf mean Hellinger <= 0.02 within 60 CPU-minutes
(distillation reaches ~0.002 in 15).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from sbml_met import models
from sbml_met.fsp import solve_fsp
from sbml_met.met import train
from sbml_met.metrics import hellinger

BOX = {"su": (1e-8, 2.0), "sb": (1e-8, 0.1), "ru": (1e-8, 10.0), "rb": (1e-8, 100.0)}
TIMES = (0.0, 10.0)


def held_out(met, n: int, seed: int = 777001) -> list[tuple[dict, float]]:
    theta, _, t = met.space.sobol(n, seed=seed, mode="mixed")
    return [({p: float(v) for p, v in zip(met.space.free, row)}, float(tt)) for row, tt in zip(theta, t)]


def score(met, net, points) -> np.ndarray:
    out = []
    for params, t in points:
        ref = solve_fsp(net.with_parameters(params), [t])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = met.solve([t], **params)
        out.append([hellinger(d.marginal(s, t).to_numpy(), ref.marginal(s, t).to_numpy()) for s in net.species])
    return np.asarray(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--teachers", default="fsp,fsp-reward,rlmf")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rlmf-prompts", type=int, default=64)
    ap.add_argument("--out", default="bench/met_training.png")
    a = ap.parse_args(argv)
    net = models.load("autoregulation")
    rows, curves = [], {}
    for teacher in a.teachers.split(","):
        opts = {"n_prompts": a.rlmf_prompts} if teacher == "rlmf" else {}
        t0 = time.monotonic()
        met = train(net, BOX, TIMES, teacher=teacher, minutes=a.minutes, seed=a.seed, progress=False,
                    validate_every=max(10.0, a.minutes * 60 / 12), teacher_options=opts)
        wall = time.monotonic() - t0
        curves[teacher] = [(e["seconds"] / 60, e["val_hellinger"]) for e in met.log if "val_hellinger" in e]
        h = score(met, net, held_out(met, a.n))
        ev = [e for e in met.log if e.get("event") == "teacher"]
        rows.append((teacher, wall / 60, met.meta.get("teacher_seconds", float("nan")) / 60, met.meta.get("steps"),
                     met.validation.get("hellinger_mean"), float(h.mean()), float(np.median(h)), float(h.max()),
                     ev[0] if ev else {}))
        print(f"[{teacher}] done in {wall / 60:.2f} min: held-out mean {h.mean():.4f} worst {h.max():.4f}", flush=True)
    print()
    print(f"autoregulation box {BOX}, t in {TIMES}; budget {a.minutes:g} min per teacher; "
          f"held-out: {a.n} prompts x 2 species vs solve_fsp")
    print(f"{'teacher':<11} {'wall min':>8} {'teacher min':>11} {'steps':>7} {'val mean':>9} "
          f"{'held mean':>9} {'median':>8} {'worst':>8}")
    for r in rows:
        print(f"{r[0]:<11} {r[1]:8.2f} {r[2]:11.2f} {r[3]!s:>7} {r[4]:9.4f} {r[5]:9.4f} {r[6]:8.4f} {r[7]:8.4f}")
    for r in rows:
        info = {k: v for k, v in r[8].items() if k in ("prompts", "reward_models", "seconds_per_model", "states")}
        print(f"  {r[0]}: teacher {info}")
    print("curves (minutes, validation Hellinger):")
    for k, c in curves.items():
        print(f"  {k}: " + ", ".join(f"({m:.1f}, {h:.4f})" for m, h in c))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for k, c in curves.items():
            c = np.asarray(c)
            ax.plot(c[:, 0], c[:, 1], marker="o", label=k)
        ax.axhline(0.02, color="grey", ls=":", lw=1, label="rlmf target 0.02")
        ax.set_yscale("log")
        ax.set_xlabel("wall-clock minutes (2-core CPU)")
        ax.set_ylabel("mean marginal Hellinger to FSP")
        ax.set_title("MET on autoregulation: distillation vs RL")
        ax.legend()
        fig.tight_layout()
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(a.out).with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=120)
        tmp.replace(a.out)
        print(f"plot: {a.out}")
    except Exception as e:  # pragma: no cover - plotting is a convenience
        print(f"plot not written: {e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
