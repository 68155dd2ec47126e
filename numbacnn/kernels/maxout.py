"""Maxout across channels: output channel o is the max of input channels
o·pieces … o·pieces + pieces − 1. x and dx are N×C×HW, y, dy and ``which`` (int32,
the winning piece) are N×C_out×HW. Each body computes elements lo … hi − 1 of one row t
of HW elements (whole rows on the CPU, one element per GPU thread)."""

import numpy as np
from numba import njit

from numbacnn.kernels.index import split


@njit(inline="always")
def maxout_forward_at(t, lo, hi, y, which, x, pieces):
    """Row t = (n, o) of y."""
    C_out = y.shape[1]
    n, o = split(t, C_out)
    for p in range(lo, hi):
        best = x[n, o * pieces, p]
        best_g = 0
        for g in range(1, pieces):
            v = x[n, o * pieces + g, p]
            if v > best:
                best = v
                best_g = g
        y[n, o, p] = best
        which[n, o, p] = best_g


@njit(inline="always")
def maxout_backward_at(t, lo, hi, dx, dy, which, pieces):
    """Row t = (n, c) of dx: dy where channel c won its group, else 0."""
    C = dx.shape[1]
    n, c = split(t, C)
    o, g = split(c, pieces)
    for p in range(lo, hi):
        dx[n, c, p] = dy[n, o, p] if which[n, o, p] == g else np.float32(0.0)
