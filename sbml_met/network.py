"""The immutable reaction network every engine works from.

A :class:`ReactionNetwork` holds species, compartments, parameters, the stoichiometry and the rate
laws compiled (from libsbml's math AST, see :mod:`sbml_met._math`) into vectorised propensity
functions. It never parses SBML itself: :mod:`sbml_met.sbml` builds it.

Stochastic semantics follow the SBML discrete stochastic test suite: species are amounts (molecule
counts); a species with ``hasOnlySubstanceUnits=false`` enters math as amount / compartment size;
boundary and constant species are never changed by reactions; assignment rules are evaluated on
every state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from ._math import TIME, Compiled
from .errors import InvalidArgumentError, UnknownIdError


@dataclass(frozen=True)
class Species:
    """One species: its SBML id and the attributes that decide its stochastic semantics."""

    id: str
    compartment: str
    has_only_substance_units: bool
    boundary: bool
    constant: bool
    rule: bool = False  # its value comes from an assignment rule
    continuous: bool = False  # its amount follows a rate rule (a real number, not a count)

    @property
    def changes_by_reactions(self) -> bool:
        return not (self.boundary or self.constant or self.rule or self.continuous)


@dataclass(frozen=True)
class Reaction:
    """One (irreversible) reaction channel: stoichiometry by species id, its rate law as text and
    as libsbml math (local parameters named ``reaction.param``; what engines translate, never the
    text: libsbml's formula parser would read a species ``Pi`` as the constant pi)."""

    id: str
    reactants: tuple[tuple[str, int], ...]
    products: tuple[tuple[str, int], ...]
    rate_law: str
    time_varying: bool = False  # the law reads time or a rate-rule variable (directly or via rules)
    math: Any = field(default=None, compare=False, repr=False)  # libsbml.ASTNode | None
    # the law as written where this is one of the two channels of a reversible reaction run at its
    # net rate (forward where the law is positive, reverse where negative); None otherwise
    net_law: str | None = field(default=None, repr=False)

    def equation(self) -> str:
        side = lambda terms: " + ".join(  # noqa: E731
            (f"{n} {s}" if n != 1 else s) for s, n in terms
        ) or "0"
        return f"{side(self.reactants)} -> {side(self.products)}"


@dataclass(frozen=True)
class Event:
    """An SBML event. ``trigger_time`` is set for pure time triggers (time >= c); ``delay`` (None:
    none) is the time from the trigger to the assignments, whose values come from the trigger time
    when ``use_trigger_values`` (SBML's useValuesFromTriggerTime), else from the execution time."""

    id: str
    trigger: Compiled
    trigger_time: float | None
    initial_value: bool
    assignments: tuple[tuple[int, Compiled, float], ...]  # (species index, value, amount factor)
    # parameters set by a pure time trigger: the same value in every trajectory at the same time
    parameter_assignments: tuple[tuple[str, Compiled], ...] = ()
    delay: Compiled | None = None
    use_trigger_values: bool = True
    # its trigger reads time beyond 'time >= c', or it sets parameters per trajectory (a state
    # trigger, species values): only the time-varying engines (sbml_met.pdmp, tau-leaping) follow it
    needs_pdmp: bool = False


@dataclass(frozen=True)
class Rule:
    """An assignment rule ``variable = f(...)`` evaluated on every state."""

    variable: str
    math: Compiled
    species_index: int | None  # index into species for species rules; None for parameters
    amount_factor: float = 1.0  # compartment size for concentration-valued species


@dataclass(frozen=True)
class RateRule:
    """A rate rule ``d variable / dt = math``: a continuous variable (a parameter, a compartment
    size or a species amount) that the time-varying engine (:mod:`sbml_met.pdmp`) integrates
    between firings. For a species ``amount_factor`` turns the rule's concentration rate into an
    amount rate (its compartment's size; 1 for amounts)."""

    variable: str
    math: Compiled
    species_index: int | None  # index into species for species rules; None for parameters, compartments
    amount_factor: float = 1.0
    formula: str = ""  # the rule's math as text, for display only


def readonly(a: np.ndarray) -> np.ndarray:
    """A read-only copy of ``a`` (what an immutable network hands out)."""
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class ReactionNetwork:
    """A chemical reaction network with compiled, vectorised propensities.

    Build one with :func:`sbml_met.load_sbml` or :func:`sbml_met.load_antimony`; derive variants
    with :meth:`with_parameters` and :meth:`with_initial_state`.
    """

    name: str
    species_info: tuple[Species, ...]
    reactions: tuple[Reaction, ...]
    parameters: Mapping[str, float]
    compartments: Mapping[str, float]
    initial_state: np.ndarray
    events: tuple[Event, ...] = ()
    rules: tuple[Rule, ...] = ()
    rate_rules: tuple[RateRule, ...] = ()
    notes: tuple[str, ...] = ()  # how the model was read where SBML's meaning needed a choice
    _rates: tuple[Compiled, ...] = field(default=(), repr=False)
    _initial_assignments: tuple[tuple[str, Compiled], ...] = field(default=(), repr=False)
    _overridden: frozenset[str] = field(default=frozenset(), repr=False)
    _sbml: str = field(default="", repr=False)
    _derived: dict = field(default_factory=dict, repr=False, compare=False)

    # ---------------------------------------------------------------- structure
    @property
    def species(self) -> tuple[str, ...]:
        """Species ids in state-vector order."""
        return tuple(s.id for s in self.species_info)

    @property
    def reaction_ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.reactions)

    @property
    def n_species(self) -> int:
        return len(self.species_info)

    @property
    def n_reactions(self) -> int:
        return len(self.reactions)

    @property
    def stoichiometry(self) -> np.ndarray:
        """Net change of each species per firing: array (n_reactions, n_species), read-only."""
        return self.cached("stoich", self._build_stoichiometry)

    def _build_stoichiometry(self) -> np.ndarray:
        index = {s: i for i, s in enumerate(self.species)}
        nu = np.zeros((self.n_reactions, self.n_species), dtype=np.int64)
        for r, rx in enumerate(self.reactions):
            for s, n in rx.reactants:
                if self.species_info[index[s]].changes_by_reactions:
                    nu[r, index[s]] -= n
            for s, n in rx.products:
                if self.species_info[index[s]].changes_by_reactions:
                    nu[r, index[s]] += n
        return readonly(nu)

    @property
    def dynamic_species(self) -> np.ndarray:
        """Boolean mask of species that reactions change."""
        return np.array([s.changes_by_reactions for s in self.species_info], dtype=bool)

    @property
    def has_events(self) -> bool:
        return bool(self.events)

    @property
    def time_varying(self) -> bool:
        """Whether propensities change between firings or assignments wait for a delay (rate
        rules, time in a law, delayed events): then :func:`sbml_met.simulate` runs the
        piecewise-deterministic engine :mod:`sbml_met.pdmp`."""
        return bool(self.rate_rules) or any(r.time_varying for r in self.reactions) or any(
            e.delay is not None or e.needs_pdmp for e in self.events)

    def species_index(self, species_id: str) -> int:
        """Position of a species in the state vector (raises UnknownIdError)."""
        try:
            return self.species.index(species_id)
        except ValueError:
            raise UnknownIdError(
                f"no species '{species_id}' in model '{self.name}'; species are: "
                f"{', '.join(self.species)}"
            ) from None

    # ---------------------------------------------------------------- evaluation
    def parameter_environment(self, parameters: Mapping[str, Any] | None = None) -> dict:
        """Compartment sizes and parameter values by SBML id, ``parameters`` overriding some
        (scalars or arrays); an unknown id raises UnknownIdError. The ``env`` argument of
        :meth:`propensity_rows` and :meth:`apply_rules`."""
        env = dict(self.compartments)
        env.update(self.parameters)
        if parameters:
            for k, v in parameters.items():
                if k not in self.parameters:
                    raise UnknownIdError(f"no parameter '{k}' in model '{self.name}'")
                env[k] = v
        return env

    def check_parameter_ids(self, ids) -> None:
        """Raise UnknownIdError naming the first id in ``ids`` that is not a parameter."""
        self.parameter_environment({p: 0.0 for p in ids})

    @property
    def source_sbml(self) -> str:
        """The SBML text this network was built from ("" for none); :meth:`to_sbml` writes the
        current parameter values and counts into it."""
        return self._sbml

    @property
    def overridden(self) -> frozenset[str]:
        """Ids of parameters and species whose values were set by :meth:`with_parameters` or
        :meth:`with_initial_state` (their initial assignments no longer apply)."""
        return self._overridden

    def cached(self, key: str, build: Callable[[], Any]) -> Any:
        """A value derived from this (immutable) network, built once by ``build()`` and kept
        (e.g. a compiled SSA kernel); variants of the network start with an empty cache."""
        if key not in self._derived:
            self._derived[key] = build()
        return self._derived[key]

    def environment(self, rows: np.ndarray, time: Any, base: dict) -> dict:
        """Values of every SBML symbol for species rows ``rows`` (n_species, m) at ``time``
        under ``base`` (from :meth:`parameter_environment`), assignment rules evaluated."""
        return self._env(rows, time, base)

    def _env(self, rows: np.ndarray, time: Any, base: dict) -> dict:
        """Environment for evaluating math on species rows ``rows`` (n_species, m)."""
        env = dict(base)
        env[TIME] = time
        for i, s in enumerate(self.species_info):
            if s.has_only_substance_units:
                env[s.id] = rows[i]
            else:
                env[s.id] = rows[i] / env[s.compartment]  # a size a rate rule drives is in env
        for rule in self.rules:
            env[rule.variable] = rule.math(env) if callable(rule.math) else rule.math
        return env


    def apply_rules(self, rows: np.ndarray, time: Any = 0.0, base: dict | None = None) -> None:
        """Overwrite, in place, the rows of species defined by assignment rules."""
        species_rules = [r for r in self.rules if r.species_index is not None]
        if not species_rules:
            return
        env = self._env(rows, time, base if base is not None else self.parameter_environment())
        for rule in species_rules:
            rows[rule.species_index] = np.broadcast_to(
                np.asarray(env[rule.variable], dtype=float) * rule.amount_factor,
                rows[rule.species_index].shape,
            )

    def propensity_rows(self, rows: np.ndarray, time: Any, base: dict, out: np.ndarray | None = None):
        """Propensities (n_reactions, m) for species rows (n_species, m) under the environment
        ``base`` (from :meth:`parameter_environment`); no checks, rules not applied: the fast
        path for engines. :meth:`propensities` is the checked, state-major one."""
        return self.propensities_in(self._env(rows, time, base), rows.shape[1], out)

    def propensities_in(self, env: dict, m: int, out: np.ndarray | None = None) -> np.ndarray:
        """Propensities (n_reactions, m) in an environment from :meth:`environment` of m states."""
        values = [rate(env) if callable(rate) else rate for rate in self._rates]
        if out is None:
            shape = np.broadcast_shapes((m,), *(np.shape(v) for v in values))
            out = np.empty((len(values),) + shape, dtype=float)
        for r, v in enumerate(values):
            out[r] = v
        return out

    def propensities(
        self,
        states: np.ndarray,
        time: float = 0.0,
        parameters: Mapping[str, Any] | None = None,
    ) -> np.ndarray:
        """Vectorised propensities.

        ``states``: counts, shape (n, n_species) or (n_species,). ``parameters`` optionally
        overrides parameter values by SBML id (scalars, or arrays that broadcast against n).
        Returns an array (n, n_reactions) (or (n_reactions,) for one state).
        """
        x = np.asarray(states, dtype=float)
        single = x.ndim == 1
        x2 = np.atleast_2d(x)
        if x2.shape[-1] != self.n_species:
            raise InvalidArgumentError(
                f"states have {x2.shape[-1]} columns; the network has {self.n_species} species "
                f"({', '.join(self.species)})"
            )
        rows = np.array(x2.T, dtype=float, order="C")
        base = self.parameter_environment(parameters)
        self.apply_rules(rows, time, base)
        a = self.propensity_rows(rows, time, base)
        a = np.moveaxis(a, 0, -1)
        return a[0] if single else a

    # ---------------------------------------------------------------- variants
    def with_parameters(self, values: Mapping[str, float] | None = None, **kwargs: float) -> "ReactionNetwork":
        """A new network with some parameter values replaced (ids as in ``.parameters``;
        local parameters as ``"reaction_id.param"``, which can be passed in ``values``)."""
        new = dict(values or {}, **kwargs)
        for k in new:
            if any(r.variable == k for r in self.rules):
                raise UnknownIdError(f"parameter '{k}' is defined by an assignment rule; set the "
                                     "parameters its rule uses instead")
            if k not in self.parameters:
                raise UnknownIdError(
                    f"no parameter '{k}' in model '{self.name}'; parameters are: "
                    f"{', '.join(self.parameters)}"
                )
        params = dict(self.parameters)
        params.update({k: float(v) for k, v in new.items()})
        return _rebuild(self, params, {}, self._overridden | set(new))

    def with_initial_state(self, values: Mapping[str, float] | None = None, **kwargs: float) -> "ReactionNetwork":
        """A new network with some initial counts replaced (species by SBML id)."""
        new = dict(values or {}, **kwargs)
        counts = {}
        for k, v in new.items():
            self.species_index(k)
            if float(v) < 0 or float(v) != round(float(v)):
                raise InvalidArgumentError(f"initial count of '{k}' must be a whole number >= 0, got {v}")
            counts[k] = float(v)
        return _rebuild(self, dict(self.parameters), counts, self._overridden | set(new))

    # ---------------------------------------------------------------- export
    def to_sbml(self) -> str:
        """SBML text of this network with its current parameter values and initial counts."""
        from .sbml import write_sbml

        return write_sbml(self)

    def __reduce__(self):
        """Pickle as SBML text (compiled rate laws are closures): worker processes and Dask
        rebuild the same network, parameter values and initial counts included."""
        return (_from_sbml, (self.to_sbml(), self.name, self.notes))

    def fingerprint(self) -> str:
        """Hash of species, stoichiometry and rate laws (not of parameter values). A reversible
        reaction run at its net rate hashes as the irreversible reaction with its law: the two
        have the same CME wherever the law is not negative (where the irreversible one runs at
        all), so a MET trained on one serves the other."""
        h = hashlib.sha256()
        h.update(repr(self.species).encode())
        for r in self.reactions:
            if r.net_law is not None and r.id.endswith("__reverse"):
                continue  # a net-rate pair is hashed as its law as written (the '=>' model's)
            h.update(repr((r.id, r.reactants, r.products, r.net_law or r.rate_law)).encode())
        return h.hexdigest()[:16]

    def summary(self) -> pd.DataFrame:
        """One row per reaction: id, equation, rate law, propensity at the initial state."""
        a0 = self.propensities(self.initial_state) if self.n_reactions else []
        return pd.DataFrame(
            {
                "reaction": [r.id for r in self.reactions],
                "equation": [r.equation() for r in self.reactions],
                "rate_law": [r.rate_law for r in self.reactions],
                "initial_propensity": list(np.asarray(a0, dtype=float) + 0.0),  # -0.0 prints as 0.0
            }
        )

    def species_frame(self) -> pd.DataFrame:
        """One row per species: id, compartment, initial count and flags."""
        return pd.DataFrame(
            {
                "species": self.species,
                "compartment": [s.compartment for s in self.species_info],
                "initial_count": self.initial_state,
                "boundary": [s.boundary for s in self.species_info],
                "constant": [s.constant for s in self.species_info],
                "assignment_rule": [s.rule for s in self.species_info],
                "has_only_substance_units": [s.has_only_substance_units for s in self.species_info],
            }
        )

    def __repr__(self) -> str:
        lines = [
            f"ReactionNetwork '{self.name}': {self.n_species} species, {self.n_reactions} reactions, "
            f"{len(self.parameters)} parameters" + (f", {len(self.events)} events" if self.events else "")
        ]
        init = ", ".join(f"{s}={v:g}" for s, v in zip(self.species, self.initial_state))
        lines.append(f"  initial: {init}")
        for r in self.reactions:
            lines.append(f"  {r.id}: {r.equation()}  [{r.rate_law}]")
        lines.extend(f"  rate rule: {r.variable}' = {r.formula}" for r in self.rate_rules)
        delayed = [e.id for e in self.events if e.delay is not None]
        if delayed:
            lines.append(f"  events with a delay: {', '.join(delayed)}")
        lines.extend(f"  note: {note}" for note in self.notes)
        if self.parameters:
            lines.append("  parameters: " + ", ".join(f"{k}={v:g}" for k, v in self.parameters.items()))
        return "\n".join(lines)

    __str__ = __repr__


