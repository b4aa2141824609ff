"""Typed errors and warnings of sbml-met.

Every failure a user can cause ends in a subclass of :class:`SbmlMetError` whose message names the
SBML element and the problem, so that callers can catch one base class and users read one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass


class SbmlMetError(Exception):
    """Base class of every error raised by sbml-met on bad input or an impossible request.

    Every one pickles with its message and attributes (worker processes, Dask), whatever its
    ``__init__`` takes: an error raised in a worker reaches the caller as the same typed error."""

    def __reduce__(self):
        return (_rebuild_error, (type(self), self.args, dict(self.__dict__)))


def _rebuild_error(cls: type, args: tuple, state: dict) -> SbmlMetError:
    """An error of class ``cls`` with ``args`` and attributes ``state``, without calling its
    ``__init__`` (whose arguments differ from the message it stores)."""
    err = cls.__new__(cls)
    BaseException.__init__(err, *args)
    err.__dict__.update(state)
    return err


class SBMLParseError(SbmlMetError):
    """The SBML (or Antimony) could not be read or is invalid; carries libsbml's messages."""

    def __init__(self, message: str, messages: tuple[str, ...] = ()):
        super().__init__(message)
        self.messages = tuple(messages)


@dataclass(frozen=True)
class Unsupported:
    """One reason a model cannot be simulated exactly: the SBML element id and the feature."""

    element_id: str
    feature: str

    def __str__(self) -> str:
        return f"{self.element_id}: {self.feature}"


class UnsupportedSBMLError(SbmlMetError):
    """The model uses features the exact stochastic engines cannot honour (all reasons listed)."""

    def __init__(self, reasons: list[Unsupported] | tuple[Unsupported, ...], message: str | None = None):
        self.reasons = tuple(reasons)
        if message is None:
            lines = "\n".join(f"  - {r}" for r in self.reasons)
            noun = "feature" if len(self.reasons) == 1 else "features"
            message = (f"the model uses {len(self.reasons)} {noun} that exact stochastic simulation "
                       f"cannot honour:\n{lines}")
        super().__init__(message)

    @property
    def element_id(self) -> str:
        """The id of the first offending element."""
        return self.reasons[0].element_id

    @property
    def feature(self) -> str:
        """The first unsupported feature."""
        return self.reasons[0].feature


class UnsupportedByEngineError(UnsupportedSBMLError):
    """A network an engine refuses: every element (SBML id) using a feature outside the engine's
    declared feature set (:mod:`sbml_met.support`), each with the engines that do support it."""

    def __init__(self, engine: str, reasons: list[Unsupported] | tuple[Unsupported, ...],
                 advice: list[str] | tuple[str, ...], model: str = "model"):
        self.engine, self.model = engine, model
        self.advice = tuple(advice)
        lines = "\n".join(f"  - {r} ({a})" for r, a in zip(reasons, self.advice))
        noun = "element uses" if len(reasons) == 1 else "elements use"
        super().__init__(reasons, f"engine '{engine}' cannot run model '{model}': {len(reasons)} {noun} "
                                  f"features it does not support:\n{lines}")


class PropensityError(SbmlMetError):
    """A propensity evaluated negative, infinite or NaN during a run."""

    def __init__(self, reaction_id: str, value: float, state: dict, time: float):
        self.reaction_id = reaction_id
        self.value = value
        self.state = dict(state)
        self.time = time
        shown = ", ".join(f"{k}={v:g}" for k, v in self.state.items())
        super().__init__(
            f"reaction '{reaction_id}' has propensity {value!r} at time {time:g} in state "
            f"({shown}); a propensity must be finite and >= 0"
        )


class NegativeCountError(SbmlMetError):
    """A reaction fired with too few molecules of a reactant: its rate law does not vanish when the
    reactant is gone, so the count would go below zero."""

    def __init__(self, reaction_id: str, species_id: str, count: float, time: float | None):
        self.reaction_id = reaction_id
        self.species_id = species_id
        self.count = count
        self.time = time
        where = "in a reachable state" if time is None else f"at time {time:g}"
        if count >= 1:  # a law positive with too few molecules: a deterministic law for 2+ copies
            why = (f"it takes more than {count:g} '{species_id}' but its rate law is not 0 there. A stochastic "
                   f"law must vanish when fewer molecules are left than the reaction takes: for "
                   f"'{species_id} + {species_id} -> ...' write k*{species_id}*({species_id} - 1) (the "
                   f"stochastic mass-action form, same large-count limit as k*{species_id}*{species_id}, "
                   f"which pairs a molecule with itself)")
        else:
            why = (f"its rate law does not vanish when '{species_id}' is gone. Make the law vanish then "
                   f"(a factor '{species_id}' as in mass action)")
        super().__init__(
            f"reaction '{reaction_id}' fires {where} with {count:g} molecules of '{species_id}' left, which "
            f"would make that count negative: {why}; or, if '{species_id}' is a constant pool, mark it "
            f"as a boundary species (boundaryCondition=\"true\"; '${species_id}' in Antimony)"
        )


class CountOverflowError(SbmlMetError):
    """A run took a molecule count beyond 2^53, where float64 no longer counts single molecules."""

    def __init__(self, species_id: str, count: float, time: float):
        self.species_id, self.count, self.time = species_id, count, time
        super().__init__(
            f"species '{species_id}' reached {count:.4g} molecules at time {time:g}, beyond 2^53 "
            "(9.0e15), where float64 cannot count single molecules: the counts returned would be "
            "noise. Load the model with a smaller volume= (the CLI flag --volume), or check the "
            "model's units (an amount in mole is 6.0e23 molecules)")


class UnknownIdError(SbmlMetError, KeyError):
    """A species, parameter or reaction id that the network does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidArgumentError(SbmlMetError, ValueError):
    """An argument outside what a function accepts (bad time grid, unknown method name, ...)."""


class StateSpaceTooLargeError(SbmlMetError):
    """Finite state projection would need more states than allowed."""


class CheckpointMismatchError(SbmlMetError):
    """A MET checkpoint was trained on a different network than the one given."""


class BioModelsError(SbmlMetError):
    """A BioModels entry could not be fetched (unknown id, HTTP error, non-SBML payload)."""


class CountRoundingWarning(UserWarning):
    """Converting amounts to molecule counts rounded some initial counts by more than 1%."""


class RuleValueWarning(UserWarning):
    """A species defined by an assignment rule (the model's algebra, not a counted molecule)
    took a negative value in a run."""


class VocabularyOverflowWarning(UserWarning):
    """A state count lies outside a MET's count vocabulary (probability taken as 0)."""


class ExtrapolationWarning(UserWarning):
    """A MET prompt lies outside the training box: the answer is an extrapolation."""


class TrajectoryError(SbmlMetError, ValueError):
    """A trajectory whose state changes cannot be attributed to the network's reactions."""
