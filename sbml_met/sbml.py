"""SBML and Antimony in and out: libsbml reading, feature checks, ReactionNetwork construction.

This is the only module that reads SBML. Every feature the exact stochastic engines cannot honour
is collected and reported at once in one :class:`~sbml_met.errors.UnsupportedSBMLError` (like
GillesPy2's solvers), each reason naming the SBML element id. What a network can carry but some
engines cannot run (events, assignment rules) is declared per engine in :mod:`sbml_met.support`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import libsbml
import numpy as np

from ._math import AVOGADRO, TIME, MathCompileError, compile_math, names_in, node_type, piecewise_constants
from ._laws import is_nonnegative, signed_terms, split_net_law, sum_of_terms
from .errors import CountRoundingWarning, SBMLParseError, Unsupported, UnsupportedSBMLError
from .network import (
    Event,
    Reaction,
    ReactionNetwork,
    Rule,
    Species,
    readonly,
    evaluate_initial_assignments,
)

UNSUPPORTED_PACKAGES = ("comp", "distrib", "arrays", "multi", "spatial", "qual", "dyn")


# ------------------------------------------------------------------------------------------ reading
def read_document(source: str | os.PathLike) -> libsbml.SBMLDocument:
    """Read SBML from a path or an SBML string and check it with libsbml (errors only)."""
    text = str(source)
    if isinstance(source, os.PathLike) or (not text.lstrip().startswith("<") and len(text) < 4096):
        path = Path(source)
        if not path.is_file():
            raise SBMLParseError(f"no such SBML file: {path}")
        doc = libsbml.readSBMLFromFile(str(path))
    else:
        doc = libsbml.readSBMLFromString(text)
    _raise_on_errors(doc, "reading")
    if doc.getModel() is None:
        raise SBMLParseError("the SBML document has no <model>")
    doc.setConsistencyChecks(libsbml.LIBSBML_CAT_UNITS_CONSISTENCY, False)
    doc.setConsistencyChecks(libsbml.LIBSBML_CAT_MODELING_PRACTICE, False)
    doc.checkConsistency()
    _raise_on_errors(doc, "validating")
    return doc


def _raise_on_errors(doc: libsbml.SBMLDocument, stage: str) -> None:
    errors = []
    for i in range(doc.getNumErrors()):
        e = doc.getError(i)
        if e.getSeverity() >= libsbml.LIBSBML_SEV_ERROR:
            errors.append(f"line {e.getLine()}: {e.getMessage().strip()}")
    if errors:
        shown = "\n".join(f"  - {m}" for m in errors[:10])
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise SBMLParseError(f"invalid SBML ({stage}): {len(errors)} error(s):\n{shown}{more}", tuple(errors))


def antimony_to_sbml(text: str, level: int = 3, version: int = 1) -> str:
    """Convert Antimony text to SBML (Level 3 Version 1 by default) with the antimony library."""
    import antimony

    antimony.clearPreviousLoads()
    if antimony.loadAntimonyString(text) < 0:
        raise SBMLParseError(f"invalid Antimony: {antimony.getLastError().strip()}")
    module = antimony.getMainModuleName()
    sbml = antimony.getSBMLString(module)
    if not sbml:
        raise SBMLParseError(f"Antimony produced no SBML: {antimony.getLastError().strip()}")
    doc = libsbml.readSBMLFromString(sbml)
    if (doc.getLevel(), doc.getVersion()) != (level, version):
        props = libsbml.ConversionProperties(libsbml.SBMLNamespaces(level, version))
        props.addOption("setLevelAndVersion", True)
        props.addOption("strict", False)
        if doc.convert(props) != libsbml.LIBSBML_OPERATION_SUCCESS:
            raise SBMLParseError(f"could not convert the Antimony model to SBML L{level}V{version}")
    return libsbml.writeSBMLToString(doc)


def load_antimony(text: str) -> ReactionNetwork:
    """Build a ReactionNetwork from Antimony text (converted to SBML first)."""
    return load_sbml(antimony_to_sbml(text))


def load_sbml(source: str | os.PathLike, volume: float | None = None) -> ReactionNetwork:
    """Build a ReactionNetwork from an SBML file path or SBML string.

    Raises SBMLParseError for unreadable or invalid SBML and UnsupportedSBMLError (listing every
    reason) for features that exact stochastic simulation cannot honour. ``volume`` converts a
    mass-action model in concentration units to molecule counts first (see :func:`to_counts`).
    """
    note, doc = None, None
    if volume is None:
        doc = read_document(source)
        volume = molecules_per_substance_unit(doc)
        if volume is not None:
            note = f"amounts in the model's substance unit, converted to molecules: x {volume:.6g}"
        elif _default_moles_as_counts(doc):
            volume = AVOGADRO
            note = ("amounts in mole (SBML Level 2's default substance unit: they are whole numbers "
                    "of molecules only so), converted to molecules: x 6.02214e+23")
    if volume is not None:
        doc = read_document(to_counts(source, volume=volume))
    net = _Builder(doc if doc is not None else read_document(source), round_counts=volume is not None).build()
    return replace(net, notes=net.notes + (note,)) if note else net


def suggest_volume(source: str | os.PathLike, target: float = 300.0) -> float:
    """A ``volume=`` (a power of ten) that gives the median species with a positive initial amount
    about ``target`` molecules, from the amounts written in the SBML (initial assignments aside)."""
    amounts = [a for a in _literal_amounts(read_document(source).getModel()) if np.isfinite(a) and a > 0]
    median = float(np.median(amounts)) if amounts else 1.0
    return float(10.0 ** round(np.log10(target / median)))


def _literal_amounts(m: libsbml.Model) -> list[float]:
    """Initial amounts as written: initialAmount, or initialConcentration x compartment size."""
    sizes = {c.getId(): (c.getSize() if c.isSetSize() else 1.0) for c in m.getListOfCompartments()}
    out = []
    for s in m.getListOfSpecies():
        if s.isSetInitialAmount():
            out.append(s.getInitialAmount())
        elif s.isSetInitialConcentration():
            out.append(s.getInitialConcentration() * sizes.get(s.getCompartment(), 1.0))
    return out


def _default_moles_as_counts(doc: libsbml.SBMLDocument) -> bool:
    """A Level 2 model without substance units whose fractional amounts are whole molecule counts
    (at most 1e9) in mole, the Level 2 default unit: 1.66e-21 is 1,000 molecules, not 0."""
    m = doc.getModel()
    if doc.getLevel() > 2 or m.getUnitDefinition("substance") is not None:
        return False
    if any(s.isSetSubstanceUnits() for s in m.getListOfSpecies()):
        return False
    a = np.array([v for v in _literal_amounts(m) if np.isfinite(v) and v > 0])
    if a.size == 0 or np.all((np.abs(a - np.round(a)) <= 1e-9 * a) & (np.round(a) > 0)):
        return False  # whole numbers already: counts, as SSA models write them
    counts = a * AVOGADRO
    return bool(np.all((counts <= 1e9) & (np.abs(counts - np.round(counts)) <= 1e-4 * counts)))


def molecules_per_substance_unit(doc: libsbml.SBMLDocument) -> float | None:
    """Molecules in one unit of the model's declared substance unit (Avogadro's number times the
    unit's scale for mole, mmol, umol, ...), or None where amounts are counts already (no declared
    unit, ``item``, ``dimensionless``). Species declared in different units are refused."""
    m = doc.getModel()
    factors: dict[str, float | None] = {}
    for i in range(m.getNumSpecies()):
        s = m.getSpecies(i)
        unit = s.getSubstanceUnits() or (m.getSubstanceUnits() if doc.getLevel() > 2 else "substance")
        factors[s.getId()] = _unit_molecules(m, unit)
    distinct = {f for f in factors.values()}
    if len(distinct) > 1:
        raise UnsupportedSBMLError([Unsupported(sid, f"substance unit of {f or 1:g} molecules, unlike "
                                                     "the model's other species")
                                    for sid, f in factors.items() if f != max(distinct, key=lambda v: v or 0)])
    factor = distinct.pop() if distinct else None
    return None if factor is None or factor == 1.0 else factor


def _unit_molecules(m: libsbml.Model, unit: str) -> float | None:
    """Molecules per one ``unit`` (an SBML unit kind or unit definition id); None if not declared
    as an amount of substance (mole or item)."""
    if not unit:
        return None
    if unit == "mole":
        return AVOGADRO
    if unit in ("item", "dimensionless"):
        return 1.0
    ud = m.getUnitDefinition(unit)
    if ud is None or ud.getNumUnits() != 1 or ud.getUnit(0).getExponentAsDouble() != 1:
        return None
    u = ud.getUnit(0)
    scale = u.getMultiplier() * 10.0 ** u.getScale()
    if u.isMole():
        return AVOGADRO * scale
    if u.isItem() or u.isDimensionless():
        return scale
    return None


# ------------------------------------------------------------------------------------------ building
class _Builder:
    """Turns one validated libsbml document into a ReactionNetwork, collecting every problem."""

    def __init__(self, doc: libsbml.SBMLDocument, round_counts: bool = False):
        self.doc = doc
        self.round_counts = round_counts  # converted amounts (volume=): round to counts, with a warning
        self.model: libsbml.Model = doc.getModel()
        self.reasons: list[Unsupported] = []
        self.functions: dict[str, tuple[list[str], libsbml.ASTNode]] = {}
        self.parse_errors: list[str] = []
        self.forward_only: list[str] = []  # reversible reactions whose net law is never negative
        self.unset_species: list[str] = []  # species without any initial value: start at 0
        self.nonnegative = None  # the sign analysis's symbol callback, built on first use

    def unsupported(self, element_id: str, feature: str) -> None:
        self.reasons.append(Unsupported(element_id or "(no id)", feature))

    # -- compile one expression in the model's namespace (local parameters first)
    def compile(self, node: libsbml.ASTNode | None, where: str, local: dict[str, str] | None = None):
        if node is None:
            self.parse_errors.append(f"{where}: missing math")
            return 0.0
        local = local or {}
        known = self.known

        def resolve(name: str):
            key = local.get(name, name)
            if key in self.reaction_ids:
                raise MathCompileError(f"uses the rate of reaction '{name}' as a symbol")
            if key not in known:
                raise MathCompileError(f"undefined symbol '{name}'", unsupported=False)
            return lambda env, _k=key: env[_k]

        try:
            return compile_math(node, resolve, self.functions)
        except MathCompileError as e:
            if e.unsupported:
                self.unsupported(where, e.feature)
            else:
                self.parse_errors.append(f"{where}: {e.feature}")
            return 0.0

    def build(self) -> ReactionNetwork:
        m = self.model
        for pkg in UNSUPPORTED_PACKAGES:
            if self.doc.isPackageEnabled(pkg):
                self.unsupported(m.getId() or "sbml", f"SBML package '{pkg}'")
        self._function_definitions()
        self.rules_by_var = self._assignment_rules()
        init_assign = {m.getInitialAssignment(i).getSymbol(): m.getInitialAssignment(i)
                       for i in range(m.getNumInitialAssignments())}
        compartments = self._compartments(init_assign)
        params = self._parameters(init_assign)
        species, x0 = self._species(init_assign, compartments)

        self.species_ids = {s.id for s in species}
        self.compartment_ids = set(compartments)
        self.reaction_ids = {m.getReaction(i).getId() for i in range(m.getNumReactions())}
        self.known = set(compartments) | set(params) | self.species_ids

        reactions, rates = self._reactions(params)
        self.known |= {k for k in params}
        rules = self._rules(self.rules_by_var, species, compartments)  # in dependency order
        ias = self._initial_assignments(init_assign, compartments)
        events = self._events(species, compartments)
        self._raise_collected(species, x0, init_assign)

        params, x0_arr = evaluate_initial_assignments(
            tuple(species), compartments, params, np.array(x0, dtype=float), tuple(ias)
        )
        # parameters defined by assignment rules are computed on every state, not set
        params = {p: v for p, v in params.items() if p not in self.rules_by_var}
        for p, v in params.items():
            if not np.isfinite(v):
                self.unsupported(p, f"parameter value {v}")
        net = ReactionNetwork(
            name=m.getId() or m.getName() or "model",
            species_info=tuple(species),
            reactions=tuple(reactions),
            parameters=MappingProxyType(params),
            compartments=MappingProxyType(compartments),
            initial_state=readonly(x0_arr),
            events=tuple(events),
            rules=tuple(rules),
            _rates=tuple(rates),
            _initial_assignments=tuple(ias),
            notes=self._notes(),
            _sbml=libsbml.writeSBMLToString(self.doc),
        )
        return self._with_checked_counts(net, species)

    def _function_definitions(self) -> None:
        m = self.model
        for i in range(m.getNumFunctionDefinitions()):
            fd = m.getFunctionDefinition(i)
            body = fd.getBody()
            if body is None:
                self.parse_errors.append(f"{fd.getId()}: function definition without body")
                continue
            args = [fd.getArgument(j).getName() for j in range(fd.getNumArguments())]
            self.functions[fd.getId()] = (args, body)

    def _assignment_rules(self) -> dict[str, libsbml.Rule]:
        """Assignment rules by variable; algebraic and rate rules are reported."""
        m = self.model
        rules_by_var = {}
        for i in range(m.getNumRules()):
            r = m.getRule(i)
            if r.isAlgebraic():
                formula = libsbml.formulaToL3String(r.getMath()) if r.getMath() else "?"
                self.unsupported(r.getId() or r.getMetaId() or f"algebraicRule[{i}]",
                                 f"algebraic rule 0 = {formula}")
            elif r.isRate():
                self.unsupported(r.getVariable(), "rate rule")
            else:
                rules_by_var[r.getVariable()] = r
        return rules_by_var

    def _compartments(self, init_assign) -> dict[str, float]:
        m = self.model
        compartments: dict[str, float] = {}
        for i in range(m.getNumCompartments()):
            c = m.getCompartment(i)
            if not c.getConstant() or c.getId() in self.rules_by_var:
                self.unsupported(c.getId(), "compartment whose size changes")
            size = c.getSize() if c.isSetSize() else 1.0
            if not np.isfinite(size) or size <= 0:
                if c.getId() not in init_assign:
                    self.unsupported(c.getId(), f"compartment size {size} (must be > 0)")
                size = 1.0
            compartments[c.getId()] = float(size)
        return compartments

    def _parameters(self, init_assign) -> dict[str, float]:
        """Global parameters (local ones are added as reaction.param by _reactions)."""
        params: dict[str, float] = {}
        for i in range(self.model.getNumParameters()):
            p = self.model.getParameter(i)
            pid = p.getId()
            if not p.isSetValue() and pid not in init_assign and pid not in self.rules_by_var:
                self.unsupported(pid, "parameter without a value")
            params[pid] = float(p.getValue()) if p.isSetValue() else float("nan")
        return params

    def _species(self, init_assign, compartments) -> tuple[list[Species], list[float]]:
        """Species and their literal initial amounts (NaN where an assignment sets it)."""
        m = self.model
        species: list[Species] = []
        x0: list[float] = []
        for i in range(m.getNumSpecies()):
            s = m.getSpecies(i)
            sid = s.getId()
            comp = s.getCompartment()
            if s.isSetConversionFactor() or m.isSetConversionFactor():
                self.unsupported(sid, "conversion factor")
            if s.isSetInitialAmount():
                amount = float(s.getInitialAmount())
            elif s.isSetInitialConcentration():
                amount = float(s.getInitialConcentration()) * compartments.get(comp, 1.0)
            else:
                amount = float("nan")
                if sid not in init_assign and sid not in self.rules_by_var:
                    amount = 0.0  # as libroadrunner and COPASI read it; said in the notes
                    self.unset_species.append(sid)
            species.append(
                Species(sid, comp, bool(s.getHasOnlySubstanceUnits()), bool(s.getBoundaryCondition()),
                        bool(s.getConstant()), rule=sid in self.rules_by_var)
            )
            x0.append(amount)
        return species, x0

    def _initial_assignments(self, init_assign, compartments) -> list[tuple[str, Any]]:
        """Compiled initial assignments in dependency order."""
        ias = []
        for var in _dependency_order({k: names_in(v.getMath()) if v.getMath() else set()
                                      for k, v in init_assign.items()}, self, "initial assignment"):
            if var in compartments:
                self.unsupported(var, "initial assignment to a compartment size")
                continue
            ias.append((var, self.compile(init_assign[var].getMath(), var)))
        return ias

    def _raise_collected(self, species: list[Species], x0: list[float], init_assign) -> None:
        """Raise what was collected so far: parse errors, else every unsupported feature (with
        literal initial amounts that are not counts, so that one error says everything)."""
        if self.parse_errors:
            shown = "\n".join(f"  - {e}" for e in self.parse_errors)
            raise SBMLParseError(f"invalid model:\n{shown}", tuple(self.parse_errors))
        if self.reasons:
            for s, v in zip(species, x0):
                if s.id not in init_assign and not s.rule and np.isfinite(v):
                    self._check_count(s.id, v)
            raise UnsupportedSBMLError(self.reasons)

    def _with_checked_counts(self, net: ReactionNetwork, species: list[Species]) -> ReactionNetwork:
        """``net`` with rules applied to its initial state, converted counts rounded, and every
        initial value that is not a molecule count reported."""
        rows = np.array(net.initial_state, dtype=float).reshape(-1, 1)
        net.apply_rules(rows)
        if self.round_counts:
            _round_converted_counts(species, rows[:, 0])
        for s, v in zip(species, rows[:, 0]):
            if s.rule:
                continue
            self._check_count(s.id, v)
        if self.reasons:
            raise UnsupportedSBMLError(self.reasons)
        return replace(net, initial_state=readonly(np.round(rows[:, 0], 9)))

    def _notes(self) -> tuple[str, ...]:
        """One line each on how the model was read where SBML's meaning needed a choice."""
        notes = []
        if self.forward_only:
            notes.append(f"reversible in SBML, simulated forward only (net rate law never negative): "
                         f"{', '.join(self.forward_only)}")
        if self.unset_species:
            notes.append(f"no initial amount in the SBML, starting at 0 (as libroadrunner and COPASI "
                         f"do): {', '.join(self.unset_species)}")
        return tuple(notes)

    def _check_count(self, sid: str, v: float) -> None:
        if not np.isfinite(v) or v < 0:
            self.unsupported(sid, f"initial amount {v:g} is not a molecule count >= 0")
        elif v > 2.0**53:
            self.unsupported(sid, f"initial count {v:.3g} is beyond 2^53, where float64 cannot count "
                                  "single molecules: load with a smaller volume= (molecules per "
                                  "unit of substance) so that counts are in the range a cell holds")
        elif abs(v - round(v)) > 1e-9 * max(1.0, abs(v)) or (v != 0 and round(v) == 0):
            self.unsupported(
                sid,
                f"initial amount {v:g} is not a whole number of molecules (convert species in "
                "concentration units with load_sbml(..., volume=...))",
            )

    def _reactions(self, params: dict[str, float]):
        m = self.model
        reactions: list[Reaction] = []
        rates = []
        for i in range(m.getNumReactions()):
            rx = m.getReaction(i)
            rid = rx.getId()
            if rx.isSetFast() and rx.getFast():
                self.unsupported(rid, "fast reaction")
            reactants = self._refs(rx, rx.getListOfReactants(), rid)
            products = self._refs(rx, rx.getListOfProducts(), rid)
            kl = rx.getKineticLaw()
            if kl is None or kl.getMath() is None:
                self.unsupported(rid, "reaction without a kinetic law")
                continue
            local: dict[str, str] = {}
            for j in range(kl.getNumParameters()):
                lp = kl.getParameter(j)
                key = f"{rid}.{lp.getId()}"
                if not lp.isSetValue():
                    self.unsupported(key, "local parameter without a value")
                params[key] = float(lp.getValue())
                local[lp.getId()] = key
                self.known.add(key)
            math = kl.getMath()
            for v in piecewise_constants(math):
                if v < 0:
                    self.unsupported(rid, f"piecewise rate law with a negative branch ({v:g})")
            if self._time_dependent(math):
                self.unsupported(rid, "rate law that depends on time (propensities must be constant between firings)")
            if rx.getReversible():
                channels = self._net_law_channels(rid, math, local, params)
                if channels is None:
                    continue
                fwd, rev = channels
                reactions.append(Reaction(rid, reactants, products, _formula(fwd, local)))
                rates.append(self.compile(fwd, rid, local))
                if rev is None:
                    self.forward_only.append(rid)
                else:
                    reactions.append(Reaction(f"{rid}__reverse", products, reactants, _formula(rev, local)))
                    rates.append(self.compile(rev, rid, local))
                continue
            reactions.append(Reaction(rid, reactants, products, _formula(math, local)))
            rates.append(self.compile(math, rid, local))
        return reactions, rates

    def _net_law_channels(self, rid: str, math: libsbml.ASTNode, local: dict[str, str], params):
        """(forward, reverse) laws of a reversible reaction whose law is SBML's net rate (reverse
        None when the law is never negative), or None after reporting a law that does not split."""
        if self.nonnegative is None:
            self.nonnegative = _nonnegative_symbols(self.model)
        split = _split_law(self.model, math, self.nonnegative({name: params[key] for name, key in local.items()}))
        if split is None:
            self.unsupported(
                rid,
                f"reversible reaction whose net rate law '{libsbml.formulaToL3String(math)}' is "
                "neither non-negative nor a sum of signed products of non-negative factors; write "
                "it as two irreversible reactions ('=>' in Antimony) with non-negative laws",
            )
        return split

    def _time_dependent(self, node: libsbml.ASTNode, seen: frozenset = frozenset()) -> bool:
        names = names_in(node)
        if TIME in names:
            return True
        for n in names - seen:
            rule = self.rules_by_var.get(n)
            if rule is not None and rule.getMath() is not None:
                if self._time_dependent(rule.getMath(), seen | {n}):
                    return True
        return False

    def _refs(self, rx, refs, rid) -> tuple[tuple[str, int], ...]:
        out: dict[str, int] = {}
        for j in range(refs.size()):
            ref = refs.get(j)
            sid = ref.getSpecies()
            if sid not in self.species_ids:
                self.parse_errors.append(f"{rid}: refers to undefined species '{sid}'")
                continue
            if getattr(ref, "isSetStoichiometryMath", lambda: False)():  # SBML Level 2 only
                self.unsupported(rid, f"stoichiometryMath for species '{sid}'")
                continue
            if ref.isSetId() and (ref.getId() in self.rules_by_var or self.model.getInitialAssignment(ref.getId())):
                self.unsupported(rid, f"variable stoichiometry '{ref.getId()}' of species '{sid}'")
            st = ref.getStoichiometry() if ref.isSetStoichiometry() else 1.0
            if not np.isfinite(st) or st != round(st) or st < 0:
                self.unsupported(rid, f"non-integer stoichiometry {st:g} for species '{sid}'")
                continue
            out[sid] = out.get(sid, 0) + int(round(st))
        return tuple(out.items())

    def _rules(self, rules_by_var, species: list[Species], compartments) -> list[Rule]:
        index = {s.id: i for i, s in enumerate(species)}
        rules: list[Rule] = []
        order = _dependency_order(
            {v: names_in(r.getMath()) if r.getMath() else set() for v, r in rules_by_var.items()},
            self, "assignment rule",
        )
        for var in order:
            r = rules_by_var[var]
            if var in compartments:
                continue  # reported as a changing compartment
            if var in index:
                s = species[index[var]]
                factor = 1.0 if s.has_only_substance_units else compartments.get(s.compartment, 1.0)
                rules.append(Rule(var, self.compile(r.getMath(), var), index[var], factor))
            elif var in self.known:
                rules.append(Rule(var, self.compile(r.getMath(), var), None))
            else:
                self.unsupported(var, "assignment rule to something that is not a species or parameter")
        return rules

    def _events(self, species: list[Species], compartments) -> list[Event]:
        m = self.model
        index = {s.id: i for i, s in enumerate(species)}
        events: list[Event] = []
        if m.getNumEvents() > 1 and any(m.getEvent(i).isSetPriority() for i in range(m.getNumEvents())):
            self.unsupported(m.getId() or "model", "event priorities")
        for i in range(m.getNumEvents()):
            ev = m.getEvent(i)
            eid = ev.getId() or f"event{i}"
            if ev.isSetDelay():
                self.unsupported(eid, "event with a delay")
            trig = ev.getTrigger()
            if trig is None or trig.getMath() is None:
                self.parse_errors.append(f"{eid}: event without a trigger")
                continue
            tmath = trig.getMath()
            trigger_time = None
            if TIME in names_in(tmath):
                trigger_time = self._time_trigger(tmath, eid)
            assigns, param_assigns = [], []
            for j in range(ev.getNumEventAssignments()):
                ea = ev.getEventAssignment(j)
                var = ea.getVariable()
                if var not in index and self._event_sets_parameter(eid, var, ea, trigger_time):
                    param_assigns.append((var, self.compile(ea.getMath(), eid)))
                    continue
                if var not in index:
                    continue
                s = species[index[var]]
                if s.rule:
                    self.unsupported(eid, f"event assignment to '{var}', which an assignment rule defines")
                factor = 1.0 if s.has_only_substance_units else compartments.get(s.compartment, 1.0)
                assigns.append((index[var], self.compile(ea.getMath(), eid), factor))
            initial_value = bool(trig.getInitialValue()) if trig.isSetInitialValue() else True
            events.append(Event(eid, self.compile(tmath, eid), trigger_time, initial_value, tuple(assigns),
                                tuple(param_assigns)))
        return events

    def _event_sets_parameter(self, eid: str, var: str, ea, trigger_time: float | None) -> bool:
        """Whether an event assignment to a non-species is a supported parameter change (a pure
        time trigger, a value that no species sets); reports why not otherwise."""
        if var not in self.known or var in self.compartment_ids or var in self.rules_by_var:
            self.unsupported(eid, f"event assignment to '{var}' (only species and parameters can be assigned)")
        elif trigger_time is None:
            self.unsupported(eid, f"event assignment to parameter '{var}' with a state-dependent "
                                  "trigger (parameters change only at 'time >= constant' triggers)")
        elif ea.getMath() is None or names_in(ea.getMath()) & self.species_ids:
            self.unsupported(eid, f"event assignment to parameter '{var}' from species values")
        else:
            return True
        return False

    def _time_trigger(self, node: libsbml.ASTNode, eid: str) -> float | None:
        """Trigger time c of a trigger ``time >= c`` / ``time > c`` (or ``c <= time``)."""
        t = node_type(node)
        if node.getNumChildren() == 2 and t in (
            libsbml.AST_RELATIONAL_GEQ, libsbml.AST_RELATIONAL_GT,
            libsbml.AST_RELATIONAL_LEQ, libsbml.AST_RELATIONAL_LT,
        ):
            a, b = node.getChild(0), node.getChild(1)
            time_first = t in (libsbml.AST_RELATIONAL_GEQ, libsbml.AST_RELATIONAL_GT)
            tnode, cnode = (a, b) if time_first else (b, a)
            if node_type(tnode) == libsbml.AST_NAME_TIME and not (names_in(cnode) & (self.species_ids | {TIME})):
                c = self.compile(cnode, eid)
                if not callable(c):
                    return float(c)
                # a constant expression of parameters and sizes: evaluate with their values
                env = {p.getId(): p.getValue() for p in self.model.getListOfParameters()}
                env.update({k.getId(): k.getSize() for k in self.model.getListOfCompartments()})
                try:
                    return float(c(env))
                except KeyError as e:
                    self.unsupported(eid, f"event trigger time uses '{e.args[0]}', which is not a "
                                          "parameter or compartment")
                    return None
        self.unsupported(eid, "event trigger that depends on time other than 'time >= constant'")
        return None


