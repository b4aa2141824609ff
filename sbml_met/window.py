"""The time window of a run, chosen from the model when the user gives none.

Two sources, in this order:

1. **The model's own simulation settings**: a SED-ML file beside the model (``NAME.sedml``, any
   ``*.sedml`` in its folder that names the model's file, or the one SED-ML file of a folder
   holding one model, as a BioModels entry's cache folder does) with a ``uniformTimeCourse``: its
   output end time and number of points.
2. **The deterministic solution** (libroadrunner's CVODE, public API): the horizon grows tenfold
   from 0.01 until every species has settled (stays within 1% of its final value, or 0.05
   molecules) in the first quarter of it; the window then ends a little after the settling time
   (rounded up to 1, 2, 2.5 or 5 x 10^k). A solution that keeps oscillating instead gives a
   window of about three periods (three peaks inside it).

Report times are spread over the window. :class:`Window` says how it was chosen (``how``), for
the printed report and ``report.html``.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .network import ReactionNetwork

GRID_POINTS = 101  # times on the derived grid (0 included)
RTOL, ATOL = 0.01, 0.05  # settled: within 1% of the final value, or 0.05 molecules
HORIZONS = tuple(10.0 ** k for k in range(-2, 9))  # deterministic horizons tried, in order
FALLBACK_END = 10.0


@dataclass(frozen=True)
class Window:
    """The grid every engine runs on, the report times on it, and how they were chosen."""

    grid: np.ndarray
    report_times: tuple[float, ...]
    how: str
    kind: str  # "given", "sedml", "steady", "oscillation", "fallback"
    peak: float | None = None  # the largest deterministic amount over the window, where known


def nice_ceil(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is >= ``x`` (x > 0)."""
    k = math.floor(math.log10(x))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * 10.0 ** k >= x * (1 - 1e-12):
            return m * 10.0 ** k
    return 10.0 ** (k + 1)  # pragma: no cover


def spread_times(end: float, start: float = 0.0) -> tuple[float, ...]:
    """Four report times over (start, end]: a tenth, a third, two thirds and the end."""
    return tuple(float(start + f * (end - start)) for f in (0.1, 1 / 3, 2 / 3, 1.0))


def choose_window(net: ReactionNetwork, source: str | Path | None = None,
                  points: int = GRID_POINTS) -> Window:
    """The window of ``net`` (loaded from ``source``, a path, when there is one): the model's
    SED-ML time course, else one derived from its deterministic solution."""
    sed = sedml_time_course(Path(source)) if source is not None and Path(str(source)).is_file() else None
    if sed is not None:
        start, end, n_points, file = sed
        grid = np.linspace(start, end, min(max(n_points + 1, 11), 1001))
        return Window(grid, _on_grid(grid, spread_times(end, start)),
                      f"the model's SED-ML uniform time course ({file}: {start:g} to {end:g}, "
                      f"{n_points} points)", "sedml")
    return deterministic_window(net, points)


def _on_grid(grid: np.ndarray, times) -> tuple[float, ...]:
    return tuple(sorted({float(grid[np.argmin(np.abs(grid - t))]) for t in times}))


# ------------------------------------------------------------------------------------------ SED-ML
def sedml_time_course(model_path: Path) -> tuple[float, float, int, str] | None:
    """(output start, end, number of points, file name) of the first uniformTimeCourse in a SED-ML
    file beside ``model_path`` that is about this model, or None."""
    folder = model_path.parent
    alone = len(list(folder.glob("*.sedml"))) == 1 and len(list(folder.glob("*.xml"))) == 1  # an entry's folder
    candidates = [model_path.with_suffix(".sedml")] + sorted(folder.glob("*.sedml")) + sorted(folder.glob("*.sedx"))
    for path in dict.fromkeys(candidates):
        if not path.is_file() or path.suffix != ".sedml":
            continue
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, OSError):
            continue
        sources = [el.get("source", "") for el in root.iter() if _local(el.tag) == "model"]
        if (path != model_path.with_suffix(".sedml") and not alone
                and not any(Path(s).name == model_path.name for s in sources)):
            continue
        for el in root.iter():
            if _local(el.tag) == "uniformTimeCourse":
                try:
                    start = float(el.get("outputStartTime", 0.0))
                    end = float(el.get("outputEndTime"))
                    n_points = int(float(el.get("numberOfPoints", el.get("numberOfSteps", 100))))
                except (TypeError, ValueError):
                    continue
                if np.isfinite(end) and end > start >= 0 and n_points >= 1:
                    return start, end, n_points, path.name
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


# ------------------------------------------------------------------------------------------ ODE
def deterministic_solution(net: ReactionNetwork, end: float, points: int = 2001) -> tuple[np.ndarray, np.ndarray]:
    """(times, amounts (points, n_species)) of the network's deterministic limit on [0, end], by
    libroadrunner's CVODE on the network's SBML (counts as amounts)."""
    rr = _roadrunner(net)
    rr.resetAll()
    rr.timeCourseSelections = ["time"] + list(net.species)
    res = np.asarray(rr.simulate(0.0, float(end), int(points)))
    return res[:, 0], res[:, 1:]


