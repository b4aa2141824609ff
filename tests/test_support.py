"""Engines declare what they support; check_support refuses a network with one error naming every
element that an engine cannot run."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

import sbml_met
from sbml_met import models
from sbml_met.errors import InvalidArgumentError, UnsupportedByEngineError, UnsupportedSBMLError
from sbml_met.support import ENGINES, FEATURES, check_support, engines_for, feature_set, network_features

EVENTS = """
species X
R1: => X; k
R2: X => ; d*X
T1: at time >= 5: X = 0
T2: at time >= 8: k = 2
S1: at X > 10: X = 1
k = 1; d = 0.1; X = 0
"""

EVENT_AND_RULE = """
species X, Y
R1: => X; k
R2: X => ; d*X
Y := 2*X
E1: at time >= 5: X = 0
k = 1; d = 0.1; X = 0
"""


def test_every_engine_declares_a_feature_set():
    for engine in ("ssa", "tau-leap", "fsp", "met-fsp", "met-ssa", "van", "infer"):
        spec = feature_set(engine)
        assert spec.engine == engine and set(spec.supported) <= set(FEATURES)
        # the loader refuses non-integer stoichiometry for every engine; only the SSA (sbml_met.pdmp)
        # and tau-leaping (sbml_met._tau_events) follow rates that vary between firings
        assert not spec.non_integer_stoichiometry
        varying = (spec.rate_rules, spec.time_dependent_laws, spec.delayed_events)
        assert all(varying) if engine in ("ssa", "tau-leap") else not any(varying)
    assert feature_set("ssa").state_events and not feature_set("fsp").state_events
    with pytest.raises(InvalidArgumentError, match="unknown engine 'nope'"):
        feature_set("nope")
    with pytest.raises(AttributeError):
        ENGINES["ssa"].state_events = False  # frozen


def test_fsp_refuses_every_event_in_one_error_and_ssa_accepts_them():
    net = sbml_met.load_antimony(EVENTS)
    assert [e for e, _ in network_features(net)] == ["T1", "T2", "T2", "S1"]
    with pytest.raises(UnsupportedByEngineError) as info:
        check_support(net, "fsp")
    err = info.value
    assert isinstance(err, UnsupportedSBMLError)  # old except clauses still catch it
    assert err.engine == "fsp" and [r.element_id for r in err.reasons] == ["T1", "T2", "S1"]
    assert err.element_id == "T1" and "time" in err.feature
    text = str(err)
    for eid in ("T1", "T2", "S1"):
        assert f"  - {eid}: " in text
    assert "changes a parameter value" in text and "species counts" in text
    assert text.count("supported by: ssa") == 3
    check_support(net, "ssa")  # no error
    assert engines_for(net) == ["ssa", "ssa-path", "tau-leap"]  # record="events" runs events too (sbml_met.pdmp)
    res = sbml_met.simulate(net, [0, 4, 6], n=20, seed=1)
    assert np.all(res.states[:, 2, 0] <= 10)  # T1 emptied X at time 5


def test_tau_leap_runs_the_event_and_the_species_rule_the_van_names_the_event():
    net = sbml_met.load_antimony(EVENT_AND_RULE)
    res = sbml_met.simulate(net, [0, 4.9, 5, 6], n=5, method="tau-leap", seed=1)
    assert res.method == "tau-leap" and np.all(res.states[:, 2, 0] == 0)  # E1 emptied X at 5
    assert np.array_equal(res.states[:, :, 1], 2 * res.states[:, :, 0])  # Y := 2*X on every state
    with pytest.raises(UnsupportedByEngineError, match="E1") as info:
        check_support(net, "van")
    assert [r.element_id for r in info.value.reasons] == ["E1"]  # the VAN honours the rule
    assert "tau-leap" in info.value.advice[0]


def test_time_varying_parts_are_refused_by_every_engine_but_ssa_and_tau_leap_with_every_reason():
    net = sbml_met.load_antimony("species X\nR1: => X; k*(1 + sin(time))\nR2: X => ; g*X\ng' = 0.1\n"
                                 "E1: at 2 after (time >= 5): X = 0\nk = 1; g = 1; X = 0")
    assert net.time_varying
    assert set(network_features(net)) >= {("g", "rate_rules"), ("R1", "time_dependent_laws"),
                                          ("R2", "time_dependent_laws"), ("E1", "delayed_events")}
    for engine in ("fsp", "met-fsp", "met-ssa", "van", "infer"):
        with pytest.raises(UnsupportedByEngineError) as info:
            check_support(net, engine)
        assert {r.element_id for r in info.value.reasons} == {"E1", "g", "R1", "R2"}
        text = str(info.value)
        assert "rate rule" in text and "depends on time" in text and "delay" in text
    assert engines_for(net) == ["ssa", "ssa-path", "tau-leap"]


def test_a_plain_network_runs_everywhere():
    net = models.load("birth_death")
    assert network_features(net) == []
    assert engines_for(net) == list(ENGINES)
    for engine in ENGINES:
        check_support(net, engine)
    with pytest.raises(InvalidArgumentError, match="ReactionNetwork"):
        check_support("birth_death", "ssa")


def test_reversible_reactions_are_declared_and_run_everywhere():
    net = sbml_met.load_antimony("species A, B\nR: A -> B; kf*A - kr*B\nkf = 1; kr = 2; A = 5; B = 0")
    assert network_features(net) == [("R", "reversible_reactions")]
    assert engines_for(net) == list(ENGINES)


def test_fit_trajectory_refuses_events_with_the_typed_error():
    net = sbml_met.load_antimony(EVENTS)
    table = pd.DataFrame({"time": [0.0, 1.0, 2.0], "X": [0, 1, 1]})
    with pytest.raises(UnsupportedByEngineError) as info:
        sbml_met.infer.fit_trajectory(net, table, free=["k"])
    assert info.value.engine == "infer" and {r.element_id for r in info.value.reasons} == {"T1", "T2", "S1"}


def test_the_error_is_exported_with_the_others():
    assert sbml_met.UnsupportedByEngineError is UnsupportedByEngineError
    assert issubclass(UnsupportedByEngineError, sbml_met.SbmlMetError)


def test_the_error_survives_pickling_with_its_reasons():  # worker processes and Dask send it back
    with pytest.raises(UnsupportedByEngineError) as info:
        check_support(sbml_met.load_antimony(EVENTS), "van")
    err = pickle.loads(pickle.dumps(info.value))
    assert type(err) is UnsupportedByEngineError and str(err) == str(info.value)
    assert err.engine == "van" and err.reasons == info.value.reasons and err.advice == info.value.advice
