"""An interactive view of a MET: the joint distribution of two species and their marginals at any
prompt in the training box, recomputed by the network and redrawn in place in milliseconds.

``METExplorer(met).update(time, **params)`` is a plain function call (no widgets needed); notebook
05 wires it to ipywidgets sliders. ``bench/explorer_speed.py`` measures the time per update.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .errors import InvalidArgumentError

MAX_PREFIXES = 200_000


def dense_joint(met: Any, time: float, init: Mapping[str, float] | None = None, threads: int = 1,
                **params: float) -> np.ndarray:
    """The MET's whole joint distribution at one prompt as a dense array of shape ``vocab``
    (species in the network's order), by exact enumeration with the prompt's keys and values
    cached: each species costs one single-token step for every prefix of the ones before it.

    The work is a few small matrix products: it runs on ``threads`` torch threads (default 1;
    the previous setting is restored), since more threads only wait on each other, and on a busy
    machine a second spinning thread makes it 100x slower."""
    import torch

    net = met.net
    vocab = tuple(net.config.vocab)
    if int(np.prod(vocab[:-1])) > MAX_PREFIXES:
        raise InvalidArgumentError(f"the MET's count vocabulary {vocab} has too many prefixes to enumerate")
    features = met.prompt_features([float(time)], init, params)
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        return _enumerate(met.net, vocab, features).reshape(vocab)
    finally:
        torch.set_num_threads(before)


def _enumerate(net: Any, vocab: tuple[int, ...], features: Any) -> np.ndarray:
    """Probabilities of every state, flattened in row-major order of ``vocab``."""
    import torch

    with torch.no_grad():
        last, caches = net.prompt_kv(features)
        probs = np.ones(1)
        for s, v in enumerate(vocab):
            cond = torch.softmax(net.heads[s](last).double(), dim=-1).numpy()  # (prefixes, v)
            probs = (probs[:, None] * cond).reshape(-1)
            if s == len(vocab) - 1:
                break
            m = len(probs) // v
            counts = torch.arange(v).repeat(m)
            parent = torch.arange(m).repeat_interleave(v)
            last, caches = net.next_token(counts, s, caches, parent)
    return probs


class METExplorer:
    """Joint P(x, y) (log colour scale) with both marginals, for one MET, redrawn in place.

    ``x`` and ``y`` default to the last two species; :meth:`update` takes the time and the free
    parameters (others keep the network's values) and returns the (same) Figure.
    """

    def __init__(self, met: Any, x: str | None = None, y: str | None = None, vmin: float = 1e-6) -> None:
        self.met = met
        species = list(met.species)
        self.x, self.y = x or species[-2], y or species[-1]
        for s in (self.x, self.y):
            if s not in species:
                raise InvalidArgumentError(f"no species '{s}'; species are: {', '.join(species)}")
        self._ix, self._iy = species.index(self.x), species.index(self.y)
        vocab = met.net.config.vocab
        self._build(vocab[self._ix], vocab[self._iy], vmin)

    def _build(self, nx: int, ny: int, vmin: float) -> None:
        from matplotlib.colors import LogNorm

        from .plot import METHOD_COLOURS, Figure

        fig = Figure(figsize=(9.5, 4.2), layout="constrained")
        grid = fig.add_gridspec(2, 2, width_ratios=(1.25, 1))
        self.ax_joint = fig.add_subplot(grid[:, 0])
        self.ax_x, self.ax_y = fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, 1])
        self.image = self.ax_joint.imshow(np.full((ny, nx), np.nan), origin="lower", aspect="auto",
                                          interpolation="nearest", cmap="viridis",
                                          norm=LogNorm(vmin=vmin, vmax=1.0), extent=(-0.5, nx - 0.5, -0.5, ny - 0.5))
        fig.colorbar(self.image, ax=self.ax_joint, label="probability", shrink=0.9)
        self.ax_joint.set_xlabel(f"{self.x} (count)")
        self.ax_joint.set_ylabel(f"{self.y} (count)")
        (self.line_x,) = self.ax_x.step(np.arange(nx), np.zeros(nx), where="mid", color=METHOD_COLOURS["met"])
        (self.line_y,) = self.ax_y.step(np.arange(ny), np.zeros(ny), where="mid", color=METHOD_COLOURS["met"])
        for ax, s, n in ((self.ax_x, self.x, nx), (self.ax_y, self.y, ny)):
            ax.set_xlim(-0.5, n - 0.5)
            ax.set_xlabel(f"{s} (count)")
            ax.set_ylabel("probability")
        self.fig = fig

    def compute(self, time: float, **params: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """P(x, y) as an array (y rows, x columns) and the two marginals, from the MET."""
        joint = dense_joint(self.met, time, **params)
        others = tuple(k for k in range(joint.ndim) if k not in (self._ix, self._iy))
        pxy = joint.sum(axis=others)
        if self._ix > self._iy:
            pxy = pxy.T
        return pxy.T, pxy.sum(axis=1), pxy.sum(axis=0)

    def update(self, time: float, **params: float):
        """Recompute at (time, params) and redraw the joint heat map and marginals; returns the Figure."""
        grid, px, py = self.compute(time, **params)
        self.image.set_data(np.ma.masked_less_equal(grid, self.image.norm.vmin))
        self.image.norm.vmax = max(float(grid.max()), self.image.norm.vmin * 10)
        self.line_x.set_ydata(px)
        self.line_y.set_ydata(py)
        for ax, p in ((self.ax_x, px), (self.ax_y, py)):
            ax.set_ylim(0, max(float(p.max()) * 1.08, 1e-9))
        prompt = ", ".join(f"{k} = {v:g}" for k, v in params.items())
        self.ax_joint.set_title(f"MET: P({self.x}, {self.y}) at t = {time:g}" + (f", {prompt}" if prompt else ""),
                                fontsize="medium")
        return self.fig

    def png(self, dpi: float = 80) -> bytes:
        """The current figure as PNG bytes (for an ``ipywidgets.Image``)."""
        import io

        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=dpi)
        return buf.getvalue()
