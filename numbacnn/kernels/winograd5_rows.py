"""The CPU's row bodies of Winograd F(2×2, 5×5): a whole row of tiles per call.

The 5×5 counterparts of ``winograd_rows.py`` (the reasons are there): the input
transform takes all TW tiles of one row of tiles from a zero-padded plane
(``winograd_rows.pad_plane``, tile (th, tw) at rows 2·th …, columns 2·tw …), 36 stores
each contiguous across the row; the output transform a whole plane. Each tile's
arithmetic is the element body's (``winograd5.py``), the input transform's in another
order; tests/test_winograd5.py compares them.

Layouts as in ``winograd5.py``: V 36 × (C·T), M and dM 36 × (K·T), column c·T + t,
t = (n·TH + th)·TW + tw; planes flat (H·W).
"""

import numpy as np
from numba import njit

from numbacnn.kernels.index import u64
from numbacnn.kernels.winograd5 import (
    at6,
    b6,
    bt6,
    filter_values,
    store_filter,
)

ZERO = np.float32(0.0)
# A's rows (A = (Aᵀ)ᵀ, 6 × 2): dM[6·i + j] = Σ A[i, r]·A[j, s]·g[r, s]
A_ROWS = np.array([[1, 0], [1, 1], [1, -1], [1, 2], [1, -2], [0, 1]], np.float32)


@njit(inline="always")
def input_tile_row(V, col0, P, r0, TW, Q, step):
    """V[:, col0 + tw] = Bᵀ·d·B for tw < TW, d the 6×6 tile at rows r0 …, columns
    step·tw … of the padded plane P (``winograd_rows.pad_plane``); ``step`` 2 for
    F(2×2, 5×5), 4 for F(4×4, 3×3) (the same Bᵀ: ``winograd43.py``). Two passes: Bᵀ over the six
    rows r0 … r0 + 5 into Q (6 × P's width; each column on its own, a loop that
    vectorizes), then B over each row of Q, tile by tile. The element body applies B
    first: the same values to float32 rounding. 1.2× faster than one pass in that order
    (a chunk of AlexNet's conv2, 2 images of 27×27: 0.56 against 0.67 ms for x's 96
    planes, 1.53 against 1.84 for the masked gradient's 256; bench/RESULTS.md)."""
    p0, p1, p2, p3, p4, p5 = P[r0], P[r0 + 1], P[r0 + 2], P[r0 + 3], P[r0 + 4], P[r0 + 5]
    q0, q1, q2, q3, q4, q5 = Q[0], Q[1], Q[2], Q[3], Q[4], Q[5]
    for s in range(P.shape[1]):
        v = bt6(p0[s], p1[s], p2[s], p3[s], p4[s], p5[s])
        q0[s] = v[0]
        q1[s] = v[1]
        q2[s] = v[2]
        q3[s] = v[3]
        q4[s] = v[4]
        q5[s] = v[5]
    for i in range(6):
        q = Q[i]
        v0, v1, v2 = V[6 * i], V[6 * i + 1], V[6 * i + 2]
        v3, v4, v5 = V[6 * i + 3], V[6 * i + 4], V[6 * i + 5]
        for tw in range(TW):
            s = u64(step * tw)
            v = bt6(q[s], q[s + u64(1)], q[s + u64(2)], q[s + u64(3)], q[s + u64(4)], q[s + u64(5)])
            col = u64(col0 + tw)
            v0[col] = v[0]
            v1[col] = v[1]
            v2[col] = v[2]
            v3[col] = v[3]
            v4[col] = v[4]
            v5[col] = v[5]


@njit(inline="always")
def _grad_tap(src, msk, relu, q, keep):
    """src[q] where ``keep`` (and, when ``relu`` ≠ 0, msk[q] > 0), else 0 (a select)."""
    v = src[q]
    m = msk[q]
    return v if keep & ((relu == 0) | (m > ZERO)) else ZERO


@njit(inline="always")
def output_grad_tile_plane(dM, col0, src, msk, relu, OH, OW, TH, TW, G):
    """dM[:, col0 + t] = A·g·Aᵀ for the t < TH·TW tiles of the gradient plane src (OH·OW
    flat; 0 outside, and where msk ≤ 0 when ``relu`` ≠ 0), g tile t's 2×2 values. First
    the four values of every tile into G (4 × TH·TW: top left, top right, bottom left,
    bottom right), then each of the 36 positions, A[i, r]·A[j, s]·g[r, s] summed, as one
    loop over all the plane's tiles (it vectorizes; one pass tile by tile stored 36
    scalars a tile: bench/RESULTS.md)."""
    for th in range(TH):
        oy = 2 * th
        two = oy + 1 < OH
        top = u64(oy * OW)
        bottom = u64(min(oy + 1, OH - 1) * OW)
        for tw in range(TW):
            x0 = 2 * tw
            right = x0 + 1 < OW
            xl = u64(x0)
            xr = u64(min(x0 + 1, OW - 1))
            t = u64(th * TW + tw)
            G[0, t] = _grad_tap(src, msk, relu, top + xl, True)
            G[1, t] = _grad_tap(src, msk, relu, top + xr, right)
            G[2, t] = _grad_tap(src, msk, relu, bottom + xl, two)
            G[3, t] = _grad_tap(src, msk, relu, bottom + xr, two and right)
    g00, g01, g10, g11 = G[0], G[1], G[2], G[3]
    for i in range(6):
        for j in range(6):
            c00, c01 = A_ROWS[i, 0] * A_ROWS[j, 0], A_ROWS[i, 0] * A_ROWS[j, 1]
            c10, c11 = A_ROWS[i, 1] * A_ROWS[j, 0], A_ROWS[i, 1] * A_ROWS[j, 1]
            row = dM[6 * i + j]
            for t in range(TH * TW):
                q = u64(t)
                row[u64(col0 + t)] = c00 * g00[q] + c01 * g01[q] + c10 * g10[q] + c11 * g11[q]


