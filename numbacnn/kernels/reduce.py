"""Row and column sums, the bias gradients of convolution and dense layers."""

import numpy as np
from numba import njit


@njit(inline="always")
def row_sum_at(r, out, m):
    """out[r] = Σ_j m[r, j] for a 2-D m (conv bias gradient: m is K × N·P)."""
    acc = np.float32(0.0)
    for j in range(m.shape[1]):
        acc += m[r, j]
    out[r] = acc


@njit(inline="always")
def col_sum_at(c, out, m):
    """out[c] = Σ_i m[i, c] for a 2-D m (dense bias gradient: m is N × units)."""
    acc = np.float32(0.0)
    for i in range(m.shape[0]):
        acc += m[i, c]
    out[c] = acc
