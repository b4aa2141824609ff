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
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from .errors import InvalidArgumentError, SbmlMetError
from .io import atomic_write, write_table
from .network import ReactionNetwork, check_times
from .results import Distribution, SSAResult

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
    met: dict[str, Any] = field(default_factory=dict)  # where the MET came from, its held-out accuracy

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


def one_line(error: Exception) -> str:
    """An error's whole message on one line (a note must say every reason, not only the first)."""
    return " ".join(part.strip() for part in str(error).splitlines() if part.strip())


def _subset(result: SSAResult | Distribution, times: np.ndarray) -> SSAResult | Distribution:
    """The result at the grid times nearest ``times`` (for validation on the report times)."""
    idx = [int(np.argmin(np.abs(result.times - t))) for t in times]
    if isinstance(result, Distribution):
        lost = None if result.truncation_error is None else np.asarray(result.truncation_error)[idx]
        return Distribution(result.species, np.asarray(result.times)[idx], tuple(result.states[i] for i in idx),
                            tuple(result.probabilities[i] for i in idx), method=result.method,
                            truncation_error=lost, n_samples=result.n_samples, metadata=result.metadata)
    return SSAResult(result.species, result.times[idx], result.states[:, idx, :], method=result.method,
                     seed=result.seed, model=result.model)


def time_label(net: ReactionNetwork) -> str:
    """Axis label for time: ``time (unit)`` with the SBML model's timeUnits when it declares them."""
    try:
        import libsbml

        model = libsbml.readSBMLFromString(net.to_sbml()).getModel()
    except Exception:  # no SBML text to read: unitless time
        return "time"
    unit = model.getTimeUnits() if model is not None else ""
    if not unit:
        return "time"
    definition = model.getUnitDefinition(unit)
    if definition is not None:
        return f"time ({definition.getName() or unit})"
    return f"time ({ {'second': 's', 'dimensionless': 'dimensionless'}.get(unit, unit)})"


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
    command: str | None = None,
    met: str = "auto",
    met_minutes: float = 10.0,
    box: Mapping[str, tuple[float, float]] | None = None,
) -> RunReport:
    """Run every engine on ``model`` (bundled name, path, BioModels id, or a ReactionNetwork).

    ``met``: "auto" (a bundled or cached MET that covers the model, else one trained within
    ``met_minutes`` over ``box``, default each rate parameter x/÷ 3, and cached), "off", or a
    checkpoint path / bundled name. Writes tables, figures, ``report.html`` (``command``: the
    command line it records; default the Python call) and ``run.json`` into ``out_dir``."""
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t_start = _time.perf_counter()
    net, name = _resolve_model(model)
    grid, shown = _time_grids(name, times, report_times, n, n_reference)
    out = Path(out_dir) if out_dir is not None else Path("sbml-met-output") / name
    _prepare_folder(out, force)
    report = RunReport(name, out)

    say(f"[1/5] {name}: {net.n_species} species, {net.n_reactions} reactions")
    report.tables["summary"] = net.summary()
    dense = _run_engines(net, grid, report, say, n, seed, fsp_max_states, met, met_minutes, box)
    validations = _validate_engines(net, grid, shown, dense, report, say, n_reference, seed)

    _tables(report, dense, shown, validations)
    for key, table in report.tables.items():
        report.files.append(write_table(table, out / f"{key}.csv", overwrite=True))
    if figures:
        report.files.extend(_timed(report, "figures", lambda: _figures(net, dense, shown, out, seed)))
    report.timings["total"] = _time.perf_counter() - t_start
    provenance = {"command": command or f"sbml_met.run.run({name!r}, n={n}, n_reference={n_reference}, seed={seed})",
                  "seed": seed, "SSA trajectories": n, "Tellurium trajectories": n_reference,
                  "time grid": f"{len(grid)} times from {grid[0]:g} to {grid[-1]:g}",
                  "report times": [float(t) for t in shown], "output folder": str(out.resolve())}
    if report.met:
        provenance["MET"] = _met_line(report.met)
    report.files.append(_write_html(report, net, provenance, out))
    manifest = {"model": name, "ok": report.ok, "verdicts": report.verdicts, "timings": report.timings,
                "files": [p.name for p in report.files], "notes": report.notes, "seed": seed, "n": n,
                "n_reference": n_reference, "times": shown.tolist(), "grid": grid.tolist(), "met": report.met}
    atomic_write(out / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2)), overwrite=True)
    return report


def _resolve_model(model: str | ReactionNetwork) -> tuple[ReactionNetwork, str]:
    """The network and the name the run goes by (a file's stem for a path)."""
    from .models import load_model  # one resolver for names, paths and BioModels ids

    net = model if isinstance(model, ReactionNetwork) else load_model(str(model))
    name = str(model) if not isinstance(model, ReactionNetwork) else net.name
    name = Path(name).stem if Path(name).suffix in (".xml", ".sbml", ".ant") else name
    return net, name


