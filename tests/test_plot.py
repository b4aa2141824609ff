"""Plots carry the data they claim to show: bar heights, line data, bands, heatmap cells, labels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # tests never open windows

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from scipy.stats import poisson  # noqa: E402

import sbml_met  # noqa: E402
from sbml_met import models, plot  # noqa: E402
from sbml_met.errors import InvalidArgumentError, UnknownIdError  # noqa: E402
from sbml_met.results import Distribution, SSAResult  # noqa: E402


@pytest.fixture
def dist():
    """A joint distribution of (X, Y) at times 0 and 1 with known probabilities."""
    states1 = np.array([[0, 0], [1, 0], [1, 2], [3, 1]])
    p1 = np.array([0.1, 0.2, 0.3, 0.4])
    return Distribution(("X", "Y"), np.array([0.0, 1.0]), (np.array([[0, 0]]), states1),
                        (np.array([1.0]), p1), method="fsp")


@pytest.fixture
def ssa():
    rng = np.random.default_rng(0)
    states = rng.integers(0, 6, size=(30, 4, 2)).astype(float)
    return SSAResult(("X", "Y"), np.array([0.0, 1.0, 2.0, 3.0]), states, seed=0, model="toy")


def _bar_heights(ax):
    return {int(round(p.get_x() + p.get_width() / 2)): p.get_height() for p in ax.patches}


def test_marginals_bars_are_the_marginal_probabilities(dist):
    fig = plot.marginals(dist, ["X", "Y"], [1.0])
    axes = fig.axes
    assert len(axes) == 2
    assert _bar_heights(axes[0]) == pytest.approx({0: 0.1, 1: 0.5, 2: 0.0, 3: 0.4})
    assert _bar_heights(axes[1]) == pytest.approx({0: 0.3, 1: 0.4, 2: 0.3})
    assert "X" in axes[0].get_xlabel() and "Y" in axes[1].get_xlabel()
    assert axes[0].get_ylabel() == "probability"
    assert "t = 1" in axes[0].get_title()


def test_marginals_against_an_exact_reference():
    net = models.load("birth_death")
    res = sbml_met.simulate(net, [0.0, 5.0], n=500, seed=1)
    k1, k2 = net.parameters["k1"], net.parameters["k2"]
    lam = k1 / k2 * (1 - np.exp(-k2 * 5.0))  # birth-death from 0: Poisson with this mean
    counts = np.arange(0, 120)
    exact = Distribution(("X",), np.array([0.0, 5.0]),
                         (np.array([[0]]), counts.reshape(-1, 1)),
                         (np.array([1.0]), poisson.pmf(counts, lam)), method="exact")
    fig = plot.marginals(res, "X", 5.0, reference={"Poisson": exact})
    (ax,) = fig.axes
    (line,) = ax.lines
    assert line.get_label() == "Poisson"
    assert np.allclose(line.get_ydata(), poisson.pmf(counts, lam))
    heights = _bar_heights(ax)
    empirical = res.to_distribution().marginal("X", 5.0)
    assert heights == pytest.approx(dict(zip(empirical.index, empirical.to_numpy())))
    assert sum(heights.values()) == pytest.approx(1.0)
    (legend,) = fig.legends  # one legend for the whole figure
    assert {t.get_text() for t in legend.get_texts()} == {"ssa (n=500)", "Poisson"}
    assert line.get_drawstyle() == "steps-mid"  # a histogram outline, no lines between counts


def test_marginals_defaults_and_unknown_species(dist):
    fig = plot.marginals(dist)
    assert len(fig.axes) == 2  # every species at the last time
    with pytest.raises(UnknownIdError):
        plot.marginals(dist, "Z", 1.0)
    with pytest.raises(InvalidArgumentError):
        plot.marginals(dist, "X", 0.5)


def test_trajectories_draw_the_first_n_paths(ssa):
    fig = plot.trajectories(ssa, n=5)
    ax_x, ax_y = fig.axes
    assert len(ax_x.lines) == 5 and len(ax_y.lines) == 5
    for j, line in enumerate(ax_x.lines):
        assert np.array_equal(line.get_xdata(), ssa.times)
        assert np.array_equal(line.get_ydata(), ssa.states[j, :, 0])
    assert "X" in ax_x.get_ylabel() and "Y" in ax_y.get_ylabel()
    assert len(plot.trajectories(ssa, n=100).axes[0].lines) == ssa.n
    with pytest.raises(InvalidArgumentError):
        plot.trajectories(ssa.to_distribution())


def test_moments_mean_line_and_one_std_band(ssa, dist):
    fig = plot.moments(ssa, species="X")
    (ax,) = fig.axes
    (line,) = ax.lines
    m = ssa.moments().query("species == 'X'")
    assert np.allclose(line.get_ydata(), m["mean"])
    band = ax.collections[0].get_paths()[0].vertices
    lower = (m["mean"] - m["std"]).to_numpy()
    upper = (m["mean"] + m["std"]).to_numpy()
    assert band[:, 1].min() == pytest.approx(lower.min())
    assert band[:, 1].max() == pytest.approx(upper.max())
    assert "X" in ax.get_ylabel() and ax.get_xlabel() == "time"


def test_moments_with_reference_table(ssa):
    ref = pd.DataFrame({"time": [0.0, 3.0], "species": ["Y", "Y"], "mean": [1.0, 2.0], "method": "ode"})
    fig = plot.moments(ssa, reference=ref, species="Y")
    (ax,) = fig.axes
    ours, theirs = ax.lines
    assert np.allclose(theirs.get_ydata(), [1.0, 2.0]) and theirs.get_color() != ours.get_color()
    assert theirs.get_label() == "ode"
    with pytest.raises(InvalidArgumentError):
        plot.moments(pd.DataFrame({"time": [0.0]}))


def test_joint_heatmap_holds_the_joint_probabilities(dist):
    fig = plot.joint(dist, "X", "Y", 1.0)
    assert isinstance(fig, plot.Figure)
    ax = fig.axes[0]
    (image,) = ax.images
    grid = image.get_array()
    assert grid.shape == (3, 4)  # Y rows 0..2, X columns 0..3
    assert grid[0, 0] == pytest.approx(0.1) and grid[0, 1] == pytest.approx(0.2)
    assert grid[2, 1] == pytest.approx(0.3) and grid[1, 3] == pytest.approx(0.4)
    assert np.ma.is_masked(grid[2, 2])  # zero probability: blank, not log(0)
    assert isinstance(image.norm, LogNorm)
    assert "X" in ax.get_xlabel() and "Y" in ax.get_ylabel()
    with pytest.raises(UnknownIdError):
        plot.joint(dist, "X", "Q", 1.0)


def test_plot_shortcuts_and_png_output(ssa, dist, tmp_path):
    before = plt.get_fignums()
    fig = ssa.plot()
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 20
    assert len(ssa.plot("moments").axes) == 2
    assert dist.plot("joint", x="X", y="Y", time=1.0).axes[0].images
    fig2 = dist.plot(species="X", times=[0.0, 1.0])
    assert len(fig2.axes) == 2
    with pytest.raises(InvalidArgumentError, match="unknown plot kind"):
        dist.plot("trajectories")
    out = tmp_path / "m.png"
    fig2.savefig(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == before  # no pyplot state, nothing to show()


PNG = b"\x89PNG\r\n\x1a\n"


def test_every_figure_displays_as_an_image_in_jupyter(ssa, dist):
    """IPython's display formatter (as in a kernel with no pyplot) gives image/png for each."""
    from IPython.core.formatters import DisplayFormatter

    figures = [plot.marginals(dist), plot.trajectories(ssa, n=3), plot.moments(ssa), plot.joint(dist, "X", "Y", 1.0),
               ssa.plot(), dist.plot(), dist.plot("joint", x="X", y="Y", time=1.0)]
    formatter = DisplayFormatter()
    for fig in figures:
        assert isinstance(fig, plot.Figure)
        data, _ = formatter.format(fig)
        assert data["image/png"][:8] == PNG


