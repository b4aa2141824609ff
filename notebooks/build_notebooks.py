"""Write the tutorial notebooks (sources only, outputs stripped). Run: python notebooks/build_notebooks.py"""

from __future__ import annotations

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent


def notebook(cells: list[tuple[str, str]]) -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src)
                for kind, src in cells]
    return nb


QUICKSTART = [
    ("md", "# sbml-met quickstart\n\nLoad a bundled model, simulate it exactly, solve its chemical master "
           "equation, and look at the results as tidy tables and plots."),
    ("code", "import numpy as np\nimport sbml_met\nfrom sbml_met import plot\n\n"
             "sbml_met.models.list()"),
    ("code", "net = sbml_met.models.load(\"toggle_switch\")\nprint(net)\nnet.summary()"),
    ("md", "## Exact stochastic simulation\n`simulate` runs Gillespie's direct method, vectorised over "
           "trajectories. The same seed gives the same numbers."),
    ("code", "ssa = sbml_met.simulate(net, times=np.linspace(0, 40, 41), n=2000, seed=1)\n"
             "ssa.to_frame().head()"),
    ("code", "ssa.moments().query(\"time in [1, 10, 40]\")"),
    ("code", "plot.trajectories(ssa, n=10)"),
    ("md", "## The exact answer: finite state projection\n`solve_fsp` solves the chemical master equation "
           "on an adaptively grown state set; `truncation_error` is the probability it misses."),
    ("code", "fsp = sbml_met.solve_fsp(net, [1, 3, 10, 40])\nprint(fsp.truncation_error)\n"
             "fsp.marginal(\"Px\", 40).head()"),
    ("code", "plot.marginals(ssa, species=[\"Px\", \"Gux\"], times=[1, 3, 10, 40], reference={\"FSP\": fsp})"),
    ("code", "sbml_met.compare(ssa, fsp).query(\"species == 'Px'\")"),
    ("md", "## The whole distribution over time\nA mean +- standard deviation says little about a bimodal "
           "protein or a promoter that is either 0 or 1. `plot.distributions` draws the exact probability of "
           "every count at every time (FSP on the SSA's grid) with each method's median and 5%/95% quantiles, "
           "and a 0/1 species as P(= 1) over time."),
    ("code", "fsp_dense = sbml_met.solve_fsp(net, ssa.times)\n"
             "plot.distributions({\"SSA\": ssa, \"FSP\": fsp_dense}, species=[\"Gux\", \"Px\"])"),
    ("code", "plot.joint(fsp, \"Px\", \"Py\", 40)"),
    ("md", "## Changing parameters\nNetworks are immutable: `with_parameters` returns a new one."),
    ("code", "weaker = net.with_parameters(sx=30)\n"
             "sbml_met.solve_fsp(weaker, [40]).moments()"),
]

BIOMODELS = [
    ("md", "# BioModels and Tellurium\n\nLoad a curated BioModels entry, see what blocks stochastic "
           "simulation, and validate sbml-met against libroadrunner's Gillespie runs.\n\n"
           "This notebook works offline: it seeds a private cache folder with copies of two entries "
           "(BIOMD0000000012, Elowitz & Leibler's repressilator, and BIOMD0000000006, Tyson's cell "
           "cycle), so `load_biomodel` reads them from the cache instead of downloading them."),
    ("code", "import shutil, tempfile\nfrom pathlib import Path\nimport numpy as np\nimport sbml_met\n\n"
             "cache = Path(tempfile.mkdtemp())\n"
             "fixtures = Path(\"..\") / \"tests\" / \"data\" / \"biomodels\"\n"
             "for entry in [\"BIOMD0000000012\", \"BIOMD0000000006\"]:\n"
             "    (cache / entry).mkdir()\n"
             "    shutil.copy(fixtures / f\"{entry}.xml\", cache / entry / f\"{entry}_url.xml\")"),
    ("md", "Tyson's model is a deterministic ODE model written with rate rules: loading it says, in one "
           "error, every feature that blocks exact stochastic simulation."),
    ("code", "try:\n    sbml_met.load_biomodel(\"BIOMD0000000006\", cache_dir=cache)\n"
             "except sbml_met.UnsupportedSBMLError as err:\n    print(err)"),
    ("md", "The repressilator is written in molecule counts with Hill-type transcription: it loads."),
    ("code", "rep = sbml_met.load_biomodel(\"BIOMD0000000012\", cache_dir=cache)\nprint(rep)"),
    ("code", "ssa = sbml_met.simulate(rep, times=[0, 5, 10, 20], n=500, seed=1)\nssa.moments().query(\"time == 20\")"),
    ("md", "## Validation against Tellurium\n`validate` runs libroadrunner's Gillespie integrator on the same "
           "SBML and tests means, spreads and whole marginals (Kolmogorov-Smirnov distance) against sampling "
           "noise; a correct result is flagged anywhere in the report with probability at most `alpha` = 0.001 "
           "(measured on five models in `bench/validate_calibration.py`)."),
    ("code", "report = sbml_met.validate(rep, ssa, n_reference=500, seed=2)\nprint(report.summary())\n"
             "print(f\"familywise p-value: {report.p_value:.3g}\")"),
    ("md", "How to read the verdict: DISAGREES means a real difference (a correct result earns it in at most 1 "
           "report in 1,000), while OK means only that no difference larger than the detectable shift quoted in "
           "the summary was found at this n, which shrinks as 1/sqrt(n), so more trajectories see smaller errors."),
    ("code", "report.to_frame().query(\"time == 20\")"),
    ("code", "report.plot()"),
]

