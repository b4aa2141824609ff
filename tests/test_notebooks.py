"""Every notebook in notebooks/ executes top to bottom (outputs are stripped in git), and every
cell that draws shows an image (not the text ``<Figure size ... with N Axes>``)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
SLOW = {"03_met_toggle_switch.ipynb", "04_met_autoregulation.ipynb"}
# a cell draws when it calls a plotting function or shows a figure it built
DRAWING = ("marginals", "trajectories", "moments", "distributions", "joint", "Figure")
DRAWS = re.compile(rf"\bplot\.({'|'.join(DRAWING)})\(|\.plot\(|^fig\s*$|\bFigure\(", re.MULTILINE)
FIGURE_TEXT = re.compile(r"^<(Figure|Axes|matplotlib\.)")


def _outputs(cell) -> list:
    return [o for o in cell.outputs if o.output_type in ("display_data", "execute_result")]


def figure_problems(nb) -> list[str]:
    """Cells that draw without an image/png output, and figures shown as text."""
    problems = []
    for k, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        outs = _outputs(cell)
        if DRAWS.search(cell.source) and not any("image/png" in o.data for o in outs):
            problems.append(f"code cell {k} draws but shows no image: {cell.source[:60]!r}")
        for o in outs:
            text = o.data.get("text/plain", "")
            if FIGURE_TEXT.match(text) and "image/png" not in o.data:
                problems.append(f"code cell {k} shows a figure as text: {text[:60]!r}")
    return problems


def test_every_drawing_function_of_sbml_met_plot_is_seen():
    from sbml_met import plot

    assert set(plot.__all__) - {"METHOD_COLOURS", "method_colour"} == set(DRAWING)
    for name in DRAWING:
        assert DRAWS.search(f"x = plot.{name}(res)")
    assert not DRAWS.search("ssa.moments()")  # a table, not a figure


def test_figure_check_catches_text_figures():
    cell = nbformat.v4.new_code_cell("plot.moments(ssa)")
    cell.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "<Figure size 640x480 with 2 Axes>"},
                                           execution_count=1)]
    nb = nbformat.v4.new_notebook(cells=[cell])
    assert len(figure_problems(nb)) == 2
    cell.outputs[0].data["image/png"] = "iVBORw0KGgo="
    assert figure_problems(nb) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "outputs must be stripped"
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert figure_problems(nb) == []
