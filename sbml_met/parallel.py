"""Run independent chunks of work on local processes or a Dask cluster, results in order.

One function, :func:`map_chunks`, serves every engine that splits its work (SSA ensembles,
parameter sweeps, teacher data). With a ``dask.distributed.Client`` the chunks run on its
workers: a worker lost mid-run costs time, not data (Dask's scheduler reassigns its chunks;
``retries`` reruns a chunk that raised). Without one they run
on a pool of local processes (all cores by default), which is rebuilt and the missing chunks
rerun if a worker process dies. Chunk functions must be picklable module-level callables; a
:class:`~sbml_met.network.ReactionNetwork` pickles as its SBML text.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Sequence

import numpy as np

from .errors import InvalidArgumentError

RETRIES = 3  # times a chunk is rerun after its worker died
_POOLS: dict[int, ProcessPoolExecutor] = {}
_WARNED_UNGUARDED = False


def seed_of(sequence: np.random.SeedSequence) -> int:
    """A non-negative 63-bit integer seed drawn from ``sequence``."""
    return int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))


def fresh_seed() -> int:
    """A seed from the operating system's entropy (for ``seed=None``), recorded in results."""
    return seed_of(np.random.SeedSequence())


def child_seeds(seed: int, count: int) -> list[int]:
    """``count`` independent seeds derived from ``seed`` (SeedSequence children): the same for a
    given seed whichever worker uses them."""
    return [seed_of(child) for child in np.random.SeedSequence(seed).spawn(count)]


def available_workers() -> int:
    """Cores this process may use (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | None, n_chunks: int) -> int:
    """Local worker processes for ``n_chunks`` chunks: all cores unless ``workers`` says."""
    if workers is None:
        workers = available_workers()
    if int(workers) < 1:
        raise InvalidArgumentError(f"workers must be >= 1, got {workers}")
    return max(1, min(int(workers), n_chunks))


def map_chunks(fn: Callable[[Any], Any], chunks: Sequence[Any], client: Any = None,
               workers: int | None = None, progress: bool = False, desc: str = "chunks") -> list:
    """``[fn(c) for c in chunks]``, computed on ``client``'s workers, local processes or here."""
    bar = _bar(progress, len(chunks), desc)
    try:
        if client is not None:
            return _on_dask(fn, chunks, client, bar)
        n = resolve_workers(workers, len(chunks))
        if n > 1 and not spawn_is_safe():
            warn_unguarded()
            n = 1
        if n == 1:
            out = []
            for c in chunks:
                out.append(fn(c))
                _tick(bar)
            return out
        return _on_processes(fn, chunks, n, bar)
    finally:
        if bar is not None:
            bar.close()


def _on_dask(fn, chunks, client, bar) -> list:
    from distributed import as_completed

    futures = client.map(fn, list(chunks), pure=False, retries=RETRIES)
    index = {f.key: i for i, f in enumerate(futures)}
    out: list = [None] * len(futures)
    for future in as_completed(futures):
        out[index[future.key]] = future.result()
        _tick(bar)
    return out


def _on_processes(fn, chunks, workers: int, bar) -> list:
    out = map_until(fn, chunks, workers, on_done=lambda i, r: _tick(bar))
    return [out[i] for i in range(len(chunks))]


def map_until(fn: Callable[[Any], Any], chunks: Sequence[Any], workers: int, deadline: float | None = None,
              on_done: Callable[[int, Any], None] | None = None) -> dict[int, Any]:
    """``{i: fn(chunks[i])}`` on ``workers`` local processes for the chunks started before
    ``time.monotonic()`` passes ``deadline`` (those running then finish). ``on_done(i, result)``
    runs here as each chunk finishes. A pool that breaks (a worker died) is rebuilt and the
    missing chunks rerun, up to ``RETRIES`` times."""
    import time

    out: dict[int, Any] = {}

    def late() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    for attempt in range(RETRIES + 1):
        try:  # a pool broken since the last call (a worker killed between calls) breaks at submit
            pool, pending = _pool(workers), {}
            todo = iter([i for i in range(len(chunks)) if i not in out])
            nxt = next(todo, None)
            while pending or (nxt is not None and not late()):
                while nxt is not None and len(pending) < 2 * workers and not late():
                    pending[pool.submit(fn, chunks[nxt])] = nxt
                    nxt = next(todo, None)
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for f in done:
                    i = pending.pop(f)
                    out[i] = f.result()
                    if on_done is not None:
                        on_done(i, out[i])
            return out
        except BrokenProcessPool:
            _POOLS.pop(workers, None)
            if attempt == RETRIES:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def spawn_is_safe() -> bool:
    """Whether worker processes can start without rerunning the user's script: true in a REPL,
    a notebook or ``python -c`` (no script), where children are forked before PyTorch is loaded,
    and where the script's top level is inside its ``if __name__ == "__main__":`` block now.
    A fork server's children import the main script again (as any spawned process does), and an
    unguarded script would start over in each of them."""
    import ast
    import multiprocessing as mp
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None:
        return True
    if "torch" not in sys.modules and "fork" in mp.get_all_start_methods():
        return True
    if str(getattr(getattr(main, "__spec__", None), "name", "")).endswith("__main__"):
        return True  # python -m package: children never rerun a package's __main__
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_globals is main.__dict__ and frame.f_code.co_name == "<module>"):
        frame = frame.f_back
    if frame is None:
        return False
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return False
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_guard(node.test) and node.body:
            if node.body[0].lineno <= frame.f_lineno <= (node.body[-1].end_lineno or node.body[-1].lineno):
                return True
    return False


def warn_unguarded() -> None:
    """Say once per process that the work runs on one core, and how to use them all."""
    global _WARNED_UNGUARDED
    if not _WARNED_UNGUARDED:
        import warnings

        from ._warn import user_stacklevel

        _WARNED_UNGUARDED = True
        warnings.warn("sbml-met runs this work in one process: worker processes would rerun this script from "
                      "the top, as it has no 'if __name__ == \"__main__\":' guard around the call. Put the "
                      "script's work under that guard to use every core (the numbers are the same either way).",
                      RuntimeWarning, stacklevel=user_stacklevel())


def _is_main_guard(test: Any) -> bool:
    """``__name__ == "__main__"``, either way round."""
    import ast

    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return (any(isinstance(x, ast.Name) and x.id == "__name__" for x in sides)
            and any(isinstance(x, ast.Constant) and x.value == "__main__" for x in sides))


def _pool(workers: int) -> ProcessPoolExecutor:
    """A pool kept across calls (starting processes costs time). Children are forked, so that a
    user's script runs without an ``if __name__ == "__main__"`` guard; once PyTorch is loaded
    (its thread pools do not survive a fork) they come from a fork server that imported
    sbml_met, and scripts then need the guard, as with any spawned process."""
    if workers not in _POOLS:
        import multiprocessing as mp
        import sys

        if "torch" in sys.modules or "fork" not in mp.get_all_start_methods():
            ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
            if ctx.get_start_method() == "forkserver":
                ctx.set_forkserver_preload(["sbml_met"])
        else:
            ctx = mp.get_context("fork")
        _POOLS[workers] = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    return _POOLS[workers]


def _bar(progress: bool, total: int, desc: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="chunk", leave=False)


def _tick(bar) -> None:
    if bar is not None:
        bar.update(1)
