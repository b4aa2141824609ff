"""The prompt space of a MET: free parameters in a box, initial counts, time; Sobol draws and the
feature vectors the network reads. Kept apart from the trainer so a loaded checkpoint needs no
training code."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..errors import ExtrapolationWarning, InvalidArgumentError, UnknownIdError
from ._warn import user_stacklevel

N_FEATURES = 2


@dataclass(frozen=True)
class PromptSpace:
    """Free parameters with their box, initial-count ranges per species, and the time range.

    Parameters whose box spans two decades or more (and is > 0) are drawn log-uniformly (as well
    as uniformly: see :meth:`sobol`) and carry a log-scaled feature; every parameter also carries
    a linear feature (value / upper bound), so both small and large values are resolved. With
    ``log_features`` (every space built since the on-demand MET; older checkpoints load without
    it), a narrower box with low > 0 carries a linear and a log-scaled feature: rates set time
    scales, so the log of a ratio of rates, which fixes a mean, is then a sum of features.
    """

    free: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    species: tuple[str, ...]
    init_low: tuple[float, ...]
    init_high: tuple[float, ...]
    t_min: float
    t_max: float
    log_features: bool = False  # True for every space build() makes; checkpoints saved before it load with False

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, network, box: Mapping[str, tuple[float, float]], times, init_box=None,
              log_features: bool = True) -> "PromptSpace":
        if not box and not init_box:
            raise InvalidArgumentError("box is empty: give at least one free parameter, e.g. box={'k1': (1, 10)}")
        free, lo, hi = [], [], []
        for pid, rng in (box or {}).items():
            if pid not in network.parameters:
                raise UnknownIdError(f"box names '{pid}', which is not a parameter of model "
                                     f"'{network.name}'; parameters are: {', '.join(network.parameters)}")
            a, b = (float(v) for v in rng)
            if not (math.isfinite(a) and math.isfinite(b) and 0 <= a < b):
                raise InvalidArgumentError(f"box for '{pid}' must be 0 <= low < high, got ({a}, {b})")
            free.append(pid), lo.append(a), hi.append(b)
        x0 = np.asarray(network.initial_state, dtype=float)
        ilo, ihi = list(x0), list(x0)
        for sid, rng in (init_box or {}).items():
            i = network.species_index(sid)
            a, b = (float(v) for v in rng)
            if not (0 <= a <= b and a == round(a) and b == round(b)):
                raise InvalidArgumentError(f"init_box for '{sid}' must be whole counts 0 <= low <= high")
            ilo[i], ihi[i] = a, b
        t = np.asarray(times, dtype=float).reshape(-1)
        if t.size != 2 or not (0 <= t[0] < t[1]) or not np.all(np.isfinite(t)):
            raise InvalidArgumentError(f"times must be (t_min, t_max) with 0 <= t_min < t_max, got {times}")
        return cls(tuple(free), tuple(lo), tuple(hi), tuple(network.species), tuple(ilo), tuple(ihi),
                   float(t[0]), float(t[1]), bool(log_features))

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "PromptSpace":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})

    @property
    def n_prompt(self) -> int:
        return len(self.free) + len(self.species) + 1

    @property
    def decades(self) -> np.ndarray:
        """Whether each free parameter spans >= 2 decades (drawn log-uniformly)."""
        lo, hi = np.asarray(self.low), np.asarray(self.high)
        return (lo > 0) & (hi / np.maximum(lo, 1e-300) >= 100)

    @property
    def box(self) -> dict[str, tuple[float, float]]:
        return {p: (a, b) for p, a, b in zip(self.free, self.low, self.high)}

    def corners(self, limit: int, seed: int) -> np.ndarray:
        """The box's corners (k, F): all 2^F where that is at most ``limit``, else ``limit`` drawn
        at random (repeats possible)."""
        F = len(self.free)
        if 2**F <= limit:
            bits = (np.arange(2**F)[:, None] >> np.arange(F)[None, :]) & 1
        else:
            bits = np.random.default_rng(seed).integers(0, 2, (limit, F))
        return np.where(bits == 1, np.asarray(self.high)[None, :], np.asarray(self.low)[None, :])

    # ------------------------------------------------------------------ prompts
    def sobol(self, n: int, seed: int, mode: str = "mixed") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` scrambled-Sobol prompts (theta (n, F), x0 (n, S), t (n,)).

        ``mode``: "uniform" (linear in every box), "log" (log-uniform where the box spans
        decades), "log3" (log-uniform over the upper three decades of such boxes, where a rate
        usually competes with the others), or "mixed" (points cycle through uniform, log and
        log3, so every regime is covered)."""
        from scipy.stats import qmc

        vary = [i for i in range(len(self.species)) if self.init_high[i] > self.init_low[i]]
        dim = len(self.free) + len(vary) + 1
        with warnings.catch_warnings():  # any n is fine here; balance is not needed exactly
            warnings.simplefilter("ignore", UserWarning)
            u = qmc.Sobol(d=dim, scramble=True, seed=seed).random(n)
        F = len(self.free)
        lo, hi = np.asarray(self.low), np.asarray(self.high)
        lin = lo + u[:, :F] * (hi - lo)
        dec = self.decades

        def log_uniform(a):
            a = np.where(dec, a, 1.0)
            v = np.exp(np.log(a) + u[:, :F] * np.log(np.where(dec, hi / a, 1.0)))
            return np.where(dec, v, lin)

        logv, log3 = log_uniform(lo), log_uniform(np.maximum(lo, hi / 1000))
        if mode == "uniform":
            theta = lin
        elif mode == "log":
            theta = logv
        elif mode == "log3":
            theta = log3
        elif mode == "mixed":
            k = (np.arange(n) % 3)[:, None]
            theta = np.where(k == 0, lin, np.where(k == 1, logv, log3))
        else:
            raise InvalidArgumentError(f"unknown prompt mode {mode!r}; choose uniform, log, log3 or mixed")
        x0 = np.tile(np.asarray(self.init_low), (n, 1))
        for k, i in enumerate(vary):
            a, b = self.init_low[i], self.init_high[i]
            x0[:, i] = np.floor(a + u[:, F + k] * (b - a + 1)).clip(a, b)
        t = self.t_min + u[:, -1] * (self.t_max - self.t_min)
        return theta, x0, t

    def features(self, theta: np.ndarray, x0: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Feature tensor (n, n_prompt, 2) for prompts; float32."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        x0 = np.atleast_2d(np.asarray(x0, dtype=float))
        t = np.asarray(t, dtype=float).reshape(-1)
        n = max(len(theta), len(x0), len(t))
        out = np.zeros((n, self.n_prompt, N_FEATURES))
        lo, hi = np.asarray(self.low), np.asarray(self.high)
        F = len(self.free)
        if F:
            dec = self.decades
            safe = np.where(dec, lo, 1.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                logf = 2 * np.log(np.maximum(theta, 1e-300) / safe) / np.log(np.where(dec, hi / safe, np.e)) - 1
            linf = 2 * (theta - lo) / (hi - lo) - 1
            out[:, :F, 0] = np.where(dec, logf, linf)
            out[:, :F, 1] = 2 * theta / hi - 1
            if self.log_features:  # rates act multiplicatively: a narrow box's second feature is log-scaled
                narrow = ~dec & (lo > 0)
                safe = np.where(narrow, lo, 1.0)
                with np.errstate(divide="ignore", invalid="ignore"):
                    logn = 2 * np.log(np.maximum(theta, 1e-300) / safe) / np.log(np.where(narrow, hi / safe, np.e)) - 1
                out[:, :F, 1] = np.where(narrow, logn, out[:, :F, 1])
        ilo, ihi = np.asarray(self.init_low), np.asarray(self.init_high)
        span = np.where(ihi > ilo, ihi - ilo, 1.0)
        out[:, F : F + len(ilo), 0] = np.where(ihi > ilo, 2 * (x0 - ilo) / span - 1, 0.0)
        out[:, F : F + len(ilo), 1] = np.where(ihi > ilo, np.log1p(x0) / np.log1p(np.maximum(ihi, 1)), 0.0)
        tau = (t - self.t_min) / (self.t_max - self.t_min)
        out[:, -1, 0] = 2 * tau - 1
        out[:, -1, 1] = 2 * np.sqrt(np.clip(tau, 0, None)) - 1
        return out.astype(np.float32)

    def resolve(self, network, params: Mapping[str, float], init: Mapping[str, float] | None) -> tuple[np.ndarray, np.ndarray]:
        """theta (F,) and x0 (S,) for keyword parameters/initial counts (defaults: the network's)."""
        theta = np.array([float(network.parameters[p]) for p in self.free])
        for k, v in params.items():
            if k in self.free:
                theta[self.free.index(k)] = float(v)
            elif k in network.parameters:
                if float(v) != float(network.parameters[k]):
                    raise InvalidArgumentError(
                        f"parameter '{k}' was fixed at {network.parameters[k]:g} during training; this MET "
                        f"cannot vary it (free parameters: {', '.join(self.free) or 'none'})")
            else:
                raise UnknownIdError(f"no parameter '{k}' in model '{network.name}'; free parameters of "
                                     f"this MET: {', '.join(self.free)}")
        x0 = np.asarray(network.initial_state, dtype=float).copy()
        for k, v in (init or {}).items():
            x0[network.species_index(k)] = float(v)
        return theta, x0

    def check(self, theta: np.ndarray, x0: np.ndarray, t: np.ndarray, stacklevel: int = 3) -> None:
        """Warn (ExtrapolationWarning) for each prompt value outside the training box, saying how far."""
        msgs = []
        for i, p in enumerate(self.free):
            v, a, b = float(theta[i]), self.low[i], self.high[i]
            if v < a or v > b:
                edge = a if v < a else b
                side = "below" if v < a else "above"
                if self.decades[i] and v > 0:
                    how = f"{abs(math.log10(v / edge)):.2g} decades {side}"
                else:
                    how = f"{abs(v - edge):.4g} ({abs(v - edge) / (b - a):.0%} of the box width) {side}"
                msgs.append(f"parameter '{p}'={v:g} is {how} the training box [{a:g}, {b:g}]")
        for i, s in enumerate(self.species):
            v, a, b = float(x0[i]), self.init_low[i], self.init_high[i]
            if v < a or v > b:
                msgs.append(f"initial count of '{s}'={v:g} is outside the training range [{a:g}, {b:g}] "
                            f"by {min(abs(v - a), abs(v - b)):g}")
        for tv in np.atleast_1d(t):
            if tv < self.t_min - 1e-12 or tv > self.t_max + 1e-12:
                edge = self.t_min if tv < self.t_min else self.t_max
                msgs.append(f"time {tv:g} is {abs(tv - edge):g} outside the training range "
                            f"[{self.t_min:g}, {self.t_max:g}]")
        for m in msgs:
            warnings.warn(m + "; the MET answer is an extrapolation", ExtrapolationWarning,
                          stacklevel=user_stacklevel())
