"""The MET explorer (notebook 05): its joint is the MET's own, its figure shows it."""

from __future__ import annotations

import numpy as np
import pytest

from sbml_met.errors import InvalidArgumentError


@pytest.fixture(scope="module")
def toggle():
    from sbml_met import met

    return met.pretrained("toggle_switch")


def test_dense_joint_is_the_mets_enumerated_joint(toggle):
    from sbml_met.explorer import dense_joint

    joint = dense_joint(toggle, 3.0, sx=60.0, sy=40.0)
    assert joint.shape == tuple(toggle.net.config.vocab)
    assert joint.sum() == pytest.approx(1.0, abs=1e-9)
    ref = toggle.solve([3.0], sx=60.0, sy=40.0).joint_frame(3.0)
    expected = np.zeros_like(joint)
    expected[tuple(ref[list(toggle.species)].to_numpy().T)] = ref["probability"].to_numpy()
    assert np.abs(joint - expected).max() < 1e-6


def test_explorer_update_redraws_joint_and_marginals(toggle):
    from sbml_met import plot
    from sbml_met.explorer import METExplorer, dense_joint

    explorer = METExplorer(toggle, "Px", "Py")
    fig = explorer.update(40.0, sx=30.0, sy=70.0)
    assert isinstance(fig, plot.Figure) and fig is explorer.fig
    pxy = dense_joint(toggle, 40.0, sx=30.0, sy=70.0).sum(axis=(0, 1))  # (Px, Py)
    shown = explorer.image.get_array()
    assert shown.shape == (pxy.shape[1], pxy.shape[0])  # rows Py, columns Px
    visible = ~np.ma.getmaskarray(shown)
    assert np.allclose(shown[visible], pxy.T[visible])
    assert np.allclose(explorer.line_x.get_ydata(), pxy.sum(axis=1))
    assert np.allclose(explorer.line_y.get_ydata(), pxy.sum(axis=0))
    assert "sx = 30" in explorer.ax_joint.get_title()
    # sy > sx: Py is the likelier winner
    assert (pxy.sum(axis=0)[40:].sum()) > (pxy.sum(axis=1)[40:].sum())
    with pytest.raises(InvalidArgumentError):
        METExplorer(toggle, "Px", "Q")


def test_the_runs_met_on_a_grid_equals_met_solve(toggle):
    from sbml_met.run import _met_solve

    times = np.array([0.0, 2.0, 40.0])
    fast = _met_solve(toggle, times, {"sx": 45.0, "sy": 55.0})
    slow = toggle.solve(times, sx=45.0, sy=55.0)
    assert fast.method == "met" and np.array_equal(fast.times, times)
    for t in times:
        for s in toggle.species:
            a, b = fast.marginal(s, t), slow.marginal(s, t)
            n = max(len(a), len(b))
            assert np.abs(a.reindex(range(n), fill_value=0) - b.reindex(range(n), fill_value=0)).max() < 1e-6


def test_explorer_png_for_the_image_widget(toggle):
    from sbml_met.explorer import METExplorer

    explorer = METExplorer(toggle)
    explorer.update(5.0, sx=50.0, sy=50.0)
    assert explorer.png()[:8] == b"\x89PNG\r\n\x1a\n"