def _rebuild(
    net: ReactionNetwork, params: dict[str, float], counts: dict[str, float], overridden: set[str]
) -> ReactionNetwork:
    """Re-derive initial values after a change, honouring initial assignments not overridden."""
    assignments = tuple((v, m) for v, m in net._initial_assignments if v not in overridden)
    x0 = np.array(net.initial_state, dtype=float)
    for k, v in counts.items():
        x0[net.species_index(k)] = v
    params, x0 = evaluate_initial_assignments(net.species_info, net.compartments, params, x0, assignments)
    candidate = replace(
        net,
        parameters=MappingProxyType(params),
        initial_state=readonly(x0),
        _initial_assignments=net._initial_assignments,
        _overridden=frozenset(overridden),
        _derived={},
    )
    rows = x0.reshape(-1, 1).copy()
    candidate.apply_rules(rows)
    return replace(candidate, initial_state=readonly(rows[:, 0]), _derived={})


def evaluate_initial_assignments(
    species: tuple[Species, ...],
    compartments: Mapping[str, float],
    params: dict[str, float],
    x0: np.ndarray,
    assignments: tuple[tuple[str, Compiled], ...],
) -> tuple[dict[str, float], np.ndarray]:
    """Evaluate initial assignments (already in dependency order) into parameters and counts."""
    params = dict(params)
    x0 = np.array(x0, dtype=float)
    index = {s.id: i for i, s in enumerate(species)}
    for var, math in assignments:
        env: dict[str, Any] = dict(compartments)
        env.update(params)
        env[TIME] = 0.0
        for i, s in enumerate(species):
            env[s.id] = x0[i] if s.has_only_substance_units else x0[i] / compartments[s.compartment]
        value = float(math(env) if callable(math) else math)
        if var in index:
            s = species[index[var]]
            x0[index[var]] = value if s.has_only_substance_units else value * compartments[s.compartment]
        else:
            params[var] = value
    return params, x0


