"""Conservation laws derived from the stoichiometry, and METs that never break them."""

import warnings

import numpy as np
import pytest

import sbml_met
from sbml_met.conservation import ConservationMask, conservation_laws, integer_null_space

MM = """
model mm
  S + E -> C; k1*S*E
  C -> S + E; km1*C
  C -> E + P; k2*C
  S = 30; E = 5; C = 0; P = 0
  k1 = 0.05; km1 = 0.5; k2 = 0.5
end
"""


def laws_of(antimony: str) -> set[tuple[int, ...]]:
    return {tuple(r) for r in conservation_laws(sbml_met.load_antimony(antimony)).matrix.tolist()}


@pytest.mark.parametrize("text, expected", [
    (MM, {(1, 0, 1, 1), (0, 1, 1, 0)}),  # S + C + P, E + C
    ("model m\n A -> B; k*A\n B -> A; k*B\n A = 5; B = 3; k = 1\nend", {(1, 1)}),
    ("model m\n -> A; k\n A -> ; k*A\n A = 0; k = 1\nend", set()),
    ("model m\n 2 A -> B; k*A*(A-1)\n B -> 2 A; k*B\n A = 10; B = 0; k = 1\nend", {(1, 2)}),
    ("model m\n -> A + B; k\n A + B -> ; k*A*B\n A = 2; B = 0; k = 1\nend", {(1, -1)}),
    # a boundary species is never part of a law
    ("model m\n $X + A -> B; k*X*A\n B -> A; k*B\n X = 5; A = 3; B = 0; k = 1\nend", {(0, 1, 1)}),
    # two enzymes sharing a substrate: three independent moieties
    ("model m\n S + E1 -> C1; k*S*E1\n C1 -> E1 + P; k*C1\n S + E2 -> C2; k*S*E2\n C2 -> E2 + P; k*C2\n"
     " S = 9; E1 = 2; E2 = 3; C1 = 0; C2 = 0; P = 0; k = 1\nend", None),
])
def test_laws_known_answers(text, expected):
    net = sbml_met.load_antimony(text)
    laws = conservation_laws(net)
    L, totals = laws
    assert np.all(np.asarray(net.stoichiometry) @ L.T == 0)
    assert np.array_equal(totals, L @ np.asarray(net.initial_state, dtype=np.int64))
    if expected is not None:
        assert laws_of(text) == expected
    else:  # S + C1 + C2 + P, E1 + C1, E2 + C2: all semi-positive
        assert len(L) == 3 and (L >= 0).all()
        assert laws.describe()[0].endswith(f"= {int(totals[0])}")


def test_null_space_exact():
    A = np.array([[1, 2, 3], [2, 4, 6]])
    basis = integer_null_space(A)  # rank 1: two vectors
    assert len(basis) == 2 and all(np.all(A @ b == 0) for b in basis)


def test_mask_allows_only_completable_counts():
    net = sbml_met.load_antimony(MM)
    mask = ConservationMask(conservation_laws(net), [30, 5, 0, 0], (31, 6, 6, 31))
    assert mask.allowed(np.array([[26, 2]])).nonzero()[1].tolist() == [3]  # C = E_total - E
    assert mask.allowed(np.array([[20, 2, 3]])).nonzero()[1].tolist() == [7]  # P = 30 - S - C
    # S = 28 leaves room for C <= 2 only, so E >= 3
    assert mask.allowed(np.array([[28]])).nonzero()[1].tolist() == [3, 4, 5]


@pytest.fixture(scope="module")
def mm_met():
    from sbml_met.met import train

    net = sbml_met.load_antimony(MM)
    return train(net, {"k1": (0.02, 0.1)}, (0.0, 10.0), teacher="fsp", minutes=2, steps=30, seed=0,
                 teacher_options={"n_prompts": 64, "times_per_prompt": 4}, n_validation=4, progress=False)


@pytest.mark.parametrize("t, init, k1", [(1.0, None, 0.05), (10.0, None, 0.1), (40.0, None, 0.02),
                                          (3.0, {"S": 20, "E": 4, "C": 2}, 0.07), (25.0, {"P": 7}, 0.3)])
def test_met_never_breaks_a_law(mm_met, t, init, k1):
    """Sampling, enumeration and log_prob give a violated total probability 0, extrapolated
    times, parameters and initial counts included."""
    laws = mm_met.conservation
    assert len(laws) == 2
    x0 = np.asarray(mm_met.network.initial_state, dtype=float).copy()
    for k, v in (init or {}).items():
        x0[mm_met.network.species_index(k)] = v
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = mm_met.sample(4000, t, seed=1, init=init, k1=k1)
        assert not laws.violated(x, x0).any()
        d = mm_met.solve([t], init=init, prune=0.0, k1=k1)
        states, p = d.states[0], d.probabilities[0]
        assert not laws.violated(states, x0).any() and abs(p.sum() - 1) < 1e-9
        lp = mm_met.log_prob(states, t, init=init, k1=k1)
        # the network computes in float32: enumeration and log_prob batch differently (~1e-7 per step)
        assert np.allclose(np.exp(lp), p, rtol=2e-5, atol=1e-12)
        bad = states[:5] + np.array([1, 0, 0, 0])  # one more S than the total allows
        assert np.all(mm_met.log_prob(bad, t, init=init, k1=k1) == -np.inf)
        for s in mm_met.species:
            m = mm_met.marginal(s, t, init=init, k1=k1)
            assert abs(m.sum() - 1) < 1e-9


@pytest.mark.parametrize("name", ["toggle_switch", "autoregulation"])
def test_bundled_mets_have_no_law_and_unchanged_answers(name):
    """Neither bundled network has a conservation law, so their answers are the unmasked ones."""
    from sbml_met.met import model, pretrained

    met = pretrained(name)
    assert len(met.conservation) == 0 and met._mask() is None
    f = met.prompt_features([2.0], None, {})
    import torch

    a = met.sample(3000, 2.0, seed=5)
    b = model.ancestral_sample(met.net, f, 3000, torch.Generator().manual_seed(5))
    assert np.array_equal(a, b)