def _round_converted_counts(species: list[Species], x0: np.ndarray) -> None:
    """Round, in place, converted amounts (initial assignments included) to whole molecules,
    warning where that moves a count by more than 1% (see to_counts)."""
    moved: list[str] = []
    for i, s in enumerate(species):
        if not s.rule and np.isfinite(x0[i]) and x0[i] >= 0:
            x0[i] = _whole_count(s.id, x0[i], moved)
    _warn_rounding(moved, 4, "initial counts round")


def _whole_count(sid: str, amount: float, moved: list[str]) -> float:
    """``amount`` molecules rounded to a whole count; noted in ``moved`` where that is off by >1%."""
    count = float(np.floor(amount + 0.5))
    if amount > 0 and abs(count - amount) > 0.01 * amount:
        moved.append(f"{sid} ({amount:.3g} -> {count:g})")
    return count


def _warn_rounding(moved: list[str], stacklevel: int, lead: str) -> None:
    if moved:
        warnings.warn(CountRoundingWarning(
            f"{lead} by more than 1%: {', '.join(moved)}; a larger volume= keeps them closer to the "
            "model's amounts"), stacklevel=stacklevel + 1)


def _formula(node: libsbml.ASTNode, local: dict[str, str]) -> str:
    """Rate law text with local parameters written as reaction.param."""
    if not local:
        return libsbml.formulaToL3String(node)
    copy = node.deepCopy()
    for name, key in local.items():
        copy.renameSIdRefs(name, key)
    return libsbml.formulaToL3String(copy)


