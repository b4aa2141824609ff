"""A corpus of bad inputs: every one must end in the right typed SbmlMetError naming the element."""

from __future__ import annotations

import numpy as np
import pytest

import sbml_met
from sbml_met.errors import (
    InvalidArgumentError,
    PropensityError,
    SBMLParseError,
    SbmlMetError,
    UnknownIdError,
    UnsupportedSBMLError,
)

HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
NS = 'xmlns="http://www.sbml.org/sbml/level3/version1/core" level="3" version="1"'
MATH = 'xmlns="http://www.w3.org/1998/Math/MathML"'


def sbml(species='<species id="X" compartment="c" initialAmount="5" hasOnlySubstanceUnits="true" '
                 'boundaryCondition="false" constant="false"/>',
         params='<parameter id="k" value="1" constant="true"/>',
         reactions=None, extra="", compartment='<compartment id="c" size="1" constant="true"/>',
         top=""):
    if reactions is None:
        reactions = reaction()
    return (f'{HEAD}<sbml {NS}{top}><model id="m">{extra_fd(extra)}'
            f"<listOfCompartments>{compartment}</listOfCompartments>"
            f"<listOfSpecies>{species}</listOfSpecies>"
            f"<listOfParameters>{params}</listOfParameters>"
            f"{extra_rest(extra)}"
            f"<listOfReactions>{reactions}</listOfReactions>"
            f"{extra_events(extra)}</model></sbml>")


def extra_fd(extra):
    return extra if extra.startswith("<listOfFunctionDefinitions") else ""


def extra_rest(extra):
    return extra if extra.startswith(("<listOfRules", "<listOfInitial")) else ""


def extra_events(extra):
    return extra if extra.startswith("<listOfEvents") else ""


def reaction(rid="R", law="<apply><times/><ci>k</ci><ci>X</ci></apply>", stoich="1",
             attrs='reversible="false" fast="false"', kinetic=True):
    kl = f"<kineticLaw><math {MATH}>{law}</math></kineticLaw>" if kinetic else ""
    return (f'<reaction id="{rid}" {attrs}><listOfReactants>'
            f'<speciesReference species="X" stoichiometry="{stoich}" constant="true"/>'
            f"</listOfReactants>{kl}</reaction>")


def test_template_is_valid():
    net = sbml_met.load_sbml(sbml())
    assert net.species == ("X",)
    assert net.propensities(net.initial_state).tolist() == [5.0]


PARSE_ERRORS = {
    "truncated XML": sbml()[:200],
    "empty string": "",
    "not XML": "<<<>>>",
    "missing file": "/no/such/model.xml",
    "species without id": sbml(species='<species compartment="c" initialAmount="5" '
                               'hasOnlySubstanceUnits="true" boundaryCondition="false" constant="false"/>'),
    "reaction with undefined species": sbml(reactions=reaction().replace('species="X"', 'species="Nope"')),
    "undefined symbol in rate law": sbml(reactions=reaction(law="<apply><times/><ci>kk</ci><ci>X</ci></apply>")),
    "no model": f"{HEAD}<sbml {NS}></sbml>",
    "call of undefined function": sbml(reactions=reaction(law="<apply><ci>f</ci><ci>X</ci></apply>")),
}


@pytest.mark.parametrize("name", sorted(PARSE_ERRORS))
def test_parse_errors(name):
    with pytest.raises(SBMLParseError) as info:
        sbml_met.load_sbml(PARSE_ERRORS[name])
    assert isinstance(info.value, SbmlMetError)
    assert str(info.value)


def _rule(kind, var, body="<cn>1</cn>"):
    attr = f' variable="{var}"' if var else ""
    return f"<listOfRules><{kind}{attr}><math {MATH}>{body}</math></{kind}></listOfRules>"


