"""Rules and events: assignment rules, initial assignments and events compiled for the network,
and the features among them that exact simulation cannot honour (reported, not raised)."""

from __future__ import annotations

from typing import Any

import libsbml

from .._math import TIME, names_in, node_type
from ..network import Event, RateRule, Rule, Species


class _RulesAndEvents:
    """The part of :class:`~sbml_met.sbml.build._Builder` that reads rules, initial assignments
    and events (it relies on the builder's ``model``, ``compile``, ``unsupported`` and id sets)."""

    def _assignment_rules(self) -> dict[str, libsbml.Rule]:
        """Assignment rules by variable; rate rules go to ``self.rate_rules_by_var`` (the
        time-varying engine integrates them); algebraic rules are reported."""
        m = self.model
        rules_by_var = {}
        self.rate_rules_by_var: dict[str, libsbml.Rule] = {}
        for i in range(m.getNumRules()):
            r = m.getRule(i)
            if r.isAlgebraic():
                formula = libsbml.formulaToL3String(r.getMath()) if r.getMath() else "?"
                self.unsupported(r.getId() or r.getMetaId() or f"algebraicRule[{i}]",
                                 f"algebraic rule 0 = {formula}")
            elif r.isRate():
                self.rate_rules_by_var[r.getVariable()] = r
            else:
                rules_by_var[r.getVariable()] = r
        return rules_by_var

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

    def _time_dependent(self, node: libsbml.ASTNode, seen: frozenset = frozenset()) -> bool:
        """Whether ``node`` reads time or a rate-rule variable, directly or through assignment
        rules: then its value changes between firings."""
        names = names_in(node)
        if TIME in names or names & set(self.rate_rules_by_var):
            return True
        for n in names - seen:
            rule = self.rules_by_var.get(n)
            if rule is not None and rule.getMath() is not None:
                if self._time_dependent(rule.getMath(), seen | {n}):
                    return True
        return False

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

    def _rate_rules(self, species: list[Species], compartments) -> list[RateRule]:
        """Compiled rate rules on parameters, compartment sizes and species (as amount rates)."""
        index = {s.id: i for i, s in enumerate(species)}
        out: list[RateRule] = []
        for var, r in self.rate_rules_by_var.items():
            math = self.compile(r.getMath(), var)
            if var in index:
                s = species[index[var]]
                if not s.has_only_substance_units and s.compartment in self.rate_rules_by_var:
                    self.unsupported(var, f"rate rule on a concentration in compartment "
                                          f"'{s.compartment}', whose size a rate rule changes")
                factor = 1.0 if s.has_only_substance_units else compartments.get(s.compartment, 1.0)
                out.append(RateRule(var, math, index[var], factor, _display(r)))
            elif var in self.known:
                out.append(RateRule(var, math, None, formula=_display(r)))
            else:
                self.unsupported(var, "rate rule on something that is not a species, parameter or compartment")
        return out

    def _events(self, species: list[Species], compartments) -> list[Event]:
        m = self.model
        index = {s.id: i for i, s in enumerate(species)}
        events: list[Event] = []
        if m.getNumEvents() > 1 and any(m.getEvent(i).isSetPriority() for i in range(m.getNumEvents())):
            self.unsupported(m.getId() or "model", "event priorities")
        for i in range(m.getNumEvents()):
            ev = m.getEvent(i)
            eid = ev.getId() or f"event{i}"
            trig = ev.getTrigger()
            delay = self._event_delay(ev, eid)
            if trig is None or trig.getMath() is None:
                self.parse_errors.append(f"{eid}: event without a trigger")
                continue
            tmath = trig.getMath()
            trigger_time = self._time_trigger(tmath, eid) if TIME in names_in(tmath) else None
            needs_pdmp = TIME in names_in(tmath) and trigger_time is None  # time in a state trigger
            assigns, param_assigns = [], []
            for j in range(ev.getNumEventAssignments()):
                ea = ev.getEventAssignment(j)
                var = ea.getVariable()
                if var not in index and self._event_sets_parameter(eid, var):
                    param_assigns.append((var, self.compile(ea.getMath(), eid)))
                    # one value for all trajectories only at a time trigger, from no species
                    needs_pdmp |= trigger_time is None or bool(names_in(ea.getMath()) & self.species_ids)
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
                                tuple(param_assigns), delay=delay,
                                use_trigger_values=bool(ev.getUseValuesFromTriggerTime()), needs_pdmp=needs_pdmp))
        return events

    def _event_delay(self, ev: libsbml.Event, eid: str):
        """The compiled delay of ``ev`` (None: none). A trigger that is not persistent could
        cancel a scheduled execution, which the engines do not follow: reported."""
        if not ev.isSetDelay() or ev.getDelay().getMath() is None:
            return None
        trig = ev.getTrigger()
        if trig is not None and trig.isSetPersistent() and not trig.getPersistent():
            self.unsupported(eid, "event with a delay and a trigger that is not persistent")
        return self.compile(ev.getDelay().getMath(), eid)

    def _event_sets_parameter(self, eid: str, var: str) -> bool:
        """Whether an event assignment to a non-species sets a parameter (reported otherwise)."""
        if var not in self.known or var in self.compartment_ids or var in self.rules_by_var:
            self.unsupported(eid, f"event assignment to '{var}' (only species and parameters can be assigned)")
            return False
        return True

    def _time_trigger(self, node: libsbml.ASTNode, eid: str) -> float | None:
        """Trigger time c of a trigger ``time >= c`` / ``time > c`` (or ``c <= time``), c fixed;
        None for any other trigger that reads time (a state trigger the time-varying engines
        locate by bisection)."""
        t = node_type(node)
        if node.getNumChildren() == 2 and t in (
            libsbml.AST_RELATIONAL_GEQ, libsbml.AST_RELATIONAL_GT,
            libsbml.AST_RELATIONAL_LEQ, libsbml.AST_RELATIONAL_LT,
        ):
            a, b = node.getChild(0), node.getChild(1)
            time_first = t in (libsbml.AST_RELATIONAL_GEQ, libsbml.AST_RELATIONAL_GT)
            tnode, cnode = (a, b) if time_first else (b, a)
            varying = self.species_ids | {TIME} | set(self.rate_rules_by_var) | set(self.rules_by_var)
            if node_type(tnode) == libsbml.AST_NAME_TIME and not (names_in(cnode) & varying):
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
        return None


def _display(rule: libsbml.Rule) -> str:
    """A rule's math as L3 text, for printing a network (never parsed back)."""
    return libsbml.formulaToL3String(rule.getMath()) if rule.getMath() is not None else "?"


def _dependency_order(deps: dict[str, set[str]], builder: "_RulesAndEvents", what: str) -> list[str]:
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