def test_joint_into_given_axes_returns_its_figure(dist):
    fig = plot.Figure(figsize=(8, 3))
    left, right = fig.subplots(1, 2)
    assert plot.joint(dist, "X", "Y", 1.0, ax=right) is fig
    assert right.images and not left.images


def test_validation_report_plot_displays():
    from IPython.core.formatters import DisplayFormatter

    net = models.load("birth_death")
    res = sbml_met.simulate(net, [0.0, 5.0], n=200, seed=1)
    ref = sbml_met.simulate(net, [0.0, 5.0], n=200, seed=2)
    fig = sbml_met.validate(net, res, n_reference=200, seed=1, reference=ref).plot()
    assert isinstance(fig, plot.Figure)
    assert DisplayFormatter().format(fig)[0]["image/png"][:8] == PNG


def test_exact_reference_is_black_and_on_top(dist):
    other = Distribution(dist.species, dist.times, dist.states, dist.probabilities, method="met")
    fig = plot.marginals(dist, "X", 1.0, reference={"FSP": dist, "MET": other, "tellurium": other})
    ax = fig.axes[0]
    by_label = {line.get_label(): line for line in ax.lines}
    top = max(ax.lines, key=lambda line: line.get_zorder())
    assert top is by_label["FSP"] and top.get_color() == "black"
    assert ax.lines[-1] is by_label["FSP"]
    assert len({by_label["MET"].get_color(), by_label["tellurium"].get_color(), "black"}) == 3


