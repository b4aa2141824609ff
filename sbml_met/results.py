"""Result objects shared by every engine: SSAResult (trajectories) and Distribution (joint CME
distributions per time, from FSP, MET or an empirical SSA ensemble). Both leave as tidy tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import InvalidArgumentError, UnknownIdError


def _species_position(species: tuple[str, ...], name: str) -> int:
    try:
        return species.index(name)
    except ValueError:
        raise UnknownIdError(f"no species '{name}'; species are: {', '.join(species)}") from None


def _time_position(times: np.ndarray, time: float) -> int:
    if len(times) == 0:
        raise InvalidArgumentError("the result holds no time points")
    i = int(np.argmin(np.abs(times - float(time))))
    if not np.isclose(times[i], float(time), rtol=1e-9, atol=1e-9):
        raise InvalidArgumentError(
            f"time {time} is not in this result; its times are: {', '.join(f'{t:g}' for t in times)}"
        )
    return i


MAX_EXACT_COUNT = 2.0**53  # beyond this float64 does not hold every whole number (nor, cast, int64)


def _counts_column(values: np.ndarray) -> np.ndarray:
    """Counts as int64 when every value is whole and within 2^53 (the usual case), else float
    (never a cast that overflows)."""
    if (values.size and np.all(np.isfinite(values)) and np.all(np.abs(values) <= MAX_EXACT_COUNT)
            and np.all(values == np.round(values))):
        return values.astype(np.int64)
    return values


def _nullable_counts(values: np.ndarray, missing: np.ndarray) -> Any:
    """Counts with <NA> where ``missing`` (pandas' Int64), or float with NaN there."""
    counted = values[~missing]
    whole = _counts_column(counted)
    if whole.dtype == np.int64:
        out = np.zeros(values.size, dtype=np.int64)
        out[~missing] = whole
        return pd.arrays.IntegerArray(out, missing.copy())
    return np.where(missing, np.nan, values)


@dataclass(frozen=True, eq=False)
class SSAResult:
    """An ensemble of stochastic trajectories recorded on a time grid.

    ``states`` has shape (n_trajectories, n_times, n_species). With ``record="events"`` the grid is
    the jump times of one trajectory and ``fired`` holds the reaction index of each jump.
    """

    species: tuple[str, ...]
    times: np.ndarray
    states: np.ndarray
    method: str = "ssa"
    seed: int | None = None
    model: str = ""
    fired: np.ndarray | None = None
    reactions: tuple[str, ...] = ()
    # species whose values are real numbers, not molecule counts (assignment rules: the model's algebra)
    noncounted: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        """Number of trajectories."""
        return int(self.states.shape[0])

    def to_frame(self) -> pd.DataFrame:
        """Long table: trajectory, time, species, count. Species in ``noncounted`` (defined by
        assignment rules: values, not molecules) have <NA> as count and their value in a
        ``value`` column, which only such models' tables have."""
        n, nt, ns = self.states.shape
        flat = self.states.reshape(-1)
        frame = {
            "trajectory": np.repeat(np.arange(n), nt * ns),
            "time": np.tile(np.repeat(self.times, ns), n),
            "species": np.tile(np.array(self.species, dtype=object), n * nt),
        }
        if not self.noncounted:
            return pd.DataFrame({**frame, "count": _counts_column(flat)})
        is_value = np.tile(np.isin(np.array(self.species, dtype=object), self.noncounted), n * nt)
        return pd.DataFrame({**frame, "count": _nullable_counts(flat, is_value),
                             "value": np.where(is_value, flat, np.nan)})

    def wide_frame(self) -> pd.DataFrame:
        """Wide view: one row per trajectory and time, one column per species."""
        n, nt, ns = self.states.shape
        df = pd.DataFrame(self.states.reshape(n * nt, ns), columns=list(self.species))
        df.insert(0, "time", np.tile(self.times, n))
        df.insert(0, "trajectory", np.repeat(np.arange(n), nt))
        return df

    def moments(self) -> pd.DataFrame:
        """Sample mean and standard deviation (ddof=1) per time and species."""
        mean = self.states.mean(axis=0)
        std = self.states.std(axis=0, ddof=1) if self.n > 1 else np.zeros_like(mean)
        nt, ns = mean.shape
        return pd.DataFrame(
            {
                "time": np.repeat(self.times, ns),
                "species": np.tile(np.array(self.species, dtype=object), nt),
                "mean": mean.reshape(-1),
                "std": std.reshape(-1),
            }
        )

    def marginals(self) -> pd.DataFrame:
        """Empirical marginal distributions: time, species, count, probability."""
        return self.to_distribution().to_frame()

    def to_distribution(self) -> "Distribution":
        """The empirical joint distribution of the counted species (``noncounted`` ones left
        out: they are functions of the counts) at each recorded time."""
        keep = [i for i, s in enumerate(self.species) if s not in self.noncounted]
        states, probs = [], []
        for j in range(len(self.times)):
            uniq, counts = np.unique(self.states[:, j, keep], axis=0, return_counts=True)
            states.append(uniq)
            probs.append(counts / counts.sum())
        return Distribution(tuple(self.species[i] for i in keep), np.asarray(self.times, dtype=float),
                            tuple(states), tuple(probs), method=self.method, n_samples=self.n)

    def plot(self, kind: str = "trajectories", **kwargs: Any):
        """Quick figure: ``kind`` is "trajectories", "moments", "marginals" or "joint"
        (keyword arguments go to the function of that name in :mod:`sbml_met.plot`)."""
        return _plot(self, kind, ("trajectories", "moments", "marginals", "joint"), kwargs)

    def __repr__(self) -> str:
        return (f"SSAResult({self.model or 'model'}: {self.n} trajectories x {len(self.times)} times x "
                f"{len(self.species)} species, method={self.method!r}, seed={self.seed})")


@dataclass(frozen=True, eq=False)
class Distribution:
    """Joint distribution over molecule-count states at each time (sparse: states + probabilities).

    ``states[i]`` is an integer array (k_i, n_species) and ``probabilities[i]`` its (k_i,)
    probabilities at ``times[i]``. ``truncation_error[i]`` is the probability mass known to be
    missing at that time (FSP), or None.
    """

    species: tuple[str, ...]
    times: np.ndarray
    states: tuple[np.ndarray, ...]
    probabilities: tuple[np.ndarray, ...]
    method: str = "fsp"
    truncation_error: np.ndarray | None = None
    n_samples: int | None = None  # for empirical distributions
    metadata: dict = field(default_factory=dict)

    def _t(self, time: float) -> int:
        return _time_position(np.asarray(self.times), time)

    def marginal(self, species: str, time: float) -> pd.Series:
        """P(species = count) at ``time`` as a Series indexed by count (every count from 0)."""
        i, j = _species_position(self.species, species), self._t(time)
        counts = np.asarray(self.states[j][:, i]).astype(np.int64)
        p = np.bincount(counts, weights=np.asarray(self.probabilities[j], dtype=float))
        return pd.Series(p, index=pd.RangeIndex(len(p), name="count"), name="probability")

    def to_frame(self) -> pd.DataFrame:
        """Long table of marginals: time, species, count, probability (non-zero entries). Its
        ``attrs`` hold the method and the metadata (a MET's: its measured accuracy and box)."""
        frames = []
        for t in self.times:
            for s in self.species:
                m = self.marginal(s, t)
                m = m[m > 0]
                frames.append(pd.DataFrame({"time": float(t), "species": s,
                                            "count": m.index.to_numpy(np.int64),
                                            "probability": m.to_numpy()}))
        out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
            columns=["time", "species", "count", "probability"])
        plain = (str, int, float, bool, dict, list, tuple, type(None))
        out.attrs.update({"method": self.method, **{k: v for k, v in self.metadata.items() if isinstance(v, plain)}})
        return out

    def joint_frame(self, time: float) -> pd.DataFrame:
        """Joint distribution at ``time``: one column per species plus probability."""
        j = self._t(time)
        df = pd.DataFrame(np.asarray(self.states[j]).astype(np.int64), columns=list(self.species))
        df["probability"] = self.probabilities[j]
        return df

    def moments(self) -> pd.DataFrame:
        """Exact mean and standard deviation per time and species: time, species, mean, std."""
        rows = []
        for j, t in enumerate(self.times):
            p = np.asarray(self.probabilities[j], dtype=float)
            total = p.sum()
            x = np.asarray(self.states[j], dtype=float)
            mean = (p @ x) / total if total > 0 else np.full(len(self.species), np.nan)
            var = (p @ (x - mean) ** 2) / total if total > 0 else mean
            for i, s in enumerate(self.species):
                rows.append((float(t), s, mean[i], float(np.sqrt(max(var[i], 0.0)))))
        return pd.DataFrame(rows, columns=["time", "species", "mean", "std"])

    def sample(self, n: int, time: float, seed: int | None = None) -> np.ndarray:
        """``n`` states drawn from the joint distribution at ``time``: array (n, n_species)."""
        j = self._t(time)
        p = np.asarray(self.probabilities[j], dtype=float)
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(p), size=int(n), p=p / p.sum())
        return np.asarray(self.states[j])[idx].astype(np.int64)

    def log_prob(self, states: Sequence[Sequence[float]] | np.ndarray, time: float) -> np.ndarray:
        """log P(state) at ``time`` for each row of ``states`` (-inf outside the support)."""
        j = self._t(time)
        x = np.atleast_2d(np.asarray(states, dtype=np.int64))
        if x.shape[1] != len(self.species):
            raise InvalidArgumentError(f"states need {len(self.species)} columns ({', '.join(self.species)})")
        support = np.asarray(self.states[j]).astype(np.int64)
        p = np.asarray(self.probabilities[j], dtype=float)
        out = np.full(len(x), -np.inf)
        if not len(x) or not len(support):
            return out
        # vectorised lookup (pandas hash index over the state rows); repeated states are summed
        index = pd.MultiIndex.from_arrays(list(support.T))
        if not index.is_unique:
            summed = pd.Series(p, index=index).groupby(level=list(range(index.nlevels))).sum()
            index, p = summed.index, summed.to_numpy()
            if not isinstance(index, pd.MultiIndex):
                index = pd.MultiIndex.from_arrays([index])
        k = index.get_indexer(pd.MultiIndex.from_arrays(list(x.T)))
        hit = k >= 0
        with np.errstate(divide="ignore"):
            out[hit] = np.log(p[k[hit]])
        return out

    def plot(self, kind: str = "marginals", **kwargs: Any):
        """Quick figure: ``kind`` is "marginals", "moments" or "joint" (keyword arguments go to
        the function of that name in :mod:`sbml_met.plot`)."""
        return _plot(self, kind, ("marginals", "moments", "joint"), kwargs)

    def __repr__(self) -> str:
        sizes = sorted({len(p) for p in self.probabilities})
        return (f"Distribution(method={self.method!r}, species={self.species}, "
                f"{len(self.times)} times, states per time {sizes[0]}..{sizes[-1]})"
                if sizes else f"Distribution(method={self.method!r}, empty)")


def _plot(result: Any, kind: str, kinds: tuple[str, ...], kwargs: dict):
    """Dispatch a ``.plot()`` shortcut to :mod:`sbml_met.plot` (imported only when plotting)."""
    if kind not in kinds:
        raise InvalidArgumentError(f"unknown plot kind {kind!r}; choose one of: {', '.join(kinds)}")
    from . import plot

    return getattr(plot, kind)(result, **kwargs)


def as_distribution(result: Any) -> Distribution:
    """A Distribution from an SSAResult or Distribution (used by compare and validate)."""
    if isinstance(result, Distribution):
        return result
    if isinstance(result, SSAResult):
        return result.to_distribution()
    raise InvalidArgumentError(f"expected an SSAResult or Distribution, got {type(result).__name__}")
