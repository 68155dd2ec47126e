"""Local response normalization across channels (AlexNet's NORM, as in Caffe/PyTorch).

For channel c the window is c − size//2 … c + (size−1)//2 (clipped to 0…C−1):
  scale[c] = k + (alpha / size) · Σ_window x[c']²,   y[c] = x[c] · scale[c]^(−beta).
Arrays are N×C×HW (HW = H·W); ``alpha_n`` is alpha / size. Each body computes the
elements lo … hi − 1 of one row t = (n, c) of HW contiguous elements (the CPU passes
whole rows, the GPU one element per thread). The CPU drivers call the ``*_row``
forms instead: the same sums, loops turned so that LLVM vectorizes them.
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


# --- whole rows (the CPU drivers) ----------------------------------------------------------
# The span bodies' inner loop runs over the 3–5 channels of a window, stepping a row apart,
# and computes s^−β with powf: LLVM vectorizes neither. The row forms sum one neighbouring
# row at a time into the output row (contiguous, vectorized) and take s^−0.75, AlexNet's
# β, with two square roots (any other β keeps powf). AlexNet's two LRNs in a training
# step, one thread: 37.9 → 7.0 ms forward and backward; their compile 1.15 → 1.87 CPU s.


@njit(inline="always")
def lrn_forward_row(t, y, scale, x, size, alpha_n, beta, k):
    """Row t = (n, c) of y and scale, whole (``lrn_forward_at`` over 0 … HW − 1)."""
    C = x.shape[1]
    HW = x.shape[2]
    n, c = split(t, C)
    c_lo = max(0, c - size // 2)
    c_hi = min(C - 1, c + (size - 1) // 2)
    yr = y[n, c]
    sr = scale[n, c]
    xr = x[n, c]
    for p in range(HW):
        yr[np.uint64(p)] = np.float32(0.0)
    for cc in range(c_lo, c_hi + 1):  # the window's squares, summed in channel order
        xc = x[n, cc]
        for p in range(HW):
            v = xc[np.uint64(p)]
            yr[np.uint64(p)] += v * v
    if beta == np.float32(0.75):
        for p in range(HW):
            s = k + alpha_n * yr[np.uint64(p)]
            sr[np.uint64(p)] = s
            r = np.float32(1.0) / np.sqrt(s)
            yr[np.uint64(p)] = xr[np.uint64(p)] * (r * np.sqrt(r))
    else:
        for p in range(HW):
            s = k + alpha_n * yr[np.uint64(p)]
            sr[np.uint64(p)] = s
            yr[np.uint64(p)] = xr[np.uint64(p)] * s ** (-beta)


@njit(inline="always")
def lrn_backward_row(t, dx, dy, x, y, scale, size, alpha_n, beta):
    """Row t = (n, c) of dx, whole (``lrn_backward_at`` over 0 … HW − 1)."""
    C = x.shape[1]
    HW = x.shape[2]
    n, c = split(t, C)
    c_lo = max(0, c - (size - 1) // 2)
    c_hi = min(C - 1, c + size // 2)
    two_ab = np.float32(2.0) * alpha_n * beta
    dxr = dx[n, c]
    for p in range(HW):
        dxr[np.uint64(p)] = np.float32(0.0)
    for cc in range(c_lo, c_hi + 1):  # Σ dy·y/scale over the windows that hold c, in order
        dyc = dy[n, cc]
        yc = y[n, cc]
        sc = scale[n, cc]
        for p in range(HW):
            dxr[np.uint64(p)] += dyc[np.uint64(p)] * yc[np.uint64(p)] / sc[np.uint64(p)]
    dyr = dy[n, c]
    xr = x[n, c]
    sr = scale[n, c]
    if beta == np.float32(0.75):
        for p in range(HW):
            r = np.float32(1.0) / np.sqrt(sr[np.uint64(p)])
            dxr[np.uint64(p)] = (dyr[np.uint64(p)] * (r * np.sqrt(r))
                                 - two_ab * xr[np.uint64(p)] * dxr[np.uint64(p)])
    else:
        for p in range(HW):
            dxr[np.uint64(p)] = (dyr[np.uint64(p)] * sr[np.uint64(p)] ** (-beta)
                                 - two_ab * xr[np.uint64(p)] * dxr[np.uint64(p)])
