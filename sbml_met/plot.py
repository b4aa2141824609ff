"""Figures of results: marginals, whole distributions over time, trajectories, moments and joints.

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

__all__ = ["Figure", "METHOD_COLOURS", "method_colour", "marginals", "trajectories", "moments", "distributions",
           "joint"]

# One colour per method in every figure, report and notebook (Okabe-Ito: safe for colour-blind
# readers); the exact solution (FSP, analytic) is black and drawn on top.
METHOD_COLOURS = {"ssa": "#0072B2", "fsp": "#000000", "met": "#E69F00", "tellurium": "#009E73"}
_ALIASES = {"tau-leap": "ssa", "tau": "ssa", "direct": "ssa", "exact": "fsp", "analytic": "fsp", "cme": "fsp",
            "roadrunner": "tellurium", "libroadrunner": "tellurium", "gillespie": "tellurium"}
_OTHER_COLOURS = ("#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#999999")
MAX_BINS = 60  # a marginal with more distinct counts is drawn as a histogram on shared bins


def method_colour(label: str, k: int = 0) -> str:
    """The colour of the method a label names by its first word (SSA, tau-leap, FSP, exact,
    MET, Tellurium, roadrunner ...); ``k`` picks among the other colours for anything else."""
    word = str(label).split(" ")[0].strip("()[],:").lower()
    key = _ALIASES.get(word, word)
    return METHOD_COLOURS.get(key, _OTHER_COLOURS[k % len(_OTHER_COLOURS)])


@functools.lru_cache(maxsize=None)
@functools.cache
def _figure_class() -> type:
    """The :class:`Figure` class (public as ``sbml_met.plot.Figure``), built once on first use so
    that ``import sbml_met`` skips matplotlib."""
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


EXACT_LABELS = ("fsp", "exact", "analytic")


def _is_exact(label: str, exact: str | None) -> bool:
    return label == exact if exact is not None else label.split(" ")[0].lower() in EXACT_LABELS


def _ordered(refs: list[tuple[str, Any]], exact: str | None) -> list[tuple[str, Any, dict]]:
    """References with their line style, the exact one last (drawn on top) in black."""
    styled, k = [], 0
    for label, ref in refs:
        if _is_exact(label, exact):
            continue
        styled.append((label, ref, dict(color=method_colour(label, k), lw=2.4, alpha=0.8, zorder=3)))
        k += 1
    styled += [(label, ref, dict(color="black", lw=1.3, zorder=6)) for label, ref in refs if _is_exact(label, exact)]
    return styled


def _figure_legend(fig, axes) -> None:
    """One legend for the whole figure, above the panels (every method named once)."""
    handles, labels = {}, []
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    order = {c: k for k, c in enumerate(METHOD_COLOURS.values())}  # SSA, FSP, MET, Tellurium, then others
    labels.sort(key=lambda lab: order.get(method_colour(lab, len(order)), len(order)))
    if labels:
        fits = max(1, int(fig.get_figwidth() // 2.0))  # legend entries a row holds without clipping
        fig.legend([handles[lab] for lab in labels], labels, loc="outside upper center",
                   ncols=min(len(labels), 5, fits), fontsize="small", frameon=False)


def marginals(
    result: SSAResult | Distribution,
    species: str | Sequence[str] | None = None,
    times: float | Sequence[float] | None = None,
    reference: Any = None,
    exact: str | None = None,
    label: str | None = None,
):
    """Marginal distributions P(species = count): one panel per species (rows) and time (columns).

    ``result`` is drawn as bars (an SSAResult as its empirical distribution), each ``reference``
    (a result, a list, or a {label: result} dict, e.g. FSP or MET) as a histogram outline (steps,
    never lines through counts between the integers). The exact reference (label ``exact``, or one
    named fsp/exact/analytic) is a thin black line drawn on top. Each method has its colour
    (:data:`METHOD_COLOURS`). A panel whose counts span more than ``MAX_BINS`` values is drawn as a
    histogram on bins shared by every method (the y axis says the bin width). Defaults: every
    species, the last time; ``label`` names ``result`` in the legend. One legend for the figure.
    Returns the Figure.
    """
    dist = as_distribution(result)
    species_list = _as_list(species) or list(dist.species)
    time_list = [float(t) for t in (_as_list(times) or [float(dist.times[-1])])]
    refs = _ordered([(label, as_distribution(r)) for label, r in _references(reference)], exact)
    fig, axes = _figure(len(species_list), len(time_list))
    for r, s in enumerate(species_list):
        for c, t in enumerate(time_list):
            ax = axes[r, c]
            m = dist.marginal(s, t)
            name = label or _label(result)
            pmfs = [(name, m, dict(color=method_colour(name), alpha=0.5))]
            pmfs += [(ref_label, ref.marginal(s, t), style) for ref_label, ref, style in refs
                     if np.any(np.isclose(ref.times, t))]  # a reference on a shorter span: where it has t
            width = 1
            if max(len(x) for _, x, _ in pmfs) <= 2:
                _dodged_bars(ax, pmfs)
            else:
                width = _bars_and_outlines(ax, pmfs)
            ax.set_xlabel(f"{s} (count)")
            ax.set_ylabel("probability" if width == 1 else f"probability per {width} counts")
            ax.set_title(f"{s}, t = {t:g}")
    if refs:
        _figure_legend(fig, axes)
    return fig


def _bars_and_outlines(ax, pmfs: list[tuple[str, pd.Series, dict]]) -> int:
    """The first pmf as bars, the others as histogram outlines, in their order: one bar per count,
    or on shared bins of ``width`` counts where the counts span more than MAX_BINS values.
    Returns ``width``."""
    from matplotlib.ticker import MaxNLocator

    edges, width = shared_bins([m for _, m, _ in pmfs])
    (label, m, style), rest = pmfs[0], pmfs[1:]
    if width == 1:
        ax.bar(m.index.to_numpy(), m.to_numpy(), width=1.0, label=label, edgecolor="none", **style)
        for ref_label, rm, ref_style in rest:
            ax.step(rm.index.to_numpy(), rm.to_numpy(), where="mid", label=ref_label, **ref_style)
        _count_range(ax, [x for _, x, _ in pmfs])
    else:
        ax.bar(edges[:-1], binned(m, edges), width=width, align="edge", label=label, edgecolor="none", **style)
        for ref_label, rm, ref_style in rest:
            ax.stairs(binned(rm, edges), edges, label=ref_label, **ref_style)
        ax.set_xlim(edges[0], edges[-1])
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    return width


def shared_bins(pmfs: list[pd.Series], max_bins: int = MAX_BINS, rel: float = 1e-3) -> tuple[np.ndarray, int]:
    """Bin edges (integer counts, each bin [edge, next edge)) shared by ``pmfs`` over the counts
    where some pmf exceeds ``rel`` times the largest probability, and the bin width: 1 where
    those counts span at most ``max_bins`` values."""
    top = max((float(m.max()) for m in pmfs if len(m)), default=0.0)
    seen = [np.asarray(m.index[m.to_numpy() > rel * top]) for m in pmfs if len(m)]
    counts = np.concatenate(seen) if seen else np.array([0])
    lo, hi = int(counts.min()), int(counts.max())
    width = max(1, -(-(hi - lo + 1) // max_bins))
    edges = np.arange(lo, hi + width + 1, width, dtype=float)
    return edges, width


def binned(pmf: pd.Series, edges: np.ndarray) -> np.ndarray:
    """The probability of each bin [edges[k], edges[k + 1]) of ``pmf`` (counts -> probability)."""
    k = np.searchsorted(edges, pmf.index.to_numpy(float), side="right") - 1
    inside = (k >= 0) & (k < len(edges) - 1)
    return np.bincount(k[inside], weights=pmf.to_numpy(float)[inside], minlength=len(edges) - 1)


def _dodged_bars(ax, pmfs: list[tuple[str, pd.Series, dict]]) -> None:
    """A 0/1 species: one bar per method side by side at 0 and at 1 (the exact one outlined in black)."""
    width = 0.8 / len(pmfs)
    for k, (label, m, style) in enumerate(pmfs):
        x = np.arange(2) - 0.4 + width * (k + 0.5)
        y = m.reindex(range(2), fill_value=0.0).to_numpy()
        exact = style.get("color") == "black"
        ax.bar(x, y, width=width * 0.95, label=label, color="white" if exact else style["color"],
               edgecolor="black" if exact else "none", lw=1.3 if exact else 0,
               alpha=1.0 if exact else 0.8, zorder=style.get("zorder", 2))
    ax.set_xticks([0, 1])
    ax.set_xlim(-0.6, 1.6)


def _count_range(ax, pmfs: list[pd.Series], rel: float = 1e-3) -> None:
    """Limit the count axis to where some pmf exceeds ``rel`` times the largest probability."""
    top = max(float(m.max()) for m in pmfs if len(m)) if any(len(m) for m in pmfs) else 0.0
    seen = [m.index[m.to_numpy() > rel * top] for m in pmfs if len(m)]
    counts = np.concatenate([np.asarray(k) for k in seen]) if seen else np.array([])
    if top > 0 and counts.size and counts.max() > 1:
        ax.set_xlim(counts.min() - 0.5 - 0.03 * np.ptp(counts), counts.max() + 0.5 + 0.03 * np.ptp(counts))


def trajectories(ssa_result: SSAResult | Sequence[SSAResult], n: int = 20,
                 species: str | Sequence[str] | None = None, time_label: str = "time",
                 of: int | None = None):
    """The first ``n`` trajectories, one panel per species (rows); returns the Figure.

    ``ssa_result`` is an ensemble on a time grid (counts held until the next recorded time), or a
    list of single trajectories recorded with ``simulate(..., n=1, record="events")``, drawn as
    steps at the exact jump times. ``of``: the size of the ensemble they stand for (the title
    then says "k of ``of``"; default: how many were given)."""
    runs = list(ssa_result) if isinstance(ssa_result, (list, tuple)) else [ssa_result]
    if not runs or not all(isinstance(r, SSAResult) for r in runs):
        raise InvalidArgumentError(f"trajectories needs an SSAResult or a list of them, got {type(ssa_result).__name__}")
    if int(n) < 1:
        raise InvalidArgumentError(f"n must be >= 1, got {n}")
    paths = [(r.times, r.states[j]) for r in runs for j in range(r.n)][: int(n)]
    total = sum(r.n for r in runs) if of is None else int(of)
    events = all(r.fired is not None for r in runs)
    first = runs[0]
    species_list = _as_list(species) or list(first.species)
    fig, axes = _figure(len(species_list), 1, width=6.0)
    for r, s in enumerate(species_list):
        ax = axes[r, 0]
        i = list(first.species).index(s) if s in first.species else _missing(s, first.species)
        how = "steps at every reaction event" if events else "counts held between recorded times"
        if max(float(x[:, i].max()) for _, x in paths) <= 1 and min(float(x[:, i].min()) for _, x in paths) >= 0:
            _on_off_raster(ax, paths, i, s)
            ax.set_title(f"{s} (0 or 1): a bar where {s} = 1", fontsize="medium")
        else:
            for j, (t, x) in enumerate(paths):
                ax.step(t, x[:, i], where="post", lw=0.8, alpha=0.75, color=f"C{j % 10}")
            ax.set_ylabel(f"{s} (count)")
            ax.set_title(s, fontsize="medium")
        ax.set_xlabel(time_label)
    fig.suptitle(f"{len(paths)} of {total:,} trajectories\n({how}; one colour per trajectory)", fontsize="medium")
    return fig


def _on_off_raster(ax, paths: list, i: int, s: str) -> None:
    """A 0/1 species: one row per trajectory, a bar over each interval where it is 1."""
    for j, (t, x) in enumerate(paths):
        on = np.concatenate([[False], x[:, i] > 0.5, [False]]).astype(int)
        starts, stops = np.flatnonzero(np.diff(on) == 1), np.flatnonzero(np.diff(on) == -1)
        edges = np.append(t, t[-1])  # a state holds until the next event (the last until the end)
        spans = [(float(edges[a]), float(edges[b] - edges[a])) for a, b in zip(starts, stops)]
        ax.broken_barh(spans, (j + 0.1, 0.8), color=f"C{j % 10}", alpha=0.85)
    ax.set_ylim(0, len(paths))
    ax.set_yticks(np.arange(len(paths)) + 0.5, [str(j + 1) for j in range(len(paths))], fontsize="x-small")
    ax.set_ylabel("trajectory")


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


def moments(result: Any, reference: Any = None, species: str | Sequence[str] | None = None,
            bands: bool = True, exact: str | None = None, time_label: str = "time", label: str | None = None):
    """Mean over time, one panel per species (rows); with ``bands``, a +-1 standard deviation band
    (cut at 0: counts are never negative) around ``result``'s mean and dotted +-1 SD lines around
    each reference's. Each ``reference`` is a line of its method's colour, the exact one (see
    :func:`marginals`) thin, black and on top. A mean +- SD says
    little about bimodal or 0/1 species: :func:`distributions` draws their whole distribution.
    Returns the Figure."""
    table = _moments_table(result)
    species_list = _as_list(species) or list(dict.fromkeys(table["species"]))
    refs = _ordered([(label, _moments_table(r)) for label, r in _references(reference)], exact)
    fig, axes = _figure(len(species_list), 1, width=6.0)
    for r, s in enumerate(species_list):
        ax = axes[r, 0]
        part = table[table["species"] == s].sort_values("time")
        if part.empty:
            _missing(s, list(dict.fromkeys(table["species"])))
        t, mean = part["time"].to_numpy(float), part["mean"].to_numpy(float)
        name = label or _label(result)
        colour = method_colour(name)
        ax.plot(t, mean, "-", color=colour, lw=2.4, alpha=0.8, label=name, zorder=2)
        if bands and "std" in part:
            std = part["std"].to_numpy(float)
            ax.fill_between(t, np.clip(mean - std, 0.0, None), mean + std, color=colour, alpha=0.2, lw=0,
                            label=f"{name} ±1 SD")
        for ref_label, tab, style in refs:
            ref = tab[tab["species"] == s].sort_values("time")
            rt, rm = ref["time"].to_numpy(float), ref["mean"].to_numpy(float)
            dashed = {} if style["color"] == "black" else {"lw": 1.8, "alpha": 1.0}  # the SSA shows beneath
            ax.plot(rt, rm, "-" if style["color"] == "black" else "--", label=ref_label, **{**style, **dashed})
            if bands and "std" in ref:
                rs = ref["std"].to_numpy(float)
                for edge in (np.clip(rm - rs, 0.0, None), rm + rs):
                    ax.plot(rt, edge, ":", **{**style, "lw": 1.0})
        ax.set_xlabel(time_label)
        ax.set_ylabel(f"mean {s} (count)")
        ax.set_title(f"{s}: mean" + (" ±1 SD (band; dotted for the other methods)" if bands and refs else
                                     " ±1 SD" if bands else ""), fontsize="medium")
    if refs:
        _figure_legend(fig, axes)
    return fig


MAX_ROWS = 300  # a heat map of more counts groups them into this many rows of equal width


def _marginal_matrix(result: Any, species: str, width: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(times, P) with P[j, k] = P(species in [k * width, (k + 1) * width) at times[j]), from an
    SSAResult or Distribution."""
    if isinstance(result, SSAResult):
        i = list(result.species).index(species) if species in result.species else _missing(species, result.species)
        x = np.rint(result.states[:, :, i]).astype(np.int64) // width
        size = int(x.max()) + 1
        rows = [np.bincount(x[:, j], minlength=size) / result.n for j in range(x.shape[1])]
        return np.asarray(result.times, float), np.vstack(rows)
    dist = as_distribution(result)
    rows = []
    for t in dist.times:
        m = dist.marginal(species, t)
        rows.append(np.bincount(m.index.to_numpy() // width, weights=m.to_numpy()) if width > 1 else m.to_numpy())
    size = max(len(m) for m in rows)
    return np.asarray(dist.times, float), np.vstack([np.pad(m, (0, size - len(m))) for m in rows])


def _count_width(results: list[Any], species: str) -> int:
    """The row width of a species' heat map: 1, or what keeps it within MAX_ROWS rows."""
    top = 0
    for res in results:
        if isinstance(res, SSAResult) and species in res.species:
            top = max(top, int(np.nanmax(res.states[:, :, list(res.species).index(species)])))
        else:
            dist = as_distribution(res)
            i = list(dist.species).index(species) if species in dist.species else None
            if i is not None:
                top = max(top, max((int(st[:, i].max()) for st in dist.states if len(st)), default=0))
    return max(1, -(-(top + 1) // MAX_ROWS))


def _quantile(P: np.ndarray, q: float) -> np.ndarray:
    """Per time (row), the smallest count whose cumulative probability reaches ``q``."""
    cdf = np.cumsum(P, axis=1) / np.maximum(P.sum(axis=1, keepdims=True), 1e-300)
    return np.argmax(cdf >= q - 1e-12, axis=1).astype(float)


def distributions(results: dict[str, Any], species: str | Sequence[str] | None = None,
                  exact: str | None = None, quantiles: tuple[float, float, float] = (0.05, 0.5, 0.95),
                  time_label: str = "time"):
    """The whole distribution of each species over time, one panel per species (rows).

    ``results`` maps labels to results on (dense) time grids. A 0/1 species is drawn as P(= 1)
    over time, one line per method. Any other species as a density heat map P(count, t) of the
    exact result (``exact``, or the one named fsp/exact/analytic, else the first; log colour
    scale over three decades, purple: no method's colour), with each method's median (solid) and 5% / 95% quantiles (dotted) over it; the
    exact one black and on top (without one, the first result is the heat map and keeps its
    method's colour). Returns the Figure."""
    labelled = _ordered(list(results.items()), exact)
    if not any(style["color"] == "black" for *_, style in labelled):
        first = next(iter(results))  # no exact result: the first one is the heat map, in its own colour
        labelled = [x for x in labelled if x[0] != first] + [x for x in labelled if x[0] == first]
    base = labelled[-1]
    species_list = _as_list(species) or list(getattr(base[1], "species", ()))
    fig, axes = _figure(len(species_list), 1, width=6.5, height=2.8)
    for r, s in enumerate(species_list):
        ax = axes[r, 0]
        width = _count_width([res for _, res, _ in labelled], s)
        mats = [(label, *_marginal_matrix(res, s, width), style) for label, res, style in labelled]
        if width == 1 and max(P.shape[1] for _, _, P, _ in mats) <= 2:
            _binary_panel(ax, s, mats)
        else:
            _density_panel(fig, ax, s, mats, quantiles, width)
        ax.set_xlabel(time_label)
    _figure_legend(fig, axes)
    return fig


def _binary_panel(ax, s: str, mats: list) -> None:
    for label, t, P, style in mats:
        p1 = P[:, 1] if P.shape[1] > 1 else np.zeros(len(t))
        ax.plot(t, p1, label=label, **style)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel(f"P({s} = 1)")
    ax.set_title(f"{s} (0 or 1): probability of 1 over time", fontsize="medium")


def _density_panel(fig, ax, s: str, mats: list, quantiles: tuple[float, float, float], width: int = 1) -> None:
    from matplotlib.colors import LogNorm

    _, t, P, _ = mats[-1]  # the exact result: the heat map
    edges_t = np.concatenate([[t[0]], (t[1:] + t[:-1]) / 2, [t[-1]]]) if len(t) > 1 else np.array([t[0] - 0.5, t[0] + 0.5])
    edges_k = (np.arange(P.shape[1] + 1) - 0.5) if width == 1 else np.arange(P.shape[1] + 1) * float(width)
    grid = np.ma.masked_less_equal(P.T, 0.0)
    later = P[1:] if len(P) > 1 else P  # the initial point mass would wash out the colour scale
    high = float(later.max()) if later.size else 1.0
    mesh = ax.pcolormesh(edges_t, edges_k, grid, cmap="Purples", norm=LogNorm(vmin=high * 1e-3, vmax=high, clip=True),
                         shading="flat", zorder=0)
    fig.colorbar(mesh, ax=ax, label="probability" if width == 1 else f"probability per {width} counts", pad=0.01)
    lo, mid, hi = quantiles
    centre = 0.0 if width == 1 else (width - 1) / 2.0  # a quantile's bin, drawn at its middle count
    for label, tt, PP, style in mats:
        ax.plot(tt, _quantile(PP, mid) * width + centre, "-", label=label, **style)
        for q in (lo, hi):
            ax.plot(tt, _quantile(PP, q) * width + centre, ":", **{**style, "lw": style["lw"] * 0.8})
    ax.set_ylabel(f"{s} (count)")
    seen = np.flatnonzero(P.max(axis=0) > high * 1e-3)
    top = (seen.max() if seen.size else P.shape[1] - 1) + 1
    ax.set_ylim(-1.5 if width == 1 else 0.0, (top * width) * 1.05 + 0.5)
    ax.set_title(f"{s}: probability by {mats[-1][0]} (purple), median (solid), {lo:.0%}/{hi:.0%} quantiles "
                 "(dotted)", fontsize="medium")


def joint(distribution: SSAResult | Distribution, x: str, y: str, time: float, ax=None,
          vmin: float | None = None) -> _MplFigure:
    """Joint distribution P(x, y) at ``time`` as a heatmap on a logarithmic colour scale (as the
    MET paper's figure 2e); cells of zero probability, or below ``vmin``, are left blank. Returns
    the Figure (the one holding ``ax`` when given)."""
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
    if ax is None:
        fig, axes = _figure(1, 1, width=4.2, height=3.4)
        ax = axes[0, 0]
    positive = grid[grid > 0]
    low = vmin if vmin is not None else (max(positive.min(), positive.max() * 1e-8) if positive.size else 1e-8)
    high = positive.max() if positive.size else 1.0
    masked = np.ma.masked_where((grid <= 0.0) | (grid < low), grid)  # below the colour floor: blank
    image = ax.imshow(masked, origin="lower", aspect="auto", interpolation="nearest",
                      norm=LogNorm(vmin=low, vmax=max(high, low * 10)), cmap="viridis",
                      extent=(-0.5, nx - 0.5, -0.5, ny - 0.5))
    ax.figure.colorbar(image, ax=ax, label="probability")
    ax.set_xlabel(f"{x} (count)")
    ax.set_ylabel(f"{y} (count)")
    ax.set_title(f"P({x}, {y}), t = {float(time):g} ({_label(distribution)})")
    return ax.figure
