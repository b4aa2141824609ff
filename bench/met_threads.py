"""MET.sample on a busy machine: the thread policy (sbml_met/met/_threads.py) against one thread.

    python bench/met_threads.py [--n 10000] [--repeats 20]

Starts one competing busy process (a Python spin loop, ended by its pid at the end), then times a
10^4-sample MET.sample call of the bundled toggle-switch MET three ways: with one torch thread, as
MET.sample runs it (the policy), and unscoped at torch's default thread count (what sample did
before the policy). Prints the best-of-repeats times and the ratio policy / one-thread (target:
within 1.2x) and the user's thread setting before and after (it must be unchanged).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch

from sbml_met.met import pretrained
from sbml_met.met.model import ancestral_sample


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    met = pretrained("toggle_switch")
    default = torch.get_num_threads()

    def unscoped():  # sample's body without the policy
        f = met.prompt_features([5.0], None, {})
        ancestral_sample(met.net, f, args.n, torch.Generator().manual_seed(1), met._mask(None))

    def policy():
        met.sample(args.n, 5.0, seed=1)

    def one_thread():
        torch.set_num_threads(1)
        try:
            unscoped()
        finally:
            torch.set_num_threads(default)

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        for fn in (one_thread, policy, unscoped):
            fn()  # warm-up
        t1 = best(one_thread, args.repeats)
        tp = best(policy, args.repeats)
        td = best(unscoped, args.repeats)
    finally:
        busy.kill()
        busy.wait()
    print(f"{os.cpu_count()} cores, one busy competing process; MET.sample of {args.n} states, "
          f"best of {args.repeats}")
    print(f"one thread             {t1:8.4f} s")
    print(f"MET.sample (policy)    {tp:8.4f} s   ratio to one thread {tp / t1:5.2f}x")
    print(f"unscoped, {default} threads    {td:8.4f} s   ratio to one thread {td / t1:5.2f}x")
    print(f"torch threads before/after: {default}/{torch.get_num_threads()}")


if __name__ == "__main__":
    main()