def _time_grids(name: str, times: Any, report_times: Any, n: int, n_reference: int) -> tuple[np.ndarray, np.ndarray]:
    """The grid every engine runs on and the grid times nearest the report times."""
    t_end, default_report = DEFAULT_TIMES.get(name, (10.0, None))
    grid = check_times(times) if times is not None else np.linspace(0.0, t_end, int(t_end) + 1 if t_end <= 100 else 101)
    if int(n) < 1 or int(n_reference) < 1:
        raise InvalidArgumentError("n and n_reference must be >= 1")
    if report_times is None:
        positive = grid[grid > 0]
        report_times = default_report or (tuple(np.quantile(positive, [0.1, 0.33, 0.66, 1.0]))
                                          if positive.size else (grid[-1],))
    shown = np.array(sorted({float(grid[np.argmin(np.abs(grid - t))]) for t in report_times}))
    return grid, shown


def _timed(report: RunReport, step: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, its wall time recorded in ``report.timings[step]``."""
    t0 = _time.perf_counter()
    value = fn()
    report.timings[step] = _time.perf_counter() - t0
    return value


def _run_engines(net: ReactionNetwork, grid: np.ndarray, report: RunReport, say, n: int, seed: int,
                 fsp_max_states: int, met: str, met_minutes: float, box) -> dict[str, Any]:
    """SSA, FSP where feasible and the MET where one is at hand, each on ``grid`` (by engine)."""
    from .ssa import simulate

    say(f"[2/5] exact SSA, {n} trajectories on {len(grid)} times")
    dense: dict[str, Any] = {"ssa": _timed(report, "SSA", lambda: simulate(net, grid, n=n, seed=seed))}

    say(f"[3/5] finite state projection (exact CME) on the {len(grid)} times")
    try:
        from .fsp import solve_fsp

        dense["fsp"] = _timed(report, "FSP", lambda: solve_fsp(net, grid, max_states=fsp_max_states))
    except SbmlMetError as e:
        report.notes.append(f"FSP skipped: {one_line(e)}")

    say(f"[4/5] Master Equation Transformer ({met})")
    met_result = _timed(report, "MET", lambda: _met_for_run(net, grid, report, met, met_minutes, box, seed))
    if met_result is not None:
        dense["met"] = met_result
    return dense


def _validate_engines(net: ReactionNetwork, grid: np.ndarray, shown: np.ndarray, dense: dict[str, Any],
                      report: RunReport, say, n_reference: int, seed: int) -> list[pd.DataFrame]:
    """Validate every engine's answer at ``shown`` against one libroadrunner ensemble (added to
    ``dense`` as "tellurium"); the validation tables."""
    from .tellurium import run_gillespie
    from .validation import validate

    results = {k: _subset(v, shown) for k, v in dense.items()}
    say(f"[5/5] Tellurium reference, {n_reference} libroadrunner trajectories, and validation")
    try:
        ref_dense = _timed(report, "Tellurium reference",
                           lambda: run_gillespie(net, grid, n=n_reference, seed=seed + 1000))
    except SbmlMetError as e:
        report.notes.append(f"validation skipped: {one_line(e)}")
        return []
    reference = _subset(ref_dense, shown)
    validations = []
    for method, res in results.items():
        rep = validate(net, res, n_reference=n_reference, seed=seed, reference=reference)
        report.verdicts[method] = rep.ok
        validations.append(rep.to_frame())
        if not rep.ok:
            report.notes.append(rep.summary())
    dense["tellurium"] = ref_dense
    return validations


def _write_html(report: RunReport, net: ReactionNetwork, provenance: dict[str, Any], out: Path) -> Path:
    """report.html: the self-contained page (figures embedded)."""
    from .report import render_html

    page = render_html(report, net, [p for p in report.files if p.suffix == ".png"], provenance)
    return atomic_write(out / "report.html", lambda p: p.write_text(page, encoding="utf-8"), overwrite=True)


def _met_for_run(net: ReactionNetwork, times: np.ndarray, report: RunReport, spec: str,
                 minutes: float, box: Mapping[str, tuple[float, float]] | None, seed: int):
    """The MET's answer at the network's own parameter values: ``spec`` "auto" (bundled, cached
    or trained now), "off", or a checkpoint path / bundled name; None (with a note) otherwise."""
    if spec == "off":
        report.notes.append("MET off (--met off)")
        return None
    try:
        from . import met
    except ImportError as e:  # torch missing: MET is optional for the run
        report.notes.append(f"MET skipped: {e}")
        return None
    try:
        if spec == "auto":
            model = met.for_model(net, box=box, minutes=minutes, seed=seed, times=times)
        elif not Path(spec).exists() and spec in met.pretrained_names():
            model = met.pretrained(spec)
        else:
            model = met.load(spec, network=net)
    except (SbmlMetError, OSError) as e:
        report.notes.append(f"MET skipped: {one_line(e)}")
        return None
    problem = _met_mismatch(model, net, times)
    if problem:
        report.notes.append(f"MET skipped: {problem}")
        return None
    from .met.auto import run_summary

    report.met = run_summary(model)
    return _met_solve(model, times, {p: net.parameters[p] for p in model.box})


def _met_mismatch(model: Any, net: ReactionNetwork, times: np.ndarray) -> str | None:
    """Why ``model`` cannot answer for ``net`` on ``times``, or None."""
    if model.network.fingerprint() != net.fingerprint():
        return "the checkpoint was trained on another network"
    fixed = [p for p, v in model.network.parameters.items() if p not in model.box and net.parameters.get(p) != v]
    if fixed:
        return f"it was trained with other fixed values of {', '.join(fixed)}"
    outside = [p for p in model.box if not model.box[p][0] <= net.parameters[p] <= model.box[p][1]]
    if outside or float(times.max()) > model.times[1]:
        return "the model's parameters or times lie outside its training box"
    return None


def _met_line(info: dict[str, Any]) -> str:
    """One line on the run's MET for the report: source, teacher, held-out accuracy."""
    held = info.get("held_out") or {}
    acc = held.get("hellinger_mean")
    against = held.get("reference") or "reference"
    text = f"{info.get('source', 'given')} MET ({info.get('n_parameters', 0):,} weights)"
    if info.get("teacher"):
        text += f", taught by {info['teacher']} in {info.get('train_seconds') or 0:.0f} s"
    if acc is not None:
        text += f"; held-out mean marginal Hellinger {acc:.4f} against {against}"
        if held.get("noise_floor") is not None:
            text += f" (noise floor {held['noise_floor']:.4f})"
    return text


