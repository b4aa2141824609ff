"""MET-likelihood vs FSP-likelihood posterior for the autoregulation model (MET paper, figure 4).

1,000 cells are simulated by exact SSA to t = 10 at a known point of the paper's box (su in
[1e-8, 2], sb in [1e-8, 0.1], ru in [1e-8, 10], rb in [1e-8, 100], k = 1); only the protein P is
observed (the gene state Gu is marginalised). The posterior of (su, sb, ru, rb), log-uniform over
the box, is sampled twice with the same data, sampler settings and seed: once with the pretrained
MET's likelihood and once with the exact FSP likelihood (FSPSolver, shared state space). Checks:
both 90% intervals cover the truth for su and rb, and the MET run is >= 20x faster.

    python bench/infer_autoreg.py [--steps 400] [--walkers 64] [--seed 1] [--met PATH] [--plot out.png]

Exit 0 when all checks pass, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd

import sbml_met
from sbml_met.infer import posterior

BOX = {"su": (1e-8, 2.0), "sb": (1e-8, 0.1), "ru": (1e-8, 10.0), "rb": (1e-8, 100.0)}
TRUTH = {"su": 0.94, "sb": 0.01, "ru": 8.4, "rb": 28.1}  # the paper's rates (the bundled model's values)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--walkers", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--met", default=None, help="MET checkpoint (default: the pretrained 'autoregulation')")
    ap.add_argument("--plot", default=None, help="write the two corner plots to this PNG prefix")
    args = ap.parse_args(argv)

    net = sbml_met.models.load("autoregulation").with_parameters(TRUTH)
    if args.met:
        met = sbml_met.met.load(args.met, network=sbml_met.models.load("autoregulation"))
    else:
        try:
            met = sbml_met.met.pretrained("autoregulation")
        except sbml_met.SbmlMetError as e:
            print(f"no pretrained autoregulation MET yet ({e}); train it with bench/train_pretrained.py")
            return 1
    ssa = sbml_met.simulate(net, [0.0, 10.0], n=args.cells, seed=args.seed)
    data = ssa.wide_frame()
    data = data.loc[data["time"] == 10.0, ["time", "P"]].reset_index(drop=True)
    print(f"data: {len(data)} cells at t = 10, P mean {data['P'].mean():.2f}, sd {data['P'].std():.2f} "
          f"(exact SSA, seed {args.seed}); truth {TRUTH}")

    kw = dict(n_steps=args.steps, n_walkers=args.walkers, seed=args.seed, truth=TRUTH)
    runs = {}
    for name, model in (("met", met), ("fsp", sbml_met.models.load("autoregulation"))):
        t0 = time.perf_counter()
        res = posterior(model, data, BOX, **kw)
        runs[name] = (res, time.perf_counter() - t0)
        print(f"\n{name.upper()} likelihood: {runs[name][1]:.1f} s, acceptance {res.acceptance:.2f}, "
              f"{len(res.samples)} draws")
        with pd.option_context("display.width", 160, "display.float_format", "{:.4g}".format):
            print(res.summary().to_string(index=False))
        if args.plot:
            res.plot().savefig(f"{args.plot}_{name}.png", dpi=110)

    ratio = runs["fsp"][1] / runs["met"][1]
    print(f"\ntimings: MET {runs['met'][1]:.1f} s, FSP {runs['fsp'][1]:.1f} s, speed-up {ratio:.1f}x (target >= 20x)")
    ok = ratio >= 20
    for name, (res, _) in runs.items():
        s = res.summary().set_index("parameter")
        for p in ("su", "rb"):
            cov = bool(s.loc[p, "covered"])
            ok &= cov
            print(f"{name}: 90% interval of {p} [{s.loc[p, 'lower']:.4g}, {s.loc[p, 'upper']:.4g}] "
                  f"{'covers' if cov else 'MISSES'} the truth {TRUTH[p]:g}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
