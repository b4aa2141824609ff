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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

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


RUN_METHODS = ("auto", "direct", "tau-leap")
N_DEFAULT = 10_000  # SSA and Tellurium trajectories, where they fit the budgets
SSA_BUDGET_S = 120.0  # seconds of SSA above which "auto" leaps or takes fewer trajectories
REFERENCE_BUDGET_S = 120.0  # seconds of libroadrunner above which the reference takes fewer
FSP_BUDGET_S = 120.0  # seconds of FSP (estimated) above which the run leaves FSP out, saying so
N_EXACT_MIN = 500  # exact SSA with fewer trajectories (at least this many) before tau-leaping
N_MIN, N_MIN_REFERENCE = 500, 100  # fewer reference trajectories make the spread test unreliable
N_SHORT_REFERENCE = 100  # reference trajectories on a shortened span, where the whole window cannot fit
MARGIN = 1.5  # a plan changes only where the estimate exceeds its budget this many times (speed varies)


def nice_floor(n: float) -> int:
    """The largest of 1, 1.5, 2, 3, 5, 7 x 10^k at most ``n`` (a sample size that does not move
    with small changes of the machine's speed)."""
    if n < 1:
        return 1
    k = 10 ** int(np.floor(np.log10(n)))
    return int(max(m * k for m in (1, 1.5, 2, 3, 5, 7) if m * k <= n * (1 + 1e-9)))
EVENT_PATHS_MAX = 20_000  # events per trajectory up to which trajectories.png records every event


@dataclass(frozen=True)
class RunPlan:
    """How ``run`` simulates, decided before it starts: the SSA method, the sample sizes, the
    expected cost (``lines``: printed first; ``notes``: every choice the user did not make)."""

    method: str  # "direct" (exact SSA) or "tau-leap"
    n: int
    n_reference: int
    cost: Any
    lines: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    reference_end: float | None = None  # the Tellurium reference stops here (None: the window's end)

    @property
    def method_label(self) -> str:
        return "exact SSA (direct method)" if self.method == "direct" else "tau-leaping (approximate)"