_UNPICKLED: dict[str, "ReactionNetwork"] = {}


def _from_sbml(sbml: str, name: str, notes: tuple[str, ...]) -> "ReactionNetwork":
    """Rebuild a pickled network (cached per process by its SBML, so that many tasks of one
    sweep compile the rate laws once)."""
    key = hashlib.sha256(sbml.encode()).hexdigest()
    if key not in _UNPICKLED:
        from .sbml import load_sbml

        if len(_UNPICKLED) > 64:
            _UNPICKLED.clear()
        _UNPICKLED[key] = replace(load_sbml(sbml), name=name, notes=notes)
    return _UNPICKLED[key]


def check_times(times: Any) -> np.ndarray:
    """Validate an output time grid: finite, >= 0, non-decreasing, at least one point."""
    t = np.atleast_1d(np.asarray(times, dtype=float))
    if t.ndim != 1 or t.size == 0:
        raise InvalidArgumentError("times must be a non-empty 1-D sequence of numbers")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise InvalidArgumentError(f"times must be finite and >= 0, got {t.tolist()[:10]}")
    if np.any(np.diff(t) < 0):
        raise InvalidArgumentError("times must be sorted in increasing order")
    return t


def rate_function(
    net: ReactionNetwork, parameters: Mapping[str, Any] | None = None
) -> Callable[..., np.ndarray]:
    """The engines' propensity evaluator: ``f(rows, t, out=None) -> (n_reactions, m)`` for
    species rows ``rows`` (n_species, m), with the network's parameters (overridden by
    ``parameters``, SBML id -> scalar or array broadcasting against m) bound once. Rows are
    taken as given (no assignment rules applied, no checks): the fast path for simulators;
    :meth:`ReactionNetwork.propensities` is the checked, state-major one."""
    base = net.parameter_environment(parameters)
    return lambda rows, t, out=None: net.propensity_rows(rows, t, base, out=out)