def _dependency_order(deps: dict[str, set[str]], builder: _Builder, what: str) -> list[str]:
    """Topological order of variables defined by rules/assignments (cycles are reported)."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(v: str, stack: tuple[str, ...]):
        if state.get(v) == 2:
            return
        if state.get(v) == 1:
            builder.unsupported(v, f"circular {what}s: {' -> '.join(stack + (v,))}")
            return
        state[v] = 1
        for d in sorted(deps[v]):
            if d in deps and d != v:
                visit(d, stack + (v,))
        state[v] = 2
        order.append(v)

    for v in deps:
        visit(v, ())
    return order


# ------------------------------------------------------------------------------------------ writing
def split_reversible(sbml: str) -> str:
    """The SBML with every reversible reaction written as the irreversible channels sbml-met
    simulates: its net law's positive part forward, its negative part as ``ID__reverse``.

    Same ODE, and the stochastic process of the CME. libroadrunner's gillespie fires a reversible
    reaction at its *net* rate instead, which is no CME: ``A <-> B`` at ``kf*A - kr*B`` stops dead
    at B = kf N / (kf + kr) where the CME gives a binomial spread. Laws that do not split are left
    as they are (the loader refuses them).
    """
    doc = libsbml.readSBMLFromString(sbml)
    m = doc.getModel()
    nonneg = _nonnegative_symbols(m)
    for rx in list(m.getListOfReactions()):
        kl = rx.getKineticLaw()
        if not rx.getReversible() or kl is None or kl.getMath() is None:
            continue
        split = _split_law(m, kl.getMath(), nonneg({p.getId(): p.getValue() for p in kl.getListOfParameters()}))
        if split is None:
            continue
        rx.setReversible(False)
        kl.setMath(split[0])
        if split[1] is not None:
            _add_reverse_channel(m, rx, split[1])
    return libsbml.writeSBMLToString(doc)


def _split_law(m: libsbml.Model, math: libsbml.ASTNode, nonnegative):
    """:func:`split_net_law` of a kinetic law with the model's functions inlined."""
    inlined = math.deepCopy()
    libsbml.SBMLTransforms.replaceFD(inlined, m.getListOfFunctionDefinitions())
    return split_net_law(inlined, nonnegative)


