"""The MET on demand: `sbml-met run MODEL` with default options on six small models written the
way users write them (Antimony, Tellurium style), each with a fresh MET cache, so every run trains
its MET from nothing.

Per model it prints: the wall time of the run's MET step (choosing the teacher, exact FSP teacher
data, training until the accuracy target or the 8-minute cap), whether the MET reached its target
(held-out mean marginal Hellinger <= 0.01 against exact FSP over the default box x/÷ 2, and at the
model's own values an error below half of what a 10^4-run validation detects), the held-out
figures the training measured, an independent check made here (exact FSP, solved afresh, at the
model's own values and at 6 Sobol points of the box the MET never saw, at the run's report
times), and the verdicts of the run's validation against 10^4 libroadrunner runs (n = 10^4).

    python bench/met_on_demand.py [MODEL ...]      # writes nothing; the output is copied to met_on_demand.txt
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

MODELS = {
    "birth_death": """
model birth_death
  J1: -> X; k1
  J2: X -> ; k2*X
  X = 0
  k1 = 10; k2 = 0.5
end
""",
    "gene_expression": """
model gene_expression
  transcription: -> M; km
  mrna_decay: M -> ; gm*M
  translation: M -> M + P; kp*M
  protein_decay: P -> ; gp*P
  M = 0; P = 0
  km = 2; gm = 1; kp = 4; gp = 0.5
end
""",
    "telegraph": """
model telegraph_promoter
  on: Goff -> Gon; kon*Goff
  off: Gon -> Goff; koff*Gon
  transcribe: Gon -> Gon + M; kr*Gon
  decay: M -> ; dm*M
  Goff = 1; Gon = 0; M = 0
  kon = 0.5; koff = 1; kr = 20; dm = 1
end
""",
    "enzyme": """
model enzyme
  bind: E + S -> ES; kon*E*S
  unbind: ES -> E + S; koff*ES
  convert: ES -> E + P; kcat*ES
  E = 10; S = 30; ES = 0; P = 0
  kon = 0.05; koff = 1; kcat = 0.5
end
""",
    "autorepressor": """
model dimer_autorepressor
  express: G -> G + P; kp*G
  degrade: P -> ; dp*P
  dimerise: P + P -> P2; kd*P*(P - 1)
  split: P2 -> P + P; ku*P2
  repress: G + P2 -> GR; kr*G*P2
  release: GR -> G + P2; kf*GR
  G = 1; GR = 0; P = 0; P2 = 0
  kp = 10; dp = 1; kd = 0.05; ku = 1; kr = 1; kf = 0.5
end
""",
    # written with Antimony's default '->' (reversible in SBML): each law is never negative on whole
    # counts and is kept as written (tests/test_reversible.py checks its CME against '=>')
    "schlogl": """
model schlogl_small
  auto: 2X -> 3X; c1*X*(X - 1)/2
  back: 3X -> 2X; c2*X*(X - 1)*(X - 2)/6
  inflow: -> X; c3
  outflow: X -> ; c4*X
  X = 10
  c1 = 0.3; c2 = 0.015; c3 = 6; c4 = 2
