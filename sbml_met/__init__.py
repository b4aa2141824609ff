"""sbml-met: exact stochastic simulation, chemical master equation solutions and Master Equation
Transformers for SBML models."""

from .errors import (
    CheckpointMismatchError,
    ExtrapolationWarning,
    InvalidArgumentError,
    PropensityError,
    SBMLParseError,
    SbmlMetError,
    StateSpaceTooLargeError,
    UnknownIdError,
    UnsupportedSBMLError,
)
from .biomodels import load_biomodel
from . import models, plot  # modules: sbml_met.models.load(...), sbml_met.plot.marginals(...)
from . import met  # Master Equation Transformers: sbml_met.met.train(...), .load(...), .pretrained(...)
from .fsp import FSPSolver, solve_fsp
from .metrics import compare
from .network import ReactionNetwork
from .results import Distribution, SSAResult
from .sbml import load_antimony, load_sbml
from .ssa import simulate
from .validate import ValidationReport, validate

__version__ = "0.1.0"
