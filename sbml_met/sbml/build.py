"""Building the network: one validated libsbml document turned into a ReactionNetwork, every
problem collected and reported at once in one :class:`~sbml_met.errors.UnsupportedSBMLError`."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Sequence

import libsbml
import numpy as np

from .._math import AVOGADRO, MathCompileError, compile_math, piecewise_constants
from ..errors import SBMLParseError, SbmlMetError, Unsupported, UnsupportedSBMLError
from ..network import Reaction, ReactionNetwork, Species, evaluate_initial_assignments, readonly
from .continuous import make_continuous
from .convert import to_counts
from .reading import antimony_to_sbml, read_document
from .reversible import reversible_channels
from .rules import _RulesAndEvents
from .units import (_default_moles_as_counts, _round_converted_counts, molecules_per_substance_unit,
                    species_molecule_factors)

UNSUPPORTED_PACKAGES = ("comp", "distrib", "arrays", "multi", "spatial", "qual", "dyn")


def load_antimony(text: str | os.PathLike, volume: float | None = None,
                  continuous: Sequence[str] = ()) -> ReactionNetwork:
    """Build a ReactionNetwork from Antimony text or a ``.ant`` path (converted to SBML first);
    ``volume`` and ``continuous`` as in :func:`load_sbml`."""
    if isinstance(text, os.PathLike) or (len(text) < 4096 and "\n" not in text and Path(text).is_file()):
        text = Path(text).read_text(encoding="utf-8", errors="replace")
    return load_sbml(antimony_to_sbml(text), volume=volume, continuous=continuous)


def load_sbml(source: str | os.PathLike, volume: float | None = None,
              continuous: Sequence[str] = ()) -> ReactionNetwork:
    """Build a ReactionNetwork from an SBML file path or SBML string (Antimony text or a ``.ant``
    path is converted first, as :func:`load_antimony` does).

    Raises SBMLParseError for unreadable or invalid SBML and UnsupportedSBMLError (listing every
    reason) for features that exact stochastic simulation cannot honour. ``volume`` converts a
    mass-action model in concentration units to molecule counts first (see :func:`to_counts`).
    Amounts in a declared substance unit (mole, mmol, ...) are converted by it, each species by
    its own where they differ (as COPASI does).

    ``continuous``: species ids to integrate as an ODE instead of counting (abundant species whose
    noise does not matter): the reactions that change only them become their rate of change, and
    the network is simulated exactly as a piecewise-deterministic process (:mod:`sbml_met.pdmp`);
    see :mod:`sbml_met.sbml.continuous`.
    """
    if isinstance(continuous, str):
        continuous = [c.strip() for c in continuous.split(",") if c.strip()]
    note, doc, factors = None, None, None
    if volume is None:
        doc = read_document(source)
        volume, factors, note = _substance_conversion(doc)
    if volume is not None:
        try:
            doc = read_document(to_counts(source, volume=volume, species_factors=factors))
        except UnsupportedSBMLError as e:
            raise UnsupportedSBMLError(e.reasons + _other_reasons(read_document(source))) from None
    doc = doc if doc is not None else read_document(source)
    notes = (note,) if note else ()
    if continuous:
        doc = make_continuous(doc, continuous)
        notes += (f"continuous (an ODE, at the deterministic rate of the reactions that change only them): "
                  f"{', '.join(dict.fromkeys(continuous))}",)
    net = _Builder(doc, round_counts=volume is not None).build()
    return replace(net, notes=net.notes + notes) if notes else net


def _substance_conversion(doc: libsbml.SBMLDocument) -> tuple[float | None, dict[str, float] | None, str | None]:
    """(molecules per unit of the model's substance, per-species factors where species differ,
    a note) for a model read without ``volume=``; (None, None, None) where amounts are counts."""
    factors = {sid: f or 1.0 for sid, f in species_molecule_factors(doc).items()}
    if len(set(factors.values())) > 1:
        common = Counter(factors.values()).most_common(1)[0][0]
        shown = ", ".join(f"{sid} x {f:.6g}" for sid, f in factors.items() if f != common)
        return common, factors, (f"amounts converted to molecules by each species' own substance unit: "
                                 f"x {common:.6g}, and {shown}")
    volume = molecules_per_substance_unit(doc)
    if volume is not None:
        return volume, None, f"amounts in the model's substance unit, converted to molecules: x {volume:.6g}"
    if _default_moles_as_counts(doc):
        return AVOGADRO, None, ("amounts in mole (SBML Level 2's default substance unit: they are whole "
                                "numbers of molecules only so), converted to molecules: x 6.02214e+23")
    return None, None, None


def _other_reasons(doc: libsbml.SBMLDocument) -> tuple[Unsupported, ...]:
    """Every reason the unconverted model is refused for, those about amounts that are not
    molecule counts left out (converting units decides those): a refusal lists all at once."""
    try:
        _Builder(doc).build()
    except UnsupportedSBMLError as e:
        return tuple(r for r in e.reasons if "molecule" not in r.feature)
    except SbmlMetError:
        pass
    return ()


class _Builder(_RulesAndEvents):
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
        self.time_varying_ids: set[str] = set()  # reactions whose law reads time or a rate-rule variable
        self.net_rate: list[str] = []  # reversible reactions simulated as one channel at the net rate

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
        reactions = self._mark_time_varying(reactions)
        rules = self._rules(self.rules_by_var, species, compartments)  # in dependency order
        rate_rules = self._rate_rules(species, compartments)
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
            rate_rules=tuple(rate_rules),
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

    def _compartments(self, init_assign) -> dict[str, float]:
        m = self.model
        compartments: dict[str, float] = {}
        for i in range(m.getNumCompartments()):
            c = m.getCompartment(i)
            if (not c.getConstant() and c.getId() not in self.rate_rules_by_var) or c.getId() in self.rules_by_var:
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
                        bool(s.getConstant()), rule=sid in self.rules_by_var,
                        continuous=sid in self.rate_rules_by_var)
            )
            x0.append(amount)
        return species, x0

    def _raise_collected(self, species: list[Species], x0: list[float], init_assign) -> None:
        """Raise what was collected so far: parse errors, else every unsupported feature (with
        literal initial amounts that are not counts, so that one error says everything)."""
        if self.parse_errors:
            shown = "\n".join(f"  - {e}" for e in self.parse_errors)
            raise SBMLParseError(f"invalid model:\n{shown}", tuple(self.parse_errors))
        if self.reasons:
            for s, v in zip(species, x0):
                if s.id not in init_assign and not (s.rule or s.continuous) and np.isfinite(v):
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
            if s.rule or s.continuous:
                continue
            self._check_count(s.id, v)
        if self.reasons:
            raise UnsupportedSBMLError(self.reasons)
        return replace(net, initial_state=readonly(np.round(rows[:, 0], 9)))

    def _notes(self) -> tuple[str, ...]:
        """One line each on how the model was read where SBML's meaning needed a choice."""
        notes = []
        if self.forward_only:
            notes.append(f"reversible in SBML, simulated forward only (net rate law never negative on whole counts): "
                         f"{', '.join(self.forward_only)}")
        if self.net_rate:
            notes.append(f"reversible in SBML, one channel at the net rate law (forward where it is "
                         f"positive, reverse where negative; not a mass-action split): "
                         f"{', '.join(self.net_rate)}")
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
                                  "unit of substance; the CLI flag --volume) so that counts are in "
                                  "the range a cell holds")
        elif abs(v - round(v)) > 1e-9 * max(1.0, abs(v)) or (v != 0 and round(v) == 0):
            self.unsupported(
                sid,
                f"initial amount {v:g} is not a whole number of molecules (convert species in "
                "concentration units with load_sbml(..., volume=...), or the CLI flag --volume)",
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
                self.time_varying_ids.add(rid)
            if rx.getReversible():
                self._reversible(rx, reactants, products, local, params, reactions, rates)
                continue
            reactions.append(Reaction(rid, reactants, products, _formula(math, local),
                                      math=_renamed(math, local)))
            rates.append(self.compile(math, rid, local))
        return reactions, rates

    def _mark_time_varying(self, reactions: list[Reaction]) -> list[Reaction]:
        """Flag the channels of reactions whose law reads time or a rate-rule variable (their
        propensities change between firings: the time-varying engine runs the network)."""
        varying = self.time_varying_ids
        return [replace(r, time_varying=True) if r.id in varying or r.id.split("__")[0] in varying else r
                for r in reactions]

    def _reversible(self, rx, reactants, products, local: dict[str, str], params, reactions, rates) -> None:
        """Append the channels of a reversible reaction (see :mod:`sbml_met.sbml.reversible`)."""
        rid = rx.getId()
        ch = reversible_channels(self.model, rx, {name: params[key] for name, key in local.items()})
        as_written = _formula(rx.getKineticLaw().getMath(), local) if ch.net else None
        reactions.append(Reaction(rid, reactants, products, _formula(ch.forward, local),
                                  math=_renamed(ch.forward, local), net_law=as_written))
        rates.append(self.compile(ch.forward, rid, local))
        if ch.reverse is None:
            self.forward_only.append(rid)
            return
        if ch.net:
            self.net_rate.append(rid)
        reactions.append(Reaction(f"{rid}__reverse", products, reactants, _formula(ch.reverse, local),
                                  math=_renamed(ch.reverse, local), net_law=as_written))
        rates.append(self.compile(ch.reverse, rid, local))

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


def _renamed(node: libsbml.ASTNode, local: dict[str, str]) -> libsbml.ASTNode:
    """A copy of a rate law with local parameters renamed reaction.param (the network's keys)."""
    copy = node.deepCopy()
    for name, key in local.items():
        copy.renameSIdRefs(name, key)
    return copy


def _formula(node: libsbml.ASTNode, local: dict[str, str]) -> str:
    """Rate law text with local parameters written as reaction.param."""
    return libsbml.formulaToL3String(_renamed(node, local))
