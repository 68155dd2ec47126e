"""Winograd F(4×4, 3×3) bodies: the transforms around 36 matrix products.

A 3×3 stride-1 convolution (dilation 1, one group) computes each 4×4 output tile from a
6×6 input tile, as F(2×2, 3×3) (``winograd.py``) its 2×2 tiles from 4×4 ones:

    y_tile = Aᵀ [ Σ_c (G g_kc Gᵀ) ⊙ (Bᵀ d_c B) ] A

from the points 0, 1, −1, 2, −2 and ∞ (Lavin & Gray), the points of F(2×2, 5×5)
(``winograd5.py``): the same Bᵀ (``winograd5.bt6``, ``b6``; rows in ``winograd5_rows``
with a tile step of 4), and

    G = |  1/4    0     0   |   Aᵀ = | 1 1  1 1  1 0 |
        | −1/6 −1/6  −1/6  |        | 0 1 −1 2 −2 0 |
        | −1/6  1/6  −1/6  |        | 0 1  1 4  4 0 |
        | 1/24  1/12  1/6  |        | 0 1 −1 8 −8 1 |
        | 1/24 −1/12  1/6  |
        |   0     0     1  |

36 products of K × C × (tiles) a 4×4 tile: 2.25 multiplies per output pixel pair against
F(2×2, 3×3)'s 4 and im2col's 9; at 13×13 (4×4 tiles, 576 products per channel pair
against 7×7 × 16 = 784) 27% fewer than F(2×2, 3×3), at 14×14 the same.

Tile t = (n, th, tw) reads input rows 4·th − PT … + 5 and columns 4·tw − PL … + 5 (0
outside) and writes output rows 4·th … 4·th + 3, columns 4·tw … 4·tw + 3 inside OH×OW.
V is 36 × (C·T), U 36 × (K·C), M 36 × (K·T), as in ``winograd5.py``.

Backward as ``winograd5.py``'s on the CPU: dM = A·g·Aᵀ of each 4×4 gradient tile
(position 7 = 6·1 + 1 is the tile's sum: the bias gradient is the row sum of dM[7]);
dU[ξ] = dM[ξ] @ V[ξ]ᵀ and dW = Gᵀ·dU·G (6×6 → 3×3); dV[ξ] = U[ξ]ᵀ @ dM[ξ] and each
tile's B·dV·Bᵀ summed into the input (``winograd5_rows.input_grad_tile_row``, step 4).

Each body computes one tile or one filter pair (the GPU's form; no GPU driver yet); the
CPU runs the row and plane bodies of ``winograd43_rows.py``, the same arithmetic.
float32 error against a float64 convolution, max |error| / max |reference|
(tests/test_winograd43.py; C, K 32–384, 13×13 and 14×14, the fused ReLU): up to 1.8e-5
for y, 8.4e-6 dx, 3.2e-6 dW, 1.9e-7 db; F(2×2, 3×3)'s on the same layers at most 7.8e-7,
7.8e-7, 3.6e-7, 2.5e-7 (the fractions of G and the 8s of Aᵀ): ``algo=winograd`` stays
F(2×2, 3×3), the more accurate.
"""

import numpy as np
from numba import njit

from numbacnn.kernels.index import split
from numbacnn.kernels.winograd5 import _tap, bt6, store6

ZERO = np.float32(0.0)
TWO = np.float32(2.0)
FOUR = np.float32(4.0)
EIGHT = np.float32(8.0)
QUARTER = np.float32(0.25)
SIXTH = np.float32(1.0 / 6.0)
TWELFTH = np.float32(1.0 / 12.0)
TWENTYFOURTH = np.float32(1.0 / 24.0)


@njit(inline="always")
def g3(g0, g1, g2):
    """G · (g0, g1, g2)."""
    s = g0 + g2
    p = g0 + FOUR * g2
    q = TWO * g1
    return (QUARTER * g0, -SIXTH * (s + g1), -SIXTH * (s - g1), TWENTYFOURTH * (p + q),
            TWENTYFOURTH * (p - q), g2)


@njit(inline="always")
def gt3(u0, u1, u2, u3, u4, u5):
    """Gᵀ · (u0 … u5): the transpose of G."""
    sp, sm = SIXTH * (u1 + u2), SIXTH * (u1 - u2)
    tp, tm = u3 + u4, u3 - u4
    return QUARTER * u0 - sp + TWENTYFOURTH * tp, TWELFTH * tm - sm, SIXTH * tp - sp + u5


@njit(inline="always")
def at4(m0, m1, m2, m3, m4, m5):
    """Aᵀ · (m0 … m5)."""
    p, m = m1 + m2, m1 - m2
    q, d = m3 + m4, m3 - m4
    return m0 + p + q, m + TWO * d, p + FOUR * q, m + EIGHT * d + m5


