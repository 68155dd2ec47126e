"""The CPU's row and chunk bodies of Winograd F(4×4, 3×3) (``winograd43.py``).

The input transform and dx's are ``winograd5_rows.input_tile_row`` and
``input_grad_tile_row`` with a tile step of 4 (the same Bᵀ, on a zero-padded plane
``winograd_rows.pad_plane`` of 4·TH + 2 × 4·TW + 2). Here: the filter transform of a
row of filters, and the output and output-gradient transforms as passes over a run of
M's columns (a whole chunk's, or a filter's T), in place, each a loop that vectorizes:
a plane at 13×13 or 14×14 has 16 tiles only, too short a loop for passes plane by plane
as ``winograd5_rows``' (49–196 tiles). The gradient tiles are gathered into M's rows
plane by plane, and the outputs' last Aᵀ is applied as they are placed (bench/RESULTS.md,
"Winograd F(4×4, 3×3)", for the measurements). Each
tile's arithmetic is the element body's (``winograd43.py``); tests/test_winograd43.py
compares them.

Layouts as in ``winograd43.py``: V 36 × (C·T), M and dM 36 × (K·T), column c·T + t,
t = (n·TH + th)·TW + tw; planes flat (H·W).
"""

import numpy as np
from numba import njit

from numbacnn.kernels.index import u64
from numbacnn.kernels.winograd43 import a4, at4, store_filter

ZERO = np.float32(0.0)


@njit(inline="always")
def filter_tile_row(U, w, k):
    """U[:, k·C + c] = G·g·Gᵀ for every c < C, g the 3×3 filter (k, c) of w (K × C·9)."""
    C = w.shape[1] // 9
    for c in range(C):
        store_filter(U, u64(k * C + c), w[k], c * 9)


@njit(inline="always")
def output_columns_in_place(M, lo, hi):
    """Aᵀ over each column j of the 6×6 m in the columns lo … hi − 1 of M, in place: its
    four values into rows j, 6 + j, 12 + j, 18 + j (row 6·r + j: Aᵀ's row r), for
    :func:`place_outputs`. One loop over all the columns a j, which vectorizes where a
    plane's 16 tiles did not."""
    for j in range(6):
        m0, m1, m2, m3, m4, m5 = M[j], M[6 + j], M[12 + j], M[18 + j], M[24 + j], M[30 + j]
        for c in range(lo, hi):
            q = u64(c)  # unsigned: with int64 indices the loop ran 2× slower
            v = at4(m0[q], m1[q], m2[q], m3[q], m4[q], m5[q])
            m0[q] = v[0]
            m1[q] = v[1]
            m2[q] = v[2]
            m3[q] = v[3]


@njit(inline="always")
def place_outputs(dst, col0, M, bias, relu, OH, OW, TH, TW):
    """The plane dst (OH·OW flat) from M[:, col0 + t], t < TH·TW, as
    :func:`output_columns_in_place` left them: Aᵀ over rows 6·r … 6·r + 5 gives output
    row r of the tile, plus ``bias``, then max(·, 0) when ``relu`` ≠ 0 (a partial edge
    tile drops the rest). Tile by tile: 10% faster than a third pass over the columns
    and then placing (fmnist's conv2). M[row, col], not row views: a view a row took 2×."""
    floor = ZERO if relu else np.float32(-np.inf)
    for th in range(TH):
        first = col0 + th * TW
        for r in range(min(4, OH - 4 * th)):
            at = (4 * th + r) * OW
            o = 6 * r
            for tw in range(TW):
                q = first + tw
                v = at4(M[o, q], M[o + 1, q], M[o + 2, q], M[o + 3, q], M[o + 4, q],
                        M[o + 5, q])
                x0 = at + 4 * tw
                inside = min(4, OW - 4 * tw)
                dst[x0] = max(v[0] + bias, floor)
                if inside > 1:
                    dst[x0 + 1] = max(v[1] + bias, floor)
                if inside > 2:
                    dst[x0 + 2] = max(v[2] + bias, floor)
                if inside > 3:
                    dst[x0 + 3] = max(v[3] + bias, floor)