def plan_run(net: ReactionNetwork, grid: np.ndarray, n: int | None = None, n_reference: int | None = None,
             method: str = "auto", workers: int | None = None) -> RunPlan:
    """The run's SSA method and sample sizes from the expected events per trajectory (the
    deterministic propensities over the window): exact SSA of ``n`` (default 10,000) trajectories
    unless that exceeds ``SSA_BUDGET_S`` (by ``MARGIN``), then tau-leaping (timed on a few trajectories first)
    where it is faster, else fewer trajectories (only when ``n`` was not given); the Tellurium
    reference takes fewer than ``n_reference`` (default 10,000) where they exceed
    ``REFERENCE_BUDGET_S``."""
    from .cost import describe_seconds as about
    from .cost import estimate_cost, kernel_kind
    from .parallel import available_workers

    workers = workers or available_workers()
    cost = estimate_cost(net, float(grid[-1]))
    kernel = kernel_kind(net)
    n_ssa = n_first = N_DEFAULT if n is None else int(n)
    lines = [f"expected {cost.events:,.3g} reaction events per trajectory (deterministic propensities "
             f"over the window)" if np.isfinite(cost.events) else
             "expected events per trajectory unknown (no deterministic solution)"]
    notes: list[str] = []
    exact = _seconds(net, grid, n_ssa, workers, "direct", cost) if method != "tau-leap" else None
    if exact is None:
        exact = cost.ssa_seconds(n_ssa, workers, kernel)
    chosen = "tau-leap" if method == "tau-leap" else "direct"
    fewer_exact = nice_floor(n_ssa * SSA_BUDGET_S / exact) if exact > 0 else n_ssa
    if method == "auto" and exact > MARGIN * SSA_BUDGET_S and n is None and fewer_exact >= N_EXACT_MIN:
        # fewer exact trajectories before an approximation: tau-leaping's bias grows with the counts and
        # shows against the reference (0.3% of 6e4 molecules, z = -12.7, on a kinase cycle)
        n_ssa = fewer_exact
        notes.append(f"exact SSA of 10,000 trajectories would take {about(exact)}: {n_ssa:,} exact trajectories "
                     "instead (--n forces more, --method tau-leap leaps)")
    elif method == "auto" and exact > MARGIN * SSA_BUDGET_S:
        leap = _seconds(net, grid, n_ssa, workers, "tau-leap", cost)
        if leap is not None and leap < exact / 2:
            chosen = "tau-leap"
            notes.append(f"exact SSA of {n_ssa:,} trajectories would take {about(exact)}: tau-leaping instead "
                         f"({about(leap)}; --method direct forces exact SSA)")
            if n is None and leap > MARGIN * SSA_BUDGET_S:
                n_ssa = max(N_MIN, nice_floor(n_ssa * SSA_BUDGET_S / leap))
                notes.append(f"{n_ssa:,} tau-leaping trajectories (10,000 would take {about(leap)}; --n forces more)")
        elif n is None:
            n_ssa = max(N_MIN, nice_floor(n_ssa * SSA_BUDGET_S / exact))
            notes.append(f"exact SSA of 10,000 trajectories would take {about(exact)}: {n_ssa:,} trajectories "
                         "instead (--n forces more)")
    if chosen == "direct":
        lines.append(f"exact SSA of {n_ssa:,} trajectories on {workers} processes: {about(exact * n_ssa / n_first)}")
    n_ref = n_first_ref = N_DEFAULT if n_reference is None else int(n_reference)
    per_ref = _reference_seconds_each(net, grid, cost)
    ref = n_ref * per_ref / workers if per_ref is not None else cost.reference_seconds(n_ref, workers)
    reference_end = None
    if n_reference is None and ref > MARGIN * REFERENCE_BUDGET_S:
        n_ref = max(N_MIN_REFERENCE, nice_floor(n_ref * REFERENCE_BUDGET_S / ref))
        if n_ref * ref / n_first_ref > MARGIN * REFERENCE_BUDGET_S:  # even the fewest do not fit: a shorter span
            reference_end, n_ref = _reference_span(cost, grid, ref / n_first_ref)
            notes.append(f"Tellurium reference of 10,000 trajectories would take {about(ref)}: {n_ref:,} "
                         f"trajectories on 0 to {reference_end:g} instead, where validation takes place "
                         "(--n-reference forces the whole window)")
        else:
            notes.append(f"Tellurium reference of 10,000 trajectories would take {about(ref)}: {n_ref:,} "
                         "trajectories instead (--n-reference forces more)")
    fraction = 1.0 if reference_end is None else cost.events_until(reference_end) / max(cost.events, 1e-300)
    lines.append(f"Tellurium reference of {n_ref:,} trajectories: {about(ref * n_ref / n_first_ref * fraction)}")
    return RunPlan(chosen, n_ssa, n_ref, cost, tuple(lines + notes), tuple(notes), reference_end)


def _fsp_too_slow(net: ReactionNetwork, grid: np.ndarray, plan: RunPlan, max_states: float = np.inf) -> str | None:
    """A note where FSP would take over ``MARGIN`` x ``FSP_BUDGET_S`` (states x events estimate), else
    None (also where its states exceed ``max_states``: solve_fsp then refuses at once, saying why)."""
    from .cost import describe_seconds
    from .fsp import estimate_states

    found = estimate_states(net, float(grid[-1]))
    if found is None or not np.isfinite(plan.cost.events) or found[0] > max_states:
        return None
    seconds = plan.cost.fsp_seconds(found[0])
    if seconds <= MARGIN * FSP_BUDGET_S:
        return None
    return (f"FSP skipped: about {found[0]:.2g} states over {plan.cost.events:.2g} expected events per trajectory "
            f"would take {describe_seconds(seconds)} (budget {FSP_BUDGET_S:g} s); the exact SSA answers instead "
            "(sbml_met.solve_fsp runs it anyway)")


def _reference_span(cost: Any, grid: np.ndarray, seconds_each: float) -> tuple[float, int]:
    """The longest grid span [0, t] on which N_SHORT_REFERENCE reference trajectories fit the
    budget (events grow with t), at least the first grid step."""
    events = cost.events if np.isfinite(cost.events) and cost.events > 0 else float("nan")
    positive = grid[grid > 0]
    if not positive.size or not np.isfinite(events):
        return float(grid[-1]), N_MIN_REFERENCE
    fits = [t for t in positive if N_SHORT_REFERENCE * seconds_each * cost.events_until(t) / events
            <= REFERENCE_BUDGET_S]
    return float(fits[-1] if fits else positive[0]), N_SHORT_REFERENCE