def _add_reverse_channel(m: libsbml.Model, rx: libsbml.Reaction, law: libsbml.ASTNode) -> None:
    """Add ``rx.id__reverse``: products to reactants at ``law``, with rx's local parameters."""
    back = m.createReaction()
    back.setId(f"{rx.getId()}__reverse")
    back.setReversible(False)
    if m.getLevel() > 2:
        back.setFast(False)
    for refs, create in ((rx.getListOfProducts(), back.createReactant),
                         (rx.getListOfReactants(), back.createProduct)):
        for ref in refs:
            new = create()
            new.setSpecies(ref.getSpecies())
            new.setStoichiometry(ref.getStoichiometry() if ref.isSetStoichiometry() else 1.0)
            if m.getLevel() > 2:
                new.setConstant(True)
    for ref in rx.getListOfModifiers():
        back.createModifier().setSpecies(ref.getSpecies())
    kl = back.createKineticLaw()
    old = rx.getKineticLaw()
    for j in range(old.getNumParameters()):
        p = old.getParameter(j)
        new = kl.createLocalParameter() if m.getLevel() > 2 else kl.createParameter()
        new.setId(p.getId())
        new.setValue(p.getValue())
    kl.setMath(law)



def write_sbml(net: ReactionNetwork, pin_counts: bool = False) -> str:
    """SBML of ``net``: its source document with current parameter values and initial counts.

    ``pin_counts``: every species starts at the network's own count, initial assignments to
    species dropped (a reference simulator then starts exactly where sbml-met does, even where
    ``volume=`` rounded an assigned amount to whole molecules)."""
    doc = libsbml.readSBMLFromString(net.source_sbml)
    m = doc.getModel()
    overridden = net.overridden
    for pid, value in net.parameters.items():
        if "." in pid:
            rid, local = pid.split(".", 1)
            rx = m.getReaction(rid)
            kl = rx.getKineticLaw() if rx is not None else None
            lp = kl.getParameter(local) if kl is not None else None
            if lp is not None:
                lp.setValue(value)
            continue
        p = m.getParameter(pid)
        if p is not None and pid not in {r.variable for r in net.rules}:
            p.setValue(value)
        if pid in overridden and m.getInitialAssignment(pid) is not None:
            m.removeInitialAssignment(pid)
    for s_info, count in zip(net.species_info, net.initial_state):
        if s_info.rule:
            continue
        s = m.getSpecies(s_info.id)
        if (pin_counts or s_info.id in overridden) and m.getInitialAssignment(s_info.id) is not None:
            m.removeInitialAssignment(s_info.id)
        if m.getInitialAssignment(s_info.id) is not None:
            continue
        s.unsetInitialConcentration()
        s.setInitialAmount(float(count))
    return libsbml.writeSBMLToString(doc)


