"""``user_stacklevel`` for the MET modules (it lives in :mod:`sbml_met._warn`, free of PyTorch)."""

from .._warn import user_stacklevel

__all__ = ["user_stacklevel"]
