"""Convolution bodies: im2col, col2im and the reorders around the GEMM.

Geometry: input x is N×C×H×W, filters are K×C×F×F, stride S, zero padding P,
output N×K×OH×OW with OH = (H − F + 2P)/S + 1. The column matrix ``cols`` is
(C·F·F) × (N·OH·OW): row r = (c, fy, fx), column j = (n, oy, ox), so the forward
pass is one GEMM  W(K × CFF) @ cols → (K × N·OH·OW).

These bodies work on one plane or row of contiguous output each (index t below), so
the index arithmetic (integer divisions) is paid once per plane or row, not per
element. Inner loops index 1-D row views with ``np.uint64`` indices: numba then
skips its negative-index wraparound test, which halved im2col's time (the indices
are never negative by construction).
"""

import numpy as np
from numba import njit


@njit(inline="always")
def im2col_at(t, cols, x, F, S, P, OH, OW):
    """Plane t = (r, n) of cols, t < C·F·F·N: cols[r, n·OH·OW + oy·OW + ox] for all oy, ox.

    cols[r, j] = x[n, c, oy·S − P + fy, ox·S − P + fx], 0 where that falls in the padding.
    """
    N = x.shape[0]
    H = x.shape[2]
    W = x.shape[3]
    r = t // N
    n = t - r * N
    c = r // (F * F)
    fy = (r // F) % F
    fx = r % F
    # ox whose input column ox·S − P + fx lies inside 0 … W − 1
    ox_lo = min(OW, max(0, (P - fx + S - 1) // S))
    ox_hi = min(OW, max(ox_lo, (W - 1 + P - fx) // S + 1))
    dst = cols[r]
    for oy in range(OH):
        j0 = (n * OH + oy) * OW
        iy = oy * S - P + fy
        if iy < 0 or iy >= H:
            for ox in range(OW):
                dst[np.uint64(j0 + ox)] = np.float32(0.0)
            continue
        src = x[n, c, iy]
        for ox in range(ox_lo):
            dst[np.uint64(j0 + ox)] = np.float32(0.0)
        for ox in range(ox_lo, ox_hi):
            dst[np.uint64(j0 + ox)] = src[np.uint64(ox * S - P + fx)]
        for ox in range(ox_hi, OW):
            dst[np.uint64(j0 + ox)] = np.float32(0.0)


@njit(inline="always")
def col2im_at(t, dx, dcols, F, S, P, OH, OW):
    """Plane t = (n, c) of dx, gather form: dx[n, c, y, x] sums every dcols entry that
    x[n, c, y, x] was copied to by im2col. Only this body writes plane t."""
    C = dx.shape[1]
    H = dx.shape[2]
    W = dx.shape[3]
    n = t // C
    c = t - n * C
    plane = dx[n, c]
    for y in range(H):
        row = plane[y]
        for x in range(W):
            row[np.uint64(x)] = np.float32(0.0)
    for fx in range(F):
        # output columns ox whose input column ox·S − P + fx lies inside 0 … W − 1
        ox_lo = min(OW, max(0, (P - fx + S - 1) // S))
        ox_hi = min(OW, max(ox_lo, (W - 1 + P - fx) // S + 1))
        for y in range(H):
            # output rows oy whose window covers input row y: oy·S − P ≤ y ≤ oy·S − P + F − 1
            oy_lo = max(0, (y + P - F + S) // S)
            oy_hi = min(OH - 1, (y + P) // S)
            row = plane[y]
            for oy in range(oy_lo, oy_hi + 1):
                src = dcols[(c * F + y + P - oy * S) * F + fx]
                j0 = (n * OH + oy) * OW
                for ox in range(ox_lo, ox_hi):
                    row[np.uint64(ox * S - P + fx)] += src[np.uint64(j0 + ox)]


@njit(inline="always")
def gemm_to_nchw_at(t, y, out, b, K, P, relu):
    """Row t = (n, k): y[n, k, p] = out[k, n·P + p] + b[k] for p < P (GEMM K × N·P → N×K×P),
    then max(·, 0) when ``relu`` (a ReLU fused into the convolution); y is passed flat."""
    n = t // K
    k = t - n * K
    bias = b[k]
    floor = np.float32(0.0) if relu else np.float32(-np.inf)
    src = out[k]
    for p in range(P):
        y[np.uint64(t * P + p)] = max(src[np.uint64(n * P + p)] + bias, floor)


@njit(inline="always")
def nchw_to_gemm_at(t, dy2, dy, y, K, P, relu):
    """Row t = (k, n): dy2[k, n·P + p] = dy[n, k, p] for p < P (N×K×P → K × N·P); dy and y
    flat. With ``relu`` (fused ReLU) the gradient passes only where the output y > 0."""
    N = dy2.shape[1] // P
    k = t // N
    n = t - k * N
    dst = dy2[k]
    for p in range(P):
        i = np.uint64((n * K + k) * P + p)
        g = dy[i] if (not relu or y[i] > np.float32(0.0)) else np.float32(0.0)
        dst[np.uint64(n * P + p)] = g