# ------------------------------------------------------------------------------- concentrations
def to_counts(source: str | os.PathLike, volume: float) -> str:
    """SBML of a model converted from concentrations (or moles) to molecule counts.

    Rule: ``volume`` is the number of molecules per unit of the model's substance amount, i.e. per
    concentration unit in a compartment of size 1. Every compartment size V becomes V * volume,
    every species starts at round(amount * volume) molecules (amount = concentration * V; a
    rounding above 1% warns), and every mass-action term k * prod(S^p) is rewritten so that its
    propensity is volume times the original rate with each S^p replaced by a falling factorial:
    for compartments of size 1 a term of order m gets k * volume^(1 - m) applied to
    n (n-1) ... (n-p+1). Any other law f (Michaelis-Menten, Hill, ...) becomes volume * f with
    compartments at their original sizes and species at their concentrations (particle-number
    scaling, as COPASI does). Parameter ids are kept, so parameter values stay in the model's
    own units.
    """
    vol = float(volume)
    if not np.isfinite(vol) or vol <= 0:
        from .errors import InvalidArgumentError

        raise InvalidArgumentError(f"volume must be a finite number > 0, got {volume!r}")
    doc = read_document(source)
    props = libsbml.ConversionProperties()
    props.addOption("expandFunctionDefinitions", True)
    doc.convert(props)
    m = doc.getModel()
    sizes = {}
    for i in range(m.getNumCompartments()):
        c = m.getCompartment(i)
        sizes[c.getId()] = float(c.getSize()) if c.isSetSize() else 1.0
    species = {m.getSpecies(i).getId(): m.getSpecies(i) for i in range(m.getNumSpecies())}
    substance_only = {sid for sid, s in species.items() if s.getHasOnlySubstanceUnits()}
    _keep_model_units(m, sizes, substance_only, vol)
    _convert_rate_laws(m, vol, sizes, species, substance_only)
    rounded: list[str] = []
    _convert_initial_amounts(m, species, sizes, vol, rounded)
    for cid, size in sizes.items():
        m.getCompartment(cid).setSize(size * vol)
    _declare_items(m)
    _warn_rounding(rounded, 3, f"volume={vol:g} gives initial counts that round")
    return libsbml.writeSBMLToString(doc)