end
""",
}


def independent_check(met, net, times, n_points: int = 6, seed: int = 2027) -> dict[str, float]:
    """Marginal Hellinger distances against exact FSP solved here, at ``times``: the largest at the
    model's own values; the mean and max over ``n_points`` log-uniform Sobol points of the box;
    the largest per-point mean (over species and times) at those points and at the box's corners
    (all 2^F, at most 16)."""
    from scipy.stats import qmc

    import sbml_met
    from sbml_met.metrics import hellinger

    names = list(met.box)
    lo = np.array([met.box[p][0] for p in names])
    hi = np.array([met.box[p][1] for p in names])
    u = qmc.Sobol(d=len(names), scramble=True, seed=seed).random(n_points)
    F = len(names)
    bits = (np.arange(2**F)[:, None] >> np.arange(F)[None, :]) & 1
    if len(bits) > 16:
        bits = bits[np.random.default_rng(seed).choice(len(bits), 16, replace=False)]
    corners = [dict(zip(names, np.where(b == 1, hi, lo))) for b in bits]
    points = [{}] + [dict(zip(names, lo * (hi / lo) ** row)) for row in u] + corners  # log-uniform over the box
    out = []
    for theta in points:
        exact = sbml_met.solve_fsp(net.with_parameters(theta) if theta else net, list(times))
        row = []
        for t in times:
            mine = met.marginals_all(float(t), **theta)
            row += [hellinger(mine[s], exact.marginal(sp, t).to_numpy()) for s, sp in enumerate(net.species)]
        out.append(row)
    own, box, corner = np.asarray(out[0]), np.asarray(out[1 : 1 + n_points]), np.asarray(out[1 + n_points :])
    return {"own": float(own.max()), "box_mean": float(box.mean()), "box_max": float(box.max()),
            "point_max": float(box.mean(axis=1).max()), "corner_max": float(corner.mean(axis=1).max())}


def main(names: list[str], models: dict[str, str] | None = None) -> None:
    import torch

    import sbml_met
    from sbml_met.met import load
    from sbml_met.run import run

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); load average at start {os.getloadavg()[0]:.1f}"
          + (" (the cores were shared with other jobs: wall times are upper bounds)" if os.getloadavg()[0] > 1.5 else ""))
    print("sbml-met run MODEL, default options (n = n_reference = 10^4, --met auto, --met-minutes 8), fresh MET cache\n")
    head = (f"{'model':16s} {'S':>2s} {'teacher':>16s} {'MET s':>6s} {'steps':>6s} {'target':>7s} {'held-out H':>10s} "
            f"{'own H max':>9s} {'check own':>9s} {'check box':>9s} {'box max':>7s} {'worst pt':>8s} {'corner':>7s} "
            f"{'run s':>6s}  verdicts (n=10^4)")
    print(head)
    print("-" * len(head))
    models = MODELS if models is None else models
    for name in names:
        net = sbml_met.load_antimony(models[name])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.ant"
            path.write_text(models[name], encoding="utf-8")
            os.environ["SBML_MET_CACHE_DIR"] = str(Path(tmp) / "cache")
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                report = run(str(path), out_dir=Path(tmp) / "out", figures=False, log=lambda m: None)
            wall = time.perf_counter() - t0
            info = report.met
            met = load(info["path"], network=net)
            times = [float(t) for t in report.tables["marginals"]["time"].unique()]
            check = independent_check(met, net, times)
        held = info["held_out"]
        teacher = info["teacher"] + "/" + str(met.meta.get("teacher_options", {}).get("method", "-"))
        verdicts = ", ".join(f"{k} {'ok' if v else 'DISAGREES'}" for k, v in report.verdicts.items())
        print(f"{name:16s} {net.n_species:2d} {teacher:>16s} {report.timings['MET']:6.0f} {info['steps']:6d} "
              f"{'reached' if info['validated'] else 'NOT':>7s} {held['hellinger_mean']:10.4f} "
              f"{held['own_parameters_hellinger_max'] or float('nan'):9.4f} {check['own']:9.4f} {check['box_mean']:9.4f} {check['box_max']:7.4f} "
              f"{check['point_max']:8.4f} {check['corner_max']:7.4f} {wall:6.0f}  {verdicts}", flush=True)
    print(f"\nload average at end {os.getloadavg()[0]:.1f}. Columns: MET s = the run's MET step (teacher + "
          "training + validation data); held-out H = mean marginal Hellinger over the box's held-out "
          "prompts measured while training; own H max = the largest at the model's own values; check own / "
          "check box / box max = this script's independent check against exact FSP at the run's report times "
          "(own values; mean and max over 6 Sobol points of the box); worst pt / corner = the largest mean marginal "
          "Hellinger (over species and report times) of one of those 6 points / of one of the box's corners.")


if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS))