def test_moments_band_never_below_zero_and_every_reference_drawn(ssa, dist):
    low = SSAResult(("X",), np.array([0.0, 1.0]), np.array([[[0.0], [0.0]], [[0.0], [9.0]]]))
    fig = plot.moments(low, reference={"fsp": dist.moments().query("species == 'X'")}, time_label="time (s)")
    ax = fig.axes[0]
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() >= 0.0
    assert [line.get_label() for line in ax.lines if not line.get_label().startswith("_")] == ["ssa (n=2)", "fsp"]
    dotted = [line for line in ax.lines if line.get_linestyle() == ":"]  # the reference's mean +- 1 SD
    fsp = dist.moments().query("species == 'X'")
    assert np.allclose(dotted[1].get_ydata(), fsp["mean"] + fsp["std"])
    assert ax.lines[-1].get_color() == "black" and ax.get_xlabel() == "time (s)"
    assert len(plot.moments(ssa, bands=False).axes[0].collections) == 0


def test_distributions_heat_map_and_quantiles():
    net = models.load("birth_death")
    grid = np.linspace(0.0, 10.0, 11)
    res = sbml_met.simulate(net, grid, n=400, seed=2)
    fsp = sbml_met.solve_fsp(net, grid)
    fig = plot.distributions({"SSA": res, "FSP": fsp}, time_label="time (h)")
    ax = fig.axes[0]
    (mesh,) = ax.collections
    rows = [fsp.marginal("X", t).to_numpy() for t in grid]
    width = max(len(r) for r in rows)
    exact = np.vstack([np.pad(r, (0, width - len(r))) for r in rows])  # P[time, count]
    assert np.allclose(mesh.get_array().filled(0.0).reshape(width, len(grid)), exact.T)
    medians = {line.get_label(): line for line in ax.lines if not line.get_label().startswith("_")}
    lam = 100 * (1 - np.exp(-0.1 * grid))
    cdf = np.cumsum(exact, axis=1)
    assert np.array_equal(medians["FSP"].get_ydata(), np.argmax(cdf >= 0.5, axis=1))
    assert np.allclose(medians["FSP"].get_ydata()[1:], lam[1:], atol=1.0)  # Poisson median ~ mean
    assert medians["FSP"].get_color() == "black" and ax.get_xlabel() == "time (h)"
    assert fig.legends


def test_distributions_draw_a_binary_species_as_a_probability():
    states = np.zeros((4, 3, 1))
    states[:2, 1:, 0] = 1.0
    res = SSAResult(("G",), np.array([0.0, 1.0, 2.0]), states)
    ax = plot.distributions({"ssa": res}).axes[0]
    (line,) = ax.lines
    assert np.allclose(line.get_ydata(), [0.0, 0.5, 0.5])
    assert ax.get_ylabel() == "P(G = 1)" and not ax.collections


def test_trajectories_at_event_times():
    net = models.load("birth_death")
    runs = [sbml_met.simulate(net, [0.0, 5.0], n=1, seed=k, record="events") for k in range(3)]
    fig = plot.trajectories(runs, n=2)
    lines = fig.axes[0].lines
    assert len(lines) == 2
    assert np.array_equal(lines[1].get_xdata(), runs[1].times)
    assert lines[1].get_drawstyle() == "steps-post"
    assert "every reaction event" in fig.get_suptitle()


def test_a_binary_species_is_drawn_as_bars_side_by_side():
    times = np.array([0.0, 1.0])
    g = Distribution(("G",), times, (np.array([[0]]), np.array([[0], [1]])), (np.array([1.0]), np.array([0.3, 0.7])),
                     method="fsp")
    s = SSAResult(("G",), times, np.array([[[0.0], [1.0]], [[0.0], [0.0]]]))
    ax = plot.marginals(s, "G", 1.0, reference={"FSP": g}).axes[0]
    assert not ax.lines  # no line through counts between 0 and 1
    bars = [(p.get_x() + p.get_width() / 2, p.get_height()) for p in ax.patches]
    assert len(bars) == 4 and all(-0.5 < x < 1.5 for x, _ in bars)
    assert sorted(h for _, h in bars) == pytest.approx([0.3, 0.5, 0.5, 0.7])
    assert list(ax.get_xticks()) == [0, 1]


def test_a_binary_species_trajectory_is_a_bar_where_it_is_one():
    t = np.array([0.0, 1.0, 2.5, 4.0])
    x = np.array([[1.0, 5.0], [0.0, 6.0], [1.0, 7.0], [1.0, 6.0]])
    run = SSAResult(("G", "P"), t, x[None], fired=np.array([0, 1, 0]))
    fig = plot.trajectories([run], time_label="time (min)")
    ax_g, ax_p = fig.axes
    (bars,) = ax_g.collections
    spans = sorted((round(p.get_extents().x0, 6), round(p.get_extents().x1, 6)) for p in bars.get_paths())
    assert spans == [(0.0, 1.0), (2.5, 4.0)]
    (line,) = ax_p.lines
    assert np.array_equal(line.get_ydata(), x[:, 1]) and ax_p.get_xlabel() == "time (min)"