def _keep_model_units(m: libsbml.Model, sizes: dict[str, float], substance_only: set[str], vol: float) -> None:
    """Math outside kinetic laws keeps its value in the model's own units: compartments at their
    original sizes, species in amount units at count / volume (an amount target at volume x)."""
    for owner, target in _math_outside_kinetic_laws(m):
        math = owner.getMath()
        if math is None or target in sizes:
            continue
        new = _in_model_units(math, sizes, substance_only, vol)
        if target in substance_only:
            new = libsbml.parseL3Formula(f"{vol!r} * ({libsbml.formulaToL3String(new)})")
        owner.setMath(new)


def _rule_math(m: libsbml.Model) -> dict[str, libsbml.ASTNode]:
    return {m.getRule(i).getVariable(): m.getRule(i).getMath() for i in range(m.getNumRules())
            if m.getRule(i).getVariable() and m.getRule(i).getMath() is not None}


def _state_dependent_names(m: libsbml.Model, species) -> set[str]:
    """Names whose value can change with the state (species, time, rules that depend on them)."""
    rule_math = _rule_math(m)
    dynamic = set(species) | {TIME}
    changed = True
    while changed:
        changed = False
        for var, math in rule_math.items():
            if var not in dynamic and (names_in(math) & dynamic or m.getRule(var).isRate()):
                dynamic.add(var)
                changed = True
    return dynamic


