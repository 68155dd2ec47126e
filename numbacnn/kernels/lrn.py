"""Local response normalization across channels (AlexNet's NORM, as in Caffe/PyTorch).

For channel c the window is c − size//2 … c + (size−1)//2 (clipped to 0…C−1):
  scale[c] = k + (alpha / size) · Σ_window x[c']²,   y[c] = x[c] · scale[c]^(−beta).
Arrays are N×C×HW (HW = H·W); ``alpha_n`` is alpha / size. Each body computes the
elements lo … hi − 1 of one row t = (n, c) of HW contiguous elements (the CPU passes
whole rows, the GPU one element per thread).
"""

import numpy as np
from numba import njit

from numbacnn.kernels.index import split


@njit(inline="always")
def lrn_forward_at(t, lo, hi, y, scale, x, size, alpha_n, beta, k):
    """Row t = (n, c): y[n, c, :] and scale[n, c, :]."""
    C = x.shape[1]
    n, c = split(t, C)
    c_lo = max(0, c - size // 2)
    c_hi = min(C - 1, c + (size - 1) // 2)
    for p in range(lo, hi):
        acc = np.float32(0.0)
        for cc in range(c_lo, c_hi + 1):
            v = x[n, cc, p]
            acc += v * v
        s = k + alpha_n * acc
        scale[n, c, p] = s
        y[n, c, p] = x[n, c, p] * s ** (-beta)


@njit(inline="always")
def lrn_backward_at(t, lo, hi, dx, dy, x, y, scale, size, alpha_n, beta):
    """Row t = (n, c): dx[c] = dy[c]·scale[c]^−β − 2αβ/size · x[c] · Σ dy[c']·y[c']/scale[c'],
    the sum over the channels c' whose window holds c."""
    C = x.shape[1]
    n, c = split(t, C)
    # c lies in the window of c' when c' − size//2 ≤ c ≤ c' + (size−1)//2
    c_lo = max(0, c - (size - 1) // 2)
    c_hi = min(C - 1, c + size // 2)
    two_ab = np.float32(2.0) * alpha_n * beta
    for p in range(lo, hi):
        acc = np.float32(0.0)
        for cc in range(c_lo, c_hi + 1):
            acc += dy[n, cc, p] * y[n, cc, p] / scale[n, cc, p]
        dx[n, c, p] = dy[n, c, p] * scale[n, c, p] ** (-beta) - two_ab * x[n, c, p] * acc
