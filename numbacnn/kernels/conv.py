"""Convolution bodies: im2col, col2im and the reorders around the GEMM.

Geometry: input x is N×C×H×W, filters are K×C×F×F, stride S, zero padding P,
output N×K×OH×OW with OH = (H − F + 2P)/S + 1. The column matrix ``cols`` is
(C·F·F) × (N·OH·OW): row r = (c, fy, fx), column j = (n, oy, ox), so the forward
pass is one GEMM  W(K × CFF) @ cols → (K × N·OH·OW).
"""

import numpy as np
from numba import njit


@njit(inline="always")
def im2col_at(i, cols, x, C, H, W, F, S, P, OH, OW):
    """cols[r, j] = x[n, c, oy·S − P + fy, ox·S − P + fx] (0 outside the image); i = r·NP + j."""
    NP = cols.shape[1]
    r = i // NP
    j = i - r * NP
    c = r // (F * F)
    fy = (r // F) % F
    fx = r % F
    n = j // (OH * OW)
    p = j - n * (OH * OW)
    oy = p // OW
    ox = p - oy * OW
    iy = oy * S - P + fy
    ix = ox * S - P + fx
    if 0 <= iy < H and 0 <= ix < W:
        cols[r, j] = x[n, c, iy, ix]
    else:
        cols[r, j] = np.float32(0.0)


@njit(inline="always")
def col2im_at(i, dx, dcols, C, H, W, F, S, P, OH, OW):
    """Gather form of col2im: dx[n, c, y, x] sums every dcols entry that x[n, c, y, x] fed."""
    n = i // (C * H * W)
    rest = i - n * (C * H * W)
    c = rest // (H * W)
    rest = rest - c * (H * W)
    y = rest // W
    x = rest - y * W
    # output rows oy whose window covers input row y: oy·S − P ≤ y ≤ oy·S − P + F − 1
    oy_lo = max(0, (y + P - F + S) // S)
    oy_hi = min(OH - 1, (y + P) // S)
    ox_lo = max(0, (x + P - F + S) // S)
    ox_hi = min(OW - 1, (x + P) // S)
    acc = np.float32(0.0)
    for oy in range(oy_lo, oy_hi + 1):
        fy = y + P - oy * S
        for ox in range(ox_lo, ox_hi + 1):
            fx = x + P - ox * S
            acc += dcols[(c * F + fy) * F + fx, (n * OH + oy) * OW + ox]
    dx[n, c, y, x] = acc


@njit(inline="always")
def gemm_to_nchw_at(i, y, out, b, K, P):
    """y[n, k, p] = out[k, n·P + p] + b[k]: GEMM result (K × N·P) to N×K×P plus bias; y flat."""
    n = i // (K * P)
    rest = i - n * (K * P)
    k = rest // P
    p = rest - k * P
    y[i] = out[k, n * P + p] + b[k]


@njit(inline="always")
def nchw_to_gemm_at(i, dy2, dy, K, P):
    """dy2[k, n·P + p] = dy[n, k, p]: N×K×P gradient (flat) to the GEMM's K × N·P layout."""
    NP = dy2.shape[1]
    k = i // NP
    j = i - k * NP
    n = j // P
    p = j - n * P
    dy2[k, j] = dy[(n * K + k) * P + p]
