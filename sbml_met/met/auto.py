"""A MET for any network on demand: :func:`for_model` reuses a bundled or cached MET that covers
the request, else trains one until its held-out accuracy reaches a target (a time budget caps
it), caches it and records its held-out accuracy and whether it reached the target.

Defaults, all derived from the SBML:

* **box**: every rate parameter (a parameter > 0 that changes some propensity, directly or
  through a rule, and is no exponent in a rate law, like a Hill coefficient) from its value / 2
  to its value x 2 (``factor``).
* **times**: ``(0, horizon)``, where the horizon is the first ``T = T0 * 2^k`` at which the rate
  equations, started at the initial state, have settled. ``T0 = (1 + total initial count) / a0`` is the
  time the initial total propensity ``a0`` takes for as many reactions as molecules. Settled
  means: from ``T`` on, every species stays within 5% (or half a molecule) of its value at
  ``T0 * 2^12``. Rate equations that never settle (an oscillator) give the first ``T`` by
  which every species has come within 10% of its largest value. The horizon is rounded up to
  two significant digits.
* **teacher**: FSP distillation when the reachable state space within the SSA-estimated count
  caps has at most ``fsp_max_states`` states (batched exact CME), or the capped box holds at
  most ``pointwise_max_states`` states that its conservation laws allow (adaptive FSP per parameter
  point; joints kept as sparse rows once dense ones outgrow memory); exact SSA otherwise.
  Batched integration is chosen only while its RK4 work per prompt (states x t_max x the
  fastest exit rate) stays below ``BATCHED_WORK``. FSP prompts put a quarter of the parameter
  points near the model's own values and up to 16 on the box's corners (the extreme
  distributions, whose large counts interior points rarely reach); the rest cover the box
  evenly (a Sobol sequence's first points). An SSA-taught MET gets ``head="auto"``: a species whose
  vocabulary exceeds 512 counts gets a smooth mixture head (``model={"head": ...}`` overrides it).
* **network**: one pooled prompt token, two layers (``AUTO_MODEL``); every rate parameter enters
  as a linear and a log-scaled feature (:class:`PromptSpace` ``log_features``).
* **accuracy**: training stops once the held-out mean marginal Hellinger distance is at most
  ``target`` (0.01), no held-out prompt (the box's corners at the run's last time included) is
  beyond 3 x ``target``, and the error at the model's own values is below half of what a
  validation against 10^4 trajectories detects (see :func:`sbml_met.met.train.detectability`).

A MET matches a request when its network fingerprint is equal, the parameters it holds fixed
have the network's values, its initial-count range holds the network's initial state, its box
holds the requested box (or, with ``box=None``, the network's parameter values) and, when
``times`` is given, its time range holds them. A MET trained here covers ``(0, max(times))``. Cached METs live in
``platformdirs.user_cache_dir("sbml-met")/mets/`` (or ``$SBML_MET_CACHE_DIR``), written
atomically, one file per network and box.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import InvalidArgumentError, StateSpaceTooLargeError
from .checkpoint import FORMAT, MET, load, pretrained_names
from .prompts import PromptSpace

__all__ = ["cache_dir", "choose_teacher", "default_box", "default_times", "find_met", "for_model", "run_summary"]

FSP_MAX_STATES = 20_000
POINTWISE_MAX_STATES = 100_000
BATCHED_WORK = 1e7  # states x RK4 steps per prompt up to which prompts are integrated side by side
DEFAULT_FACTOR = 2.0  # the default box: each rate parameter from value / 2 to value x 2
AUTO_MODEL = {"prompt": "pooled", "n_layer": 2}  # the network for_model trains (model= overrides)
TARGET = 0.01  # default held-out mean marginal Hellinger distance against exact answers


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """Where trained METs are cached: ``path``, ``$SBML_MET_CACHE_DIR`` or the user cache."""
    if path is not None:
        return Path(path)
    if os.environ.get("SBML_MET_CACHE_DIR"):
        return Path(os.environ["SBML_MET_CACHE_DIR"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("sbml-met")) / "mets"


# ----------------------------------------------------------------------------- defaults
def rate_parameters(network) -> list[str]:
    """Parameters > 0 whose value changes some propensity (directly or through a rule), less
    those that are exponents in a rate law (``x^n``, ``pow(x, n)``)."""
    laws = " ".join(r.rate_law for r in network.reactions)
    x0 = np.asarray(network.initial_state, dtype=float)
    rng = np.random.default_rng(0)
    X = np.vstack([x0, x0 + 1, x0 + rng.integers(0, 5, (6, len(x0)))])
    base = np.asarray(network.propensities(X))
    out = []
    for p, v in network.parameters.items():
        if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
            continue
        if re.search(rf"(\^|\*\*)\s*\(?\s*{re.escape(p)}\b|pow\s*\([^,]*,\s*{re.escape(p)}\s*\)", laws):
            continue
        with np.errstate(all="ignore"):
            a = np.asarray(network.propensities(X, 0.0, {p: 1.5 * v}))
        if not np.allclose(a, base, rtol=1e-12, atol=0, equal_nan=True):
            out.append(p)
    return out


def default_box(network, factor: float = DEFAULT_FACTOR) -> dict[str, tuple[float, float]]:
    """Each rate parameter from value / factor to value x factor (default x/÷ 2: a MET that
    answers for every rate within a factor two of the model's own values, which a user can vary
    without leaving what was checked; each doubling of the factor widens the count ranges and the
    training time, see bench/met_on_demand.py)."""
    box = {p: (float(network.parameters[p]) / factor, float(network.parameters[p]) * factor)
           for p in rate_parameters(network)}
    if not box:
        raise InvalidArgumentError(f"model '{network.name}' has no rate parameter > 0 to put in a box; give box=")
    return box


def default_times(network, tol: float = 0.05, doublings: int = 12) -> tuple[float, float]:
    """``(0, horizon)`` by the settling rule in the module docstring."""
    from scipy.integrate import solve_ivp

    from ..network import rate_function

    x0 = np.asarray(network.initial_state, dtype=float)
    f = rate_function(network)
    nu = np.asarray(network.stoichiometry, dtype=float)
    a0 = float(np.sum(network.propensities(x0)))
    T0 = (1.0 + x0.sum()) / a0 if a0 > 0 else 1.0

    def rhs(t, x):
        return nu.T @ np.asarray(f(np.maximum(x, 0)[:, None], t))[:, 0]

    grid = T0 * 2.0 ** np.arange(doublings + 1)
    sol = solve_ivp(rhs, (0.0, grid[-1]), x0, method="LSODA", t_eval=grid, rtol=1e-6, atol=1e-9)
    X = sol.y.T if sol.success and sol.y.shape[1] == len(grid) else np.tile(x0, (len(grid), 1))
    off = np.abs(X - X[-1]) > np.maximum(tol * np.abs(X[-1]), 0.5)  # (grid, species)
    moved = np.flatnonzero(off.any(axis=1))
    k = moved[-1] + 1 if len(moved) else 0
    if k >= len(grid) - 2:  # not settled (an oscillator): until every species has been near its peak
        peak = X >= 0.9 * X.max(axis=0)[None, :]
        k = int(max(np.argmax(peak[:, s]) for s in range(X.shape[1])))
    T = float(grid[max(k, 0)])
    digits = 10.0 ** (math.floor(math.log10(T)) - 1)
    return 0.0, float(math.ceil(T / digits) * digits)


def choose_teacher(network, box, times, seed: int = 0, fsp_max_states: int = FSP_MAX_STATES,
                   pointwise_max_states: int = POINTWISE_MAX_STATES) -> tuple[str, dict[str, Any]]:
    """(teacher name, teacher options) by state-space size (see the module docstring)."""
    from ..conservation import capped_states, conservation_laws
    from ._cme import StateSpace
    from .teachers import TrainContext, _max_exit_rates, estimate_caps

    space = PromptSpace.build(network, box, times)
    ctx = TrainContext(network=network, space=space, seed=seed, deadline=time.monotonic() + 60,
                       rng=np.random.default_rng(seed))
    caps = estimate_caps(ctx)
    x0 = np.asarray(network.initial_state, dtype=np.int64)[None]
    probe = [dict(zip(space.free, space.high)), dict(zip(space.free, space.low))]
    try:
        ss = StateSpace(network, caps, x0, probe, max_states=fsp_max_states)
        # RK4 work per prompt: states x steps (t_max x the fastest exit rate); beyond BATCHED_WORK the
        # adaptive per-point FSP, whose state sets follow each point, is the cheaper teacher
        rate = float(_max_exit_rates(ss, {p: np.array([v]) for p, v in probe[0].items()})[0])
        if ss.n * space.t_max * rate <= BATCHED_WORK:  # small chunks keep the budget; caps: estimated once
            return "fsp", {"method": "batched", "chunk": 64, "states": ss.n,
                           "caps": dict(zip(network.species, map(int, caps)))}
    except (StateSpaceTooLargeError, InvalidArgumentError):
        pass
    laws = conservation_laws(network)  # a conserved moiety leaves most of the capped box empty
    if capped_states(laws, caps, space.init_low, space.init_high) <= pointwise_max_states:
        return "fsp", {"method": "pointwise", "caps": dict(zip(network.species, map(int, caps)))}
    return "ssa", {}


# ----------------------------------------------------------------------------- matching
def _covers(data: dict, network, box: Mapping[str, tuple[float, float]] | None, times) -> bool:
    """Whether the checkpoint ``data`` answers the request (see the module docstring)."""
    if data.get("format") != FORMAT or data.get("fingerprint") != network.fingerprint():
        return False
    space = PromptSpace.from_dict(data["space"])
    held = {k: v for k, v in data["parameters"].items() if k not in space.free}
    if any(k not in network.parameters or not _same(network.parameters[k], v) for k, v in held.items()):
        return False
    x0 = np.asarray(network.initial_state, dtype=float)
    if tuple(space.species) != tuple(network.species) or np.any(x0 < space.init_low) or np.any(x0 > space.init_high):
        return False
    mbox = space.box
    want = box if box is not None else {p: (network.parameters[p], network.parameters[p]) for p in mbox}
    for p, (lo, hi) in want.items():
        if p not in mbox or lo < mbox[p][0] * (1 - 1e-12) or hi > mbox[p][1] * (1 + 1e-12):
            return False
    if times is not None:
        t = np.asarray(times, dtype=float)
        if t.min() < space.t_min - 1e-12 or t.max() > space.t_max * (1 + 1e-12):
            return False
    return True


def _same(a: float, b: float) -> bool:
    return float(a) == float(b) or abs(float(a) - float(b)) <= 1e-12 * max(abs(float(a)), abs(float(b)))


def _candidates(network, folder: Path) -> list[tuple[str, Path]]:
    from importlib import resources

    bundled = Path(str(resources.files("sbml_met.met"))) / "pretrained"
    out = [("bundled", bundled / f"{n}.met") for n in pretrained_names()]
    if folder.is_dir():
        out += [("cache", p) for p in sorted(folder.glob(f"*-{network.fingerprint()[:16]}-*.met"))]
    return out


def find_met(network, box=None, times=None, folder: str | os.PathLike | None = None) -> MET | None:
    """A bundled or cached (in ``folder``, default :func:`cache_dir`) MET that covers the request, or None."""
    import torch

    for source, path in _candidates(network, cache_dir(folder)):
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a partial or foreign file in the cache is skipped, never trusted
            continue
        if isinstance(data, dict) and _covers(data, network, box, times):
            met = load(path, network=network)
            met.meta.update({"source": source, "path": str(path)})
            return met
    return None


def _cache_path(folder: Path, network, box, times) -> Path:
    key = json.dumps({"box": {k: list(map(float, v)) for k, v in sorted(box.items())}, "times": list(times),
                      "parameters": {k: float(v) for k, v in sorted(network.parameters.items())},
                      "init": np.asarray(network.initial_state, dtype=float).tolist()}, sort_keys=True)
    name = re.sub(r"[^A-Za-z0-9_.]+", "_", network.name or "model")[:40]
    return folder / f"{name}-{network.fingerprint()[:16]}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.met"


# ----------------------------------------------------------------------------- entry point
def for_model(network, box: Mapping[str, tuple[float, float]] | None = None, minutes: float = 10, seed: int = 0,
              progress: bool | None = None, cache_dir: str | os.PathLike | None = None, times=None,
              device: str | None = None, retrain: bool = False, target: float | None = TARGET,
              check_times=None, **train_options) -> MET:
    """A MET for ``network``: a bundled or cached one that covers ``box`` and ``times`` (see the
    module docstring), else one trained over ``box`` (default: each rate parameter x/÷ 2) and
    ``times`` (default: the settling horizon), then cached.

    Accuracy drives the training and ``minutes`` caps it: training stops once the held-out mean
    marginal Hellinger distance against exact answers over the box is at most ``target``
    (default 0.01), no held-out prompt, the box's corners included, is beyond 3 x ``target``, and,
    at the network's own parameter values and ``times`` (4 of them), the
    error is at most half of what a validation against 10^4 trajectories detects
    (:func:`sbml_met.met.train.detectability`). A MET that meets both has
    ``meta["validated"] = True``; one stopped by the cap first warns, says how far it got and
    what would help, and is cached as not validated (a later call with ``target`` trains it on).
    ``check_times``: the times of that check (``sbml-met run`` passes its report times).
    ``target=None`` trains for the whole budget (cosine schedule).

    ``met.meta`` says where it came from (``source``: bundled, cache or trained; ``path``) and,
    when trained, the teacher and seconds; ``met.validation`` holds the held-out accuracy
    (marginal Hellinger against exact FSP, or against SSA with its ``noise_floor``).
    ``train_options`` go to :func:`sbml_met.met.train` (e.g. ``steps``, ``teacher_options``)."""
    if minutes <= 0:
        raise InvalidArgumentError(f"minutes must be > 0, got {minutes}")
    box = {k: (float(a), float(b)) for k, (a, b) in box.items()} if box else None
    folder = _folder(cache_dir)
    previous = None
    if not retrain:
        met = find_met(network, box, times, folder)
        if met is not None and (target is None or met.meta.get("source") == "bundled"
                                or _validated(met, target)):
            return met
        previous = met
    if check_times is not None:
        train_options["anchor_times"] = np.asarray(check_times, float)
    return _train_and_cache(network, box, minutes, seed, progress, folder, times, device, train_options,
                            target, previous)


def _validated(met: MET, target: float) -> bool:
    """Whether ``met`` was trained to at least ``target`` (and its anchor check passed)."""
    v = met.validation
    return bool(met.meta.get("validated")) and float(v.get("target", math.inf)) <= target * (1 + 1e-9)


def _folder(path) -> Path:
    return cache_dir(path)


def anchor_times(times, t_max: float) -> np.ndarray:
    """Up to four times at which the model's own parameter point is checked: the run's report
    times (quantiles 0.1, 0.33, 0.66 and 1 of its positive times), else of (0, t_max]."""
    t = np.asarray(times if times is not None and np.size(times) > 2 else np.linspace(0, t_max, 101), float)
    t = t[t > 0]
    if not t.size:
        return np.array([t_max])
    return np.unique([t[np.argmin(np.abs(t - q))] for q in np.quantile(t, [0.1, 0.33, 0.66, 1.0])])  # on the grid


def _train_and_cache(network, box, minutes, seed, progress, folder, times, device, options, target=None,
                     previous: MET | None = None) -> MET:
    from .train import train

    t0 = time.monotonic()
    box = box or default_box(network)
    run_times = times
    times = default_times(network) if times is None else (0.0, float(np.max(times)))
    teacher, opts = options.pop("teacher", None), dict(options.pop("teacher_options", None) or {})
    own = {p: float(network.parameters[p]) for p in box if box[p][0] <= network.parameters[p] <= box[p][1]}
    if teacher is None:
        teacher, chosen = choose_teacher(network, box, times, seed)
        chosen.pop("states", None)
        if teacher == "fsp":  # exact data, a quarter of it near the model's own values, 16 points at corners
            chosen.update({"n_prompts": 256, "times_per_prompt": 16, "anchor": own} if chosen["method"] == "pointwise"
                          else {"anchor": own})
        opts = {**chosen, **opts}
    # one pooled prompt token and two layers: 2-3x the steps per second of the token-per-entry
    # layout on a CPU, which reach the target sooner on small models (bench/met_on_demand.py)
    options["model"] = {**AUTO_MODEL, **dict(options.get("model") or {})}
    if teacher == "ssa":  # smooth heads for species with wide marginals (bench/met_repressilator.py)
        options["model"] = {"head": "auto", **options["model"]}
    if target is not None:
        options.setdefault("target", float(target))
        options.setdefault("validate_every", 10.0)
        options.setdefault("n_validation", 96)  # enough held-out prompts that no region of the box hides
        if own:
            options.setdefault("anchor", own)
            options.setdefault("anchor_times", anchor_times(run_times, times[1]))
    if previous is not None and previous.meta.get("teacher") == teacher and previous.meta.get("source") == "cache":
        options.setdefault("init_from", previous)  # go on from the cached, not yet validated MET
    left = max(minutes - (time.monotonic() - t0) / 60, 0.05)  # choosing the teacher counts too
    try:
        met = train(network, box, times, teacher=teacher, minutes=left, seed=seed, progress=progress,
                    teacher_options=opts, device=device, **options)
    except InvalidArgumentError:
        if "init_from" not in options or options.get("init_from") is not previous:
            raise
        options.pop("init_from")  # another vocabulary: start afresh
        left = max(minutes - (time.monotonic() - t0) / 60, 0.05)
        met = train(network, box, times, teacher=teacher, minutes=left, seed=seed, progress=progress,
                    teacher_options=opts, device=device, **options)
    path = _cache_path(folder, network, box, times)
    validated = target is not None and bool(met.validation.get("reached"))
    met.meta.update({"source": "trained", "path": str(path), "for_model_seconds": time.monotonic() - t0,
                     "teacher_options": _plain_options(opts), "validated": validated})
    if options.get("init_from") is not None:
        met.meta["continued_from"] = options["init_from"].meta.get("path")
    if target is not None and not validated:
        warnings.warn(not_validated_text(met), RuntimeWarning, stacklevel=3)
    try:
        met.save(path, overwrite=True)
    except OSError as e:  # a read-only cache costs the reuse, not the answer
        warnings.warn(f"could not cache the MET at {path}: {e}", RuntimeWarning, stacklevel=3)
    return met


def _plain_options(opts: dict) -> dict:
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in opts.items()}


def not_validated_text(met: MET) -> str:
    """Why a MET is not validated and what would help (for warnings, notes and run.json)."""
    v, m = met.validation, met.meta
    text = (f"the MET of '{met.network.name}' is not validated: after {m.get('wall_seconds') or 0:.0f} s "
            f"({m.get('steps', 0)} steps) its held-out mean marginal Hellinger distance is "
            f"{v.get('hellinger_mean', float('nan')):.4f} against the target {v.get('target', TARGET):g}")
    if v.get("anchor_detectability") is not None:
        text += (f", and its error at the model's own parameters is {v['anchor_detectability']:.2f} of what a "
                 "validation against 10^4 trajectories detects (goal: 0.5)")
    return text + ("; its answers are approximations of unknown quality beyond that. What would help: more "
                   "minutes (--met-minutes; the MET is cached and training goes on from it), a narrower box "
                   "(--box ID=LOW:HIGH), or a GPU (device='cuda')")


def run_summary(met: MET) -> dict[str, Any]:
    """Plain data for a run report (run.json): where the MET came from, its box, times, teacher,
    training seconds, conservation laws and held-out accuracy."""
    v, m = met.validation, met.meta
    return {
        "source": m.get("source", "given"), "path": m.get("path"), "teacher": m.get("teacher"),
        "box": {k: list(b) for k, b in met.box.items()}, "times": list(met.times),
        "train_seconds": m.get("wall_seconds"), "steps": m.get("steps"),
        "total_steps": m.get("total_steps", m.get("steps")), "device": m.get("device", "cpu"),
        "n_parameters": met.n_parameters, "conservation_laws": met.conservation.describe(),
        "held_out": {"hellinger_mean": v.get("hellinger_mean"), "hellinger_max": v.get("hellinger_max"),
                     "reference": v.get("reference"), "noise_floor": v.get("noise_floor"),
                     "n_prompts": len(v.get("hellinger", [])),
                     "own_parameters_hellinger_max": v.get("anchor_hellinger_max"),
                     "own_parameters_detectability": v.get("anchor_detectability")},
        "target": v.get("target"), "validated": m.get("validated", m.get("source") == "bundled"),
        "continued_from": m.get("continued_from"),
    }
