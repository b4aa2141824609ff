"""A MET beyond FSP: the repressilator (BIOMD0000000012; 6 species, proteins in the thousands)
trained by the exact-SSA teacher on this CPU, over a box of two of its parameters.

    python bench/met_repressilator.py [--minutes 30] [--ref 100000] [--threads 1]

Prints the training summary, then at held-out prompts (parameter points from their own Sobol
stream, never trained on, each at three times) the marginal Hellinger distance of the MET
(``--ref``/2 samples) from one half of an exact-SSA reference of ``--ref`` trajectories, per
species: on exact counts and on the reference's range cut into 50 bins, next to the distance the
other, independent half has from the same half (the noise floor at the MET's sample size). Last,
the time per sample of the MET against sbml-met's own exact SSA and libroadrunner's gillespie
integrator (one process, one thread each, all warmed; the RoadRunner loaded once, outside the
timing). ``--minutes`` scales the training budget (and the SSA teacher's trajectories).

The MET (``--model``, default ``{"head": "auto", "prompt": "pooled"}``): the three proteins (vocabularies
of ~10^4 counts) get a smooth head, a mixture of 8 discretized logistics (O(K) per sample and per
log-probability, strength shared across neighbouring counts) and a smooth count embedding; the mRNAs
keep categorical heads; the prompt (2 parameters, 6 fixed initial counts, time) is pooled into one
token. The SSA teacher records each of 32768 trajectories at 24 random times (the model does not
overfit that data in 30 minutes: its NLL on fresh trajectories equals the training loss). The
held-out references run on the compiled SSA kernel (sbml_met.simulate; the batched NumPy SSA if that
fails). Timings depend on the machine's load: the CPU is shared.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "data" / "biomodels" / "BIOMD0000000012.xml"
BOX = {"KM": (30.0, 50.0), "eff": (15.0, 25.0)}
TIMES = (0.0, 100.0)
HELD_OUT_TIMES = (20.0, 60.0, 100.0)
BINS = 50


def hellinger(p: np.ndarray, q: np.ndarray) -> float:
    n = max(len(p), len(q))
    p, q = np.pad(p, (0, n - len(p))), np.pad(q, (0, n - len(q)))
    return float(np.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(p / p.sum() * q / q.sum())))))


def histogram(x: np.ndarray, width: int, top: int) -> np.ndarray:
    return np.bincount(np.minimum(x, top) // width, minlength=top // width + 1).astype(float)


def reference(net, theta: dict, n: int, seed: int) -> np.ndarray:
    """Exact SSA states (n, len(HELD_OUT_TIMES), S) at one parameter point (sbml_met.simulate:
    Gillespie's direct method, compiled kernel, one process)."""
    import sbml_met

    try:
        r = sbml_met.simulate(net.with_parameters(theta), (0.0,) + HELD_OUT_TIMES, n=n, seed=seed, workers=1,
                              progress=False)
        return np.asarray(r.states[:, 1:], dtype=np.int64), "sbml_met.simulate"
    except Exception as e:  # noqa: BLE001 - the batched NumPy SSA is the same exact law, only slower
        print(f"  (sbml_met.simulate failed: {type(e).__name__}: {e}; batched NumPy SSA instead)", flush=True)
    from sbml_met.met._cme import ssa_batch

    rng = np.random.default_rng(seed)
    out = []
    for a in range(0, n, 10_000):
        m = min(10_000, n - a)
        rec = np.tile(np.asarray(HELD_OUT_TIMES), (m, 1))
        out.append(ssa_batch(net, {k: np.full(m, v) for k, v in theta.items()},
                             np.tile(net.initial_state, (m, 1)), rec, rng).astype(np.int64))
    return np.concatenate(out), "ssa_batch"


def met_samples(met, n: int, t: float, theta: dict, seed: int) -> np.ndarray:
    return np.concatenate([met.sample(min(20_000, n - a), t, seed=seed + a, **theta) for a in range(0, n, 20_000)])


def compare(met, ref: np.ndarray, theta: dict, seed: int) -> list[tuple]:
    """Per time and species: the MET's n/2 samples against one half of the reference, and the
    other half against the same half (the noise floor of independent samples of the MET's size)."""
    rows = []
    half = ref.shape[0] // 2
    a, b = ref[:half], ref[half:2 * half]
    for k, t in enumerate(HELD_OUT_TIMES):
        x = met_samples(met, half, t, theta, seed + k)
        for s, sp in enumerate(met.species):
            r, other = a[:, k, s], b[:, k, s]
            top = int(max(r.max(), other.max(), x[:, s].max()))
            width = max(1, math.ceil((int(r.max()) + 1) / BINS))
            exact = hellinger(np.bincount(x[:, s], minlength=top + 1), np.bincount(r, minlength=top + 1))
            binned = hellinger(histogram(x[:, s], width, top), histogram(r, width, top))
            noise = hellinger(histogram(other, width, top), histogram(r, width, top))
            rows.append((t, sp, exact, binned, noise, float(r.mean()), float(x[:, s].mean())))
    return rows


def speed(met, net, theta: dict, t: float) -> tuple[float, float, float]:
    """Seconds per sample at one prompt, each side warmed and in one process on one thread: the
    MET (10^4 samples), sbml-met's exact SSA (200 trajectories, compiled kernel, workers=1) and
    libroadrunner's gillespie as its users run it (one RoadRunner loaded once, outside the timing;
    reset, seed, simulate per trajectory; 200 trajectories)."""
    import roadrunner

    import sbml_met
    from sbml_met.sbml import split_reversible, write_sbml

    met.sample(100, t, seed=0, **theta)
    t0 = time.perf_counter()
    met.sample(10_000, t, seed=1, **theta)
    s_met = (time.perf_counter() - t0) / 10_000
    variant = net.with_parameters(theta)
    sbml_met.simulate(variant, [0.0, t], n=20, seed=1, workers=1, progress=False)  # compiled and warm
    t0 = time.perf_counter()
    sbml_met.simulate(variant, [0.0, t], n=200, seed=2, workers=1, progress=False)
    s_ssa = (time.perf_counter() - t0) / 200
    rr = roadrunner.RoadRunner(split_reversible(write_sbml(variant, pin_counts=True)))
    rr.setIntegrator("gillespie")
    rr.integrator.variable_step_size = False
    rr.timeCourseSelections = ["time"] + list(net.species)

    def one(seed: int):
        rr.reset()
        rr.integrator.seed = seed
        return rr.simulate(0.0, t, 2)

    for k in range(20):  # warm-up
        one(k + 1)
    t0 = time.perf_counter()
    for k in range(200):
        one(1000 + k)
    s_rr = (time.perf_counter() - t0) / 200
    return s_met, s_ssa, s_rr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--ref", type=int, default=100_000, help="SSA reference trajectories per held-out point (two halves)")
    ap.add_argument("--points", type=int, default=2, help="held-out parameter points")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", default=None, help="write the trained MET here")
    ap.add_argument("--load", default=None, help="evaluate this trained MET instead of training one")
    ap.add_argument("--speed-only", action="store_true", help="only the sampling speed (with --load)")
    ap.add_argument("--model", default='{"head": "auto", "prompt": "pooled"}',
                    help="METConfig fields as JSON (head, prompt, d_model, mixture_k, ...)")
    ap.add_argument("--times-per-trajectory", type=int, default=24, help="SSA teacher samples per trajectory")
    ap.add_argument("--trajectories", type=int, default=None, help="SSA teacher trajectories (default scales with --minutes)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    args = ap.parse_args(argv)
    import torch
    from scipy.stats import qmc

    import sbml_met
    from sbml_met.met import load, train

    torch.set_num_threads(args.threads)
    net = sbml_met.load_sbml(str(MODEL))
    n_traj = args.trajectories or int(max(4096, 32768 * min(1.0, args.minutes / 30)))
    t0 = time.perf_counter()
    met = load(args.load) if args.load else train(
        net, BOX, TIMES, teacher="ssa", minutes=args.minutes, seed=args.seed, threads=args.threads, n_validation=4,
        model=json.loads(args.model), batch_size=args.batch, lr=args.lr,
        teacher_options={"n_prompts": n_traj, "n_reference": 2000, "times_per_trajectory": args.times_per_trajectory},
        progress=sys.stderr.isatty(), device="cpu")
    if args.save:
        met.save(args.save, overwrite=True)
    v = met.validation
    print(f"BIOMD0000000012 (repressilator), box {BOX}, t in {TIMES}: trained {met.meta['wall_seconds'] / 60:.1f} min on "
          f"{met.meta['threads']} thread(s), {met.meta['steps']} steps, SSA teacher {met.log[0].get('trajectories')} trajectories "
          f"({met.meta['teacher_seconds']:.0f} s), vocab {met.config.vocab}, heads "
          f"{''.join('M' if m else 'C' for m in met.net.mixture)} (M: {met.config.mixture_k}-logistic mixture, C: "
          f"categorical), d_model {met.config.d_model}, {met.n_parameters} weights; "
          f"training validation Hellinger mean {v['hellinger_mean']:.4f} (SSA reference, noise floor "
          f"{v.get('noise_floor', float('nan')):.4f})", flush=True)
    u = qmc.Sobol(d=len(BOX), scramble=True, seed=args.seed + 424242).random(args.points)
    lo, hi = np.array([b[0] for b in BOX.values()]), np.array([b[1] for b in BOX.values()])
    rows = []
    for i, p in enumerate([] if args.speed_only else lo + u * (hi - lo)):
        theta = dict(zip(BOX, map(float, p)))
        t0 = time.perf_counter()
        ref, engine = reference(net, theta, args.ref, seed=1000 + i)
        print(f"held-out point {i}: {', '.join(f'{k}={x:.3f}' for k, x in theta.items())}; "
              f"{args.ref} SSA trajectories ({engine}) in {time.perf_counter() - t0:.0f} s", flush=True)
        for r in compare(met, ref, theta, seed=77 * i):
            rows.append(r)
            print(f"  t={r[0]:>4g} {r[1]:<3} Hellinger exact counts {r[2]:.4f}  {BINS} bins {r[3]:.4f}  "
                  f"(SSA noise {r[4]:.4f})  mean SSA {r[5]:8.1f} MET {r[6]:8.1f}", flush=True)
    h = np.array([r[3] for r in rows] or [np.nan])
    noise = np.array([r[4] for r in rows] or [np.nan])
    print() if args.speed_only else print(
        f"marginal Hellinger ({BINS} bins) over {len(rows)} held-out (prompt, species), MET {args.ref // 2} samples "
        f"vs {args.ref // 2} reference trajectories: mean {h.mean():.4f} max {h.max():.4f}; noise floor (another "
        f"{args.ref // 2} independent SSA trajectories vs the same) mean {noise.mean():.4f} max {noise.max():.4f}", flush=True)
    theta = dict(zip(BOX, map(float, (lo + hi) / 2)))
    s_met, s_ssa, s_rr = speed(met, net, theta, TIMES[1])
    print(f"sampling at t={TIMES[1]:g}, one process, one thread, all warmed: MET {s_met * 1e6:.1f} us/sample; "
          f"sbml-met exact SSA {s_ssa * 1e3:.2f} ms/trajectory ({s_ssa / s_met:.0f}x the MET's time); libroadrunner "
          f"gillespie, loaded once {s_rr * 1e3:.2f} ms/trajectory ({s_rr / s_met:.0f}x)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
