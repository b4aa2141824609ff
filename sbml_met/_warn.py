"""``stacklevel`` for warnings that should point at the user's line, however deep in sbml_met (or
in torch's ``no_grad`` wrappers) they are raised."""

from __future__ import annotations

import os
import sys

_SKIP = (os.path.dirname(os.path.abspath(__file__)) + os.sep,)  # the sbml_met package


def _skipped(filename: str) -> bool:
    if filename.startswith(_SKIP):
        return True
    torch_dir = os.sep + "torch" + os.sep  # torch.no_grad()'s decorator frames
    return torch_dir in filename or filename.endswith(os.sep + "contextlib.py")


def user_stacklevel() -> int:
    """The ``stacklevel`` for ``warnings.warn`` in the caller that names the first frame outside
    the sbml_met package (and outside torch's decorators): the user's call."""
    frame = sys._getframe(1)  # the function that calls warnings.warn: stacklevel 1
    level = 1
    while frame is not None and _skipped(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    return level if frame is not None else 1
