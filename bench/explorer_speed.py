"""Milliseconds per update of the MET explorer (notebook 05) on the pretrained toggle switch.

For random prompts in the training box (sx, sy in [25, 75], t in [0, 40]) it times
``METExplorer.update`` (the MET's exact joint of all four species by enumeration, marginalised to
P(Px, Py), and the heat map and marginal lines updated in place) and, separately, rendering the
figure to PNG as a notebook does. Run: python bench/explorer_speed.py [--updates 50]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from sbml_met import met
    from sbml_met.explorer import METExplorer

    model = met.pretrained("toggle_switch")
    explorer = METExplorer(model, "Px", "Py")
    rng = np.random.default_rng(args.seed)
    explorer.update(10.0, sx=50.0, sy=50.0)  # warm-up
    update_ms, render_ms = [], []
    for _ in range(args.updates):
        sx, sy, t = rng.uniform(25, 75), rng.uniform(25, 75), rng.uniform(0.5, 40)
        t0 = time.perf_counter()
        explorer.update(t, sx=sx, sy=sy)
        t1 = time.perf_counter()
        explorer.fig.savefig(io.BytesIO(), format="png", dpi=72)
        t2 = time.perf_counter()
        update_ms.append(1000 * (t1 - t0))
        render_ms.append(1000 * (t2 - t1))
    print(f"torch threads: {torch.get_num_threads()}, {args.updates} random prompts")
    print(f"update (MET joint + redraw in place): median {statistics.median(update_ms):.1f} ms, "
          f"max {max(update_ms):.1f} ms per update (target < 50 ms)")
    print(f"PNG rendering for the notebook:       median {statistics.median(render_ms):.1f} ms")
    print(f"total per slider move:                median "
          f"{statistics.median(np.add(update_ms, render_ms)):.1f} ms")


if __name__ == "__main__":
    main()
