"""The CME core (sbml_met.cme) against exact answers: state spaces, generators, the batched
integrator."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sbml_met import cme, models
from sbml_met.errors import PropensityError, StateSpaceTooLargeError

def birth_death():
    return models.load("birth_death").with_parameters(k1=5.0, k2=1.0)  # X(0) = 0


def test_box_holds_every_state_in_row_major_order():
    space = cme.StateSpace.box(birth_death(), (7,))
    assert space.n == 7 and np.array_equal(space.states[:, 0], np.arange(7))
    assert np.array_equal(cme.grid_states((2, 3)), [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]])
    assert np.array_equal(space.index(np.array([[3], [7], [-1]])), [3, -1, -1])


def test_generator_columns_sum_to_zero_with_sinks_and_to_the_outflow_without():
    net = birth_death()
    space = cme.StateSpace.box(net, (10,))
    a = cme.rates(net, space.full())
    dst = space.transitions()
    A = cme.generator(a, dst, space.n_sinks)
    assert A.shape == (10 + space.n_sinks,) * 2
    assert np.abs(np.asarray(A.sum(axis=0))).max() < 1e-12  # probability is conserved, sinks included
    assert A[10 + 1, 9] == pytest.approx(5.0)  # a birth at the top leaks into the "above X" sink
    W = cme.generator(a, dst)  # no sinks: the mass leaving the box is lost
    lost = -np.asarray(W.sum(axis=0)).ravel()
    assert np.allclose(lost, np.r_[np.zeros(9), 5.0])


def test_explore_follows_only_reactions_with_positive_propensity():
    """The 0/1 gene of the telegraph model stays 0/1 although the box allows G up to 5."""
    net = models.load("telegraph")
    space = cme.StateSpace(net, [[0, 0]], 0, [5, 30])
    space.explore(np.arange(1), [None])
    assert set(space.states[:, 0]) == {0, 1} and space.n == 2 * 31
    space.sort()
    assert np.all(np.diff(space.keys(space.states)) > 0)
    assert np.array_equal(space.states[space.index(space.states)], space.states)
    small = cme.StateSpace(net, [[0, 0]], 0, [5, 30], max_states=20)
    with pytest.raises(StateSpaceTooLargeError, match="max_states=20"):
        small.explore(np.arange(1), [None])


def test_rates_are_checked():
    net = birth_death()
    with pytest.raises(PropensityError):
        cme.rates(net, np.array([[1.0]]), {"k1": -1.0})
    assert cme.rates(net, np.array([[1.0]]), {"k1": -1.0}, clip=True)[0, 0] == 0.0
    a = cme.rates(net, np.array([[0.0], [2.0]]), {"k1": np.array([[1.0], [3.0]])})
    assert a.shape == (2, 2, 2) and np.array_equal(cme.exit_rates(a), [3.0, 5.0])


@pytest.mark.parametrize("explicit", [True, False])
def test_integrate_birth_death_is_poisson_for_many_points(explicit):
    """Points with their own birth rates and time spans, side by side, against the analytic
    Poisson(k1 (1 - e^-t)) solution; the sinks hold what left the box."""
    net = birth_death()
    space = cme.StateSpace(net, [[0]], 0, 60)
    space.explore(np.arange(1), [{"k1": 8.0}])
    k1 = np.array([2.0, 8.0])
    a = cme.rates(net, space.full(), {"k1": k1[:, None]})
    gens = [cme.generator(a[k], space.transitions(), space.n_sinks) for k in range(2)]
    p0 = np.zeros(space.n + space.n_sinks)
    p0[space.index(np.array([[0]]))[0]] = 1.0
    spans = np.array([[0.5, 1.0, 1.0], [1.0, 1.0, 1.0]])
    P = cme.integrate(gens, p0, spans, cme.exit_rates(a), courant=1.4, explicit=explicit)
    assert P.shape == (2, 3, space.n + space.n_sinks)
    for k in range(2):
        for j, t in enumerate(np.cumsum(spans[k])):
            exact = stats.poisson.pmf(space.states[:, 0], k1[k] * (1 - np.exp(-t)))
            assert np.abs(P[k, j, : space.n] - exact).sum() < 1e-6
            assert abs(P[k, j].sum() - 1) < 1e-12


def test_integrate_explicit_and_matrix_free_agree():
    net = birth_death()
    space = cme.StateSpace.box(net, (30,))
    a = cme.rates(net, space.full(), {"k1": np.array([[3.0], [6.0], [9.0]])})
    gens = [cme.generator(a[k], space.transitions()) for k in range(3)]
    p0 = np.eye(30)[[0, 4, 9]]
    args = (gens, p0, np.array([0.3, 0.7, 2.0]), cme.exit_rates(a))
    P1, P2 = cme.integrate(*args, explicit=True), cme.integrate(*args, explicit=False)
    assert np.abs(P1 - P2).max() < 1e-13
