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
from .network import ReactionNetwork
from .results import Distribution, SSAResult
from .sbml import load_antimony, load_sbml
from .ssa import simulate

__version__ = "0.1.0"
