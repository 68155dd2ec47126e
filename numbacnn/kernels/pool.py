"""Pooling bodies: max and average over F×F windows with stride S (no padding).

x and dx are N×C×H×W, y and dy are N×C×OH×OW with OH = (H − F)/S + 1; ``argmax``
(int32, N×C×OH×OW) holds the winner's position iy·W + ix inside its plane. Each body
computes a span lo … hi − 1 of one plane t = (n, c): the CPU passes whole planes,
the GPU one element per thread (see ``kernels/conv.py``).
"""

import numpy as np
from numba import njit

from numbacnn.kernels.index import split


@njit(inline="always")
def max_pool_forward_at(t, lo, hi, y, argmax, x, F, S):
    """Outputs lo … hi − 1 of plane t = (n, c) of y: the max of each F×F window and where
    it was."""
    C = x.shape[1]
    W = x.shape[3]
    OW = y.shape[3]
    n, c = split(t, C)
    plane = x[n, c]
    oy, a = split(lo, OW)
    while oy * OW + a < hi:
        b = min(OW, hi - oy * OW)
        y_row = y[n, c, oy]
        at_row = argmax[n, c, oy]
        for ox in range(a, b):
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
        oy += 1
        a = 0


@njit(inline="always")
def max_pool_backward_at(t, lo, hi, dx, dy, argmax, F, S):
    """Elements lo … hi − 1 of plane t = (n, c) of dx, gather form: each sums dy of the
    windows that cover it and chose it as their max. Only this call writes them.

    A part of a row (the GPU's one element) scans the windows over it and adds the dy of
    those whose winner it is. A whole row (the CPU's case) is written in the windows'
    order instead, without a branch on the data: with windows that do not overlap
    (S ≥ F) each element is stored once, dy of its window or 0; overlapping windows add
    their dy, or 0, to every element they cover. On random data the branch of the scan
    was mispredicted half the time: 8.2 ms against 1.0 ms for fmnist's first pooling
    (128×32×28×28, F = S = 2, one thread, with the CPU driver's constant F and S)."""
    C = dx.shape[1]
    W = dx.shape[3]
    OH = dy.shape[2]
    OW = dy.shape[3]
    n, c = split(t, C)
    yy, a = split(lo, W)
    while yy * W + a < hi:
        b = min(W, hi - yy * W)
        dst = dx[n, c, yy]
        base = yy * W
        oy_lo = max(0, (yy - F + S) // S)  # the rows of windows that cover row yy
        oy_hi = min(OH - 1, yy // S)
        if a > 0 or b < W or oy_lo > oy_hi:  # part of a row, or a row no window covers
            for xx in range(a, b):
                dst[np.uint64(xx)] = np.float32(0.0)
            ox_lo = max(0, (a - F + S) // S)  # windows that overlap columns a … b − 1
            ox_hi = min(OW - 1, (b - 1) // S)
            for oy in range(oy_lo, oy_hi + 1):
                at_row = argmax[n, c, oy]
                dy_row = dy[n, c, oy]
                for ox in range(ox_lo, ox_hi + 1):
                    at = at_row[np.uint64(ox)] - base
                    if a <= at < b:
                        dst[np.uint64(at)] += dy_row[np.uint64(ox)]
        elif S >= F:  # a whole row under one row of windows that do not overlap
            at_row = argmax[n, c, oy_lo]
            dy_row = dy[n, c, oy_lo]
            for ox in range(OW):
                at = at_row[np.uint64(ox)] - base
                g = dy_row[np.uint64(ox)]
                for fx in range(S):
                    x0 = ox * S + fx
                    dst[np.uint64(x0)] = g if at == x0 else np.float32(0.0)
            for xx in range(OW * S, W):
                dst[np.uint64(xx)] = np.float32(0.0)
        else:  # a whole row under overlapping windows
            for xx in range(W):
                dst[np.uint64(xx)] = np.float32(0.0)
            for oy in range(oy_lo, oy_hi + 1):
                at_row = argmax[n, c, oy]
                dy_row = dy[n, c, oy]
                for fx in range(F - 1, -1, -1):  # each element's windows in ascending ox, as above
                    for ox in range(OW):
                        x0 = ox * S + fx
                        hit = at_row[np.uint64(ox)] - base == x0
                        dst[np.uint64(x0)] += dy_row[np.uint64(ox)] if hit else np.float32(0.0)
        yy += 1
        a = 0


@njit(inline="always")
def avg_pool_forward_at(t, lo, hi, y, x, F, S):
    """Outputs lo … hi − 1 of plane t = (n, c) of y: the mean of each F×F window."""
    C = x.shape[1]
    OW = y.shape[3]
    n, c = split(t, C)
    inv = np.float32(1.0) / np.float32(F * F)
    oy, a = split(lo, OW)
    while oy * OW + a < hi:
        b = min(OW, hi - oy * OW)
        for ox in range(a, b):
            acc = np.float32(0.0)
            for fy in range(F):
                for fx in range(F):
                    acc += x[n, c, oy * S + fy, ox * S + fx]
            y[n, c, oy, ox] = acc * inv
        oy += 1
        a = 0


@njit(inline="always")
def avg_pool_backward_at(t, lo, hi, dx, dy, F, S):
    """Elements lo … hi − 1 of plane t = (n, c) of dx, gather form: Σ dy / F² over the
    windows covering each element."""
    C = dx.shape[1]
    W = dx.shape[3]
    OH = dy.shape[2]
    OW = dy.shape[3]
    n, c = split(t, C)
    inv = np.float32(1.0) / np.float32(F * F)
    yy, a = split(lo, W)
    while yy * W + a < hi:
        b = min(W, hi - yy * W)
        for xx in range(a, b):
            dx[n, c, yy, xx] = np.float32(0.0)
        ox_lo = max(0, (a - F + S) // S)
        ox_hi = min(OW - 1, (b - 1) // S)
        for oy in range(max(0, (yy - F + S) // S), min(OH - 1, yy // S) + 1):
            for ox in range(ox_lo, ox_hi + 1):
                g = dy[n, c, oy, ox] * inv
                for xx in range(max(a, ox * S), min(b, ox * S + F)):
                    dx[n, c, yy, xx] += g
        yy += 1
        a = 0


# --- the GPU's max-pooling bodies: one thread per output element ---------------------
# The span bodies above compile their whole-row branches into a per-element kernel
# (90 registers for the backward pass, issue 22); these gather in registers.


@njit(inline="always")
def max_pool_forward_element_at(i, y, argmax, x, F, S):
    """Output i = (n, c, oy, ox) of y (i < N·C·OH·OW): the max of its F×F window and where
    it was, the first of equal values in row-major order as :func:`max_pool_forward_at`."""
    C = x.shape[1]
    W = x.shape[3]
    OH = y.shape[2]
    OW = y.shape[3]
    t, p = split(i, OH * OW)
    n, c = split(t, C)
    oy, ox = split(p, OW)
    plane = x[n, c]
    best = plane[oy * S, ox * S]
    best_at = oy * S * W + ox * S
    for fy in range(F):
        row = plane[oy * S + fy]
        for fx in range(F):
            v = row[np.uint64(ox * S + fx)]
            if v > best:
                best = v
                best_at = (oy * S + fy) * W + ox * S + fx
    y[n, c, oy, np.uint64(ox)] = best
    argmax[n, c, oy, np.uint64(ox)] = best_at


@njit(inline="always")
def max_pool_backward_element_at(i, dx, dy, argmax, F, S):
    """Element i = (n, c, y, x) of dx (i < N·C·H·W), gather form: the sum, in a register,
    of dy over the windows that cover it and chose it, in ascending (oy, ox) as
    :func:`max_pool_backward_at`; stored once."""
    C = dx.shape[1]
    H = dx.shape[2]
    W = dx.shape[3]
    OH = dy.shape[2]
    OW = dy.shape[3]
    t, q = split(i, H * W)
    n, c = split(t, C)
    yy, xx = split(q, W)
    # windows o with o·S ≤ coordinate ≤ o·S + F − 1
    oy_lo = split(yy + S - F, S)[0] if yy + S >= F else 0
    oy_hi = min(OH - 1, split(yy, S)[0])
    ox_lo = split(xx + S - F, S)[0] if xx + S >= F else 0
    ox_hi = min(OW - 1, split(xx, S)[0])
    acc = np.float32(0.0)
    for oy in range(oy_lo, oy_hi + 1):
        for ox in range(ox_lo, OW):
            if ox > ox_hi:
                break  # a second exit: no runtime unrolling of this ≤ ⌈F/S⌉-trip loop
            if argmax[n, c, oy, np.uint64(ox)] == q:
                acc += dy[n, c, oy, np.uint64(ox)]
    dx[n, c, yy, np.uint64(xx)] = acc
