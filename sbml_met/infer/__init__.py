"""Parameter inference for SBML networks, one module per feature:

- :mod:`~sbml_met.infer.paths`: :func:`fit_trajectory`, maximum path likelihood of one (or several)
  exactly observed jump trajectories, with standard errors (:class:`TrajectoryFit`).
- :mod:`~sbml_met.infer.snapshots`: :func:`posterior`, Bayesian posterior of rate parameters from
  snapshot counts of many cells under the exact CME (FSP) or a trained MET (:class:`InferenceResult`).
- :mod:`~sbml_met.infer.tables`: the table reading both share.
"""

from ..errors import TrajectoryError
from .paths import TrajectoryFit, fit_trajectory
from .snapshots import InferenceResult, posterior

__all__ = ["TrajectoryFit", "TrajectoryError", "InferenceResult", "fit_trajectory", "posterior"]
