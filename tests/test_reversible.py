"""Reversible reactions read by their stoichiometry: a net law splits into forward and reverse
channels only where each vanishes where its firing would make a count negative; otherwise the
law is one channel at the net rate (forward where positive, reverse where negative)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

import sbml_met
from sbml_met.errors import NegativeCountError

MODELS = Path(__file__).resolve().parents[1] / "sbml_models"


def marginal_mean(dist, species: str, t: float) -> float:
    m = dist.marginal(species, t)
    return float((m.index.to_numpy() * m.to_numpy()).sum())


def test_dimerisation_law_with_arrow_is_the_exact_stochastic_law():
    # 2 P -> D at kd P (P - 1)/2: written with `->` it must not become kd P^2/2 forward (fires at P = 1)
    text = "J2: 2 P -> D; kd*P*(P - 1)/2\nP = 11; D = 0; kd = 0.3"
    rev, irr = sbml_met.load_antimony(text), sbml_met.load_antimony(text.replace("->", "=>"))
    assert rev.reaction_ids == ("J2",)
    a, b = sbml_met.solve_fsp(rev, [0.5, 3.0], tol=1e-9), sbml_met.solve_fsp(irr, [0.5, 3.0], tol=1e-9)
    assert np.allclose(a.to_frame()["probability"], b.to_frame()["probability"], atol=1e-12)
    # P odd: one monomer is left for ever; P never goes below 1
    m = a.marginal("P", 3.0)
    assert m[m > 0].index.min() == 1 and m[0] == 0
    ssa = sbml_met.simulate(rev, [0, 3.0], n=4000, seed=3).states[:, -1, 0]
    assert ssa.min() == 1 and ssa.mean() == pytest.approx(marginal_mean(a, "P", 3.0), abs=4 * ssa.std() / np.sqrt(4000))


def test_promoter_unbinding_law_is_one_net_channel_and_matches_the_irreversible_model():
    # -> 2 P + G at u*(1 - G): split, its reverse u*G would consume 2 P whether or not there are any
    text = """
        J: -> 2 P + G; u*(1 - G)
        B: 2 P + G -> ; b*P*(P - 1)*G
        D: P -> ; d*P
        P = 0; G = 1; u = 2; b = 0.05; d = 0.3"""
    rev, irr = sbml_met.load_antimony(text), sbml_met.load_antimony(text.replace("->", "=>"))
    assert rev.reaction_ids == ("J", "J__reverse", "B", "D")
    assert "net rate" in str(rev) and "J" in rev.notes[-1]
    states = np.array([[0, 0], [0, 1], [5, 1], [3, 0]])
    a = rev.propensities(states)
    assert a[:, 1].tolist() == [0, 0, 0, 0]  # the reverse channel: where the law is negative only
    assert a[:, 0].tolist() == pytest.approx([2, 0, 0, 2])
    d_rev, d_irr = sbml_met.solve_fsp(rev, [1.0, 4.0], tol=1e-8), sbml_met.solve_fsp(irr, [1.0, 4.0], tol=1e-8)
    assert np.allclose(d_rev.to_frame()["probability"], d_irr.to_frame()["probability"], atol=1e-12)
    ssa = sbml_met.simulate(rev, [0, 4.0], n=4000, seed=5).states[:, -1, 0]
    assert ssa.mean() == pytest.approx(marginal_mean(d_rev, "P", 4.0), abs=4 * ssa.std() / np.sqrt(4000))
    tau = sbml_met.simulate(rev, [0, 4.0], n=2000, seed=5, method="tau-leap").states[:, -1, 0]
    assert tau.min() >= 0


def test_net_channel_fires_in_reverse_where_the_law_is_negative():
    # G = 3 (three promoters) is a state the model allows: the law u (1 - G) < 0 fires 2 P + G -> 0
    net = sbml_met.load_antimony("J: -> 2 P + G; u*(1 - G)\nP = 10; G = 3; u = 1")
    a = net.propensities(net.initial_state)
    assert a.tolist() == pytest.approx([0, 2])
    d = sbml_met.solve_fsp(net, [50.0], tol=1e-9)
    assert d.marginal("G", 50.0).idxmax() == 1 and marginal_mean(d, "P", 50.0) == pytest.approx(6, abs=1e-6)
    # and a firing that would go below zero is still the typed error
    bad = sbml_met.load_antimony("J: -> 2 P + G; u*(1 - G)\nP = 1; G = 3; u = 1")
    with pytest.raises(NegativeCountError) as info:
        sbml_met.simulate(bad, [0, 10], n=10, seed=1)
    assert info.value.reaction_id == "J__reverse" and info.value.species_id == "P"


@pytest.mark.parametrize("law, kf, kr", [
    ("k1*A - k2*B", 1.0, 0.5),
    ("k*(A - B/Keq)", 0.7, 0.7 / 2.0),
])
def test_mass_action_net_laws_split_and_give_the_binomial(law, kf, kr):
    net = sbml_met.load_antimony(f"J: A -> B; {law}\nA = 20; B = 0; k1 = 1; k2 = 0.5; k = 0.7; Keq = 2")
    assert net.reaction_ids == ("J", "J__reverse")
    assert net.rules == () and not any("piecewise" in r.rate_law for r in net.reactions)
    t = 1.3
    p = kf / (kf + kr) * (1 - np.exp(-(kf + kr) * t))  # each molecule is B with probability p
    d = sbml_met.solve_fsp(net, [t], tol=1e-10)
    m = d.marginal("B", t)
    assert np.allclose(m.to_numpy(), binom.pmf(m.index.to_numpy(), 20, p), atol=1e-7)


def test_michaelis_menten_reversible_forms_split_and_agree_with_fsp():
    net = sbml_met.load_antimony("""
        J: S -> P; (Vf*S/Ks - Vr*P/Kp)/(1 + S/Ks + P/Kp)
        K: P -> S; Vm*P/(Km + P)
        S = 15; P = 0; Vf = 4; Vr = 1; Ks = 5; Kp = 3; Vm = 0.5; Km = 2""")
    assert net.reaction_ids == ("J", "J__reverse", "K")
    d = sbml_met.solve_fsp(net, [2.0], tol=1e-9)
    ssa = sbml_met.simulate(net, [0, 2.0], n=4000, seed=7).states[:, -1, 1]
    assert ssa.mean() == pytest.approx(marginal_mean(d, "P", 2.0), abs=4 * ssa.std() / np.sqrt(4000))


def test_law_without_a_split_runs_at_its_net_rate():
    # k*ln(A) (formerly refused): forward while A > 1, 0 at A = 1; never below
    net = sbml_met.load_antimony("J: A -> B; k*ln(A)\nA = 5; B = 0; k = 1")
    assert net.reaction_ids == ("J", "J__reverse")
    res = sbml_met.simulate(net, [0, 50.0], n=200, seed=1).states[:, -1]
    assert np.all(res[:, 0] == 1) and np.all(res[:, 1] == 4)


@pytest.mark.parametrize("name", ["toggle_switch", "autoregulation"])
def test_paper_models_written_with_arrows_run_as_their_irreversible_forms(name):
    text = (MODELS / f"{name}.ant").read_text(encoding="utf-8")
    rev, irr = sbml_met.load_antimony(text.replace("=>", "->")), sbml_met.load_antimony(text)
    times = [0.5, 2.0]
    a, b = sbml_met.solve_fsp(rev, times), sbml_met.solve_fsp(irr, times)
    assert np.allclose(a.to_frame()["probability"], b.to_frame()["probability"], atol=1e-12)
    x = sbml_met.simulate(rev, [0] + times, n=1000, seed=2).states
    y = sbml_met.simulate(irr, [0] + times, n=1000, seed=2).states
    assert np.abs(x.mean(axis=0) - y.mean(axis=0)).max() < 4 * (x.std(axis=0).max() + 1) / np.sqrt(500)
    # the pickled network (workers, Dask) rebuilds the same channels
    import pickle

    again = pickle.loads(pickle.dumps(rev.with_parameters({list(rev.parameters)[0]: 0.0})))
    assert again.reaction_ids == rev.reaction_ids


@pytest.mark.parametrize("name", ["toggle_switch", "autoregulation"])
def test_paper_models_with_arrows_pass_validation_and_inference(name):
    pytest.importorskip("roadrunner")
    from sbml_met.infer import fit_trajectory

    text = (MODELS / f"{name}.ant").read_text(encoding="utf-8")
    rev = sbml_met.load_antimony(text.replace("=>", "->"))
    res = sbml_met.simulate(rev, [0, 1.0, 3.0], n=2000, seed=4)
    assert sbml_met.validate(rev, res, n_reference=2000, processes=1).ok
    traj = sbml_met.simulate(rev, [0, 40], n=1, seed=1, record="events")
    free = {"toggle_switch": ["sx", "dx"], "autoregulation": ["ru", "k"]}[name]
    fit = fit_trajectory(rev, traj, free=free)
    for p in free:
        assert abs(fit.estimates[p] - rev.parameters[p]) < 3 * fit.standard_errors[p]


@pytest.mark.parametrize("name", ["toggle_switch", "autoregulation"])
def test_arrow_forms_share_the_fingerprint_and_the_bundled_met(name):
    from sbml_met.met.auto import find_met

    text = (MODELS / f"{name}.ant").read_text(encoding="utf-8")
    rev, irr = sbml_met.load_antimony(text.replace("=>", "->")), sbml_met.load_antimony(text)
    assert any(r.net_law for r in rev.reactions)  # net-rate channels, hashed as the law as written
    assert rev.fingerprint() == irr.fingerprint()
    met = find_met(rev)
    assert met is not None and find_met(irr) is not None


@pytest.mark.parametrize("law, channels", [
    ("c1*X*(X - 1)/2", ("J1",)),                                     # never negative: as written
    ("c1*X*(X - 1)/2 - c2*X*(X - 1)*(X - 2)/6", ("J1", "J1__reverse")),  # split as written
])
def test_autocatalytic_schlogl_laws_with_arrow_keep_their_cme(law, channels):
    # 2 X -> 3 X needs two X to fire: expanding c1*X*(X - 1)/2 into c1*X^2/2 forward and c1*X/2
    # reverse passes a net-change check (X only grows) but is another CME; FSP must match '=>'
    text = (f"model schlogl_arrow\nJ1: 2 X -> 3 X; {law}\nJ2: X -> ; d*X\nJ3: -> X; b\n"
            "X = 4; c1 = 0.05; c2 = 0.02; d = 1.2; b = 2\nend")
    rev = sbml_met.load_antimony(text)
    irr = sbml_met.load_antimony(text.replace("J1: 2 X -> 3 X", "J1: 2 X => 3 X") if len(channels) == 1
                                 else text.replace(f"J1: 2 X -> 3 X; {law}",
                                                   "J1: 2 X => 3 X; c1*X*(X - 1)/2\nJ1r: 3 X => 2 X; c2*X*(X - 1)*(X - 2)/6"))
    assert tuple(r for r in rev.reaction_ids if r.startswith("J1")) == channels
    a, b = sbml_met.solve_fsp(rev, [0.5, 2.0], tol=1e-9), sbml_met.solve_fsp(irr, [0.5, 2.0], tol=1e-9)
    pa = a.marginal("X", 2.0)
    pb = b.marginal("X", 2.0).reindex(pa.index, fill_value=0.0)
    assert np.allclose(pa.to_numpy(), pb.to_numpy(), atol=1e-9)


def test_written_split_survives_libsedml_taking_over_the_ast_type():
    # with libsedml imported after libsbml, ASTNode.getType() returns an opaque SWIG pointer; a
    # comparison with libsbml.AST_MINUS was then always unequal and the Schlogl law fell back to
    # net-rate channels (another CME): run in a fresh process in that import order
    for name in ("phrasedml", "libsedml"):
        pytest.importorskip(name)
    law = "c1*X*(X - 1)/2 - c2*X*(X - 1)*(X - 2)/6"
    script = textwrap.dedent(f"""
        import libsbml, sbml_met, phrasedml, libsedml
        assert not isinstance(libsbml.parseL3Formula("a - b").getType(), int)  # the takeover happened
        def p0(j1):
            net = sbml_met.load_antimony("model s\\n" + j1 + "\\nJ2: X -> ; d*X\\nJ3: -> X; b\\n"
                                         "X = 4; c1 = 0.05; c2 = 0.02; d = 1.2; b = 2\\nend")
            return sbml_met.solve_fsp(net, [2.0], tol=1e-9).marginal("X", 2.0).iloc[0]
        print(p0("J1: 2 X -> 3 X; {law}"),
              p0("J1: 2 X => 3 X; c1*X*(X - 1)/2\\nJ1r: 3 X => 2 X; c2*X*(X - 1)*(X - 2)/6"))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    written, split = map(float, out.stdout.split()[-2:])
    assert written == pytest.approx(split, abs=1e-9)
