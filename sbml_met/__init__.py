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
    UnsupportedSBMLError,
)
from .biomodels import load_biomodel
from . import models, plot  # modules: sbml_met.models.load(...), sbml_met.plot.marginals(...)
from . import analytic  # exact first-order answers: sbml_met.analytic.monomolecular(...), .first_order_marginals(...)
from .fsp import FSPSolver, solve_fsp
from . import infer  # parameter inference: sbml_met.infer.posterior(...), .fit_trajectory(...)
from .infer import InferenceResult, TrajectoryFit, fit_trajectory, posterior
from .metrics import compare
from .network import ReactionNetwork
from .results import Distribution, SSAResult
from .sbml import load_antimony, load_sbml
from .ssa import simulate
from .sweep import sweep
from .validate import ValidationReport, validate

__version__ = "0.1.0"


def __getattr__(name: str):
    """``sbml_met.met`` (Master Equation Transformers: train, load, pretrained) is imported on first
    use, so that ``import sbml_met`` does not load PyTorch."""
    if name == "met":
        import importlib

        module = importlib.import_module(".met", __name__)
        globals()["met"] = module
        return module
    raise AttributeError(f"module 'sbml_met' has no attribute {name!r}")
