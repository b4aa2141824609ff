"""The main job, ``sbml-met run MODEL``: every engine on one model, checked, written as tables.

import and summary -> exact SSA ensemble -> FSP where feasible -> MET if a pretrained checkpoint
matches the model -> validation of each against one libroadrunner reference ensemble -> tidy
tables (summary.csv, moments.csv, marginals.csv, validation.csv) and PNG figures in the output
folder, and a short printed report.
"""

from __future__ import annotations

import json
import sys
import time as _time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .errors import InvalidArgumentError, SbmlMetError
from .io import atomic_write, write_table
from .network import ReactionNetwork, check_times
from .results import SSAResult

MANIFEST = "run.json"

# end time and the times reported and validated, per bundled model (the MET paper's times)
DEFAULT_TIMES: dict[str, tuple[float, tuple[float, ...]]] = {
    "toggle_switch": (40.0, (1.0, 3.0, 10.0, 40.0)),
    "autoregulation": (10.0, (1.0, 2.5, 5.0, 10.0)),
    "birth_death": (50.0, (5.0, 10.0, 25.0, 50.0)),
}


@dataclass
class RunReport:
    """What ``run`` did: the tables it wrote, the validation verdicts, timings and notes."""

    model: str
    out_dir: Path
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    verdicts: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every validated engine agreed with the Tellurium reference."""
        return all(self.verdicts.values()) if self.verdicts else True

    def text(self) -> str:
        lines = [f"sbml-met run: {self.model}"]
        for step, sec in self.timings.items():
            lines.append(f"  {step:<28s} {sec:7.1f} s")
        for method, ok in self.verdicts.items():
            lines.append(f"  validation of {method:<14s} {'agrees with Tellurium' if ok else 'DISAGREES with Tellurium'}")
        lines.extend(f"  note: {n}" for n in self.notes)
        lines.append(f"  wrote {len(self.files)} files to {self.out_dir}")
        return "\n".join(lines)


def _subset(result: SSAResult, times: np.ndarray) -> SSAResult:
    idx = [int(np.argmin(np.abs(result.times - t))) for t in times]
    return SSAResult(result.species, result.times[idx], result.states[:, idx, :], method=result.method,
                     seed=result.seed, model=result.model)


def _prepare_folder(out_dir: Path, force: bool) -> None:
    """Refuse to write into a folder holding files that an earlier run did not write."""
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).exists() and not force:
        raise FileExistsError(f"{out_dir} holds files sbml-met did not write; pass --force to use it")
    out_dir.mkdir(parents=True, exist_ok=True)


def run(
    model: str | ReactionNetwork,
    out_dir: str | Path | None = None,
    times: Any = None,
    report_times: Any = None,
    n: int = 10_000,
    n_reference: int = 10_000,
    seed: int = 1,
    fsp_max_states: int = 300_000,
    figures: bool = True,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> RunReport:
    """Run every engine on ``model`` (bundled name, path, BioModels id, or a ReactionNetwork)."""
    from .cli import load_model  # one resolver for names, paths and BioModels ids

    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t_start = _time.perf_counter()
    net = model if isinstance(model, ReactionNetwork) else load_model(str(model))
    name = str(model) if not isinstance(model, ReactionNetwork) else net.name
    name = Path(name).stem if Path(name).suffix in (".xml", ".sbml", ".ant") else name
    t_end, default_report = DEFAULT_TIMES.get(name, (10.0, None))
    grid = check_times(times) if times is not None else np.linspace(0.0, t_end, int(t_end) + 1 if t_end <= 100 else 101)
    if int(n) < 1 or int(n_reference) < 1:
        raise InvalidArgumentError("n and n_reference must be >= 1")
    if report_times is None:
        positive = grid[grid > 0]
        report_times = default_report or (tuple(np.quantile(positive, [0.1, 0.33, 0.66, 1.0]))
                                          if positive.size else (grid[-1],))
    shown = np.array(sorted({float(grid[np.argmin(np.abs(grid - t))]) for t in report_times}))
    out = Path(out_dir) if out_dir is not None else Path("sbml-met-output") / name
    _prepare_folder(out, force)
    report = RunReport(name, out)

    def timed(step: str, fn):
        t0 = _time.perf_counter()
        value = fn()
        report.timings[step] = _time.perf_counter() - t0
        return value

    say(f"[1/5] {name}: {net.n_species} species, {net.n_reactions} reactions")
    report.tables["summary"] = net.summary()

    from .ssa import simulate

    say(f"[2/5] exact SSA, {n} trajectories on {len(grid)} times")
    ssa = timed("SSA", lambda: simulate(net, grid, n=n, seed=seed))
    results: dict[str, Any] = {"ssa": _subset(ssa, shown)}

    say("[3/5] finite state projection (exact CME)")
    try:
        from .fsp import solve_fsp

        results["fsp"] = timed("FSP", lambda: solve_fsp(net, shown, max_states=fsp_max_states))
    except SbmlMetError as e:
        report.notes.append(f"FSP skipped: {str(e).splitlines()[0]}")

    say("[4/5] Master Equation Transformer (pretrained, if one matches)")
    met_result = timed("MET", lambda: _pretrained_met(net, name, shown, report))
    if met_result is not None:
        results["met"] = met_result

    say(f"[5/5] Tellurium reference, {n_reference} libroadrunner trajectories, and validation")
    from .tellurium import run_gillespie
    from .validate import validate

    try:
        reference = timed("Tellurium reference", lambda: run_gillespie(net, shown, n=n_reference, seed=seed + 1000))
    except SbmlMetError as e:
        reference = None
        report.notes.append(f"validation skipped: {str(e).splitlines()[0]}")
    validations = []
    if reference is not None:
        for method, res in results.items():
            rep = validate(net, res, n_reference=n_reference, seed=seed, reference=reference)
            report.verdicts[method] = rep.ok
            validations.append(rep.to_frame())
            if not rep.ok:
                report.notes.append(rep.summary())

    # tables: moments and marginals of every engine (and the reference), long format
    everything = dict(results)
    if reference is not None:
        everything["tellurium"] = reference
    moments, marginals = [], []
    for method, res in everything.items():
        m = res.moments()
        m.insert(2, "method", method)
        moments.append(m)
        d = res.to_distribution() if isinstance(res, SSAResult) else res
        f = d.to_frame()
        f.insert(2, "method", method)
        marginals.append(f)
    report.tables["moments"] = pd.concat(moments, ignore_index=True)
    report.tables["marginals"] = pd.concat(marginals, ignore_index=True)
    if validations:
        report.tables["validation"] = pd.concat(validations, ignore_index=True)
    report.tables["trajectory_moments"] = ssa.moments()

    for key, table in report.tables.items():
        report.files.append(write_table(table, out / f"{key}.csv", overwrite=True))
    if figures:
        report.files.extend(timed("figures", lambda: _figures(net, ssa, results, reference, shown, out)))
    report.timings["total"] = _time.perf_counter() - t_start
    manifest = {"model": name, "ok": report.ok, "verdicts": report.verdicts, "timings": report.timings,
                "files": [p.name for p in report.files], "notes": report.notes, "seed": seed, "n": n,
                "n_reference": n_reference, "times": shown.tolist()}
    atomic_write(out / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2)), overwrite=True)
    return report


def _pretrained_met(net: ReactionNetwork, name: str, times: np.ndarray, report: RunReport):
    """The pretrained MET's answer at the network's own parameter values, if one matches."""
    try:
        from . import met
    except ImportError as e:  # torch missing: MET is optional for the run
        report.notes.append(f"MET skipped: {e}")
        return None
    if name not in met.pretrained_names():
        report.notes.append(f"MET skipped: no pretrained checkpoint for '{name}'")
        return None
    try:
        model = met.pretrained(name)
    except SbmlMetError as e:
        report.notes.append(f"MET skipped: {str(e).splitlines()[0]}")
        return None
    if model.network.fingerprint() != net.fingerprint():
        report.notes.append(f"MET skipped: the pretrained '{name}' checkpoint was trained on another network")
        return None
    fixed = [p for p, v in model.network.parameters.items() if p not in model.box and net.parameters.get(p) != v]
    if fixed:
        report.notes.append(f"MET skipped: it was trained with other fixed values of {', '.join(fixed)}")
        return None
    outside = [p for p in model.box if not model.box[p][0] <= net.parameters[p] <= model.box[p][1]]
    if outside or float(times.max()) > model.times[1]:
        report.notes.append("MET skipped: the model's parameters or times lie outside its training box")
        return None
    return model.solve(times, **{p: net.parameters[p] for p in model.box})


def _figures(net, ssa, results, reference, times, out: Path) -> list[Path]:
    from . import plot

    written = []
    refs = {k: v for k, v in results.items() if k != "ssa"}
    if reference is not None:
        refs["tellurium"] = reference
    figs = {
        "marginals.png": plot.marginals(results["ssa"], times=list(times), reference=refs or None),
        "moments.png": plot.moments(ssa, reference=refs.get("fsp")),
        "trajectories.png": plot.trajectories(ssa, n=10),
    }
    for fname, fig in figs.items():
        written.append(atomic_write(out / fname, lambda p, f=fig: f.savefig(p, format="png", dpi=110), overwrite=True))
    return written