def test_joint_leaves_cells_below_vmin_blank(dist):
    grid = plot.joint(dist, "X", "Y", 1.0, vmin=0.25).axes[0].images[0].get_array()
    assert np.ma.is_masked(grid[0, 0]) and np.ma.is_masked(grid[0, 1])  # 0.1 and 0.2 < vmin
    assert grid[2, 1] == pytest.approx(0.3) and grid[1, 3] == pytest.approx(0.4)


def test_one_colour_per_method_in_every_figure(ssa, dist):
    c = plot.METHOD_COLOURS
    assert plot.method_colour("SSA (n=10,000)") == plot.method_colour("SSA tau-leap (n=5)") == c["ssa"]
    assert plot.method_colour("Tellurium (n=800)") == plot.method_colour("roadrunner") == c["tellurium"]
    assert plot.method_colour("MET") == c["met"] and plot.method_colour("FSP (exact)") == c["fsp"]
    assert len(set(c.values())) == 4
    refs = {"Tellurium (n=30)": ssa, "MET": dist}
    fig = plot.moments(ssa, reference=refs, label="SSA (n=30)")
    colours = {line.get_label(): matplotlib.colors.to_hex(line.get_color()) for line in fig.axes[0].lines}
    assert colours["SSA (n=30)"] == c["ssa"].lower() and colours["MET"] == c["met"].lower()
    assert colours["Tellurium (n=30)"] == c["tellurium"].lower()
    # Tellurium alone (no FSP, no MET) keeps its colour: it is not "the next colour in the cycle"
    fig = plot.marginals(ssa, reference={"Tellurium (n=30)": ssa}, label="SSA (n=30)")
    steps = [line for line in fig.axes[0].lines if line.get_label() == "Tellurium (n=30)"]
    assert matplotlib.colors.to_hex(steps[0].get_color()) == c["tellurium"].lower()


def test_marginals_with_thousands_of_counts_are_histograms_on_shared_bins():
    rng = np.random.default_rng(1)
    wide = rng.poisson(3000, size=(4000, 1, 1)).astype(float)
    result = SSAResult(("A",), np.array([5.0]), wide)
    ref = Distribution(("A",), np.array([5.0]), (np.arange(2500, 3500)[:, None],),
                       (poisson.pmf(np.arange(2500, 3500), 3000) / poisson.pmf(np.arange(2500, 3500), 3000).sum(),),
                       method="fsp")
    fig = plot.marginals(result, reference={"FSP (exact)": ref}, label="SSA (n=4,000)")
    ax = fig.axes[0]
    from matplotlib.patches import Rectangle

    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) <= plot.MAX_BINS + 1
    width = bars[0].get_width()
    assert width > 1 and ax.get_ylabel() == f"probability per {int(width)} counts"
    assert sum(p.get_height() for p in bars) == pytest.approx(1.0, abs=1e-9)
    outline = [p for p in ax.patches if not isinstance(p, Rectangle)][0]  # FSP on the same bins
    assert outline.get_data().values.sum() == pytest.approx(1.0, abs=1e-3)  # tails below 1e-3 of the top cut
    edges, w = plot.shared_bins([pd.Series([0.5, 0.5], index=[0, 200])])
    assert w == 4 and edges[0] == 0 and edges[-1] >= 201
    assert plot.binned(pd.Series([0.5, 0.5], index=[0, 200]), edges)[[0, -1]].tolist() == [0.5, 0.5]


def test_trajectories_say_k_of_n(ssa):
    fig = plot.trajectories(ssa, n=3, of=10_000)
    assert fig._suptitle.get_text().startswith("3 of 10,000 trajectories")


def test_distributions_of_a_hundred_thousand_molecules_group_counts_into_rows():
    rng = np.random.default_rng(2)
    states = rng.poisson(1e5, size=(500, 3, 1)).astype(float)
    result = SSAResult(("A",), np.array([0.0, 1.0, 2.0]), states)
    fig = plot.distributions({"SSA (n=500)": result})
    ax = fig.axes[0]
    mesh = ax.collections[0]
    assert mesh.get_array().shape[0] <= plot.MAX_ROWS + 1  # rows of counts, not 10^5 of them
    median = [line for line in ax.lines if line.get_label() == "SSA (n=500)"][0]
    assert np.allclose(median.get_ydata(), np.median(states[:, :, 0], axis=0), rtol=0.01)
    assert fig.axes[1].get_ylabel().startswith("probability per ")
