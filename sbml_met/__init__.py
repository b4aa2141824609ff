"""sbml-met: exact stochastic simulation, chemical master equation solutions and Master Equation
Transformers for SBML models."""

from .errors import (
    CheckpointMismatchError,
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
from .biomodels import load_biomodel
from . import models, plot  # modules: sbml_met.models.load(...), sbml_met.plot.marginals(...)
from .fsp import FSPSolver, solve_fsp
from .metrics import compare
from .network import ReactionNetwork
from .results import Distribution, SSAResult
from .sbml import load_antimony, load_sbml
from .ssa import simulate
from .support import check_support
from .sweep import sweep
from .validate import ValidationReport, validate

__version__ = "0.1.0"


# imported on first use, so that ``import sbml_met`` (and ``sbml-met --help``) stays fast and
# does not load PyTorch (met) or scipy.stats and scipy.integrate (analytic, infer)
_LAZY_MODULES = ("met", "analytic", "infer")  # sbml_met.met.train(...), .analytic.monomolecular(...)
_LAZY_NAMES = {name: "infer" for name in ("InferenceResult", "TrajectoryFit", "fit_trajectory", "posterior")}


def __getattr__(name: str):
    import importlib

    if name in _LAZY_MODULES:
        value = importlib.import_module(f".{name}", __name__)
    elif name in _LAZY_NAMES:
        value = getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    else:
        raise AttributeError(f"module 'sbml_met' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_MODULES) | set(_LAZY_NAMES))
