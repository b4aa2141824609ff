"""Tellurium/libroadrunner as the outside reference: Gillespie ensembles of the *same SBML*.

One rewrite, on by default: a reversible reaction reaches libroadrunner as the forward and
reverse channels of its net law (``split_reversible``), because libroadrunner's gillespie fires
a reversible reaction at its net rate, a process that is not the chemical master equation.

This is the only module that imports roadrunner (lazily, inside functions, so ``import sbml_met``
stays light). :func:`run_gillespie` loads the SBML in libroadrunner, selects its ``gillespie``
integrator with fixed output steps and records the AMOUNT of every species of the network (the
selection ``X``, not the concentration ``[X]``) exactly at the requested times.

Reproducibility: trajectory ``i`` is seeded with a 32-bit hash (splitmix64) of ``(seed, i)``, so
the numbers depend on ``seed`` and the index only, not on how trajectories are spread over
processes. Per-trajectory cost is one ``reset`` + seed + public ``simulate()`` call (tens of us of
overhead on top of the reactions themselves); each worker process loads its own RoadRunner once.

What libroadrunner's gillespie integrator cannot do exactly is refused before any run: events
whose trigger involves time (roadrunner checks triggers only after reaction firings and warns that
"the simulation will not be precise") and rate rules raise :class:`UnsupportedSBMLError`; any other
message roadrunner logs while loading and probing the model is passed on as a Python logging
warning on the ``sbml_met.tellurium`` logger (never silenced).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidArgumentError, SBMLParseError, Unsupported, UnsupportedSBMLError
from .network import ReactionNetwork, check_times
from .results import SSAResult

log = logging.getLogger(__name__)

# roadrunner log lines that are developer debris, not about the model (kept at DEBUG level)
_NOISE = ("DO NOT USE simulateOptions", "commented out decrementing")


# ------------------------------------------------------------------------------------------ seeds
def trajectory_seeds(seed: int, n: int, start: int = 0) -> np.ndarray:
    """Roadrunner seeds (1 .. 2**32-1) of trajectories ``start .. start+n-1``: a splitmix64 hash
    of (seed, index), so each depends only on ``seed`` and its own index."""
    mask = np.uint64(0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        z = (np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF) * np.uint64(0xD1B54A32D192ED03)
             + (np.arange(start, start + n, dtype=np.uint64) + np.uint64(1))
             * np.uint64(0x9E3779B97F4A7C15)) & mask
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(0xFFFFFFFF)).astype(np.int64) + 1


# ------------------------------------------------------------------------------------------ input
def _as_network(source: Any) -> ReactionNetwork:
    """The ReactionNetwork a source stands for (a network, an SBML or Antimony path or text)."""
    from .sbml import load_antimony, load_sbml

    if isinstance(source, ReactionNetwork):
        return source
    if isinstance(source, os.PathLike) or (isinstance(source, str) and not source.lstrip().startswith("<")
                                           and len(source) < 4096 and Path(source).is_file()):
        path = Path(source)
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".ant", ".antimony", ".txt") and not text.lstrip().startswith("<"):
            return load_antimony(text)
        return load_sbml(path)
    if isinstance(source, str):
        if "\n" not in source and source.strip().lower().endswith((".xml", ".sbml", ".ant", ".antimony")):
            raise SBMLParseError(f"no such SBML or Antimony file: {source}")
        if source.lstrip().startswith("<"):
            return load_sbml(source)
        return load_antimony(source)  # raises SBMLParseError on text that is neither
    raise InvalidArgumentError(
        f"run_gillespie needs a ReactionNetwork, SBML text, an SBML/Antimony path or Antimony text; "
        f"got {type(source).__name__}")


def _time_events(sbml: str) -> list[str]:
    """Ids of events whose trigger mentions time (roadrunner's gillespie cannot honour them)."""
    import libsbml

    doc = libsbml.readSBMLFromString(sbml)
    model = doc.getModel()
    out = []
    for k in range(model.getNumEvents() if model is not None else 0):
        ev = model.getEvent(k)
        trig = ev.getTrigger()
        math = trig.getMath() if trig is not None else None
        if math is not None and _mentions_time(math):
            out.append(ev.getId() or f"event #{k + 1}")
    return out


def _mentions_time(node) -> bool:
    import libsbml

    from ._math import node_type

    if node_type(node) == libsbml.AST_NAME_TIME:
        return True
    return any(_mentions_time(node.getChild(i)) for i in range(node.getNumChildren()))


def _output_plan(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Times roadrunner simulates (unique, starting at 0, at least 2), where each requested time
    sits among them, and whether they are evenly spaced (then start/end/steps is used)."""
    sim = np.unique(grid)
    if sim[0] > 0:
        sim = np.concatenate([[0.0], sim])
    if sim.size < 2:
        sim = np.concatenate([sim, [sim[-1] + 1.0]])
    index = np.searchsorted(sim, grid)
    d = np.diff(sim)
    even = bool(np.allclose(d, d[0], rtol=1e-12, atol=1e-12 * max(1.0, sim[-1])))
    return sim, index, even


# ------------------------------------------------------------------------------------------ runner
class _Runner:
    """One loaded RoadRunner with the gillespie integrator, ready to run seeded trajectories."""

    def __init__(self, sbml: str, species: tuple[str, ...], sim_times: np.ndarray, even: bool):
        import roadrunner

        try:
            self.rr = roadrunner.RoadRunner(sbml)
        except RuntimeError as e:  # pragma: no cover - sbml_met has already validated the SBML
            raise SBMLParseError(f"libroadrunner could not load the model: {e}") from None
        self.rr.setIntegrator("gillespie")
        self.it = self.rr.integrator
        self.it.variable_step_size = False
        try:
            self.rr.timeCourseSelections = ["time"] + list(species)
        except RuntimeError as e:
            raise InvalidArgumentError(f"libroadrunner cannot record every species: {e}") from None
        # the public simulate(): evenly spaced output as (start, end, points), else explicit times
        if even:
            self.grid = {"start": float(sim_times[0]), "end": float(sim_times[-1]), "points": int(sim_times.size)}
        else:
            self.grid = {"times": [float(t) for t in sim_times]}
        self.sim_times = sim_times

    def _simulate(self) -> np.ndarray:
        return np.asarray(self.rr.simulate(**self.grid))

    def run(self, seeds: np.ndarray) -> np.ndarray:
        """Trajectories (len(seeds), len(sim_times), n_species), amounts on the output grid."""
        it, reset, simulate = self.it, self.rr.reset, self._simulate
        out = np.empty((len(seeds), self.sim_times.size, len(self.rr.timeCourseSelections) - 1))
        for k, s in enumerate(seeds):
            reset()
            it.seed = int(s)
            try:
                res = simulate()
            except RuntimeError as e:
                raise _translate(e) from None
            out[k] = res[:, 1:]
        return out

    def check_grid(self, seed: int) -> None:
        """One probe trajectory: roadrunner must report exactly the planned output times."""
        self.reset_seed(seed)
        res = self._simulate()
        if res.shape[0] != self.sim_times.size or not np.allclose(res[:, 0], self.sim_times,
                                                                  rtol=1e-9, atol=1e-9):
            raise RuntimeError(f"libroadrunner returned output times {res[:, 0].tolist()[:8]}... "
                               f"instead of {self.sim_times.tolist()[:8]}...")

    def reset_seed(self, seed: int) -> None:
        self.rr.reset()
        self.it.seed = int(seed)


def _refused(reasons: list[Unsupported]) -> UnsupportedSBMLError:
    """libroadrunner's refusal, worded as such (sbml-met's own engines may well run the model)."""
    lines = "\n".join(f"  - {r}" for r in reasons)
    return UnsupportedSBMLError(reasons, f"libroadrunner's gillespie integrator cannot run this model "
                                         f"as written (sbml-met's exact SSA does):\n{lines}")


def _translate(e: RuntimeError) -> Exception:
    """Roadrunner's refusal of rate rules as an UnsupportedSBMLError naming the elements."""
    msg = str(e)
    if "rate rule" in msg:
        ids = msg.rsplit(":", 1)[-1].strip().rstrip(".").split(",") if "IDs" in msg else ["model"]
        return _refused([Unsupported(i.strip(), "rate rule (libroadrunner's gillespie integrator cannot "
                                               "simulate rate rules)") for i in ids if i.strip()])
    return RuntimeError(f"libroadrunner failed: {msg}")


def _probe(sbml: str, species: tuple[str, ...], sim_times: np.ndarray, even: bool,
           seed: int) -> _Runner:
    """Load the model once in this process, capturing roadrunner's log (file sink) to pass every
    message on as a Python warning; run one probe trajectory to check the output grid."""
    import roadrunner

    fd, logfile = tempfile.mkstemp(prefix="sbml_met_rr_", suffix=".log")
    os.close(fd)
    Logger = roadrunner.Logger
    level = Logger.getLevel()
    try:
        Logger.enableFileLogging(logfile, min(level, Logger.LOG_WARNING))
        try:
            runner = _Runner(sbml, species, sim_times, even)
            try:
                runner.check_grid(seed)
            except RuntimeError as e:
                err = _translate(e)
                if isinstance(err, UnsupportedSBMLError):
                    raise err from None
                raise
        finally:
            Logger.disableFileLogging()
            Logger.setLevel(level)
        lines = Path(logfile).read_text(encoding="utf-8", errors="replace").splitlines()
    finally:
        Path(logfile).unlink(missing_ok=True)
    for line in dict.fromkeys(ln.strip() for ln in lines if ln.strip()):
        if any(s in line for s in _NOISE):
            log.debug("libroadrunner: %s", line)
        else:
            log.warning("libroadrunner: %s", line)
    return runner


# ------------------------------------------------------------------------------------------ workers
_WORKER: _Runner | None = None


def _init_worker(sbml: str, species: tuple[str, ...], sim_times: np.ndarray, even: bool) -> None:
    global _WORKER
    _WORKER = _Runner(sbml, species, sim_times, even)


def _work(seeds: np.ndarray) -> np.ndarray:
    assert _WORKER is not None
    return _WORKER.run(seeds)


def _progress(enabled: bool, n: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=n, desc="roadrunner gillespie", unit="traj", leave=False)


# ------------------------------------------------------------------------------------------ API
def run_gillespie(
    network_or_sbml: Any,
    times: Any,
    n: int = 10_000,
    seed: int | None = 1,
    processes: int | None = None,
    progress: bool | None = None,
    split_reversible: bool = True,
) -> SSAResult:
    """``n`` libroadrunner Gillespie trajectories of a model, amounts recorded at ``times``.

    ``network_or_sbml``: a ReactionNetwork (its ``to_sbml()`` is loaded, so parameter changes made
    with ``with_parameters`` count), SBML text, a path to SBML or Antimony, or Antimony text.
    ``processes``: worker processes (None: all cores; 1: in this process). Returns an SSAResult with
    ``method="tellurium"`` and the network's species order; the same seed gives the same numbers
    whatever ``processes`` is. ``progress`` shows a tqdm bar (default: when stderr is a terminal).
    ``split_reversible`` (default) hands libroadrunner each reversible reaction as the forward and
    reverse channels sbml-met simulates (:func:`sbml_met.sbml.split_reversible`): its gillespie
    fires a reversible reaction at the *net* rate, which is not the CME (``A <-> B`` stops dead at
    equilibrium); ``False`` runs the SBML as libroadrunner reads it.
    """
    if int(n) < 1:
        raise InvalidArgumentError(f"n must be >= 1, got {n}")
    n = int(n)
    grid = check_times(times)
    from .sbml import split_reversible as split, write_sbml

    net = _as_network(network_or_sbml)
    sbml = write_sbml(net, pin_counts=True)  # the reference starts where sbml-met starts
    if split_reversible:
        sbml = split(sbml)
    timed = _time_events(sbml)
    if timed:
        raise _refused([Unsupported(e, "event triggered by time: libroadrunner's gillespie integrator checks "
                                       "triggers only after reactions fire, so it would fire late") for e in timed])
    if seed is None:
        from .parallel import fresh_seed

        seed = fresh_seed()
    sim_times, index, even = _output_plan(grid)
    seeds = trajectory_seeds(int(seed), n)
    if processes is None:
        processes = os.cpu_count() or 1
    processes = max(1, min(int(processes), n))
    if progress is None:
        progress = sys.stderr.isatty()
    runner = _probe(sbml, net.species, sim_times, even, int(seeds[0]))
    bar = _progress(progress, n)
    if processes == 1:
        chunk = max(1, min(1000, n // 20 or 1))
        parts = []
        for a in range(0, n, chunk):
            parts.append(runner.run(seeds[a:a + chunk]))
            if bar is not None:
                bar.update(len(parts[-1]))
        states = np.concatenate(parts, axis=0)
    else:
        import multiprocessing as mp

        del runner
        chunk = max(1, min(500, -(-n // (processes * 8))))
        bounds = [(a, min(a + chunk, n)) for a in range(0, n, chunk)]
        states = np.empty((n, sim_times.size, net.n_species))
        # fork (Linux): fast, and works from notebooks and stdin scripts; each worker then loads its
        # own RoadRunner. Elsewhere spawn (needs the usual `if __name__ == "__main__"` guard).
        method = "fork" if "fork" in mp.get_all_start_methods() and sys.platform == "linux" else "spawn"
        with ProcessPoolExecutor(max_workers=processes, mp_context=mp.get_context(method),
                                 initializer=_init_worker,
                                 initargs=(sbml, net.species, sim_times, even)) as pool:
            futures = {pool.submit(_work, seeds[a:b]): (a, b) for a, b in bounds}
            for fut in as_completed(futures):
                a, b = futures[fut]
                states[a:b] = fut.result()
                if bar is not None:
                    bar.update(b - a)
    if bar is not None:
        bar.close()
    return SSAResult(net.species, grid, np.ascontiguousarray(states[:, index, :]), method="tellurium",
                     seed=seed, model=net.name)
