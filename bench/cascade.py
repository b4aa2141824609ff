"""Beyond FSP: a MET for the 15-species catalytic cascade (``cascade15``), k0 in [2, 8], t in
[0, 10], trained by RL with VAN reward models (``rlmf``) and, for comparison, on exact SSA
samples (``ssa``), scored against the exact answer (issue 7).

    python bench/cascade.py [--minutes 60] [--teachers rlmf,ssa] [--n 16] [--seed 0]

The exact answer: every reaction is first order, so the marginals follow from the generating
function of a multitype branching process with immigration
(:func:`sbml_met.analytic.first_order_marginals`; not a product of Poissons - catalytic
production over-disperses S2..S15). For ``--n`` held-out Sobol prompts (k0, t) the MET marginal
of every species (exact enumeration where the prefixes allow, else 20,000 MET samples) is compared
with the exact one. Prints mean / median / worst Hellinger per teacher and the worst species.
Target: mean <= 0.05, worst <= 0.10 within 60 CPU-minutes.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from sbml_met import models
from sbml_met.analytic import first_order_marginals
from sbml_met.met import train
from sbml_met.metrics import hellinger

BOX = {"k0": (2.0, 8.0)}
TIMES = (0.0, 10.0)


def held_out(n: int, seed: int = 424242) -> list[tuple[float, float]]:
    from scipy.stats import qmc

    u = qmc.Sobol(d=2, scramble=True, seed=seed).random(n)
    return [(2.0 + 6.0 * a, max(0.05, 10.0 * b)) for a, b in u]


def exact(net, points, rtol: float = 1e-9):
    return [first_order_marginals(net.with_parameters(k0=k0), [t], rtol=rtol, atol=1e-12) for k0, t in points]


def score(met, net, points, refs, n_samples: int = 20_000, seed: int = 0) -> np.ndarray:
    out = np.zeros((len(points), net.n_species))
    for i, ((k0, t), ref) in enumerate(zip(points, refs)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = met.sample(n_samples, t, seed=seed + i, k0=k0)
        for s, sid in enumerate(net.species):
            m = np.bincount(x[:, s]) / len(x)
            out[i, s] = hellinger(m, ref.marginal(sid, t).to_numpy())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--teachers", default="rlmf,ssa")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rlmf-prompts", type=int, default=32)
    ap.add_argument("--samples", type=int, default=20_000, help="MET samples per held-out prompt")
    ap.add_argument("--van-probe", type=float, default=1.0,
                    help="also time one VAN reward model (k0=5) up to this time and score it (0: skip)")
    ap.add_argument("--van-seconds", type=float, default=180.0)
    a = ap.parse_args(argv)
    net = models.load("cascade15")
    points = held_out(a.n)
    t0 = time.monotonic()
    refs = exact(net, points)
    t_exact = time.monotonic() - t0
    if a.van_probe > 0:  # what one reward model costs on this network
        from sbml_met.met.van import solve_van

        t1 = time.monotonic()
        try:
            d = solve_van(net, [a.van_probe], seed=a.seed, max_seconds=a.van_seconds, n_samples=a.samples)
            ref = first_order_marginals(net, [a.van_probe])
            hv = [hellinger(d.marginal(s, a.van_probe).to_numpy(), ref.marginal(s, a.van_probe).to_numpy())
                  for s in net.species]
            print(f"VAN probe (k0=5, t={a.van_probe:g}): {time.monotonic() - t1:.1f} s, {d.metadata['updates']} updates, "
                  f"estimator {d.metadata['estimator']}; Hellinger per species mean {np.mean(hv):.4f} worst "
                  f"{np.max(hv):.4f} (from {a.samples} VAN samples)", flush=True)
        except TimeoutError as e:
            print(f"VAN probe: {e}", flush=True)
    rows = []
    for teacher in a.teachers.split(","):
        opts = {"n_prompts": a.rlmf_prompts, "times_per_prompt": 8} if teacher == "rlmf" else {}
        t1 = time.monotonic()
        try:
            met = train(net, BOX, TIMES, teacher=teacher, minutes=a.minutes, seed=a.seed, progress=False,
                        validate_every=1e9, n_validation=4, teacher_options=opts)
        except Exception as e:  # report the failure (e.g. no reward model fits the budget), go on
            print(f"[{teacher}] failed after {(time.monotonic() - t1) / 60:.2f} min: {type(e).__name__}: {e}",
                  flush=True)
            continue
        wall = time.monotonic() - t1
        h = score(met, net, points, refs, a.samples)
        worst_sp = net.species[int(np.argmax(h.max(axis=0)))]
        ev = [e for e in met.log if e.get("event") == "teacher"]
        rows.append((teacher, wall / 60, met.meta.get("steps"), float(h.mean()), float(np.median(h)),
                     float(h.max()), worst_sp, h.mean(axis=0), ev[0] if ev else {}))
        print(f"[{teacher}] {wall / 60:.2f} min, held-out mean {h.mean():.4f} worst {h.max():.4f}", flush=True)
    print()
    print(f"cascade15, k0 in [2, 8], t in [0, 10]; budget {a.minutes:g} min per teacher; {a.n} held-out prompts x "
          f"15 species vs the exact first-order marginals ({t_exact:.1f} s for all references); MET marginals "
          f"from {a.samples} samples (histogram noise floor ~{np.sqrt(8 / a.samples) / 2:.3f})")
    print(f"{'teacher':<8} {'wall min':>8} {'steps':>7} {'mean':>8} {'median':>8} {'worst':>8} {'worst species':>14}")
    for r in rows:
        print(f"{r[0]:<8} {r[1]:8.2f} {r[2]!s:>7} {r[3]:8.4f} {r[4]:8.4f} {r[5]:8.4f} {r[6]:>14}")
    for r in rows:
        print(f"  {r[0]} mean per species: " + " ".join(f"{v:.3f}" for v in r[7]))
        info = {k: v for k, v in r[8].items() if k in ("reward_models", "seconds_per_model", "trajectories", "samples")}
        print(f"  {r[0]} teacher: {info}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
