"""Pooling bodies: max and average over F×F windows with stride S (no padding).

x and dx are N×C×H×W, y and dy are N×C×OH×OW with OH = (H − F)/S + 1; ``argmax``
(int32, N×C×OH×OW) holds the winner's position iy·W + ix inside its plane. Each body
computes one plane t = (n, c), so index arithmetic is paid once per plane.
"""

import numpy as np
from numba import njit


@njit(inline="always")
def max_pool_forward_at(t, y, argmax, x, F, S):
    """Plane t = (n, c) of y: the max of each F×F window and where it was."""
    C = x.shape[1]
    W = x.shape[3]
    OH = y.shape[2]
    OW = y.shape[3]
    n = t // C
    c = t - n * C
    plane = x[n, c]
    for oy in range(OH):
        y_row = y[n, c, oy]
        at_row = argmax[n, c, oy]
        for ox in range(OW):
            best = plane[oy * S, ox * S]
            best_at = oy * S * W + ox * S
            for fy in range(F):
                row = plane[oy * S + fy]
                for fx in range(F):
                    v = row[np.uint64(ox * S + fx)]
                    if v > best:
                        best = v
                        best_at = (oy * S + fy) * W + ox * S + fx
            y_row[np.uint64(ox)] = best
            at_row[np.uint64(ox)] = best_at


@njit(inline="always")
def max_pool_backward_at(t, dx, dy, argmax, F, S):
    """Plane t = (n, c) of dx, gather form: each element sums dy of the windows that cover
    it and chose it as their max. Only this body writes plane t."""
    C = dx.shape[1]
    H = dx.shape[2]
    W = dx.shape[3]
    OH = dy.shape[2]
    OW = dy.shape[3]
    n = t // C
    c = t - n * C
    for yy in range(H):
        dst = dx[n, c, yy]
        for xx in range(W):
            dst[np.uint64(xx)] = np.float32(0.0)
        row_start = yy * W
        for oy in range(max(0, (yy - F + S) // S), min(OH - 1, yy // S) + 1):
            at_row = argmax[n, c, oy]
            dy_row = dy[n, c, oy]
            for ox in range(OW):
                at = at_row[np.uint64(ox)]
                if row_start <= at < row_start + W:
                    dst[np.uint64(at - row_start)] += dy_row[np.uint64(ox)]


@njit(inline="always")
def avg_pool_forward_at(t, y, x, F, S):
    """Plane t = (n, c) of y: the mean of each F×F window."""
    C = x.shape[1]
    OH = y.shape[2]
    OW = y.shape[3]
    n = t // C
    c = t - n * C
    inv = np.float32(1.0) / np.float32(F * F)
    for oy in range(OH):
        for ox in range(OW):
            acc = np.float32(0.0)
            for fy in range(F):
                for fx in range(F):
                    acc += x[n, c, oy * S + fy, ox * S + fx]
            y[n, c, oy, ox] = acc * inv


@njit(inline="always")
def avg_pool_backward_at(t, dx, dy, F, S):
    """Plane t = (n, c) of dx, gather form: Σ dy / F² over the windows covering each element."""
    C = dx.shape[1]
    H = dx.shape[2]
    W = dx.shape[3]
    OH = dy.shape[2]
    OW = dy.shape[3]
    n = t // C
    c = t - n * C
    inv = np.float32(1.0) / np.float32(F * F)
    for yy in range(H):
        for xx in range(W):
            dx[n, c, yy, xx] = np.float32(0.0)
        for oy in range(max(0, (yy - F + S) // S), min(OH - 1, yy // S) + 1):
            for ox in range(OW):
                g = dy[n, c, oy, ox] * inv
                for fx in range(F):
                    dx[n, c, yy, ox * S + fx] += g
