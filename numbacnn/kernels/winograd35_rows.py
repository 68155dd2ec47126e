"""The CPU's row and chunk bodies of Winograd F(3×3, 5×5) (``winograd35.py``).

The input transform and dx's are ``winograd7_rows.input_tile_row`` and
``input_grad_tile_row`` with a tile step of 3 (a zero-padded plane
``winograd_rows.pad_plane`` of 3·TH + 4 × 3·TW + 4). Here, as ``winograd43_rows.py``
(the reasons are there): the filter transform of a row of filters, and the output and
output-gradient transforms as passes over a run of M's columns in place (a filter's T),
each a loop that vectorizes; the gradient tiles gathered into M's rows plane by plane
from a zero-padded copy, the outputs' last Aᵀ applied as they are placed. Each tile's
arithmetic is the element body's; tests/test_winograd35.py compares them.

Layouts as in ``winograd35.py``: V 49 × (C·T), M and dM 49 × (K·T), column c·T + t,
t = (n·TH + th)·TW + tw; planes flat (H·W).
"""

import numpy as np
from numba import njit

from numbacnn.kernels.index import u64
from numbacnn.kernels.winograd35 import a3, at3, g5

ZERO = np.float32(0.0)


@njit(inline="always")
def filter_tile_row(U, w, k, S):
    """U[:, k·C + c] = G·g·Gᵀ for every c < C, g the 5×5 filter (k, c) of w (K × C·25).
    Three passes over the C filters, each a loop over c that vectorizes: the 25 taps
    moved into S's rows 0 … 24 (S: 60 × C), G over each row r of g into rows
    25 + 7·r + j, then G over each column j of those into U's rows 7·i + j (rows 7
    apart: see :func:`output_grads_in_place`). The element body's arithmetic
    (``winograd35.store_filter``) in the other order: AlexNet's conv2's filters in
    1.0 ms on one thread, 1.3 with the last pass over adjacent rows, 4.0 filter by
    filter."""
    C = w.shape[1] // 25
    src = w[k]
    for c in range(C):
        for j in range(25):
            S[j, c] = src[u64(25 * c + j)]
    for r in range(5):
        g0, g1, g2, g3, g4 = S[5 * r], S[5 * r + 1], S[5 * r + 2], S[5 * r + 3], S[5 * r + 4]
        t = 25 + 7 * r
        t0, t1, t2, t3 = S[t], S[t + 1], S[t + 2], S[t + 3]
        t4, t5, t6 = S[t + 4], S[t + 5], S[t + 6]
        for c in range(C):
            q = u64(c)
            v = g5(g0[q], g1[q], g2[q], g3[q], g4[q])
            t0[q] = v[0]
            t1[q] = v[1]
            t2[q] = v[2]
            t3[q] = v[3]
            t4[q] = v[4]
            t5[q] = v[5]
            t6[q] = v[6]
    at = u64(k * C)
    for j in range(7):
        c0, c1, c2, c3, c4 = S[25 + j], S[32 + j], S[39 + j], S[46 + j], S[53 + j]
        u0, u1, u2, u3 = U[j], U[7 + j], U[14 + j], U[21 + j]
        u4, u5, u6 = U[28 + j], U[35 + j], U[42 + j]
        for c in range(C):
            q = u64(c)
            v = g5(c0[q], c1[q], c2[q], c3[q], c4[q])
            u0[at + q] = v[0]
            u1[at + q] = v[1]
            u2[at + q] = v[2]
            u3[at + q] = v[3]
            u4[at + q] = v[4]
            u5[at + q] = v[5]
            u6[at + q] = v[6]


@njit(inline="always")
def output_columns_in_place(M, lo, hi):
    """Aᵀ over each column j of the 7×7 m in the columns lo … hi − 1 of M, in place: its
    three values into rows j, 7 + j, 14 + j (row 7·r + j: Aᵀ's row r), for
    :func:`place_outputs`."""
    for j in range(7):
        m0, m1, m2, m3 = M[j], M[7 + j], M[14 + j], M[21 + j]
        m4, m5, m6 = M[28 + j], M[35 + j], M[42 + j]
        for c in range(lo, hi):
            q = u64(c)  # unsigned indices vectorize (winograd43_rows)
            v = at3(m0[q], m1[q], m2[q], m3[q], m4[q], m5[q], m6[q])
            m0[q] = v[0]
            m1[q] = v[1]
            m2[q] = v[2]


