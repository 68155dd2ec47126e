"""The CPU's row bodies of Winograd F(2×2, 3×3): a whole row of tiles per call.

The element bodies of ``winograd.py`` transform one tile each (the GPU runs one per
thread); each of their 16 values goes to its own row of V, M or dM, and a tile at the
plane's edge takes clamped, masked loads. Called in a loop on the CPU, that is scalar
code. These bodies take all TW tiles of one row of tiles (one (channel, image, th)) at
once: loads from a zero-padded copy of the plane (no edge tests; the output gradient's
tiles and dx's input tiles from one padded, masked copy of the gradient's plane), 16
stores each contiguous across the row. The output transform takes a
whole plane (its TH·TW columns of M are contiguous: a loop long enough for 16-wide
vectors, where a row has 7 tiles at 13×13 and 14×14), then places the four outputs of
each tile; the same two passes for the input and output-gradient transforms measured
slower than their rows (bench/RESULTS.md). Each tile's arithmetic is the element body's,
in the same order (``tests/test_winograd_rows.py`` compares them).

Layouts as in ``winograd.py``: V 16 × (C·T), M and dM 16 × (K·T), column c·T + t,
t = (n·TH + th)·TW + tw; planes flat (H·W).
"""

import numpy as np
from numba import njit

from numbacnn.kernels.index import u64
from numbacnn.kernels.winograd import _a, _bt, _g, output_values

ZERO = np.float32(0.0)


@njit(inline="always")
def pad_plane(P, src, mask, relu, H, W, PT, PL):
    """P (PH × PW) = the plane src (H·W flat) moved down PT and right PL rows/columns, 0
    outside it; with ``relu`` ≠ 0 also 0 where ``mask`` (shaped as src) ≤ 0. Tile
    (th, tw)'s input then lies at rows 2·th …, columns 2·tw … of P."""
    PH, PW = P.shape[0], P.shape[1]
    lo = min(max(PL, 0), PW)  # P's columns s with 0 ≤ s − PL < W: lo … hi − 1
    hi = max(min(PL + W, PW), lo)
    for r in range(PH):
        row = P[r]
        iy = r - PT
        if iy < 0 or iy >= H:
            for s in range(PW):
                row[u64(s)] = ZERO
            continue
        at = iy * W - PL
        for s in range(lo):
            row[u64(s)] = ZERO
        if relu:
            for s in range(lo, hi):
                v = src[u64(at + s)]
                row[u64(s)] = v if mask[u64(at + s)] > ZERO else ZERO
        else:
            for s in range(lo, hi):
                row[u64(s)] = src[u64(at + s)]
        for s in range(hi, PW):
            row[u64(s)] = ZERO


@njit(inline="always")
def input_tile_row(V, col0, P, r0, TW):
    """V[:, col0 + tw] = Bᵀ·d·B for tw < TW, d the 4×4 tile at rows r0 …, columns 2·tw … of
    the padded plane P (:func:`pad_plane`); the element body's ``input_tile_at`` order."""
    p0, p1, p2, p3 = P[r0], P[r0 + 1], P[r0 + 2], P[r0 + 3]
    for tw in range(TW):
        s = u64(2 * tw)
        one = u64(1)
        col = u64(col0 + tw)
        t0 = _bt(p0[s], p0[s + one], p0[s + one + one], p0[s + one + one + one])
        t2 = _bt(p2[s], p2[s + one], p2[s + one + one], p2[s + one + one + one])
        t1 = _bt(p1[s], p1[s + one], p1[s + one + one], p1[s + one + one + one])
        t3 = _bt(p3[s], p3[s + one], p3[s + one + one], p3[s + one + one + one])
        for j in range(4):
            V[j, col] = t0[j] - t2[j]
            V[4 + j, col] = t1[j] + t2[j]
            V[8 + j, col] = t2[j] - t1[j]
            V[12 + j, col] = t1[j] - t3[j]


@njit(inline="always")
def output_grad_tile_row(dM, col0, P, r0, s0, TW):
    """dM[:, col0 + tw] = A·g·Aᵀ for tw < TW, g the 2×2 tile at rows r0, r0 + 1 and
    columns s0 + 2·tw, s0 + 2·tw + 1 of the padded gradient plane P (:func:`pad_plane`:
    0 outside the plane, and where the ReLU's mask is): ``output_grad_tile_at``'s
    arithmetic with plain loads (dx's input tiles are read from the same P)."""
    top, bottom = P[r0], P[r0 + 1]
    for tw in range(TW):
        x0 = u64(s0 + 2 * tw)
        x1 = x0 + u64(1)
        col = u64(col0 + tw)
        left = _a(top[x0], bottom[x0])
        rgt = _a(top[x1], bottom[x1])
        for i in range(4):
            v = _a(left[i], rgt[i])
            dM[4 * i, col] = v[0]
            dM[4 * i + 1, col] = v[1]
            dM[4 * i + 2, col] = v[2]
            dM[4 * i + 3, col] = v[3]


@njit(inline="always")
def filter_tile_row(U, w, k):
    """U[:, k·C + c] = G·g·Gᵀ for every c < C, g the 3×3 filter (k, c) of w (K × C·9):
    ``filter_tile_at``'s arithmetic without ``flip`` (the CPU's dx products take these
    filters transposed and with rows and columns 0 and 3 of the 4×4 tile swapped:
    G·rot180(g)·Gᵀ = P·G·g·Gᵀ·P, P that swap)."""
    C = w.shape[1] // 9
    src = w[k]
    for c in range(C):
        b = u64(9 * c)
        one = u64(1)
        g0, g1, g2 = src[b], src[b + one], src[b + u64(2)]
        g3, g4, g5 = src[b + u64(3)], src[b + u64(4)], src[b + u64(5)]
        g6, g7, g8 = src[b + u64(6)], src[b + u64(7)], src[b + u64(8)]
        col = u64(k * C + c)
        c0 = _g(g0, g3, g6)
        c1 = _g(g1, g4, g7)
        c2 = _g(g2, g5, g8)
        for i in range(4):
            v = _g(c0[i], c1[i], c2[i])
            U[4 * i, col] = v[0]
            U[4 * i + 1, col] = v[1]
            U[4 * i + 2, col] = v[2]
            U[4 * i + 3, col] = v[3]


@njit(inline="always")
def output_tile_plane(dst, col0, M, bias, relu, OH, OW, TH, TW, O):
    """The whole plane dst (OH·OW flat) from M[:, col0 + t], t < TH·TW: Aᵀ·m·A + bias,
    then max(·, 0) when ``relu`` ≠ 0. First the four outputs of every tile into O
    (4 × TH·TW: top left, top right, bottom left, bottom right; one loop over all TH·TW
    tiles, long enough to vectorize), then placed (a partial edge tile drops the rest)."""
    floor = ZERO if relu else np.float32(-np.inf)
    for t in range(TH * TW):
        v = output_values(M, u64(col0 + t), bias, floor)
        q = u64(t)
        O[0, q] = v[0]
        O[1, q] = v[1]
        O[2, q] = v[2]
        O[3, q] = v[3]
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
