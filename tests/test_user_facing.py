"""What a user meets outside the numbers: file modes of written outputs, warnings at their own line."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest

from sbml_met.errors import ExtrapolationWarning
from sbml_met.io import atomic_write, current_umask, write_table


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    assert current_umask() == mask
    table = write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")
    text = atomic_write(tmp_path / "sub" / "run.json", lambda p: p.write_text("{}", encoding="utf-8"))
    for path in (table, text):
        assert os.stat(path).st_mode & 0o777 == mode, oct(os.stat(path).st_mode)
    assert not [p for p in tmp_path.rglob(".*.tmp")]


def _warned_here(record) -> None:
    assert record, "no warning"
    for w in record:
        assert os.path.samefile(w.filename, __file__), f"{w.category.__name__} reported at {w.filename}:{w.lineno}"


@pytest.fixture(scope="module")
def toggle_met():
    from sbml_met import met

    return met.pretrained("toggle_switch")


def test_extrapolation_warning_points_at_the_callers_line(toggle_met):
    with pytest.warns(ExtrapolationWarning) as record:
        toggle_met.solve([1.0], sx=90.0)  # torch.no_grad() wraps solve
    _warned_here(record)
    with pytest.warns(ExtrapolationWarning) as record:
        toggle_met.marginal("Px", 1.0, sx=90.0)
    _warned_here(record)
    with pytest.warns(ExtrapolationWarning) as record:
        toggle_met.log_prob(np.zeros((1, len(toggle_met.species)), dtype=int), 50.0)
    _warned_here(record)


def test_vocabulary_warning_points_at_the_callers_line(toggle_met):
    from sbml_met.met.model import VocabularyOverflowWarning

    x = np.full((1, len(toggle_met.species)), 10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        with pytest.warns(VocabularyOverflowWarning) as record:
            toggle_met.log_prob(x, 1.0)
    _warned_here([w for w in record if w.category is VocabularyOverflowWarning])