@njit(inline="always")
def place_outputs(dst, col0, M, bias, relu, OH, OW, TH, TW):
    """The plane dst (OH·OW flat) from M[:, col0 + t], t < TH·TW, as
    :func:`output_columns_in_place` left them: Aᵀ over rows 7·r … 7·r + 6 gives output
    row r of the tile, plus ``bias``, then max(·, 0) when ``relu`` ≠ 0 (a partial edge
    tile drops the rest)."""
    floor = ZERO if relu else np.float32(-np.inf)
    for th in range(TH):
        first = col0 + th * TW
        for r in range(min(3, OH - 3 * th)):
            at = (3 * th + r) * OW
            o = 7 * r
            for tw in range(TW):
                q = first + tw
                v = at3(M[o, q], M[o + 1, q], M[o + 2, q], M[o + 3, q], M[o + 4, q],
                        M[o + 5, q], M[o + 6, q])
                x0 = at + 3 * tw
                inside = min(3, OW - 3 * tw)
                dst[x0] = max(v[0] + bias, floor)
                if inside > 1:
                    dst[x0 + 1] = max(v[1] + bias, floor)
                if inside > 2:
                    dst[x0 + 2] = max(v[2] + bias, floor)


@njit(inline="always")
def gather_output_grads(dM, col0, src, msk, relu, OH, OW, TH, TW, G):
    """Value (r, s) of each 3×3 gradient tile t < TH·TW of the plane src (OH·OW flat; 0
    outside, and where msk ≤ 0 when ``relu`` ≠ 0) into dM[7·r + s, col0 + t], for
    :func:`output_grads_in_place`: the masked plane first into G (3·TH × 3·TW, 0 past
    its edges), then the tiles' loads test no edge."""
    for oy in range(3 * TH):
        row = G[oy]
        if oy < OH:
            at = oy * OW
            if relu:  # the test outside the loop: it vectorizes
                for ox in range(OW):
                    v = src[at + ox]
                    row[ox] = v if msk[at + ox] > ZERO else ZERO
            else:
                for ox in range(OW):
                    row[ox] = src[at + ox]
            for ox in range(OW, 3 * TW):
                row[ox] = ZERO
        else:
            for ox in range(3 * TW):
                row[ox] = ZERO
    for th in range(TH):
        for r in range(3):
            g = 7 * r
            oy = 3 * th + r
            for tw in range(TW):
                t = col0 + th * TW + tw
                ox = 3 * tw
                dM[g, t] = G[oy, ox]
                dM[g + 1, t] = G[oy, ox + 1]
                dM[g + 2, t] = G[oy, ox + 2]


@njit(inline="always")
def output_grads_in_place(dM, lo, hi):
    """A·g·Aᵀ of the columns lo … hi − 1 of dM, g as :func:`gather_output_grads` left
    it, in place: A over each row r of g (rows 7·r … 7·r + 2 into the seven rows
    7·r + j), then A over the three of each column j (rows j, 7 + j, 14 + j into the
    seven rows 7·i + j). That order puts the seven passes on rows 7 apart: a pass over
    seven adjacent rows ran 2× slower (0.31 against 0.15 ms for seven passes over a
    chunk of AlexNet's conv2, 256 × 81 columns)."""
    for r in range(3):
        d0, d1, d2, d3 = dM[7 * r], dM[7 * r + 1], dM[7 * r + 2], dM[7 * r + 3]
        d4, d5, d6 = dM[7 * r + 4], dM[7 * r + 5], dM[7 * r + 6]
        for c in range(lo, hi):
            q = u64(c)
            v = a3(d0[q], d1[q], d2[q])
            d0[q] = v[0]
            d1[q] = v[1]
            d2[q] = v[2]
            d3[q] = v[3]
            d4[q] = v[4]
            d5[q] = v[5]
            d6[q] = v[6]
    for j in range(7):
        d0, d1, d2, d3 = dM[j], dM[7 + j], dM[14 + j], dM[21 + j]
        d4, d5, d6 = dM[28 + j], dM[35 + j], dM[42 + j]
        for c in range(lo, hi):
            q = u64(c)
            v = a3(d0[q], d1[q], d2[q])
            d0[q] = v[0]
            d1[q] = v[1]
            d2[q] = v[2]
            d3[q] = v[3]
            d4[q] = v[4]
            d5[q] = v[5]
            d6[q] = v[6]
