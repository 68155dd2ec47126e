"""Pooling bodies: max and average over F×F windows with stride S (no padding).

x is N×C×H×W, y is N×C×OH×OW with OH = (H − F)/S + 1. Outputs, the argmax plane
indices (iy·W + ix, int32) and gradients dy are passed flat; x and dx are 4-D.
"""

import numpy as np
from numba import njit


@njit(inline="always")
def max_pool_forward_at(i, y, argmax, x, F, S, OH, OW):
    """y[i] = max over the window of output i; argmax[i] = iy·W + ix of the winner."""
    C = x.shape[1]
    W = x.shape[3]
    n = i // (C * OH * OW)
    rest = i - n * (C * OH * OW)
    c = rest // (OH * OW)
    rest = rest - c * (OH * OW)
    oy = rest // OW
    ox = rest - oy * OW
    best = x[n, c, oy * S, ox * S]
    best_at = oy * S * W + ox * S
    for fy in range(F):
        for fx in range(F):
            v = x[n, c, oy * S + fy, ox * S + fx]
            if v > best:
                best = v
                best_at = (oy * S + fy) * W + ox * S + fx
    y[i] = best
    argmax[i] = best_at


@njit(inline="always")
def max_pool_backward_at(i, dx, dy, argmax, F, S, OH, OW):
    """dx[n, c, y, x] = Σ dy over the windows that cover (y, x) and whose max was (y, x)."""
    C = dx.shape[1]
    H = dx.shape[2]
    W = dx.shape[3]
    n = i // (C * H * W)
    rest = i - n * (C * H * W)
    c = rest // (H * W)
    rest = rest - c * (H * W)
    yy = rest // W
    xx = rest - yy * W
    here = yy * W + xx
    base = (n * C + c) * OH * OW
    acc = np.float32(0.0)
    for oy in range(max(0, (yy - F + S) // S), min(OH - 1, yy // S) + 1):
        for ox in range(max(0, (xx - F + S) // S), min(OW - 1, xx // S) + 1):
            o = base + oy * OW + ox
            if argmax[o] == here:
                acc += dy[o]
    dx[n, c, yy, xx] = acc


@njit(inline="always")
def avg_pool_forward_at(i, y, x, F, S, OH, OW):
    """y[i] = mean of the F×F window of output i."""
    C = x.shape[1]
    n = i // (C * OH * OW)
    rest = i - n * (C * OH * OW)
    c = rest // (OH * OW)
    rest = rest - c * (OH * OW)
    oy = rest // OW
    ox = rest - oy * OW
    acc = np.float32(0.0)
    for fy in range(F):
        for fx in range(F):
            acc += x[n, c, oy * S + fy, ox * S + fx]
    y[i] = acc / np.float32(F * F)


@njit(inline="always")
def avg_pool_backward_at(i, dx, dy, F, S, OH, OW):
    """dx[n, c, y, x] = Σ dy / F² over the windows that cover (y, x)."""
    C = dx.shape[1]
    H = dx.shape[2]
    W = dx.shape[3]
    n = i // (C * H * W)
    rest = i - n * (C * H * W)
    c = rest // (H * W)
    rest = rest - c * (H * W)
    yy = rest // W
    xx = rest - yy * W
    base = (n * C + c) * OH * OW
    acc = np.float32(0.0)
    for oy in range(max(0, (yy - F + S) // S), min(OH - 1, yy // S) + 1):
        for ox in range(max(0, (xx - F + S) // S), min(OW - 1, xx // S) + 1):
            acc += dy[base + oy * OW + ox]
    dx[n, c, yy, xx] = acc / np.float32(F * F)
