"""The one rule for a count vocabulary: how many counts (0..V-1) per species a MET or VAN models."""

from __future__ import annotations

import numpy as np


def count_vocabulary(max_counts, dynamic=None, factor: float = 1.0, sigmas: float = 0.0,
                     pad: float = 0.0) -> np.ndarray:
    """Vocabulary sizes V per species (counts 0..V-1) from the largest counts an exact simulation
    reached: room for ``factor`` x that maximum plus ``sigmas`` Poisson standard deviations plus
    ``pad``. A species that never exceeds 1 (a gene's on/off state) or that no reaction changes
    (``dynamic`` False) keeps exactly 0..max."""
    mx = np.asarray(max_counts, dtype=float)
    grow = mx > 1 if dynamic is None else (mx > 1) & np.asarray(dynamic, dtype=bool)
    room = np.ceil(factor * mx + sigmas * np.sqrt(mx + 1) + pad)
    return np.where(grow, room + 1, mx + 1).astype(np.int64)
