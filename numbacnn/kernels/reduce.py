"""Sums: the bias gradients of convolution (row sums) and dense layers (column sums).

A long row is summed as a strided span so each device can split it its own way: the
CPU sums a whole row in one call (step 1), the GPU gives each of a block's threads
every T-th element (neighbouring threads read neighbouring addresses) and adds the T
partial sums in shared memory (``backends/cuda.py``).
"""

import numpy as np
from numba import njit


@njit(inline="always")
def row_sum_span(r, lo, hi, step, m):
    """Σ m[r, j] for j = lo, lo + step, … < hi, of a 2-D m (conv bias gradient: m is
    K × N·P)."""
    acc = np.float32(0.0)
    row = m[r]
    for j in range(lo, hi, step):
        acc += row[np.uint64(j)]
    return acc


@njit(inline="always")
def col_sum_span(c, lo, hi, step, m):
    """Σ m[i, c] for i = lo, lo + step, … < hi, of a 2-D m (dense bias gradient: m is
    N × units)."""
    acc = np.float32(0.0)
    for i in range(lo, hi, step):
        acc += m[i, c]
    return acc
