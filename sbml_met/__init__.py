"""sbml-met: exact stochastic simulation, chemical master equation solutions and Master Equation
Transformers for SBML models."""

from .errors import (
    CheckpointMismatchError,
    CountOverflowError,
    ExtrapolationWarning,
    InvalidArgumentError,
    NegativeCountError,
    PropensityError,
    SBMLParseError,
    SbmlMetError,
    StateSpaceTooLargeError,
    TrajectoryError,
    UnknownIdError,
    UnsupportedByEngineError,
    UnsupportedSBMLError,
    VocabularyOverflowWarning,
)
__version__ = "0.1.0"


# Everything but the errors is imported on first use (PEP 562), so that ``import sbml_met`` and
# ``sbml-met --help`` stay fast and load neither libsbml, pandas, scipy nor PyTorch until needed.
_LAZY_MODULES = ("met", "analytic", "infer", "models", "plot")  # sbml_met.models.load(...), ...
_LAZY_NAMES = {
    "load_biomodel": "biomodels", "FSPSolver": "fsp", "solve_fsp": "fsp", "compare": "metrics",
    "ReactionNetwork": "network", "Distribution": "results", "SSAResult": "results",
    "load_antimony": "sbml", "load_sbml": "sbml", "simulate": "ssa", "check_support": "support",
    "sweep": "sweeps", "ValidationReport": "validation", "validate": "validation",
    **{name: "infer" for name in ("InferenceResult", "TrajectoryFit", "fit_trajectory", "posterior")},
}


def __getattr__(name: str):
    import importlib
    import importlib.util

    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    elif name in _LAZY_MODULES or (not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}")):
        value = importlib.import_module(f".{name}", __name__)  # any submodule: sbml_met.fsp, .biomodels, ...
    else:
        raise AttributeError(f"module 'sbml_met' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_MODULES) | set(_LAZY_NAMES))