@njit(inline="always")
def filter_tile_row(U, w, k):
    """U[:, k·C + c] = G·g·Gᵀ for every c < C, g the 5×5 filter (k, c) of w (K × C·25)."""
    C = w.shape[1] // 25
    for c in range(C):
        store_filter(U, u64(k * C + c), filter_values(w[k], c * 25, 0))


@njit(inline="always")
def input_grad_tile_row(P, r0, dV, col0, TW, Q, step):
    """Adds each tile's input gradient B·dv·Bᵀ (dv = dV[:, col0 + tw], 6×6, tw < TW) into
    the padded plane P at rows r0 …, columns step·tw … (neighbouring tiles overlap by
    6 − ``step`` columns and rows: their sums; ``step`` as :func:`input_tile_row`'s). B
    over each row of every dv, added into Q (6 × P's width), then B over Q's columns into
    P's rows, a loop over all columns that vectorizes.
    The transpose of the input transform: the CPU's dx (``cpu_winograd5.py``)."""
    PW = P.shape[1]
    for i in range(6):
        q = Q[i]
        for s in range(PW):
            q[u64(s)] = ZERO
        d0, d1, d2 = dV[6 * i], dV[6 * i + 1], dV[6 * i + 2]
        d3, d4, d5 = dV[6 * i + 3], dV[6 * i + 4], dV[6 * i + 5]
        for tw in range(TW):
            col = u64(col0 + tw)
            w = b6(d0[col], d1[col], d2[col], d3[col], d4[col], d5[col])
            s = u64(step * tw)
            for a in range(6):
                q[s + u64(a)] += w[a]
    q0, q1, q2, q3, q4, q5 = Q[0], Q[1], Q[2], Q[3], Q[4], Q[5]
    p0, p1, p2, p3, p4, p5 = P[r0], P[r0 + 1], P[r0 + 2], P[r0 + 3], P[r0 + 4], P[r0 + 5]
    for s in range(PW):
        v = b6(q0[s], q1[s], q2[s], q3[s], q4[s], q5[s])
        p0[s] += v[0]
        p1[s] += v[1]
        p2[s] += v[2]
        p3[s] += v[3]
        p4[s] += v[4]
        p5[s] += v[5]


@njit(inline="always")
def output_tile_plane(dst, col0, M, bias, relu, OH, OW, TH, TW, O, S):
    """The whole plane dst (OH·OW flat) from M[:, col0 + t], t < TH·TW: Aᵀ·m·A + bias,
    then max(·, 0) when ``relu`` ≠ 0 (``output_values``' arithmetic). Passes whose loops
    run over all TH·TW tiles and vectorize: Aᵀ over each column j of m into S (12 × TH·TW,
    rows 2·j, 2·j + 1), Aᵀ over those into the four outputs of every tile in O (4 × TH·TW:
    top left, top right, bottom left, bottom right), then placed (a partial edge tile
    drops the rest). 1.36× faster than one pass over M's 36 rows (0.68 against 0.92 ms for
    2 images of 256 planes, 27×27)."""
    floor = ZERO if relu else np.float32(-np.inf)
    tiles = TH * TW
    for j in range(6):
        m0, m1, m2, m3, m4, m5 = M[j], M[6 + j], M[12 + j], M[18 + j], M[24 + j], M[30 + j]
        s0, s1 = S[2 * j], S[2 * j + 1]
        for t in range(tiles):
            c = u64(col0 + t)
            v = at6(m0[c], m1[c], m2[c], m3[c], m4[c], m5[c])
            s0[u64(t)] = v[0]
            s1[u64(t)] = v[1]
    for r in range(2):  # the top outputs, then the bottom ones
        p0, p1, p2, p3, p4, p5 = S[r], S[2 + r], S[4 + r], S[6 + r], S[8 + r], S[10 + r]
        o0, o1 = O[2 * r], O[2 * r + 1]
        for t in range(tiles):
            q = u64(t)
            v = at6(p0[q], p1[q], p2[q], p3[q], p4[q], p5[q])
            o0[q] = max(v[0] + bias, floor)
            o1[q] = max(v[1] + bias, floor)
    full = OW // 2  # tiles with both columns inside
    for th in range(TH):
        top = u64(2 * th * OW)
        two = 2 * th + 1 < OH
        bottom = top + u64(OW)
        first = u64(th * TW)
        for tw in range(full):
            q = first + u64(tw)
            x0 = u64(2 * tw)
            dst[top + x0] = O[0, q]
            dst[top + x0 + u64(1)] = O[1, q]
            if two:
                dst[bottom + x0] = O[2, q]
                dst[bottom + x0 + u64(1)] = O[3, q]
        if full < TW:  # OW odd: the last tile's left column only
            q = first + u64(full)
            dst[top + u64(2 * full)] = O[0, q]
            if two:
                dst[bottom + u64(2 * full)] = O[2, q]