@njit(inline="always")
def gather_output_grads(dM, col0, src, msk, relu, OH, OW, TH, TW, G):
    """Value (r, s) of each 4×4 gradient tile t < TH·TW of the plane src (OH·OW flat; 0
    outside, and where msk ≤ 0 when ``relu`` ≠ 0) into dM[6·r + s, col0 + t], for
    :func:`output_grads_in_place`. The masked plane first into G (4·TH × 4·TW, 0 past
    its edges), a loop a row: then the tiles' loads test no edge (1.4× faster than an
    edge test and a select per value, fmnist's conv2)."""
    for oy in range(4 * TH):
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
            for ox in range(OW, 4 * TW):
                row[ox] = ZERO
        else:
            for ox in range(4 * TW):
                row[ox] = ZERO
    tiles_into(dM, col0, G, TH, TW)


@njit(inline="always")
def tiles_into(dM, col0, G, TH, TW):
    """Value (r, s) of each 4×4 tile t of the plane G (4·TH × 4·TW) into
    dM[6·r + s, col0 + t]."""
    for th in range(TH):
        for r in range(4):
            g = 6 * r
            oy = 4 * th + r
            for tw in range(TW):
                t = col0 + th * TW + tw
                ox = 4 * tw
                dM[g, t] = G[oy, ox]
                dM[g + 1, t] = G[oy, ox + 1]
                dM[g + 2, t] = G[oy, ox + 2]
                dM[g + 3, t] = G[oy, ox + 3]


@njit(inline="always")
def output_grads_in_place(dM, lo, hi):
    """A·g·Aᵀ of the columns lo … hi − 1 of dM, g as :func:`gather_output_grads` left
    it, in place: A over each column s of g (rows s, 6 + s, 12 + s, 18 + s into the six
    rows 6·i + s), then A over the four of each row i."""
    for s in range(4):
        d0, d1, d2 = dM[s], dM[6 + s], dM[12 + s]
        d3, d4, d5 = dM[18 + s], dM[24 + s], dM[30 + s]
        for c in range(lo, hi):
            q = u64(c)
            v = a4(d0[q], d1[q], d2[q], d3[q])
            d0[q] = v[0]
            d1[q] = v[1]
            d2[q] = v[2]
            d3[q] = v[3]
            d4[q] = v[4]
            d5[q] = v[5]
    for i in range(6):
        d0, d1, d2 = dM[6 * i], dM[6 * i + 1], dM[6 * i + 2]
        d3, d4, d5 = dM[6 * i + 3], dM[6 * i + 4], dM[6 * i + 5]
        for c in range(lo, hi):
            q = u64(c)
            v = a4(d0[q], d1[q], d2[q], d3[q])
            d0[q] = v[0]
            d1[q] = v[1]
            d2[q] = v[2]
            d3[q] = v[3]
            d4[q] = v[4]
            d5[q] = v[5]


# --- conv → ReLU → 2×2 stride-2 max pooling (``cpu_winograd43.py``'s pooled drivers) ----
# Forward places each plane with place_outputs into a plane in cache and pools it there
# (pool.max_pool_plane_by_selects): pooling the tiles' values as they are computed gave
# pooled values 1 ulp off the unfused ones (fastmath reassociates the bias add there).


@njit(inline="always")
def gather_pooled_output_grads(dM, col0, dy2, y2, at2, relu, OW, TH, TW, G):
    """:func:`gather_output_grads` from the gradient dy2 of the plane's 2×2 stride-2 max
    pooling (dy2, y2, at2: ⌊OH/2⌋×⌊OW/2⌋, at2 ``pool.max_pool_plane_by_selects``' format):
    G zeroed, dy2 at each window's winner (0 where the pooled y2 ≤ 0 when ``relu`` ≠ 0:
    the ReLU's output at the winner), the other cells 0 as the pooling's backward leaves
    them; then the tiles into dM."""
    G[:] = ZERO
    PH, PW = dy2.shape
    for py in range(PH):
        dy_row, y_row, at_row = dy2[py], y2[py], at2[py]
        for px in range(PW):
            at = at_row[px]
            fy = 1 if at >= OW else 0
            g = dy_row[px]
            if relu and y_row[px] <= ZERO:
                g = ZERO
            G[2 * py + fy, 2 * px + at - fy * OW] = g
    tiles_into(dM, col0, G, TH, TW)