MET_TOGGLE = [
    ("md", "# The Master Equation Transformer on the toggle switch\n\nThe bundled, pretrained MET answers the "
           "chemical master equation of the toggle switch for any production rates sx, sy in [25, 75] and any "
           "time in [0, 40] in one network pass. Here it is checked, as in the MET paper's figure 2, against "
           "the exact FSP solution and an exact SSA ensemble at t = 1, 3 and 40."),
    ("code", "import numpy as np\nimport sbml_met\nfrom sbml_met import plot\n\n"
             "met = sbml_met.met.pretrained(\"toggle_switch\")\nmet"),
    ("code", "net = sbml_met.models.load(\"toggle_switch\")\ntimes = [1, 3, 40]\n"
             "params = {p: net.parameters[p] for p in met.box}\n"
             "dist_met = met.solve(times, **params)\n"
             "dist_fsp = sbml_met.solve_fsp(net, times)\n"
             "ssa = sbml_met.simulate(net, times, n=10_000, seed=1)"),
    ("md", "Marginals of the proteins: MET and FSP as lines, the SSA histogram as bars."),
    ("code", "plot.marginals(ssa, species=[\"Px\", \"Py\"], times=times, reference={\"MET\": dist_met, \"FSP\": dist_fsp})"),
    ("md", "Hellinger distances to the exact answer, for the MET and for the 10,000-trajectory histogram "
           "(which sits at the sampling-noise level)."),
    ("code", "table = sbml_met.compare(dist_met, dist_fsp)[[\"time\", \"species\", \"hellinger\"]]\n"
             "table[\"ssa_hellinger\"] = sbml_met.compare(ssa, dist_fsp)[\"hellinger\"].to_numpy()\ntable"),
    ("md", "Joint distributions of Px and Py (log colour scale, probabilities below 1e-6 blank), MET (left) "
           "against FSP (right)."),
    ("code", "fig = plot.Figure(figsize=(9, 3.2 * len(times)), layout=\"constrained\")\n"
             "axes = fig.subplots(len(times), 2)\n"
             "for row, t in zip(axes, times):\n"
             "    for ax, dist in zip(row, [dist_met, dist_fsp]):\n"
             "        plot.joint(dist, \"Px\", \"Py\", t, ax=ax, vmin=1e-6)  # one colour floor for both\n"
             "        ax.set_xlim(-0.5, 100); ax.set_ylim(-0.5, 100)          # and the same window\n"
             "fig"),
    ("md", "A parameter point the MET never saw, answered in milliseconds:"),
    ("code", "import time\nt0 = time.perf_counter()\nm = met.marginal(\"Px\", 40, sx=62.5, sy=31.0)\n"
             "print(f\"{1000 * (time.perf_counter() - t0):.1f} ms\")\nm.head(10)"),
]

MET_AUTOREG = [
    ("md", "# Sweeping the autoregulation box with the MET\n\nThe pretrained MET covers the MET paper's box "
           "su in [1e-8, 2], sb in [1e-8, 0.1], ru in [1e-8, 10], rb in [1e-8, 100] (k = 1), t in [0, 10]. "
           "As in the paper's figure 4d we map the bimodality coefficient of the protein count P at t = 10 "
           "over (sb, rb), and check a few points against the exact FSP answer."),
    ("code", "import numpy as np\nimport pandas as pd\nimport sbml_met\nfrom sbml_met.metrics import bimodality_coefficient, hellinger\n\n"
             "met = sbml_met.met.pretrained(\"autoregulation\")\nnet = sbml_met.models.load(\"autoregulation\")\nmet.box"),
    ("code", "sb_grid = np.linspace(0.005, 0.1, 12)\nrb_grid = np.linspace(5, 100, 12)\nfixed = dict(su=0.94, ru=8.4)\n"
             "rows = []\nfor sb in sb_grid:\n    for rb in rb_grid:\n"
             "        p = met.marginal(\"P\", 10, sb=sb, rb=rb, **fixed)\n"
             "        rows.append(dict(sb=sb, rb=rb, bimodality=bimodality_coefficient(p)))\n"
             "bc = pd.DataFrame(rows)\nbc.head()"),
    ("code", "from sbml_met.plot import Figure  # a matplotlib Figure that notebooks show as an image\n"
             "fig = Figure(figsize=(5, 4))\nax = fig.subplots()\n"
             "grid = bc.pivot(index=\"rb\", columns=\"sb\", values=\"bimodality\")\n"
             "im = ax.pcolormesh(grid.columns, grid.index, grid.to_numpy(), shading=\"nearest\")\n"
             "ax.set_xlabel(\"sb (binding)\"); ax.set_ylabel(\"rb (production, bound gene)\")\n"
             "ax.set_title(\"bimodality coefficient of P at t = 10 (MET)\")\nfig.colorbar(im, ax=ax)\nfig"),
    ("md", "Checks against the exact CME solution (FSP) at a few points of the map:"),
    ("code", "checks = []\nfor sb, rb in [(0.01, 28.1), (0.05, 60.0), (0.1, 100.0), (0.005, 10.0)]:\n"
             "    exact = sbml_met.solve_fsp(net.with_parameters(sb=sb, rb=rb, **fixed), [10]).marginal(\"P\", 10)\n"
             "    approx = met.marginal(\"P\", 10, sb=sb, rb=rb, **fixed)\n"
             "    checks.append(dict(sb=sb, rb=rb, hellinger=hellinger(approx, exact),\n"
             "                       bc_met=bimodality_coefficient(approx), bc_fsp=bimodality_coefficient(exact)))\n"
             "pd.DataFrame(checks)"),
]


