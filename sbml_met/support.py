"""What each engine supports, declared in one place and checked in one way.

As GillesPy2's solvers do, every engine of sbml-met declares the features of a network it honours
(a :class:`FeatureSet`, in :data:`ENGINES`), and refuses a network with :func:`check_support`: one
:class:`~sbml_met.errors.UnsupportedByEngineError` that lists every element (by SBML id) using a
feature outside the set, each with the engines that do support it. The error subclasses
:class:`~sbml_met.errors.UnsupportedSBMLError`, so ``except UnsupportedSBMLError`` still catches it.

Rate rules, laws that depend on time (or on a rate-rule variable) and delayed events make the
propensities vary between firings: the exact SSA follows them (its piecewise-deterministic
engine, :mod:`sbml_met.pdmp`) and tau-leaping (:mod:`sbml_met._tau_events`); every other engine
refuses them here. Non-integer stoichiometry is
declared too, unsupported by every engine: the loader refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from types import MappingProxyType

from .errors import InvalidArgumentError, Unsupported, UnsupportedByEngineError
from .network import ReactionNetwork

# feature name (a field of FeatureSet) -> what it means, as the error message says it
FEATURES = MappingProxyType({
    "time_events": "event triggered at a time ('time >= constant')",
    "state_events": "event triggered by species counts",
    "event_parameter_assignments": "event that changes a parameter value",
    "species_rules": "species defined by an assignment rule",
    "parameter_rules": "parameter defined by an assignment rule",
    "reversible_reactions": "reversible reaction (run as forward and reverse channels)",
    "rate_rules": "rate rule",
    "time_dependent_laws": "rate law that depends on time (or on a rate-rule variable)",
    "delayed_events": "event with a delay",
    "non_integer_stoichiometry": "non-integer stoichiometry",
})


@dataclass(frozen=True)
class FeatureSet:
    """The network features one engine honours (True) or refuses (False)."""

    engine: str
    description: str
    time_events: bool = False
    state_events: bool = False
    event_parameter_assignments: bool = False
    species_rules: bool = True
    parameter_rules: bool = True
    reversible_reactions: bool = True
    rate_rules: bool = False
    time_dependent_laws: bool = False
    delayed_events: bool = False
    non_integer_stoichiometry: bool = False

    def supports(self, feature: str) -> bool:
        if feature not in FEATURES:
            raise InvalidArgumentError(f"unknown feature {feature!r}; features are: {', '.join(FEATURES)}")
        return bool(getattr(self, feature))

    @property
    def supported(self) -> tuple[str, ...]:
        """Names of the features this engine honours."""
        return tuple(f.name for f in fields(self) if f.name in FEATURES and getattr(self, f.name))


_EVENTS = dict(time_events=True, state_events=True, event_parameter_assignments=True)
_TIME_VARYING = dict(rate_rules=True, time_dependent_laws=True, delayed_events=True)

ENGINES = MappingProxyType({s.engine: s for s in (
    FeatureSet("ssa", "exact SSA (sbml_met.simulate)", **_EVENTS, **_TIME_VARYING),
    FeatureSet("ssa-path", "exact SSA recording every jump (simulate(..., record='events'))",
               **_EVENTS, **_TIME_VARYING),
    FeatureSet("tau-leap", "adaptive tau-leaping (simulate(..., method='tau-leap'))", **_EVENTS,
               **_TIME_VARYING),
    FeatureSet("fsp", "finite state projection (solve_fsp, FSPSolver, posterior of a network)"),
    FeatureSet("met-fsp", "MET training from FSP distributions (teacher 'fsp')"),
    FeatureSet("met-ssa", "MET training from SSA draws (teacher 'ssa')"),
    FeatureSet("van", "variational autoregressive network solver (solve_van)"),
    FeatureSet("infer", "path likelihood of exact trajectories (fit_trajectory)"),
)})


def network_features(network: ReactionNetwork) -> list[tuple[str, str]]:
    """(SBML element id, feature name) for every element of ``network`` that uses a feature of
    :data:`FEATURES` other than plain mass-action-style reactions, in model order."""
    used: list[tuple[str, str]] = []
    for ev in network.events:
        used.append((ev.id, "time_events" if ev.trigger_time is not None else "state_events"))
        if ev.parameter_assignments:
            used.append((ev.id, "event_parameter_assignments"))
        if ev.delay is not None:
            used.append((ev.id, "delayed_events"))
    for rule in network.rules:
        used.append((rule.variable, "species_rules" if rule.species_index is not None else "parameter_rules"))
    for rule in network.rate_rules:
        used.append((rule.variable, "rate_rules"))
    for rx in network.reactions:
        if rx.time_varying:
            used.append((rx.id, "time_dependent_laws"))
        if rx.id.endswith("__reverse"):  # the loader's reverse channel of a reversible reaction
            used.append((rx.id[: -len("__reverse")], "reversible_reactions"))
    return used


def feature_set(engine: str) -> FeatureSet:
    """The declared :class:`FeatureSet` of ``engine`` (InvalidArgumentError for an unknown one)."""
    try:
        return ENGINES[engine]
    except KeyError:
        raise InvalidArgumentError(f"unknown engine {engine!r}; engines are: {', '.join(ENGINES)}") from None


def engines_for(network: ReactionNetwork) -> list[str]:
    """The engines whose declared feature set covers everything ``network`` uses."""
    used = {feature for _, feature in network_features(network)}
    return [name for name, s in ENGINES.items() if all(s.supports(f) for f in used)]


def _advice(features: list[str]) -> str:
    able = [name for name, s in ENGINES.items() if all(s.supports(f) for f in features)]
    return f"supported by: {', '.join(able)}" if able else "no engine of sbml-met supports it"


def check_support(network: ReactionNetwork, engine: str) -> None:
    """Raise one :class:`~sbml_met.errors.UnsupportedByEngineError` listing every element of
    ``network`` (by SBML id, with all its features ``engine`` does not declare, and the engines
    that support them), or return None when the engine supports everything the network uses."""
    spec = feature_set(engine)
    if not isinstance(network, ReactionNetwork):
        raise InvalidArgumentError(f"expected a ReactionNetwork, got {type(network).__name__}")
    refused: dict[str, list[str]] = {}
    for eid, feature in network_features(network):
        if not spec.supports(feature):
            refused.setdefault(eid, []).append(feature)
    if refused:
        raise UnsupportedByEngineError(
            engine, [Unsupported(eid, "; ".join(FEATURES[f] for f in fs)) for eid, fs in refused.items()],
            [_advice(fs) for fs in refused.values()], model=network.name)


__all__ = ["ENGINES", "FEATURES", "FeatureSet", "check_support", "engines_for", "feature_set", "network_features"]