def _event(trigger, assign_var="X", value="<cn>1</cn>", delay="", eid="ev", priority=""):
    return (f'<event id="{eid}" useValuesFromTriggerTime="true">'
            f'<trigger initialValue="false" persistent="true"><math {MATH}>{trigger}</math></trigger>'
            f"{delay}{priority}<listOfEventAssignments><eventAssignment variable=\"{assign_var}\">"
            f"<math {MATH}>{value}</math></eventAssignment></listOfEventAssignments></event>")


TWO_SPECIES = ('<species id="X" compartment="c" initialAmount="5" hasOnlySubstanceUnits="true" '
               'boundaryCondition="false" constant="false"/><species id="Y" compartment="c" initialAmount="0" '
               'hasOnlySubstanceUnits="true" boundaryCondition="false" constant="false"/>')
TIME = '<csymbol encoding="text" definitionURL="http://www.sbml.org/sbml/symbols/time">t</csymbol>'
DELAY = '<csymbol encoding="text" definitionURL="http://www.sbml.org/sbml/symbols/delay">delay</csymbol>'
TIME_GEQ_5 = f"<apply><geq/>{TIME}<cn>5</cn></apply>"

# (sbml, element id that must be named, words of the feature)
UNSUPPORTED = {
    "algebraic rule": (sbml(params='<parameter id="k" value="1" constant="false"/>',
                            extra=_rule("algebraicRule", None, "<apply><minus/><ci>k</ci><cn>1</cn></apply>")),
                       "algebraicRule[0]", "algebraic rule 0 = k - 1"),
    "fast reaction": (sbml(reactions=reaction(attrs='reversible="false" fast="true"')), "R", "fast"),
    "non-integer stoichiometry": (sbml(reactions=reaction(stoich="1.5")), "R", "non-integer stoichiometry"),
    "delay in rate law": (sbml(reactions=reaction(law=f"<apply>{DELAY}<ci>X</ci><cn>1</cn></apply>")), "R", "delay"),
    "piecewise with negative branch": (sbml(reactions=reaction(
        law="<piecewise><piece><cn>-1</cn><apply><lt/><ci>X</ci><cn>2</cn></apply></piece>"
            "<otherwise><ci>X</ci></otherwise></piecewise>")), "R", "negative branch"),
    "negative initial amount": (sbml(species='<species id="X" compartment="c" initialAmount="-3" '
                                     'hasOnlySubstanceUnits="true" boundaryCondition="false" constant="false"/>'),
                                "X", "initial amount -3"),
    "non-integer initial amount": (sbml(species='<species id="X" compartment="c" initialAmount="2.5" '
                                        'hasOnlySubstanceUnits="true" boundaryCondition="false" constant="false"/>'),
                                   "X", "whole number"),
    "reaction without kinetic law": (sbml(reactions=reaction(kinetic=False)), "R", "kinetic law"),
    "parameter without value": (sbml(params='<parameter id="k" constant="true"/>'), "k", "without a value"),
    "compartment that changes": (sbml(compartment='<compartment id="c" size="1" constant="false"/>'),
                                 "c", "compartment"),
    "event priorities": (sbml(extra="<listOfEvents>"
                              + _event(TIME_GEQ_5, priority=f"<priority><math {MATH}><cn>1</cn></math></priority>")
                              + _event(TIME_GEQ_5, eid="ev2") + "</listOfEvents>"), "m", "priorities"),
}


# rates that vary between firings: loaded (the exact SSA follows them, sbml_met.pdmp)
TIME_VARYING = {
    "rate rule on species": sbml(species=TWO_SPECIES, extra=_rule("rateRule", "Y")),
    "event with delay": sbml(extra=f"<listOfEvents>{_event(TIME_GEQ_5, delay=f'<delay><math {MATH}><cn>1</cn></math></delay>')}</listOfEvents>"),
    "time-dependent rate law": sbml(reactions=reaction(law=f"<apply><times/><ci>k</ci><ci>X</ci>{TIME}</apply>")),
    "event assigning a parameter at a state trigger": sbml(
        params='<parameter id="k" value="1" constant="false"/>',
        extra=f"<listOfEvents>{_event('<apply><gt/><ci>X</ci><cn>2</cn></apply>', assign_var='k')}</listOfEvents>"),
    "mixed time and state trigger": sbml(extra=f"<listOfEvents>{_event(f'<apply><and/>{TIME_GEQ_5}<apply><gt/><ci>X</ci><cn>2</cn></apply></apply>')}</listOfEvents>"),
}


