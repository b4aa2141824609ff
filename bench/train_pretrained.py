"""Regenerate the bundled pretrained METs (sbml_met/met/pretrained/NAME.met) and print wall times.

    python bench/train_pretrained.py [toggle_switch] [autoregulation] [--minutes 15] [--out DIR]
    python bench/train_pretrained.py --again CHECKPOINT.met [--out DIR]

Each model trains on the CPU within its time budget (default 15 minutes; the issue allows 20).
``--again`` trains a MET once more from its checkpoint's own metadata (``meta["options"]``, the
package version and commit recorded by ``train``), for checkpoints written since they carry them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import sbml_met
from sbml_met import models
from sbml_met.met import train

HERE = Path(__file__).resolve().parent.parent / "sbml_met" / "met" / "pretrained"

SPECS = {
    # free sx, sy in [25, 75]; other rates at the paper's values; t in [0, 40]. Exact FSP
    # distillation, solve_fsp per parameter point on two threads (the joint state space, up to
    # ~85,000 states, is too large to integrate thousands of points side by side); the x <-> y
    # symmetry of the network gives every solved point's mirror image for free.
    "toggle_switch": dict(box={"sx": (25.0, 75.0), "sy": (25.0, 75.0)}, times=(0.0, 40.0), teacher="fsp",
                          teacher_options={"n_prompts": 4096, "times_per_prompt": 16, "method": "pointwise",
                                           "time_spacing": "sqrt", "symmetry": {"sx": "sy", "Gux": "Guy", "Px": "Py"}},
                          n_validation=8),
    # the paper's box, k = 1, t in [0, 10]; exact FSP distillation
    "autoregulation": dict(box={"su": (1e-8, 2.0), "sb": (1e-8, 0.1), "ru": (1e-8, 10.0), "rb": (1e-8, 100.0)},
                           times=(0.0, 10.0), teacher="fsp",
                           teacher_options={"n_prompts": 8192, "times_per_prompt": 10}),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=list(SPECS))
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--again", default=None, metavar="CHECKPOINT", help="retrain from a checkpoint's metadata")
    args = ap.parse_args(argv)
    if args.again:
        return again(args.again, Path(args.out))
    for name in args.names:
        spec = SPECS[name]
        net = models.load(name)
        t0 = time.perf_counter()
        met = train(net, spec["box"], spec["times"], teacher=spec["teacher"], minutes=args.minutes,
                    seed=args.seed, teacher_options=spec["teacher_options"], threads=args.threads,
                    n_validation=spec.get("n_validation", 16),
                    progress=sys.stderr.isatty())
        wall = time.perf_counter() - t0
        path = Path(args.out) / f"{name}.met"
        met.save(path, overwrite=True)
        v = met.validation
        print(f"{name}: trained in {wall:.1f} s wall ({met.meta['steps']} steps, teacher {met.meta['teacher_seconds']:.1f} s, "
              f"{met.n_parameters} weights, vocab {met.config.vocab}); validation Hellinger "
              f"mean {v['hellinger_mean']:.4f} median {v['hellinger_median']:.4f} max {v['hellinger_max']:.4f} "
              f"(reference: {v['reference']}); {path} {os.path.getsize(path) / 1e6:.2f} MB", flush=True)
    return 0


def again(checkpoint: str, out: Path) -> int:
    """Train the MET of ``checkpoint`` again from the options it recorded."""
    from sbml_met import met as met_pkg

    old = met_pkg.load(checkpoint)
    if "options" not in old.meta:
        print(f"{checkpoint} predates recorded training options (meta: {sorted(old.meta)})", file=sys.stderr)
        return 1
    print(f"{checkpoint}: sbml_met {old.meta.get('sbml_met')} commit {old.meta.get('commit')}; options {old.meta['options']}")
    met = train(old.network, progress=sys.stderr.isatty(), **old.meta["options"])
    path = met.save(out / Path(checkpoint).name, overwrite=True)
    print(f"retrained: validation Hellinger mean {met.validation['hellinger_mean']:.4f} "
          f"(recorded {old.validation['hellinger_mean']:.4f}); {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
