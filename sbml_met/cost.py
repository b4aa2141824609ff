"""What a stochastic run will cost, known before it starts.

The expected number of reaction events of one trajectory over ``[0, end]`` is the integral of the
summed propensities along the deterministic solution (:func:`sbml_met.window.deterministic_solution`).
Seconds follow from per-event costs measured on this project's machines (2 cores, compiled SSA
kernel 35-90 ns per event, libroadrunner's gillespie 1-2.2 us per event plus 2-6 ms per trajectory;
the constants below are the slow ends, rounded up), so an estimate errs long rather than short.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .network import ReactionNetwork

SSA_SECONDS_PER_EVENT = {"products": 1.5e-7, "compiled": 6e-7, "vectorised": 2e-6}
REFERENCE_SECONDS_PER_EVENT = 2.5e-6
REFERENCE_SECONDS_PER_TRAJECTORY = 5e-3
PYTHON_SECONDS_PER_EVENT = 2e-5  # one trajectory recorded event by event (record="events")
# adaptive FSP: its Krylov steps scale with states x the window's total propensity (= expected events
# per trajectory); measured 9.4e-9 s on a 73,000-state, 7.4e5-event kinase cycle (507 s)
FSP_SECONDS_PER_STATE_EVENT = 1e-8


@dataclass(frozen=True)
class Cost:
    """Expected reaction events per trajectory (``events``) over a window ending at ``end``."""

    events: float
    end: float
    times: np.ndarray = field(default_factory=lambda: np.zeros(0), compare=False, repr=False)
    cumulative: np.ndarray = field(default_factory=lambda: np.zeros(0), compare=False, repr=False)

    def events_until(self, t: float) -> float:
        """Expected events per trajectory on ``[0, t]`` (NaN where unknown)."""
        if not self.times.size:
            return float("nan")
        return float(np.interp(t, self.times, self.cumulative))

    def ssa_seconds(self, n: int, workers: int = 1, kernel: str = "products") -> float:
        """Seconds for ``n`` exact SSA trajectories on ``workers`` processes."""
        return n * self.events * SSA_SECONDS_PER_EVENT[kernel] / max(1, min(workers, math.ceil(n / 2500)))

    def fsp_seconds(self, states: float) -> float:
        """Seconds the adaptive FSP needs on about ``states`` states over this window (a low end:
        small problems are dominated by fixed costs, which never matter for the budget)."""
        return float(states) * self.events * FSP_SECONDS_PER_STATE_EVENT

    def reference_seconds(self, n: int, workers: int = 1) -> float:
        """Seconds for ``n`` libroadrunner gillespie trajectories on ``workers`` processes."""
        return n * (self.events * REFERENCE_SECONDS_PER_EVENT + REFERENCE_SECONDS_PER_TRAJECTORY) / max(1, workers)


def kernel_kind(net: ReactionNetwork) -> str:
    """Which SSA kernel runs ``net``: "products" (compiled, every law a product of counts and
    constants), "compiled" (compiled, other laws interpreted) or "vectorised"."""
    from .ssa import compiled_kernel

    kernel = compiled_kernel(net)
    if kernel is None:
        return "vectorised"
    return "products" if bool(np.all(kernel.p.kind == 0)) else "compiled"


def estimate_cost(net: ReactionNetwork, end: float, points: int = 2001) -> Cost:
    """Expected events per trajectory of ``net`` on ``[0, end]``, from the deterministic solution;
    ``events`` is NaN when libroadrunner cannot integrate the model."""
    from .window import deterministic_solution

    try:
        t, x = deterministic_solution(net, end, points)
        a = net.propensities(np.maximum(x, 0.0))
    except Exception:  # no deterministic solution or propensities off the integer lattice
        return Cost(float("nan"), float(end))
    total = np.nan_to_num(np.clip(a, 0.0, None)).sum(axis=1) if a.ndim == 2 else np.zeros(len(t))
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (total[1:] + total[:-1]) * np.diff(t))])
    return Cost(float(cumulative[-1]), float(end), np.asarray(t, float), cumulative)


def describe_seconds(seconds: float) -> str:
    """'about 4 s', 'about 3.5 min', 'about 2.1 h', 'about 3 days' (an estimate, said as one)."""
    if not np.isfinite(seconds):
        return "an unknown time"
    if seconds < 90:
        return f"about {max(seconds, 0.1):.2g} s"
    if seconds < 5400:
        return f"about {seconds / 60:.2g} min"
    if seconds < 2 * 86400:
        return f"about {seconds / 3600:.2g} h"
    return f"about {seconds / 86400:.2g} days"
