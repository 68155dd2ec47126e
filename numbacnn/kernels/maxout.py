"""Maxout across channels: output channel o is the max of input channels
o·pieces … o·pieces + pieces − 1. Arrays are flat views of N×C×HW; ``which``
(int32) records the winning piece for the backward pass."""

import numpy as np
from numba import njit


@njit(inline="always")
def maxout_forward_at(i, y, which, x, pieces, C_out, HW):
    n = i // (C_out * HW)
    rest = i - n * (C_out * HW)
    o = rest // HW
    p = rest - o * HW
    base = (n * C_out * pieces + o * pieces) * HW + p
    best = x[base]
    best_g = 0
    for g in range(1, pieces):
        v = x[base + g * HW]
        if v > best:
            best = v
            best_g = g
    y[i] = best
    which[i] = best_g


@njit(inline="always")
def maxout_backward_at(i, dx, dy, which, pieces, C_out, HW):
    C = C_out * pieces
    n = i // (C * HW)
    rest = i - n * (C * HW)
    c = rest // HW
    p = rest - c * HW
    o = c // pieces
    j = (n * C_out + o) * HW + p
    dx[i] = dy[j] if which[j] == c - o * pieces else np.float32(0.0)