MET_EXPLORER = [
    ("md", "# Exploring the toggle switch with its MET\n\nThe pretrained MET answers the chemical master equation "
           "of the toggle switch anywhere in its box (production rates sx, sy in [25, 75], time in [0, 40]) in a few "
           "milliseconds: move a slider and the joint distribution of the two proteins Px, Py and their marginals "
           "are recomputed by the network and redrawn. A simulator needs tens of seconds per point for the same "
           "picture (10,000 libroadrunner trajectories). The redraw is a plain function, "
           "`sbml_met.explorer.METExplorer.update`; `bench/explorer_speed.py` times it."),
    ("code", "import time\nimport ipywidgets as widgets\nfrom IPython.display import display\n"
             "import sbml_met\nfrom sbml_met.explorer import METExplorer\n\n"
             "met = sbml_met.met.pretrained(\"toggle_switch\")\nexplorer = METExplorer(met, \"Px\", \"Py\")\nmet.box"),
    ("md", "One prompt, drawn as a static figure (what this page shows without a running kernel): Py is made "
           "faster than Px, so most cells end with Py high and Px near zero."),
    ("code", "t0 = time.perf_counter()\nfig = explorer.update(40.0, sx=35.0, sy=65.0)\n"
             "print(f\"recomputed and redrawn in {1000 * (time.perf_counter() - t0):.1f} ms\")\nfig"),
    ("md", "The sliders (live with a running kernel): each move calls `explorer.update` and puts the redrawn "
           "figure into an image widget."),
    ("code", "(lo_x, hi_x), (lo_y, hi_y) = met.box[\"sx\"], met.box[\"sy\"]\n"
             "sx = widgets.FloatSlider(value=50, min=lo_x, max=hi_x, step=0.5, description=\"sx\")\n"
             "sy = widgets.FloatSlider(value=50, min=lo_y, max=hi_y, step=0.5, description=\"sy\")\n"
             "t = widgets.FloatSlider(value=10, min=met.times[0], max=met.times[1], step=0.25, description=\"time\")\n"
             "image = widgets.Image(format=\"png\")\n\n\n"
             "def redraw(change=None):\n"
             "    explorer.update(t.value, sx=sx.value, sy=sy.value)\n"
             "    image.value = explorer.png()\n\n\n"
             "for slider in (sx, sy, t):\n    slider.observe(redraw, names=\"value\")\n"
             "redraw()\nwidgets.VBox([widgets.HBox([sx, sy, t]), image])"),
    ("md", "How fast is one update here (the MET's exact joint of all four species, marginalised to Px, Py, "
           "and the heat map and lines updated in place)?"),
    ("code", "import numpy as np\nrng = np.random.default_rng(0)\nms = []\nfor _ in range(20):\n"
             "    t0 = time.perf_counter()\n"
             "    explorer.update(rng.uniform(0.5, 40), sx=rng.uniform(25, 75), sy=rng.uniform(25, 75))\n"
             "    ms.append(1000 * (time.perf_counter() - t0))\n"
             "print(f\"median {np.median(ms):.1f} ms per update\")"),
]

def main(argv: list[str] | None = None) -> None:
    """Write every notebook, or those whose names start with the given prefixes (e.g. ``01 03``)."""
    import sys

    wanted = sys.argv[1:] if argv is None else argv
    for name, cells in [("01_quickstart.ipynb", QUICKSTART), ("02_biomodels_and_tellurium.ipynb", BIOMODELS),
                        ("03_met_toggle_switch.ipynb", MET_TOGGLE), ("04_met_autoregulation.ipynb", MET_AUTOREG),
                        ("05_met_explorer.ipynb", MET_EXPLORER)]:
        if wanted and not any(name.startswith(w) for w in wanted):
            continue
        nbf.write(notebook(cells), HERE / name)
        print(HERE / name)


if __name__ == "__main__":
    main()