@pytest.mark.parametrize("name", sorted(TIME_VARYING))
def test_time_varying_parts_load(name):
    net = sbml_met.load_sbml(TIME_VARYING[name])
    assert net.time_varying
    res = sbml_met.simulate(net, [0, 1, 6], n=20, seed=1)
    assert np.all(np.isfinite(res.states))


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_features(name):
    text, element, words = UNSUPPORTED[name]
    with pytest.raises(UnsupportedSBMLError) as info:
        sbml_met.load_sbml(text)
    err = info.value
    assert any(r.element_id == element and words in r.feature for r in err.reasons), err.reasons
    assert element in str(err) and words in str(err)


def test_every_reason_is_listed_at_once():
    text = sbml(reactions=reaction(rid="A", stoich="0.5", attrs='reversible="false" fast="true"')
               + reaction(rid="B", kinetic=False), species=TWO_SPECIES,
               params='<parameter id="k" value="1" constant="false"/>', extra=_rule("algebraicRule", None, "<apply><minus/><ci>k</ci><cn>1</cn></apply>"))
    with pytest.raises(UnsupportedSBMLError) as info:
        sbml_met.load_sbml(text)
    found = {(r.element_id, r.feature.split(" ")[0]) for r in info.value.reasons}
    assert {("A", "fast"), ("A", "non-integer"), ("B", "reaction"), ("algebraicRule[0]", "algebraic")} <= found


def test_bad_antimony():
    with pytest.raises(SBMLParseError):
        sbml_met.load_antimony("model m\n  R1: X => ; k*(((X\nend")


def test_negative_propensity_during_a_run():
    text = sbml(species='<species id="X" compartment="c" initialAmount="0" hasOnlySubstanceUnits="true" '
                       'boundaryCondition="false" constant="false"/>',
                reactions=reaction(law="<apply><times/><ci>k</ci><apply><minus/><ci>X</ci><cn>2</cn></apply></apply>"))
    net = sbml_met.load_sbml(text)
    with pytest.raises(PropensityError) as info:
        sbml_met.simulate(net, [0, 1], n=4, seed=0)
    assert info.value.reaction_id == "R" and info.value.state == {"X": 0.0}
    assert "'R'" in str(info.value) and "X=0" in str(info.value)


def test_unknown_ids_and_bad_arguments():
    net = sbml_met.load_sbml(sbml())
    with pytest.raises(UnknownIdError, match="nope"):
        net.with_parameters(nope=1)
    with pytest.raises(UnknownIdError, match="Y"):
        net.with_initial_state(Y=1)
    with pytest.raises(InvalidArgumentError):
        net.with_initial_state(X=-1)
    with pytest.raises(InvalidArgumentError, match="direct"):
        sbml_met.simulate(net, [0, 1], method="nope")  # the message lists direct and tau-leap
    with pytest.raises(InvalidArgumentError):
        sbml_met.simulate(net, [3, 1])
    with pytest.raises(InvalidArgumentError):
        sbml_met.simulate(net, [0, np.nan])


def test_fractional_amount_is_listed_with_structural_reasons():
    text = sbml(species=TWO_SPECIES.replace('initialAmount="5"', 'initialAmount="0.5"'),
                params='<parameter id="k" value="1" constant="false"/>', extra=_rule("algebraicRule", None, "<apply><minus/><ci>k</ci><cn>1</cn></apply>"))
    with pytest.raises(UnsupportedSBMLError) as info:
        sbml_met.load_sbml(text)
    assert {r.element_id for r in info.value.reasons} == {"X", "algebraicRule[0]"}
    assert "volume=" in str(info.value)
