"""libroadrunner reference runs: seeding, amounts, output grids, refusals."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

import sbml_met
from sbml_met import models
from sbml_met.errors import UnsupportedSBMLError

from sbml_met.tellurium import run_gillespie, trajectory_seeds


# the refusals and typed errors come before libroadrunner is loaded: they run without it
needs_roadrunner = pytest.mark.skipif(importlib.util.find_spec("roadrunner") is None,
                                      reason="libroadrunner is not installed")


def _bd_mean(t):
    return 100.0 * (1.0 - np.exp(-0.1 * np.asarray(t, dtype=float)))


@needs_roadrunner
def test_same_seed_same_numbers_whatever_the_processes():
    net = models.load("birth_death")
    a = run_gillespie(net, [0, 1, 2], n=60, seed=7, processes=1, progress=False)
    b = run_gillespie(net, [0, 1, 2], n=60, seed=7, processes=2, progress=False)
    c = run_gillespie(net, [0, 1, 2], n=60, seed=8, processes=1, progress=False)
    assert a.method == "tellurium" and a.states.shape == (60, 3, 1)
    np.testing.assert_array_equal(a.states, b.states)
    assert not np.array_equal(a.states, c.states)
    s = trajectory_seeds(7, 60)
    assert len(np.unique(s)) == 60 and s.min() >= 1 and s.max() < 2**32
    np.testing.assert_array_equal(trajectory_seeds(7, 10, start=50), s[50:])


@needs_roadrunner
def test_uneven_grid_not_starting_at_zero_with_repeats_matches_poisson_mean():
    net = models.load("birth_death")
    times = [2.0, 2.0, 7.5, 30.0]
    r = run_gillespie(net, times, n=1500, seed=3, processes=1, progress=False)
    np.testing.assert_array_equal(r.times, times)
    np.testing.assert_array_equal(r.states[:, 0], r.states[:, 1])
    mu = _bd_mean(times)  # X(t) ~ Poisson(mu): standard error sqrt(mu / n)
    z = (r.states[:, :, 0].mean(axis=0) - mu) / np.sqrt(mu / r.n)
    assert np.all(np.abs(z) < 4), z


@needs_roadrunner
def test_records_amounts_not_concentrations(dsmts_dir):
    # 00011: X has hasOnlySubstanceUnits=false in a compartment of size 2; DSMTS gives amounts
    case = dsmts_dir / "00011"
    expected = pd.read_csv(case / "00011-results.csv")
    times = expected["time"].to_numpy()[::10]
    r = run_gillespie(case / "00011-sbml-l3v1.xml", times, n=1000, seed=1, processes=1, progress=False)
    assert r.species == ("X",)
    assert np.all(r.states[:, 0, 0] == 100)  # the amount; the concentration would be 50
    exp = expected.iloc[::10]
    z = np.sqrt(r.n) * (r.states[:, 1:, 0].mean(axis=0) - exp["X-mean"].to_numpy()[1:]) / exp["X-sd"].to_numpy()[1:]
    assert np.all(np.abs(z) < 4), z


@needs_roadrunner
def test_antimony_text_and_network_variants_are_loaded():
    text = "model m\n J1: => X; k1\n J2: X => ; k2*X\n k1 = 20; k2 = 0.1; X = 0\nend"
    r = run_gillespie(text, [0, 5], n=400, seed=2, processes=1, progress=False)
    assert r.species == ("X",)
    mu = 200 * (1 - np.exp(-0.5))
    assert abs(r.states[:, 1, 0].mean() - mu) < 4 * np.sqrt(mu / 400)
    net = models.load("birth_death").with_parameters(k1=20)  # to_sbml carries the new value
    r2 = run_gillespie(net, [0, 5], n=400, seed=2, processes=1, progress=False)
    assert abs(r2.states[:, 1, 0].mean() - mu) < 4 * np.sqrt(mu / 400)


def test_time_triggered_event_is_refused_naming_the_event():
    text = ("model m\n J1: => X; 10\n J2: X => ; 0.1*X\n X = 0\n"
            " reset: at (time > 5): X = 0\nend")
    with pytest.raises(UnsupportedSBMLError) as e:
        run_gillespie(text, [0, 10], n=5, processes=1, progress=False)
    assert e.value.element_id == "reset" and "time" in str(e.value)


def test_bad_arguments_are_typed_errors():
    net = models.load("birth_death")
    with pytest.raises(sbml_met.InvalidArgumentError):
        run_gillespie(net, [0, 1], n=0)
    with pytest.raises(sbml_met.InvalidArgumentError):
        run_gillespie(net, [3, 1], n=5)
    with pytest.raises(sbml_met.InvalidArgumentError):
        run_gillespie(42, [0, 1], n=5)
