"""Adaptive tau-leaping (Cao, Gillespie & Petzold 2006, J. Chem. Phys. 124, 044109): an approximate
SSA for large counts, run by ``simulate(..., method="tau-leap", epsilon=0.03)``.

Each leap fires every non-critical reaction a Poisson number of times over a step tau chosen so
that no reactant's propensity is expected to change by more than ``epsilon`` (relative; bounds on
the mean and the SD of the change, with Cao et al.'s g_i for second- and third-order reactions).
Critical reactions (those that could exhaust a reactant within 10 firings) fire exactly, at most
once per leap, at an exponential waiting time. A leap that would make a count negative is rejected
and retried at half the step, so counts never go below zero. Where a leap would be shorter than 10
mean exact waiting times the kernel takes 100 exact SSA steps instead. Leaps stop at every output
time, so the grid is recorded exactly where the path is. Errors shrink with ``epsilon``: at 0.03 the
stationary means, SDs and marginals of tests/test_tau_leap.py match the exact stationary pmfs within sampling
noise, while a transient lags (explicit leaping: a decay at rate k runs about epsilon * k * t / 2
behind, relative). Use the exact SSA where that matters.

Networks with SBML events, species assignment rules, rate rules, time in a law or delays leap on
the vectorised engine :mod:`sbml_met._tau_events` instead: leaps stop at event times, triggers,
scheduled executions and recording times, and rules are re-evaluated on every state.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InvalidArgumentError, NegativeCountError, PropensityError
from .network import ReactionNetwork, check_times
from .results import SSAResult
from .support import check_support


def simulate_tau_leap(net: ReactionNetwork, times: Any, n: int = 1000, seed: int | None = None,
                      epsilon: float = 0.03, progress: bool | None = None) -> SSAResult:
    """``n`` tau-leaping trajectories of ``net`` recorded at ``times`` (``method="tau-leap"``).

    Plain networks leap on the compiled kernel; networks with events, species assignment rules or
    rates that vary in time on :mod:`sbml_met._tau_events`. The same seed gives the same numbers.
    """
    from .ssa import compiled_kernel, progress_bar

    check_support(net, "tau-leap")
    if not 0 < float(epsilon) < 1:
        raise InvalidArgumentError(f"epsilon must lie between 0 and 1, got {epsilon}")
    if int(n) < 1:
        raise InvalidArgumentError(f"n must be >= 1, got {n}")
    grid = check_times(times)
    if net.events or net.time_varying or any(r.species_index is not None for r in net.rules):
        from ._tau_events import simulate_event_leaping

        return simulate_event_leaping(net, grid, int(n), seed, float(epsilon), bool(progress))
    kernel = compiled_kernel(net)
    if kernel is None:
        raise InvalidArgumentError(
            "method='tau-leap' runs networks whose laws the compiled kernel reads (numba installed); "
            "use method='direct'")
    leaper = _Leaper(net, kernel)
    n = int(n)
    out = np.empty((n, grid.size, net.n_species))
    chunk = max(1, n // 100) if progress else n
    bar = progress_bar(bool(progress), float(grid[-1]))
    leaper.seed(seed)
    for first in range(0, n, chunk):
        last = min(n, first + chunk)
        leaper.run(grid, out[first:last], first, last, float(epsilon))
        if bar is not None:
            bar.update(float(grid[-1]) * (last - first) / n)
    if bar is not None:
        bar.close()
    return SSAResult(net.species, grid, out, method="tau-leap", seed=seed, model=net.name)


class _Leaper:
    """The arrays the tau-leaping kernel takes for one network."""

    def __init__(self, net: ReactionNetwork, kernel):
        from . import _tau_numba

        self.net, self.kernel, self.k = net, kernel, _tau_numba
        self.nu = np.ascontiguousarray(net.stoichiometry.astype(float))
        index = {s: i for i, s in enumerate(net.species)}
        dynamic = net.dynamic_species
        reactant = np.zeros_like(self.nu)
        for j, rx in enumerate(net.reactions):
            for s, m in rx.reactants:
                if dynamic[index[s]]:
                    reactant[j, index[s]] += m
        self.consumed = np.where(self.nu < 0, -self.nu, 0.0)
        # highest order of a reaction species i is a reactant of, and how many of i that one uses
        orders = reactant.sum(axis=1)
        self.order = np.zeros(net.n_species, dtype=np.int64)
        self.mult = np.zeros(net.n_species, dtype=np.int64)
        for i in range(net.n_species):
            uses = np.flatnonzero(reactant[:, i] > 0)
            if uses.size:
                top = uses[np.argmax(orders[uses] * 10 + reactant[uses, i])]
                self.order[i], self.mult[i] = int(orders[top]), int(reactant[top, i])
        self.counts = np.zeros(2, dtype=np.int64)  # leaps, exact steps

    def seed(self, seed: int | None) -> None:
        self.k.seed(int(np.random.SeedSequence(seed).generate_state(1, np.uint32)[0] >> np.uint32(1)))

    def run(self, grid: np.ndarray, out: np.ndarray, first: int, last: int, eps: float) -> None:
        net = self.net
        info = np.zeros(5 + net.n_species)
        status = self.k.run(*self.kernel.laws, np.asarray(net.initial_state, dtype=float), self.nu,
                            self.consumed, self.order, self.mult, eps, grid, out, first, last,
                            self.kernel.p.stack, info, self.counts)
        if status == self.k.NEGATIVE_COUNT:
            r, i = int(info[1]), int(info[2])
            raise NegativeCountError(net.reactions[r].id, net.species[i], float(info[3]), float(info[4]))
        if status == self.k.BAD_PROPENSITY:
            state = dict(zip(net.species, info[5:].tolist()))
            raise PropensityError(net.reactions[int(info[1])].id, float(info[3]), state, float(info[4]))
