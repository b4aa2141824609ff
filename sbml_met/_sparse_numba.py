"""Compiled CSR products for the CME integrator's fixed-step loops (numba, cached on disk).

``M @ v`` in scipy costs ~3x its kernel in Python overhead at a few hundred states, and the loop
runs thousands of steps; these kernels run the whole loop compiled, with public numba only (the
row sums in the order of scipy's csr_matvec, so the numbers are the same).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _product(indptr, indices, data, x, y):
    for i in range(indptr.size - 1):
        s = 0.0
        for jj in range(indptr[i], indptr[i + 1]):
            s += data[jj] * x[indices[jj]]
        y[i] = s


@numba.njit(cache=True)
def repeat_matvec(indptr, indices, data, v, steps):
    """M^steps v for M in CSR arrays."""
    x, y = v.copy(), np.empty(indptr.size - 1)
    for _ in range(steps):
        _product(indptr, indices, data, x, y)
        x, y = y, x
    return x


@numba.njit(cache=True)
def repeat_taylor(indptr, indices, data, v, steps, degree):
    """``steps`` Taylor steps of degree ``degree`` matrix-free, Horner's form
    v + hA(v + hA/2 (v + hA/3 (... + hA/degree v)))."""
    n = indptr.size - 1
    v, w, y = v.copy(), np.empty(n), np.empty(n)
    for _ in range(steps):
        w[:] = v
        for q in range(degree, 0, -1):
            _product(indptr, indices, data, w, y)
            for i in range(n):
                w[i] = y[i] / q + v[i]
        v, w = w, v
    return v