@njit(inline="always")
def a4(v0, v1, v2, v3):
    """A · (v0 … v3): the transpose of Aᵀ."""
    e, o = v0 + v2, v1 + v3
    e4, o2 = v0 + FOUR * v2, TWO * v1 + EIGHT * v3
    return v0, e + o, e - o, e4 + o2, e4 - o2, v3


# --- element bodies ---------------------------------------------------------------------
@njit(inline="always")
def _row_bt(src, msk, relu, iy, x0, H, W):
    """(row iy of the plane src from column x0, six taps: ``winograd5._tap``) times B."""
    return bt6(_tap(src, msk, relu, iy, x0, H, W), _tap(src, msk, relu, iy, x0 + 1, H, W),
               _tap(src, msk, relu, iy, x0 + 2, H, W), _tap(src, msk, relu, iy, x0 + 3, H, W),
               _tap(src, msk, relu, iy, x0 + 4, H, W), _tap(src, msk, relu, iy, x0 + 5, H, W))


@njit(inline="always")
def _col_a(src, msk, relu, oy, ox, OH, OW):
    """A times (column ox of the plane src from row oy, four taps)."""
    return a4(_tap(src, msk, relu, oy, ox, OH, OW), _tap(src, msk, relu, oy + 1, ox, OH, OW),
              _tap(src, msk, relu, oy + 2, ox, OH, OW), _tap(src, msk, relu, oy + 3, ox, OH, OW))


@njit(inline="always")
def input_tile_at(i, V, x, mask, relu, H, W, PT, PL, TH, TW):
    """Input tile i = (c, t), i < C·T: V[:, c·T + t] = Bᵀ·d·B, d the 6×6 tile at rows
    4·th − PT …, columns 4·tw − PL … of x (N×C×(H·W), planes flat), 0 outside; with
    ``relu`` ≠ 0 also 0 where ``mask`` (shaped as x) ≤ 0."""
    N = x.shape[0]
    T = N * TH * TW
    c, t = split(i, T)
    n, r = split(t, TH * TW)
    th, tw = split(r, TW)
    y0, x0 = 4 * th - PT, 4 * tw - PL
    src, msk = x[n, c], mask[n, c]
    r0 = _row_bt(src, msk, relu, y0, x0, H, W)  # each row of d times B
    r1 = _row_bt(src, msk, relu, y0 + 1, x0, H, W)
    r2 = _row_bt(src, msk, relu, y0 + 2, x0, H, W)
    r3 = _row_bt(src, msk, relu, y0 + 3, x0, H, W)
    r4 = _row_bt(src, msk, relu, y0 + 4, x0, H, W)
    r5 = _row_bt(src, msk, relu, y0 + 5, x0, H, W)
    col = np.uint64(c * T + t)
    for j in range(6):
        v = bt6(r0[j], r1[j], r2[j], r3[j], r4[j], r5[j])
        for a in range(6):
            V[6 * a + j, col] = v[a]


@njit(inline="always")
def store_filter(U, col, src, base):
    """U[:, col] = G·g·Gᵀ of the 3×3 filter g at src[base …] (row by row)."""
    c0 = g3(src[base], src[base + 3], src[base + 6])  # G over each column of g
    c1 = g3(src[base + 1], src[base + 4], src[base + 7])
    c2 = g3(src[base + 2], src[base + 5], src[base + 8])
    for i in range(6):
        store6(U, i, col, g3(c0[i], c1[i], c2[i]))


@njit(inline="always")
def filter_tile_at(i, U, w):
    """Filter pair i = (k, c) of w (K × C·9, each 3×3 filter flat): G·g·Gᵀ into U[:, i]."""
    C = split(w.shape[1], 9)[0]
    k, c = split(i, C)
    store_filter(U, np.uint64(i), w[k], c * 9)


