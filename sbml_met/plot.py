"""Figures of results: marginal distributions, trajectories, moments and joint distributions.

Every function builds and returns a :class:`Figure` (a matplotlib Figure) with the
object-oriented API (no pyplot state, never ``show()``), so it works under any backend, Agg
included. The Figure displays itself as a PNG image in Jupyter (``_repr_png_``) whether or not
pyplot or ``%matplotlib inline`` was ever set up. ``joint`` also accepts ``ax=`` to draw into an
existing Axes (it then returns that Axes' Figure).
Results are :class:`~sbml_met.results.SSAResult` or :class:`~sbml_met.results.Distribution`
objects (moments also accept a table with columns time, species, mean, std).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from .errors import InvalidArgumentError
from .results import Distribution, SSAResult, as_distribution

if TYPE_CHECKING:
    from matplotlib.figure import Figure as _MplFigure

__all__ = ["Figure", "marginals", "trajectories", "moments", "joint"]


@functools.lru_cache(maxsize=None)
def _figure_class() -> type:
    """The :class:`Figure` class, built on first use so that ``import sbml_met`` skips matplotlib."""
    from matplotlib.figure import Figure as MplFigure

    class Figure(MplFigure):
        """A matplotlib Figure that Jupyter shows as an image.

        IPython registers a PNG formatter for figures only once pyplot's inline backend is loaded;
        a library that never touches pyplot would otherwise show ``<Figure size ... with N Axes>``.
        """

        def _repr_png_(self) -> bytes:
            import io

            buf = io.BytesIO()
            self.savefig(buf, format="png", bbox_inches="tight")
            return buf.getvalue()

    Figure.__module__ = __name__
    Figure.__qualname__ = "Figure"
    return Figure


def __getattr__(name: str) -> Any:
    if name == "Figure":  # sbml_met.plot.Figure(figsize=...) for figures of one's own
        return _figure_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def displayable(fig: "_MplFigure") -> "_MplFigure":
    """``fig`` as a :class:`Figure` (shown as an image in Jupyter); the same object, re-classed."""
    cls = _figure_class()
    if not isinstance(fig, cls) and type(fig).__name__ == "Figure":
        fig.__class__ = cls
    return fig


def _figure(nrows: int, ncols: int, width: float = 3.2, height: float = 2.6):
    fig = _figure_class()(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or np.ndim(value) == 0:
        return [value]
    return list(value)


def _label(result: Any) -> str:
    if isinstance(result, pd.DataFrame):
        return str(result["method"].iloc[0]) if "method" in result and len(result) else "reference"
    method = getattr(result, "method", "") or type(result).__name__
    n = getattr(result, "n", None) if isinstance(result, SSAResult) else getattr(result, "n_samples", None)
    return f"{method} (n={n})" if n else str(method)


def _references(reference: Any) -> list[tuple[str, Any]]:
    """``reference`` as (label, result) pairs: one result, a list of them, or a {label: result} dict."""
    if reference is None:
        return []
    if isinstance(reference, dict):
        return [(str(k), v) for k, v in reference.items()]
    if isinstance(reference, (list, tuple)):
        return [(_label(r), r) for r in reference]
    return [(_label(reference), reference)]


def marginals(
    result: SSAResult | Distribution,
    species: str | Sequence[str] | None = None,
    times: float | Sequence[float] | None = None,
    reference: Any = None,
):
    """Marginal distributions P(species = count): one panel per species (rows) and time (columns).

    ``result`` is drawn as bars (an SSAResult as its empirical distribution), each ``reference``
    (a result, a list, or a {label: result} dict, e.g. FSP or MET) as a line with markers.
    Defaults: every species, the last time. Returns the Figure.
    """
    dist = as_distribution(result)
    species_list = _as_list(species) or list(dist.species)
    time_list = [float(t) for t in (_as_list(times) or [float(dist.times[-1])])]
    refs = [(label, as_distribution(r)) for label, r in _references(reference)]
    fig, axes = _figure(len(species_list), len(time_list))
    for r, s in enumerate(species_list):
        for c, t in enumerate(time_list):
            ax = axes[r, c]
            m = dist.marginal(s, t)
            ax.bar(m.index.to_numpy(), m.to_numpy(), width=1.0, alpha=0.55, label=_label(result),
                   color="C0", edgecolor="none")
            for k, (label, ref) in enumerate(refs):
                rm = ref.marginal(s, t)
                ax.plot(rm.index.to_numpy(), rm.to_numpy(), marker="o", markersize=2.5, lw=1.2,
                        color=f"C{k + 1}", label=label)
            ax.set_xlabel(f"{s} (count)")
            ax.set_ylabel("probability")
            ax.set_title(f"{s}, t = {t:g}")
            if r == 0 and c == 0 and refs:
                ax.legend(fontsize="small")
    return fig


def trajectories(ssa_result: SSAResult, n: int = 20, species: str | Sequence[str] | None = None):
    """The first ``n`` trajectories of an SSA ensemble, one panel per species (rows); returns the
    Figure. Counts are drawn as steps held until the next recorded time."""
    if not isinstance(ssa_result, SSAResult):
        raise InvalidArgumentError(f"trajectories needs an SSAResult, got {type(ssa_result).__name__}")
    if int(n) < 1:
        raise InvalidArgumentError(f"n must be >= 1, got {n}")
    species_list = _as_list(species) or list(ssa_result.species)
    k = min(int(n), ssa_result.n)
    fig, axes = _figure(len(species_list), 1, width=6.0)
    for r, s in enumerate(species_list):
        ax = axes[r, 0]
        i = list(ssa_result.species).index(s) if s in ssa_result.species else _missing(s, ssa_result.species)
        for j in range(k):
            ax.step(ssa_result.times, ssa_result.states[j, :, i], where="post", lw=0.8, alpha=0.7)
        ax.set_xlabel("time")
        ax.set_ylabel(f"{s} (count)")
        ax.set_title(f"{s}: {k} of {ssa_result.n} trajectories")
    return fig


def _missing(name: str, species: Sequence[str]):
    from .errors import UnknownIdError

    raise UnknownIdError(f"no species '{name}'; species are: {', '.join(species)}")


def _moments_table(result: Any) -> pd.DataFrame:
    if isinstance(result, pd.DataFrame):
        missing = {"time", "species", "mean"} - set(result.columns)
        if missing:
            raise InvalidArgumentError(f"a moments table needs the columns time, species, mean (and std); "
                                       f"missing: {', '.join(sorted(missing))}")
        return result
    if hasattr(result, "moments"):
        return result.moments()
    raise InvalidArgumentError(f"cannot take moments of {type(result).__name__}")


def moments(result: Any, reference: Any = None, species: str | Sequence[str] | None = None):
    """Mean over time with a +-1 standard deviation band, one panel per species (rows); each
    ``reference`` dashed with its own band. Returns the Figure."""
    table = _moments_table(result)
    species_list = _as_list(species) or list(dict.fromkeys(table["species"]))
    refs = [(label, _moments_table(r)) for label, r in _references(reference)]
    fig, axes = _figure(len(species_list), 1, width=6.0)
    for r, s in enumerate(species_list):
        ax = axes[r, 0]
        for k, (label, tab, style) in enumerate([(_label(result), table, "-")] +
                                                [(lab, t, "--") for lab, t in refs]):
            part = tab[tab["species"] == s].sort_values("time")
            if part.empty:
                if k == 0:
                    _missing(s, list(dict.fromkeys(tab["species"])))
                continue
            t = part["time"].to_numpy(float)
            mean = part["mean"].to_numpy(float)
            ax.plot(t, mean, style, color=f"C{k}", label=label)
            if "std" in part:
                std = part["std"].to_numpy(float)
                ax.fill_between(t, mean - std, mean + std, color=f"C{k}", alpha=0.2, lw=0)
        ax.set_xlabel("time")
        ax.set_ylabel(f"{s} (count)")
        ax.set_title(f"{s}: mean +- 1 std")
        if r == 0 and refs:
            ax.legend(fontsize="small")
    return fig


def joint(distribution: SSAResult | Distribution, x: str, y: str, time: float, ax=None,
          vmin: float | None = None) -> _MplFigure:
    """Joint distribution P(x, y) at ``time`` as a heatmap on a logarithmic colour scale (as the
    MET paper's figure 2e); zero-probability cells are left blank. Returns the Figure (the one
    holding ``ax`` when given)."""
    from matplotlib.colors import LogNorm

    dist = as_distribution(distribution)
    frame = dist.joint_frame(time)
    for s in (x, y):
        if s not in frame.columns or s == "probability":
            _missing(s, dist.species)
    p = frame.groupby([y, x])["probability"].sum()
    ny, nx = int(frame[y].max()) + 1, int(frame[x].max()) + 1
    grid = np.zeros((ny, nx))
    grid[p.index.get_level_values(0).to_numpy(int), p.index.get_level_values(1).to_numpy(int)] = p.to_numpy()
    masked = np.ma.masked_less_equal(grid, 0.0)
    if ax is None:
        fig, axes = _figure(1, 1, width=4.2, height=3.4)
        ax = axes[0, 0]
    positive = grid[grid > 0]
    low = vmin if vmin is not None else (max(positive.min(), positive.max() * 1e-8) if positive.size else 1e-8)
    high = positive.max() if positive.size else 1.0
    image = ax.imshow(masked, origin="lower", aspect="auto", interpolation="nearest",
                      norm=LogNorm(vmin=low, vmax=max(high, low * 10)), cmap="viridis",
                      extent=(-0.5, nx - 0.5, -0.5, ny - 0.5))
    ax.figure.colorbar(image, ax=ax, label="probability")
    ax.set_xlabel(f"{x} (count)")
    ax.set_ylabel(f"{y} (count)")
    ax.set_title(f"P({x}, {y}), t = {float(time):g} ({_label(distribution)})")
    return ax.figure