def _convert_rate_laws(m: libsbml.Model, vol: float, sizes, species, substance_only) -> None:
    """Every kinetic law rewritten as a propensity in molecule counts (see to_counts)."""
    dynamic = _state_dependent_names(m, species)
    nonneg = _nonnegative_symbols(m)
    for i in range(m.getNumReactions()):
        rx = m.getReaction(i)
        kl = rx.getKineticLaw()
        if kl is None or kl.getMath() is None:
            continue  # reported when loading
        local = {kl.getParameter(j).getId(): kl.getParameter(j).getValue() for j in range(kl.getNumParameters())}
        formula = _counts_rate_law(kl.getMath(), vol, sizes, species, substance_only,
                                   dynamic - set(local), nonneg(local))
        new = libsbml.parseL3Formula(formula)
        if new is None:  # pragma: no cover - we wrote the formula ourselves
            raise SBMLParseError(f"{rx.getId()}: could not write the converted rate law {formula!r}")
        kl.setMath(new)


def _convert_initial_amounts(m: libsbml.Model, species, sizes, vol: float, rounded: list[str]) -> None:
    """Literal initial amounts as whole molecule counts (ids moved by more than 1% into ``rounded``)."""
    rule_math = _rule_math(m)
    for sid, s in species.items():
        if m.getInitialAssignment(sid) is not None or sid in rule_math:
            continue  # concentrations from assignments scale with the new compartment size
        size = sizes.get(s.getCompartment(), 1.0)
        if s.isSetInitialAmount():
            amount = float(s.getInitialAmount())
        elif s.isSetInitialConcentration():
            amount = float(s.getInitialConcentration()) * size
        else:
            continue  # reported when loading
        count = _whole_count(sid, amount * vol, rounded)
        s.unsetInitialConcentration()
        s.setInitialAmount(count)


def _declare_items(m: libsbml.Model) -> None:
    """Declare the converted model's substance unit as ``item`` (molecules), so that reading it
    again (``net.to_sbml()``, worker processes) does not convert its counts a second time."""
    if m.getLevel() > 2 and m.isSetSubstanceUnits():
        m.setSubstanceUnits("item")
    for s in m.getListOfSpecies():
        if s.isSetSubstanceUnits():
            s.setSubstanceUnits("item")
    ud = m.getUnitDefinition("substance")
    if ud is not None:
        while ud.getNumUnits():
            ud.removeUnit(0)
        unit = ud.createUnit()
        unit.setKind(libsbml.UNIT_KIND_ITEM)
        unit.setExponent(1)
        unit.setScale(0)
        unit.setMultiplier(1.0)


def _math_outside_kinetic_laws(m: libsbml.Model) -> list[tuple[Any, str | None]]:
    """(element with math, the variable it sets or None) for rules, initial assignments, event
    triggers and event assignments."""
    out: list[tuple[Any, str | None]] = []
    out += [(m.getRule(i), m.getRule(i).getVariable() or None) for i in range(m.getNumRules())]
    out += [(ia, ia.getSymbol()) for ia in m.getListOfInitialAssignments()]
    for ev in m.getListOfEvents():
        if ev.getTrigger() is not None:
            out.append((ev.getTrigger(), None))
        out += [(ea, ea.getVariable()) for ea in ev.getListOfEventAssignments()]
    return out