def _met_solve(model: Any, times: np.ndarray, params: dict[str, float], prune: float = 1e-12) -> Distribution:
    """The MET's joint at every time: by the KV-cached dense enumeration of :mod:`sbml_met.explorer`
    (milliseconds per time) when the count vocabulary allows, else ``model.solve``."""
    from .explorer import MAX_PREFIXES, dense_joint

    vocab = tuple(model.net.config.vocab)
    if int(np.prod(vocab)) > 50 * MAX_PREFIXES:
        return model.solve(times, prune=prune, **params)
    states, probs, lost = [], [], []
    for t in times:
        flat = dense_joint(model, float(t), **params).reshape(-1)
        keep = np.flatnonzero(flat > prune)
        states.append(np.column_stack(np.unravel_index(keep, vocab)).astype(np.int64))
        probs.append(flat[keep])
        lost.append(max(0.0, 1.0 - float(flat[keep].sum())))
    return Distribution(tuple(model.species), np.asarray(times, float), tuple(states), tuple(probs), method="met",
                        truncation_error=np.asarray(lost), metadata={"prompt": dict(params), "how": "enumerated"})


def _tables(report: RunReport, dense: dict[str, Any], shown: np.ndarray, validations: list) -> None:
    """moments (every engine on the dense grid) and marginals (at the report times), long format."""
    moments, marginals = [], []
    for method, res in dense.items():
        m = res.moments()
        m.insert(2, "method", method)
        moments.append(m)
        sub = _subset(res, shown)
        f = (sub.to_distribution() if isinstance(sub, SSAResult) else sub).to_frame()
        f.insert(2, "method", method)
        marginals.append(f)
    report.tables["moments"] = pd.concat(moments, ignore_index=True)
    report.tables["marginals"] = pd.concat(marginals, ignore_index=True)
    if validations:
        report.tables["validation"] = pd.concat(validations, ignore_index=True)


def _labels(dense: dict[str, Any]) -> dict[str, str]:
    """Legend names: SSA (n=...), FSP (exact), MET, Tellurium (n=...)."""
    names = {"ssa": "SSA", "fsp": "FSP (exact)", "met": "MET", "tellurium": "Tellurium"}
    return {k: names.get(k, k) + (f" (n={v.n:,})" if isinstance(v, SSAResult) else "") for k, v in dense.items()}


def _figures(net: ReactionNetwork, dense: dict[str, Any], times: np.ndarray, out: Path, seed: int,
             n_paths: int = 10) -> list[Path]:
    """marginals.png, moments.png, distributions.png and trajectories.png (steps at event times)."""
    from . import plot
    from .ssa import simulate

    tl, names = time_label(net), _labels(dense)
    exact = names.get("fsp")
    others = {names[k]: v for k, v in dense.items() if k != "ssa"}
    t_end = float(dense["ssa"].times[-1])
    paths = [simulate(net, [0.0, t_end], n=1, seed=seed + 10_000 + k, record="events") for k in range(n_paths)]
    figs = {
        "marginals.png": plot.marginals(_subset(dense["ssa"], times), times=list(times), exact=exact,
                                        reference={k: _subset(v, times) for k, v in others.items()} or None,
                                        label=names["ssa"]),
        "moments.png": plot.moments(dense["ssa"], reference=others or None, bands=False, exact=exact,
                                    time_label=tl, label=names["ssa"]),
        "distributions.png": plot.distributions({names[k]: v for k, v in dense.items()}, exact=exact,
                                                time_label=tl),
        "trajectories.png": plot.trajectories(paths, n=n_paths, time_label=tl),
    }
    written = []
    for fname, fig in figs.items():
        written.append(atomic_write(out / fname, lambda p, f=fig: f.savefig(p, format="png", dpi=110), overwrite=True))
    return written
