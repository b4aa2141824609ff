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
           "SBML and tests means, spreads and whole marginals against sampling noise."),
    ("code", "report = sbml_met.validate(rep, ssa, n_reference=500, seed=2)\nprint(report.summary())"),
    ("code", "report.to_frame().query(\"time == 20\")"),
    ("code", "report.plot()"),
]


def main() -> None:
    for name, cells in [("01_quickstart.ipynb", QUICKSTART), ("02_biomodels_and_tellurium.ipynb", BIOMODELS)]:
        nbf.write(notebook(cells), HERE / name)
        print(HERE / name)


if __name__ == "__main__":
    main()