@njit(inline="always")
def output_values(M, col, bias, floor):
    """The 4×4 outputs of column col of M, row by row: Aᵀ·m·A plus ``bias``, then
    max(·, floor)."""
    c0 = at4(M[0, col], M[6, col], M[12, col], M[18, col], M[24, col], M[30, col])
    c1 = at4(M[1, col], M[7, col], M[13, col], M[19, col], M[25, col], M[31, col])
    c2 = at4(M[2, col], M[8, col], M[14, col], M[20, col], M[26, col], M[32, col])
    c3 = at4(M[3, col], M[9, col], M[15, col], M[21, col], M[27, col], M[33, col])
    c4 = at4(M[4, col], M[10, col], M[16, col], M[22, col], M[28, col], M[34, col])
    c5 = at4(M[5, col], M[11, col], M[17, col], M[23, col], M[29, col], M[35, col])
    r0 = at4(c0[0], c1[0], c2[0], c3[0], c4[0], c5[0])
    r1 = at4(c0[1], c1[1], c2[1], c3[1], c4[1], c5[1])
    r2 = at4(c0[2], c1[2], c2[2], c3[2], c4[2], c5[2])
    r3 = at4(c0[3], c1[3], c2[3], c3[3], c4[3], c5[3])
    return ((max(r0[0] + bias, floor), max(r0[1] + bias, floor), max(r0[2] + bias, floor),
             max(r0[3] + bias, floor)),
            (max(r1[0] + bias, floor), max(r1[1] + bias, floor), max(r1[2] + bias, floor),
             max(r1[3] + bias, floor)),
            (max(r2[0] + bias, floor), max(r2[1] + bias, floor), max(r2[2] + bias, floor),
             max(r2[3] + bias, floor)),
            (max(r3[0] + bias, floor), max(r3[1] + bias, floor), max(r3[2] + bias, floor),
             max(r3[3] + bias, floor)))


@njit(inline="always")
def output_tile_at(i, y, M, b, relu, with_bias, OH, OW, TH, TW):
    """Output tile i = (k, t), i < K·T: the inside part of Aᵀ·m·A (m = M[:, k·T + t]) into
    y (N×K×(OH·OW), planes flat), plus b[k] when ``with_bias`` ≠ 0, then max(·, 0) when
    ``relu`` ≠ 0."""
    N = y.shape[0]
    T = N * TH * TW
    k, t = split(i, T)
    n, r = split(t, TH * TW)
    th, tw = split(r, TW)
    bias = b[k] if with_bias else ZERO
    floor = ZERO if relu else np.float32(-np.inf)
    v = output_values(M, np.uint64(k * T + t), bias, floor)
    dst = y[n, k]
    for a in range(min(4, OH - 4 * th)):
        for j in range(min(4, OW - 4 * tw)):
            dst[np.uint64((4 * th + a) * OW + 4 * tw + j)] = v[a][j]


@njit(inline="always")
def output_grad_tile_at(i, dM, dy, y, relu, OH, OW, TH, TW):
    """Output-gradient tile i = (k, t), i < K·T: dM[:, k·T + t] = A·g·Aᵀ of the 4×4 tile g
    of dy (N×K×(OH·OW), planes flat; 0 outside OH×OW, and where y ≤ 0 when ``relu`` ≠ 0)."""
    N = dy.shape[0]
    T = N * TH * TW
    k, t = split(i, T)
    n, r = split(t, TH * TW)
    th, tw = split(r, TW)
    src, msk = dy[n, k], y[n, k]
    oy, ox = 4 * th, 4 * tw
    c0 = _col_a(src, msk, relu, oy, ox, OH, OW)  # A over each column of g
    c1 = _col_a(src, msk, relu, oy, ox + 1, OH, OW)
    c2 = _col_a(src, msk, relu, oy, ox + 2, OH, OW)
    c3 = _col_a(src, msk, relu, oy, ox + 3, OH, OW)
    col = np.uint64(k * T + t)
    for a in range(6):
        store6(dM, a, col, a4(c0[a], c1[a], c2[a], c3[a]))


@njit(inline="always")
def filter_grad_at(i, dw, dU):
    """Filter pair i = (k, c) of dw (K × C·9): the 3×3 filter gradient Gᵀ·u·G of
    u = dU[:, k·C + c] (dU 36 × (K·C))."""
    C = split(dw.shape[1], 9)[0]
    k, c = split(i, C)
    col = np.uint64(i)
    # Gᵀ over the rows, column by column (q = Gᵀ·u, 3×6), then Gᵀ over each row of q
    q0 = gt3(dU[0, col], dU[6, col], dU[12, col], dU[18, col], dU[24, col], dU[30, col])
    q1 = gt3(dU[1, col], dU[7, col], dU[13, col], dU[19, col], dU[25, col], dU[31, col])
    q2 = gt3(dU[2, col], dU[8, col], dU[14, col], dU[20, col], dU[26, col], dU[32, col])
    q3 = gt3(dU[3, col], dU[9, col], dU[15, col], dU[21, col], dU[27, col], dU[33, col])
    q4 = gt3(dU[4, col], dU[10, col], dU[16, col], dU[22, col], dU[28, col], dU[34, col])
    q5 = gt3(dU[5, col], dU[11, col], dU[17, col], dU[23, col], dU[29, col], dU[35, col])
    dst = dw[k]
    for r in range(3):
        f = gt3(q0[r], q1[r], q2[r], q3[r], q4[r], q5[r])
        at = np.uint64(c * 9 + 3 * r)
        dst[at] = f[0]
        dst[at + np.uint64(1)] = f[1]
        dst[at + np.uint64(2)] = f[2]