def deterministic_at(net: ReactionNetwork, times) -> np.ndarray:
    """Species amounts (len(times), n_species) of the deterministic solution at ``times`` (sorted,
    from 0), by libroadrunner's CVODE (BDF: stiff-capable) with no cap on its internal steps."""
    rr = _roadrunner(net)
    rr.resetAll()
    grid = np.asarray(times, dtype=float)
    at = grid if grid.size and grid[0] == 0.0 else np.concatenate([[0.0], grid])
    cap = rr.integrator.maximum_num_steps
    rr.integrator.maximum_num_steps = 10**9  # on the network's cached RoadRunner: restored below
    try:
        res = np.asarray(rr.simulate(times=at.tolist(), selections=["time"] + list(net.species)))
    finally:
        rr.integrator.maximum_num_steps = cap
    return res[-grid.size:, 1:] if grid.size else np.zeros((0, net.n_species))


def _roadrunner(net: ReactionNetwork):
    import roadrunner

    def build():
        rr = roadrunner.RoadRunner(net.to_sbml())
        rr.integrator.relative_tolerance = 1e-8
        rr.integrator.absolute_tolerance = 1e-10
        return rr

    return net.cached("window.roadrunner", build)


def deterministic_window(net: ReactionNetwork, points: int = GRID_POINTS) -> Window:
    """The window from the deterministic solution (see the module notes); a fallback of 0 to 10
    (said so in ``how``) where libroadrunner cannot integrate the model or nothing ever moves."""
    moved_at, t, x = None, None, None
    try:
        for horizon in HORIZONS:
            t, x = deterministic_solution(net, horizon)
            if not np.all(np.isfinite(x)):
                break
            settle = settling_time(t, x)
            if settle is not None and 0 < settle <= 0.25 * horizon:
                end = nice_ceil(max(1.2 * settle, horizon / 1000))
                return _window(end, points, t, x, "steady",
                               f"from the deterministic solution: every species settles within 1% of its "
                               f"steady value by t = {settle:.3g}; window 0 to {end:g}")
            if settle is None or settle > 0:
                moved_at = moved_at or horizon
            period = oscillation_period(t, x)
            if period is not None:
                end = nice_ceil(period[1] + 0.5 * period[0])
                return _window(end, points, t, x, "oscillation",
                               f"from the deterministic solution: it oscillates with period {period[0]:.3g} "
                               f"(third peak at t = {period[1]:.3g}); window 0 to {end:g}")
    except Exception as e:  # roadrunner cannot integrate it: say so, keep the old default
        return _window(FALLBACK_END, 11, None, None, "fallback",
                       f"0 to {FALLBACK_END:g} (no deterministic solution: {str(e).splitlines()[0][:120]}); "
                       "give --times for another")
    end = FALLBACK_END if moved_at is None else moved_at
    why = ("nothing changes in the deterministic solution" if moved_at is None else
           f"the deterministic solution neither settles nor oscillates by t = {HORIZONS[-1]:g}")
    return _window(end, points, t, x, "fallback", f"0 to {end:g} ({why}); give --times for another")


def _window(end: float, points: int, t, x, kind: str, how: str) -> Window:
    grid = np.linspace(0.0, end, points)
    peak = None
    if t is not None and x is not None:
        inside = np.asarray(x)[np.asarray(t) <= end * (1 + 1e-9)]
        finite = inside[np.isfinite(inside)]
        peak = float(np.abs(finite).max()) if finite.size else None
    return Window(grid, _on_grid(grid, spread_times(end)), how, kind, peak)


def settling_time(t: np.ndarray, x: np.ndarray) -> float | None:
    """The first time after which every species stays within 1% (or 0.05) of its final value,
    or None when the last quarter of the solution still moves beyond that."""
    final = x[-1]
    tol = np.maximum(RTOL * np.abs(final), ATOL)
    outside = np.any(np.abs(x - final) > tol, axis=1)
    if not outside.any():
        return 0.0
    last = int(np.flatnonzero(outside)[-1])
    if t[last] > 0.75 * t[-1]:
        return None
    return float(t[last + 1])


def oscillation_period(t: np.ndarray, x: np.ndarray) -> tuple[float, float] | None:
    """(period, time of the third peak) of a sustained oscillation, or None: some species has at
    least four peaks of prominence over 10% of its range, the last as prominent as a third of the
    first."""
    from scipy.signal import find_peaks

    best = None
    for i in range(x.shape[1]):
        y = x[:, i]
        span = float(np.ptp(y))
        if span <= ATOL or span < 1e-3 * max(float(np.abs(y).max()), 1e-300):
            continue
        peaks, props = find_peaks(y, prominence=0.1 * span)
        prom = props["prominences"]
        if len(peaks) < 4 or prom[-1] < prom[-3] / 3:
            continue
        period = float(np.median(np.diff(t[peaks][1:])))
        candidate = (period, float(t[peaks[2]]))
        if best is None or candidate[1] > best[1]:
            best = candidate
    return best