def _reference_seconds_each(net: ReactionNetwork, grid: np.ndarray, cost: Any, budget: float = 1.0) -> float | None:
    """Seconds per libroadrunner gillespie trajectory, timed here on a few in this process (the
    model's load included, so it errs long); None where one would take over 5 s by the events
    estimate or libroadrunner refuses the model (the run then says why)."""
    from .cost import REFERENCE_SECONDS_PER_EVENT, REFERENCE_SECONDS_PER_TRAJECTORY
    from .tellurium import run_gillespie

    guess = (cost.events * REFERENCE_SECONDS_PER_EVENT + REFERENCE_SECONDS_PER_TRAJECTORY
             if np.isfinite(cost.events) else 1e-2)
    if guess > 5.0:
        return None
    pilot = int(np.clip(budget / guess, 2, 100))
    t0 = _time.perf_counter()
    try:
        run_gillespie(net, grid, n=pilot, seed=0, processes=1, progress=False)
    except SbmlMetError:
        return None
    return (_time.perf_counter() - t0) / pilot


def _seconds(net: ReactionNetwork, grid: np.ndarray, n: int, workers: int, method: str, cost: Any,
             budget: float = 1.0) -> float | None:
    """Seconds for ``n`` trajectories of ``method`` ("direct" or "tau-leap"), timed here on a few
    (after one that compiles the kernel; about ``budget`` seconds in all): the machine's speed now,
    for this model's laws. Where one trajectory would take over 5 s by the events estimate, that
    estimate alone; None where ``method`` does not run this network."""
    from .cost import SSA_SECONDS_PER_EVENT, kernel_kind
    from .ssa import simulate

    guess = cost.events * SSA_SECONDS_PER_EVENT[kernel_kind(net)] if np.isfinite(cost.events) else 1e-3
    spread = max(1, min(workers, -(-n // 2500)))
    if method == "direct" and guess > 5.0:
        return n * guess / spread
    pilot = int(np.clip(budget / max(guess, 1e-9), 2, 200))
    try:
        simulate(net, grid, n=1, seed=0, method=method, workers=1, progress=False)
        t0 = _time.perf_counter()
        simulate(net, grid, n=pilot, seed=1, method=method, workers=1, progress=False)
    except SbmlMetError:
        return None
    return n * (_time.perf_counter() - t0) / pilot / spread


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
    window: str = ""  # how the time window was chosen

    @property
    def ok(self) -> bool:
        """True when every validated engine agreed with the Tellurium reference."""
        return all(self.verdicts.values()) if self.verdicts else True

    def text(self) -> str:
        lines = [f"sbml-met run: {self.model}"]
        if self.window:
            lines.append(f"  time window: {self.window}")
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
    """The result at the grid times nearest ``times`` (for validation on the report times); times
    beyond the result's last one (a reference on a shorter span) are left out."""
    last = float(result.times[-1]) + 1e-9 * max(1.0, abs(float(result.times[-1])))
    idx = [int(np.argmin(np.abs(result.times - t))) for t in times if t <= last]
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


def _prepare_folder(out_dir: Path, force: bool, create: bool = True) -> None:
    """Refuse to write into a folder holding files that an earlier run did not write (or into
    a path that is a file)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file, not a folder; give --out a folder")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).exists() and not force:
        raise FileExistsError(f"{out_dir} holds files sbml-met did not write; pass --force to use it")
    if create:
        out_dir.mkdir(parents=True, exist_ok=True)


def run(
    model: str | ReactionNetwork,
    out_dir: str | Path | None = None,
    times: Any = None,
    report_times: Any = None,
    n: int | None = None,
    n_reference: int | None = None,
    seed: int = 1,
    fsp_max_states: int = 300_000,
    figures: bool = True,
    force: bool = False,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
    met: str = "auto",
    met_minutes: float = 8.0,
    box: Mapping[str, tuple[float, float]] | None = None,
    volume: float | str | None = None,
    method: str = "auto",
    continuous: Sequence[str] | str = (),
) -> RunReport:
    """Run every engine on ``model`` (bundled name, path, BioModels id, or a ReactionNetwork).

    ``met``: "auto" (a bundled or cached MET that covers the model, else one trained within
    ``met_minutes`` at most, until it reaches its accuracy target, over ``box``, default each rate
    parameter x/÷ 2, and cached), "off", or a
    checkpoint path / bundled name. Writes tables, figures, ``report.html`` (``command``: the
    command line it records; default the Python call) and ``run.json`` into ``out_dir``.

    Chosen from the model unless given: the window (``times``; see :mod:`sbml_met.window`), the
    volume (``volume``: a number, "auto" or None for the model as written), the SSA method
    (``method`` "auto": exact SSA, or tau-leaping where exact SSA of ``n`` trajectories would
    exceed ``SSA_BUDGET_S``; "direct" forces exact, "tau-leap" forces leaping) and the sample
    sizes (``n``, ``n_reference``: 10,000, or fewer where that would exceed the budget).
    ``continuous``: species integrated as an ODE (see :func:`sbml_met.models.load_model`)."""
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t_start = _time.perf_counter()
    if method not in RUN_METHODS:
        raise InvalidArgumentError(f"unknown method {method!r}; choose one of: {', '.join(RUN_METHODS)}")
    for label, value in (("n", n), ("n_reference", n_reference)):
        if value is not None and int(value) < 1:
            raise InvalidArgumentError(f"{label} must be >= 1, got {value}")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        _prepare_folder(out, force, create=False)  # refuse before any work
    net, name, source = _resolve_model(model, volume, continuous)
    window = _window(net, name, source, times, report_times)
    grid, shown = window.grid, np.asarray(window.report_times)
    out = out if out is not None else Path("sbml-met-output") / name
    _prepare_folder(out, force)
    report = RunReport(name, out)
    report.window = window.how
    report.notes.extend(n_ for n_ in net.notes if n_.startswith("--volume"))

    say(f"[1/5] {name}: {net.n_species} species, {net.n_reactions} reactions; window {grid[0]:g} to "
        f"{grid[-1]:g} ({window.how})")
    for note in (n_ for n_ in net.notes if n_.startswith("--volume")):
        say(f"      {note}")
    report.tables["summary"] = net.summary()
    plan = plan_run(net, grid, n, n_reference, method)
    for line in plan.lines:
        say(f"      {line}")
    report.notes.extend(plan.notes)
    n, n_reference = plan.n, plan.n_reference
    dense = _run_engines(net, grid, report, say, plan, seed, fsp_max_states, met, met_minutes, box, shown)
    validations = _validate_engines(net, grid, shown, dense, report, say, n_reference, seed, plan.reference_end)

    _tables(report, dense, shown, validations)
    for key, table in report.tables.items():
        report.files.append(write_table(table, out / f"{key}.csv", overwrite=True))
    if figures:
        report.files.extend(_timed(report, "figures", lambda: _figures(net, dense, shown, out, seed, plan)))
    report.timings["total"] = _time.perf_counter() - t_start
    provenance = {"command": command or f"sbml_met.run.run({name!r}, n={n}, n_reference={n_reference}, seed={seed})",
                  "seed": seed, "SSA trajectories": n, "Tellurium trajectories": n_reference,
                  "time grid": f"{len(grid)} times from {grid[0]:g} to {grid[-1]:g}",
                  "time window": window.how, "SSA method": plan.method_label,
                  "report times": [float(t) for t in shown], "output folder": str(out.resolve())}
    if report.met:
        provenance["MET"] = _met_line(report.met)
    report.files.append(_write_html(report, net, provenance, out))
    manifest = {"model": name, "ok": report.ok, "verdicts": report.verdicts, "timings": report.timings,
                "files": [p.name for p in report.files], "notes": report.notes, "seed": seed, "n": n,
                "n_reference": n_reference, "times": shown.tolist(), "grid": grid.tolist(), "met": report.met,
                "window": window.how, "method": plan.method}
    atomic_write(out / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2), encoding="utf-8"), overwrite=True)
    return report


def _resolve_model(model: str | ReactionNetwork, volume: float | str | None = None,
                   continuous: Sequence[str] | str = ()) -> tuple[ReactionNetwork, str, Any]:
    """The network, the name the run goes by (a file's stem for a path) and its SBML source
    (a path, or None)."""
    from .models import load_model, model_source  # one resolver for names, paths and BioModels ids

    if isinstance(model, ReactionNetwork):
        from .models import with_continuous

        return with_continuous(model, continuous), model.name, None
    net = load_model(str(model), volume=volume, continuous=continuous)
    name = Path(str(model)).stem if Path(str(model)).suffix in (".xml", ".sbml", ".ant") else str(model)
    source = model_source(str(model))
    return net, name, source if isinstance(source, Path) else None


def _window(net: ReactionNetwork, name: str, source: Any, times: Any, report_times: Any) -> "Window":
    """The grid and report times: as given, the MET paper's for a bundled model, else from the
    model (its SED-ML time course or its deterministic solution)."""
    from .window import Window, choose_window

    if times is not None:
        grid = check_times(times)
        window = Window(grid, (), f"as given (--times), {grid[0]:g} to {grid[-1]:g}", "given")
    elif name in DEFAULT_TIMES and isinstance(source, Path) and source.parent.name == "sbml_models":
        t_end, shown = DEFAULT_TIMES[name]
        grid = np.linspace(0.0, t_end, int(t_end) + 1)
        window = Window(grid, shown, f"the MET paper's times for the bundled {name}, 0 to {t_end:g}", "given")
    else:
        window = choose_window(net, source)
    grid = window.grid
    if report_times is None:
        positive = grid[grid > 0]
        report_times = window.report_times or (tuple(np.quantile(positive, [0.1, 0.33, 0.66, 1.0]))
                                               if positive.size else (grid[-1],))
    shown = tuple(sorted({float(grid[np.argmin(np.abs(grid - t))]) for t in report_times}))
    return replace(window, report_times=shown)


def _timed(report: RunReport, step: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, its wall time recorded in ``report.timings[step]``."""
    t0 = _time.perf_counter()
    value = fn()
    report.timings[step] = _time.perf_counter() - t0
    return value


def _run_engines(net: ReactionNetwork, grid: np.ndarray, report: RunReport, say, plan: RunPlan, seed: int,
                 fsp_max_states: int, met: str, met_minutes: float, box, shown=None) -> dict[str, Any]:
    """SSA (or tau-leaping, as planned), FSP where feasible and the MET where one is at hand,
    each on ``grid`` (by engine)."""
    from .ssa import simulate

    what = "exact SSA" if plan.method == "direct" else "tau-leaping"
    say(f"[2/5] {what}, {plan.n:,} trajectories on {len(grid)} times")
    dense: dict[str, Any] = {"ssa": _timed(report, "SSA", lambda: simulate(net, grid, n=plan.n, seed=seed,
                                                                            method=plan.method))}

    say(f"[3/5] finite state projection (exact CME) on the {len(grid)} times")
    try:
        from .fsp import solve_fsp

        slow = _fsp_too_slow(net, grid, plan, fsp_max_states)
        if slow:
            report.notes.append(slow)
        else:
            dense["fsp"] = _timed(report, "FSP", lambda: solve_fsp(net, grid, max_states=fsp_max_states))
    except SbmlMetError as e:
        report.notes.append(f"FSP skipped: {one_line(e)}")

    say(f"[4/5] Master Equation Transformer ({met})")
    met_result = _timed(report, "MET", lambda: _met_for_run(net, grid, report, met, met_minutes, box, seed,
                                                                         shown))
    if met_result is not None:
        dense["met"] = met_result
    return dense


def _validate_engines(net: ReactionNetwork, grid: np.ndarray, shown: np.ndarray, dense: dict[str, Any],
                      report: RunReport, say, n_reference: int, seed: int,
                      reference_end: float | None = None) -> list[pd.DataFrame]:
    """Validate every engine's answer at ``shown`` (those up to ``reference_end``, and that time)
    against one libroadrunner ensemble (added to ``dense`` as "tellurium"); the validation tables."""
    from .tellurium import run_gillespie
    from .validation import validate

    if reference_end is not None and reference_end < grid[-1]:
        grid = grid[grid <= reference_end * (1 + 1e-12)]
        shown = np.array(sorted({float(t) for t in shown if t <= grid[-1]} | {float(grid[-1])}))
    results = {k: _subset(v, shown) for k, v in dense.items()}
    span = "" if reference_end is None else f" on 0 to {grid[-1]:g}"
    say(f"[5/5] Tellurium reference, {n_reference:,} libroadrunner trajectories{span}, and validation")
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
                 minutes: float, box: Mapping[str, tuple[float, float]] | None, seed: int, shown=None):
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
            model = met.for_model(net, box=box, minutes=minutes, seed=seed, times=times, check_times=shown)
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
    from .met.auto import not_validated_text, run_summary

    report.met = run_summary(model)
    if not report.met.get("validated"):
        report.met["not_validated"] = not_validated_text(model)
        report.notes.append(report.met["not_validated"])
    dist = _met_solve(model, times, {p: net.parameters[p] for p in model.box})
    return Distribution(dist.species, dist.times, dist.states, dist.probabilities, method=dist.method,
                        truncation_error=dist.truncation_error, metadata={**dist.metadata, **model.accuracy})


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
    text = f"{info.get('source', 'given')} MET, an approximation ({info.get('n_parameters', 0):,} weights)"
    if info.get("teacher"):
        text += f", taught by {info['teacher']} in {info.get('train_seconds') or 0:.0f} s"
    if acc is not None:
        text += f"; held-out mean marginal Hellinger {acc:.4f} against {against}"
        if held.get("noise_floor") is not None:
            text += f" (noise floor {held['noise_floor']:.4f})"
        if info.get("target") is not None:
            text += f", target {info['target']:g}: " + ("validated" if info.get("validated") else "NOT validated")
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
        if not len(sub.times):  # a reference on a span shorter than every report time
            continue
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
    if "ssa" in dense and getattr(dense["ssa"], "method", "ssa") == "tau-leap":
        names["ssa"] = "SSA tau-leap"
    return {k: names.get(k, k) + (f" (n={v.n:,})" if isinstance(v, SSAResult) else "") for k, v in dense.items()}


def changing_species(net: ReactionNetwork, ssa: SSAResult) -> list[str]:
    """Species worth a distribution panel: not boundary or constant, and not the same count in
    every trajectory at every time (every species when none changes)."""
    fixed = {s.id for s in net.species_info if s.boundary or s.constant}
    moving = [s for i, s in enumerate(ssa.species)
              if s not in fixed and float(np.ptp(ssa.states[:, :, i])) > 0]
    return moving or list(ssa.species)


def _figures(net: ReactionNetwork, dense: dict[str, Any], times: np.ndarray, out: Path, seed: int,
             plan: RunPlan | None = None, n_paths: int = 10) -> list[Path]:
    """marginals.png, moments.png, distributions.png and trajectories.png (steps at event times)."""
    from . import plot
    from .ssa import simulate

    tl, names = time_label(net), _labels(dense)
    exact = names.get("fsp")
    others = {names[k]: v for k, v in dense.items() if k != "ssa"}
    t_end = float(dense["ssa"].times[-1])
    events = plan.cost.events if plan is not None else 0.0
    if plan is None or (plan.method == "direct" and np.isfinite(events) and events <= EVENT_PATHS_MAX):
        paths = [simulate(net, [0.0, t_end], n=1, seed=seed + 10_000 + k, record="events") for k in range(n_paths)]
    else:  # too many events to record one by one: the ensemble's first trajectories on the grid
        paths = dense["ssa"]
    species = changing_species(net, dense["ssa"])
    figs = {
        "marginals.png": plot.marginals(_subset(dense["ssa"], times), species=species, times=list(times),
                                        exact=exact, label=names["ssa"],
                                        reference={k: _subset(v, times) for k, v in others.items()} or None),
        "moments.png": plot.moments(dense["ssa"], reference=others or None, species=species, bands=True,
                                    exact=exact, time_label=tl, label=names["ssa"]),
        "distributions.png": plot.distributions({names[k]: v for k, v in dense.items()}, species=species,
                                                exact=exact, time_label=tl),
        "trajectories.png": plot.trajectories(paths, n=n_paths, species=species, time_label=tl,
                                              of=dense["ssa"].n),
    }
    written = []
    for fname, fig in figs.items():
        written.append(atomic_write(out / fname, lambda p, f=fig: f.savefig(p, format="png", dpi=110), overwrite=True))
    return written
