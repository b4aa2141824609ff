"""Bundled models: regeneration from Antimony, loading, and exact checks of their behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import expm

import sbml_met
from sbml_met import models
from sbml_met.errors import UnknownIdError

NEW = ("telegraph", "dimerisation", "schlogl", "repressilator", "cascade15")


def test_list_names_every_bundled_model():
    names = models.list()
    assert names == sorted(names)
    for name in NEW + ("birth_death", "toggle_switch", "autoregulation"):
        assert name in names


@pytest.mark.parametrize("name", models.list())
def test_bundled_sbml_is_what_antimony_generates(name):
    assert models.generate_sbml(name) == models.path(name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", models.list())
def test_every_bundled_model_loads_with_a_description(name):
    net = models.load(name)
    assert net.n_species >= 1 and net.n_reactions >= 1
    source = models.antimony_source(name)
    assert source.startswith("// ")
    assert models.describe(name) == source.splitlines()[0][3:].strip()
    assert len(models.describe(name)) > 20


def test_unknown_model_name():
    with pytest.raises(UnknownIdError, match="no bundled model 'nope'"):
        models.load("nope")


def _drift(net, state):
    """Deterministic drift sum_r nu_r a_r(x) of the network at one state."""
    return net.propensities(np.asarray(state, dtype=float)) @ net.stoichiometry


# ----------------------------------------------------------------------------------- telegraph
def _telegraph_means(p, t):
    lam = p["kon"] + p["koff"]
    frac = p["kon"] / lam
    gene = frac * (1 - np.exp(-lam * t))
    dm = p["dm"]
    mrna = p["kr"] * frac * ((1 - np.exp(-dm * t)) / dm - (np.exp(-lam * t) - np.exp(-dm * t)) / (dm - lam))
    return gene, mrna


def test_telegraph_mean_mrna_matches_the_exact_moment_equations():
    net = models.load("telegraph")
    p = dict(net.parameters)
    times = [0.0, 1.0, 10.0]
    res = sbml_met.simulate(net, times, n=4000, seed=11)
    mom = res.moments().set_index(["time", "species"])
    lam = p["kon"] + p["koff"]
    fano = 1 + p["kr"] * p["koff"] / (lam * (lam + p["dm"]))  # stationary Fano factor of M
    for t in times[1:]:
        gene, mrna = _telegraph_means(p, t)
        sd_m = math.sqrt(max(mrna * fano, 1.0))
        assert mom.loc[(t, "G"), "mean"] == pytest.approx(gene, abs=4 * 0.5 / math.sqrt(res.n))
        assert mom.loc[(t, "M"), "mean"] == pytest.approx(mrna, abs=4 * sd_m / math.sqrt(res.n))
    # stationary mean kr * kon / ((kon + koff) * dm) and bursty (super-Poisson) noise
    station = p["kr"] * p["kon"] / (lam * p["dm"])
    assert _telegraph_means(p, 10.0)[1] == pytest.approx(station, rel=1e-3)
    var_m = mom.loc[(10.0, "M"), "std"] ** 2
    assert var_m == pytest.approx(station * fano, rel=0.15)
    assert set(np.unique(res.states[:, :, 0])) <= {0, 1}


# -------------------------------------------------------------------------------- dimerisation
def test_dimerisation_conserves_monomers_and_reaches_the_exact_equilibrium():
    net = models.load("dimerisation")
    kf, kb = net.parameters["kf"], net.parameters["kb"]
    total = int(net.initial_state[0] + 2 * net.initial_state[1])
    res = sbml_met.simulate(net, [0.0, 2.0, 20.0], n=3000, seed=5)
    a, a2 = res.states[:, :, 0], res.states[:, :, 1]
    assert np.all(a + 2 * a2 == total)
    # detailed balance on the dimer count j: pi(j+1)/pi(j) = kf*A(A-1)/2 / (kb*(j+1)), A = total-2j
    weights = [1.0]
    for j in range(total // 2):
        mono = total - 2 * j
        weights.append(weights[-1] * kf * mono * (mono - 1) / 2 / (kb * (j + 1)))
    pi = np.array(weights) / sum(weights)
    j = np.arange(len(pi))
    mean, sd = pi @ j, math.sqrt(pi @ (j - pi @ j) ** 2)
    got = res.moments().query("time == 20 and species == 'A2'")["mean"].iloc[0]
    assert got == pytest.approx(mean, abs=4 * sd / math.sqrt(res.n))
    # propensity of binding counts unordered pairs
    assert net.propensities([5.0, 0.0])[0] == pytest.approx(kf * 5 * 4 / 2)


# ------------------------------------------------------------------------------------ schlogl
def test_schlogl_is_bistable_with_constant_boundary_species():
    net = models.load("schlogl")
    iA, iB, iX = (net.species_index(s) for s in ("A", "B", "X"))
    assert not net.dynamic_species[iA] and not net.dynamic_species[iB]
    assert np.all(net.stoichiometry[:, [iA, iB]] == 0)
    p, A, B = net.parameters, net.initial_state[iA], net.initial_state[iB]
    xs = np.arange(0, 800)
    states = np.zeros((len(xs), 3))
    states[:, iA], states[:, iB], states[:, iX] = A, B, xs
    drift = (net.propensities(states) @ net.stoichiometry)[:, iX]
    exact = (p["c1"] / 2 * A * xs * (xs - 1) - p["c2"] / 6 * xs * (xs - 1) * (xs - 2)
             + p["c3"] * B - p["c4"] * xs)
    assert np.allclose(drift, exact)
    # three zeros of the drift: stable, unstable, stable
    roots = xs[np.nonzero(np.diff(np.sign(drift)))[0]]
    assert len(roots) == 3
    assert 70 < roots[0] < 100 and 230 < roots[1] < 270 and 540 < roots[2] < 590
    assert drift[roots[0] - 10] > 0 > drift[roots[0] + 10]
    assert drift[roots[2] - 10] > 0 > drift[roots[2] + 10]


# ------------------------------------------------------------------------------ repressilator
def test_repressilator_promoters_stay_binary_and_repression_needs_pairs():
    net = models.load("repressilator")
    res = sbml_met.simulate(net, np.linspace(0, 10, 11), n=200, seed=2)
    genes = [net.species_index(g) for g in ("G1", "G2", "G3")]
    assert set(np.unique(res.states[:, :, genes])) <= {0, 1}
    assert np.all(res.states >= 0)
    x = np.zeros(net.n_species)
    x[genes] = 1
    x[net.species_index("P3")] = 1  # a lone P3 cannot bind gene 1
    a = dict(zip(net.reaction_ids, net.propensities(x)))
    assert a["bind1"] == 0
    x[net.species_index("P3")] = 4
    a = dict(zip(net.reaction_ids, net.propensities(x)))
    assert a["bind1"] == pytest.approx(net.parameters["b"] * 4 * 3)
    # proteins are made at s from a free promoter
    assert a["prod1"] == pytest.approx(net.parameters["s"])


# ---------------------------------------------------------------------------------- cascade15
def _linear_moments(net, t):
    """Exact mean and covariance at ``t`` from x(0) = 0 for a network with linear propensities:
    m' = J m + b and S' = J S + S J^T + sum_r nu_r nu_r^T a_r(m) are closed, solved with expm."""
    ns = net.n_species
    nu = net.stoichiometry.astype(float)
    a0 = net.propensities(np.zeros(ns))
    A = np.stack([net.propensities(np.eye(ns)[i]) - a0 for i in range(ns)], axis=1)  # (R, ns)
    J, b = nu.T @ A, nu.T @ a0
    outer = np.einsum("ri,rj->rij", nu, nu)  # nu_r nu_r^T
    n = ns + ns * ns + 1
    M = np.zeros((n, n))
    M[:ns, :ns], M[:ns, -1] = J, b
    sl = slice(ns, ns + ns * ns)
    M[sl, sl] = np.kron(J, np.eye(ns)) + np.kron(np.eye(ns), J)  # vec (row-major) of J S + S J^T
    M[sl, :ns] = np.einsum("rij,rk->ijk", outer, A).reshape(ns * ns, ns)
    M[sl, -1] = np.einsum("rij,r->ij", outer, a0).reshape(-1)
    z = expm(M * t)[:, -1]
    return z[:ns], z[sl].reshape(ns, ns), J, b


def test_cascade15_moments_solve_the_exact_linear_moment_equations():
    net = models.load("cascade15")
    assert net.n_species == 15 and np.all(net.initial_state == 0)
    k0, k, g = (net.parameters[s] for s in ("k0", "k", "g"))
    t = 2.0
    mean, cov, J, b = _linear_moments(net, t)
    assert np.allclose(J, -g * np.eye(15) + k * np.eye(15, k=-1)) and np.allclose(b, [k0] + [0] * 14)
    if k == g:  # closed form m_i = k0/g (1 - e^{-gt} sum_{j<i} (gt)^j / j!)
        closed = [k0 / g * (1 - math.exp(-g * t) * sum((g * t) ** j / math.factorial(j) for j in range(i)))
                  for i in range(1, 16)]
        assert np.allclose(mean, closed)
    # S1 is an immigration-death process (Poisson); S2.. are made catalytically, so they are
    # over-dispersed (variance > mean): the cascade is NOT a product of Poissons
    assert cov[0, 0] == pytest.approx(mean[0])
    assert cov[1, 1] > 1.2 * mean[1]
    res = sbml_met.simulate(net, [0.0, t], n=2000, seed=9)
    mom = res.moments().query("time == 2").set_index("species")
    for i in (1, 2, 5):
        m, var = mean[i - 1], cov[i - 1, i - 1]
        got = mom.loc[f"S{i}"]
        assert got["mean"] == pytest.approx(m, abs=4 * math.sqrt(var / res.n))
        assert got["std"] ** 2 == pytest.approx(var, rel=0.15)
