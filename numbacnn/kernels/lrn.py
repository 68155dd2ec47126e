"""Local response normalization across channels (AlexNet's NORM, as in Caffe/PyTorch).

For channel c the window is c − size//2 … c + (size−1)//2 (clipped to 0…C−1):
  scale[c] = k + (alpha / size) · Σ_window x[c']²,   y[c] = x[c] · scale[c]^(−beta).
Arrays are flat views of N×C×HW (HW = H·W); ``alpha_n`` is alpha / size.
"""

import numpy as np
from numba import njit


@njit(inline="always")
def lrn_forward_at(i, y, scale, x, C, HW, size, alpha_n, beta, k):
    """y[i] and scale[i] for element i = (n, c, p) of a flat N×C×HW array."""
    n = i // (C * HW)
    rest = i - n * (C * HW)
    c = rest // HW
    p = rest - c * HW
    lo = max(0, c - size // 2)
    hi = min(C - 1, c + (size - 1) // 2)
    acc = np.float32(0.0)
    for cc in range(lo, hi + 1):
        v = x[(n * C + cc) * HW + p]
        acc += v * v
    s = k + alpha_n * acc
    scale[i] = s
    y[i] = x[i] * s ** (-beta)


@njit(inline="always")
def lrn_backward_at(i, dx, dy, x, y, scale, C, HW, size, alpha_n, beta):
    """dx[c] = dy[c]·scale[c]^−β − 2αβ/size · x[c] · Σ dy[c']·y[c']/scale[c'],
    the sum over the channels c' whose window holds c."""
    n = i // (C * HW)
    rest = i - n * (C * HW)
    c = rest // HW
    p = rest - c * HW
    # c lies in the window of c' when c' − size//2 ≤ c ≤ c' + (size−1)//2
    lo = max(0, c - (size - 1) // 2)
    hi = min(C - 1, c + size // 2)
    acc = np.float32(0.0)
    for cc in range(lo, hi + 1):
        j = (n * C + cc) * HW + p
        acc += dy[j] * y[j] / scale[j]
    dx[i] = dy[i] * scale[i] ** (-beta) - np.float32(2.0) * alpha_n * beta * x[i] * acc