def _counts_rate_law(math, vol, sizes, species, substance_only, dynamic, nonneg) -> str:
    """The count-based rate law (see to_counts): mass-action terms keep the combinatorial
    propensity, any other law is scaled by particle number, vol * f(n / vol)."""
    terms = signed_terms(math, nonneg)
    if terms is not None:
        texts = [(x.sign, _counts_law(sum_of_terms([x]), vol, sizes, species, substance_only, dynamic))
                 for x in terms]
        if all(t is not None for _, t in texts):
            pos = " + ".join(t for sign, t in texts if sign > 0) or "0"
            neg = " + ".join(t for sign, t in texts if sign < 0)
            return f"({pos}) - ({neg})" if neg else pos
    scaled = _in_model_units(math, sizes, substance_only, vol)
    return f"{vol!r} * ({libsbml.formulaToL3String(scaled)})"


def _in_model_units(math: libsbml.ASTNode, sizes: dict[str, float], substance_only: set[str],
                    vol: float) -> libsbml.ASTNode:
    """A copy of ``math`` that keeps its value in the model's own units after conversion:
    compartments at their original sizes, species in amount units at count / ``vol``."""
    new = math.deepCopy()
    _numeric_compartments(new, sizes)
    return _divide_names(new, substance_only, vol)


def _divide_names(node: libsbml.ASTNode, names: set[str], divisor: float) -> libsbml.ASTNode:
    """``node`` with every name in ``names`` replaced by (name / divisor); may return a new root."""
    if node_type(node) == libsbml.AST_NAME and node.getName() in names:
        return libsbml.parseL3Formula(f"({node.getName()} / {divisor!r})")
    for i in range(node.getNumChildren()):
        child = node.getChild(i)
        new = _divide_names(child, names, divisor)
        if new is not child:
            node.replaceChild(i, new, True)
    return node


def _nonnegative_symbols(m: libsbml.Model):
    """For one reaction's local parameter values: a callback saying whether a symbol is >= 0
    (species, compartments, parameters with values >= 0, rules whose math is non-negative)."""
    species = {m.getSpecies(i).getId() for i in range(m.getNumSpecies())}
    compartments = {m.getCompartment(i).getId() for i in range(m.getNumCompartments())}
    values = {m.getParameter(i).getId(): m.getParameter(i).getValue() for i in range(m.getNumParameters())}
    rules = {}
    for r in m.getListOfRules():
        if r.isAssignment() and r.getMath() is not None:
            rules[r.getVariable()] = r.getMath().deepCopy()
            libsbml.SBMLTransforms.replaceFD(rules[r.getVariable()], m.getListOfFunctionDefinitions())

    def for_reaction(local: dict[str, float]):
        def check(name: str, seen: frozenset = frozenset()) -> bool:
            if name in local:
                return bool(local[name] >= 0)
            if name in species or name in compartments:
                return True
            if name in rules:
                return name not in seen and is_nonnegative(rules[name], lambda n: check(n, seen | {name}))
            return bool(values.get(name, float("nan")) >= 0)

        return check

    return for_reaction


def _counts_law(node, vol, sizes, species, substance_only, dynamic) -> str | None:
    """The count-based form of one mass-action term (see to_counts), or None if not mass action."""
    powers: dict[str, int] = {}
    constants: list[tuple[libsbml.ASTNode, int]] = []

    def integer(n: libsbml.ASTNode) -> int | None:
        if n.isInteger():
            return int(n.getInteger())
        if n.isReal() and np.isfinite(n.getReal()) and n.getReal() == round(n.getReal()):
            return int(round(n.getReal()))
        return None

    def walk(n: libsbml.ASTNode, sign: int) -> bool:
        t = node_type(n)
        if t == libsbml.AST_TIMES:
            return all(walk(n.getChild(i), sign) for i in range(n.getNumChildren()))
        if t == libsbml.AST_DIVIDE and n.getNumChildren() == 2:
            return walk(n.getChild(0), sign) and walk(n.getChild(1), -sign)
        if not names_in(n) & dynamic:
            constants.append((n, sign))
            return True
        if t == libsbml.AST_NAME and n.getName() in species:
            powers[n.getName()] = powers.get(n.getName(), 0) + sign
            return True
        if t in (libsbml.AST_POWER, libsbml.AST_FUNCTION_POWER) and n.getNumChildren() == 2:
            base, expo = n.getChild(0), n.getChild(1)
            p = integer(expo)
            if node_type(base) == libsbml.AST_NAME and base.getName() in species and p is not None:
                powers[base.getName()] = powers.get(base.getName(), 0) + sign * p
                return True
        return False

    if not walk(node, 1) or any(p < 0 for p in powers.values()):
        return None
    coef = vol
    factors = []
    for n, sign in constants:
        copy = n.deepCopy()
        _numeric_compartments(copy, sizes)
        text = libsbml.formulaToL3String(copy)
        try:
            value = float(text)
        except ValueError:
            factors.append(f"({text})" if sign > 0 else f"1/({text})")
            continue
        coef = coef * value if sign > 0 else coef / value
    for sid, p in sorted(powers.items()):
        comp = species[sid].getCompartment()
        for j in range(p):
            if sid in substance_only:
                coef /= vol  # the symbol is now a count, was count / volume
                factors.append(sid if j == 0 else f"({sid} - {j})")
            else:
                factors.append(sid if j == 0 else f"({sid} - {j}/{comp})")
    return " * ".join([f"{coef:.17g}"] + factors)


def _numeric_compartments(node: libsbml.ASTNode, sizes: dict[str, float]) -> None:
    """Replace, in place, compartment names by their (original) sizes."""
    if node_type(node) == libsbml.AST_NAME and node.getName() in sizes:
        node.setValue(float(sizes[node.getName()]))
        return
    for i in range(node.getNumChildren()):
        _numeric_compartments(node.getChild(i), sizes)
