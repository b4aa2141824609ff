"""The toggle-switch MET recipe (bench/train_pretrained.py) trained on the GPU and on the CPU with
the same seed and budget: training steps per second and held-out accuracy of each.

    python bench/met_gpu.py [--minutes 15] [--steps N] [--threads 2] [--batch-size 256]

Steps per second count the optimisation loop only (the FSP teacher's data, computed on the CPU
either way, is left out). Held-out accuracy: the marginal Hellinger distance against exact FSP
at the recipe's validation prompts (never trained on), as recorded by ``train``. Needs a CUDA GPU
(exits with status 2 without one).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def run(device: str, args) -> dict:
    from train_pretrained import SPECS

    from sbml_met import models
    from sbml_met.met import train

    spec = SPECS["toggle_switch"]
    t0 = time.perf_counter()
    met = train(models.load("toggle_switch"), spec["box"], spec["times"], teacher=spec["teacher"],
                minutes=args.minutes, seed=args.seed, teacher_options=spec["teacher_options"],
                threads=args.threads, n_validation=spec.get("n_validation", 16), steps=args.steps,
                batch_size=args.batch_size, progress=sys.stderr.isatty(), device=device)
    loop = met.meta["wall_seconds"] - met.meta["teacher_seconds"]
    v = met.validation
    return {"device": met.meta["device"], "steps": met.meta["steps"], "loop_s": loop,
            "steps_per_s": met.meta["steps"] / max(loop, 1e-9), "mean": v["hellinger_mean"],
            "max": v["hellinger_max"], "wall": time.perf_counter() - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--steps", type=int, default=None, help="a fixed number of steps (default: the budget)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for the CPU run")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU here: bench/met_gpu.py measures nothing on this machine", file=sys.stderr)
        return 2
    print(f"GPU: {torch.cuda.get_device_name(0)}; toggle-switch recipe, {args.minutes:g} min budget, "
          f"seed {args.seed}, batch {args.batch_size}", flush=True)
    rows = [run("cuda", args), run("cpu", args)]
    for r in rows:
        print(f"{r['device']:<6} {r['steps']:>7} steps in {r['loop_s']:7.1f} s: {r['steps_per_s']:8.1f} steps/s; "
              f"held-out Hellinger mean {r['mean']:.4f} max {r['max']:.4f} (exact FSP); wall {r['wall']:.0f} s",
              flush=True)
    print(f"GPU / CPU steps per second: {rows[0]['steps_per_s'] / rows[1]['steps_per_s']:.1f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
