"""Winograd F(3×3, 5×5) bodies: the transforms around 49 matrix products.

A 5×5 stride-1 convolution (dilation 1, one group) computes each 3×3 output tile from a
7×7 input tile, as F(2×2, 5×5) (``winograd5.py``) its 2×2 tiles from 6×6 ones:

    y_tile = Aᵀ [ Σ_c (G g_kc Gᵀ) ⊙ (Bᵀ d_c B) ] A

from the points 0, 1, −1, 2, −2, 1/2 and ∞ (Toom–Cook; each row of Bᵀ scaled to
integers, the scale moved into G):

    Bᵀ = | 4 −8 −5 10   1 −2 0 |   G = |  1/4     0     0     0     0   |
         | 0 −4  4  9  −1 −2 0 |       |  1/6    1/6   1/6   1/6   1/6  |
         | 0 −4 12 −7  −3  2 0 |       |  1/18 −1/18  1/18 −1/18  1/18  |
         | 0  2 −3 −4   3  2 0 |       |  1/72  1/36  1/18  1/9   2/9   |
         | 0  2 −5  0   5 −2 0 |       | 1/120 −1/60  1/30 −1/15  2/15  |
         | 0  4  0 −5   0  1 0 |       | 32/45 16/45  8/45  4/45  2/45  |
         | 0 −4  8  5 −10 −1 2 |       |   0     0     0     0    1/2   |

    Aᵀ = | 1 1  1 1  1  1   0 |
         | 0 1 −1 2 −2 1/2  0 |
         | 0 1  1 4  4 1/4  1 |

Bᵀ's rows share one difference: with u_i = d_i − 2·d_{i+1} (i < 6) its rows are
4u0 − 5u2 + u4, −4(u1 + u2) + (u3 + u4), −4(u1 − u2) + (u3 − u4), 2(u1 − u3) ± (u2 − u4),
4d1 − 5d3 + d5 and −4u1 + 5u3 − u5 (``bt7``; ``b7`` is its transpose). The α = 7
transforms are shared with other tile sizes: their row bodies, which take the tile step,
are ``winograd7_rows.py``.

49 products of K × C × (tiles) a 3×3 tile: 49·81 = 3969 per channel pair at 27×27
(9×9 tiles) against F(2×2, 5×5)'s 36·196 = 7056, 44% fewer.

Tile t = (n, th, tw) reads input rows 3·th − PT … + 6 and columns 3·tw − PL … + 6 (0
outside) and writes output rows 3·th … 3·th + 2, columns 3·tw … 3·tw + 2 inside OH×OW.
V is 49 × (C·T), U 49 × (K·C), M 49 × (K·T), position ξ = 7·i + j, as ``winograd5.py``.

Backward as ``winograd43.py``'s: dM = A·g·Aᵀ of each 3×3 gradient tile (position
8 = 7·1 + 1 is the tile's sum: the bias gradient is the row sum of dM[8]);
dU[ξ] = dM[ξ] @ V[ξ]ᵀ and dW = Gᵀ·dU·G (7×7 → 5×5); dV[ξ] = U[ξ]ᵀ @ dM[ξ] and each
tile's B·dV·Bᵀ summed into the input (``winograd7_rows.input_grad_tile_row``, step 3).

Each body computes one tile or one filter pair (the GPU's form; no GPU driver); the CPU
runs the row bodies of ``winograd7_rows.py`` and ``winograd35_rows.py``, the same
arithmetic. float32 error per tile against float64 (numpy's matrices, C = 256): mean
5.5e-6, max 1.2e-5 of max |reference| (F(2×2, 5×5)'s 4.6e-6, 2.5e-5); these factored
bodies through the CPU driver, one tile of 256 channels, 200 tiles: mean 2.1e-6, max
6.6e-6 (F(2×2, 5×5)'s driver 1.7e-6, 8.8e-6). The CPU drivers
at AlexNet's conv2 (batch 16, 96 → 256, 27×27, fused ReLU), max |error| / max
|reference|: 6.2e-6 (y), 7.2e-6 (dx), 7.5e-6 (dW), 9.0e-8 (db); F(2×2, 5×5)'s 5.4e-6,
5.7e-6, 1.0e-5, 1.1e-7 (tests/test_winograd35.py).
"""

import numpy as np
from numba import njit

from numbacnn.kernels.index import split
from numbacnn.kernels.winograd5 import _tap

ZERO = np.float32(0.0)
HALF = np.float32(0.5)
TWO = np.float32(2.0)
FOUR = np.float32(4.0)
FIVE = np.float32(5.0)
QUARTER = np.float32(0.25)
SIXTEEN = np.float32(16.0)
THIRTY_TWO = np.float32(32.0)


@njit(inline="always")
def bt7(d0, d1, d2, d3, d4, d5, d6):
    """Bᵀ · (d0 … d6)."""
    u0, u1, u2 = d0 - TWO * d1, d1 - TWO * d2, d2 - TWO * d3
    u3, u4, u5 = d3 - TWO * d4, d4 - TWO * d5, d5 - TWO * d6
    a, b = u1 + u2, u3 + u4
    c, e = u1 - u2, u3 - u4
    f, h = TWO * (u1 - u3), u2 - u4
    return (FOUR * u0 - FIVE * u2 + u4, b - FOUR * a, e - FOUR * c, f + h, f - h,
            FOUR * d1 - FIVE * d3 + d5, FIVE * u3 - FOUR * u1 - u5)


@njit(inline="always")
def b7(v0, v1, v2, v3, v4, v5, v6):
    """B · (v0 … v6): the transpose of Bᵀ (the CPU's dx)."""
    p, m = v1 + v2, v1 - v2
    q, n = v3 + v4, v3 - v4
    w0 = FOUR * v0  # the transpose of bt7's u's: Σ rows · their coefficient of u_i
    w1 = TWO * q - FOUR * (p + v6)
    w2 = n - FIVE * v0 - FOUR * m
    w3 = p - TWO * q + FIVE * v6
    w4 = v0 + m - n
    return (w0, w1 - TWO * w0 + FOUR * v5, w2 - TWO * w1, w3 - TWO * w2 - FIVE * v5,
            w4 - TWO * w3, v5 - v6 - TWO * w4, TWO * v6)


@njit(inline="always")
def g5(g0, g1, g2, g3, g4):
    """G · (g0 … g4)."""
    s, t = g0 + g2 + g4, g1 + g3
    p, q = g0 + FOUR * g2 + SIXTEEN * g4, TWO * g1 + np.float32(8.0) * g3
    r = ((THIRTY_TWO * g0 + SIXTEEN * g1) + (np.float32(8.0) * g2 + FOUR * g3)) + TWO * g4
    return (QUARTER * g0, np.float32(1.0 / 6.0) * (s + t), np.float32(1.0 / 18.0) * (s - t),
            np.float32(1.0 / 72.0) * (p + q), np.float32(1.0 / 120.0) * (p - q),
            np.float32(1.0 / 45.0) * r, HALF * g4)


@njit(inline="always")
def gt5(u0, u1, u2, u3, u4, u5, u6):
    """Gᵀ · (u0 … u6): the transpose of G."""
    a, b = np.float32(1.0 / 6.0) * u1, np.float32(1.0 / 18.0) * u2
    c, e = np.float32(1.0 / 72.0) * u3, np.float32(1.0 / 120.0) * u4
    f = np.float32(1.0 / 45.0) * u5
    P, M, cp, cm = a + b, a - b, c + e, c - e
    return (QUARTER * u0 + P + cp + THIRTY_TWO * f, M + TWO * cm + SIXTEEN * f,
            P + FOUR * cp + np.float32(8.0) * f, M + np.float32(8.0) * cm + FOUR * f,
            P + SIXTEEN * cp + TWO * f + HALF * u6)


@njit(inline="always")
def at3(m0, m1, m2, m3, m4, m5, m6):
    """Aᵀ · (m0 … m6)."""
    p, m = m1 + m2, m1 - m2
    q, d = m3 + m4, m3 - m4
    return m0 + p + q + m5, m + TWO * d + HALF * m5, p + FOUR * q + QUARTER * m5 + m6


@njit(inline="always")
def a3(v0, v1, v2):
    """A · (v0, v1, v2): the transpose of Aᵀ."""
    e = v0 + v2
    e4, o2 = v0 + FOUR * v2, TWO * v1
    return v0, e + v1, e - v1, e4 + o2, e4 - o2, v0 + HALF * v1 + QUARTER * v2, v2


@njit(inline="always")
def store7(V, i, col, v):
    """V[7·i + j, col] = v[j] for j < 7."""
    for j in range(7):
        V[7 * i + j, col] = v[j]


# --- element bodies ---------------------------------------------------------------------
@njit(inline="always")
def _row_bt(src, msk, relu, iy, x0, H, W):
    """(row iy of the plane src from column x0, seven taps: ``winograd5._tap``) times B."""
    return bt7(_tap(src, msk, relu, iy, x0, H, W), _tap(src, msk, relu, iy, x0 + 1, H, W),
               _tap(src, msk, relu, iy, x0 + 2, H, W), _tap(src, msk, relu, iy, x0 + 3, H, W),
               _tap(src, msk, relu, iy, x0 + 4, H, W), _tap(src, msk, relu, iy, x0 + 5, H, W),
               _tap(src, msk, relu, iy, x0 + 6, H, W))


@njit(inline="always")
def input_tile_at(i, V, x, mask, relu, H, W, PT, PL, TH, TW):
    """Input tile i = (c, t), i < C·T: V[:, c·T + t] = Bᵀ·d·B, d the 7×7 tile at rows
    3·th − PT …, columns 3·tw − PL … of x (N×C×(H·W), planes flat), 0 outside; with
    ``relu`` ≠ 0 also 0 where ``mask`` (shaped as x) ≤ 0."""
    N = x.shape[0]
    T = N * TH * TW
    c, t = split(i, T)
    n, r = split(t, TH * TW)
    th, tw = split(r, TW)
    y0, x0 = 3 * th - PT, 3 * tw - PL
    src, msk = x[n, c], mask[n, c]
    r0 = _row_bt(src, msk, relu, y0, x0, H, W)  # each row of d times B
    r1 = _row_bt(src, msk, relu, y0 + 1, x0, H, W)
    r2 = _row_bt(src, msk, relu, y0 + 2, x0, H, W)
    r3 = _row_bt(src, msk, relu, y0 + 3, x0, H, W)
    r4 = _row_bt(src, msk, relu, y0 + 4, x0, H, W)
    r5 = _row_bt(src, msk, relu, y0 + 5, x0, H, W)
    r6 = _row_bt(src, msk, relu, y0 + 6, x0, H, W)
    col = np.uint64(c * T + t)
    for j in range(7):
        v = bt7(r0[j], r1[j], r2[j], r3[j], r4[j], r5[j], r6[j])
        for a in range(7):
            V[7 * a + j, col] = v[a]


@njit(inline="always")
def store_filter(U, col, src, base):
    """U[:, col] = G·g·Gᵀ of the 5×5 filter g at src[base …] (row by row)."""
    c0 = g5(src[base], src[base + 5], src[base + 10], src[base + 15], src[base + 20])
    c1 = g5(src[base + 1], src[base + 6], src[base + 11], src[base + 16], src[base + 21])
    c2 = g5(src[base + 2], src[base + 7], src[base + 12], src[base + 17], src[base + 22])
    c3 = g5(src[base + 3], src[base + 8], src[base + 13], src[base + 18], src[base + 23])
    c4 = g5(src[base + 4], src[base + 9], src[base + 14], src[base + 19], src[base + 24])
    for i in range(7):  # G over each column of g above, then over each row of that
        store7(U, i, col, g5(c0[i], c1[i], c2[i], c3[i], c4[i]))


@njit(inline="always")
def filter_tile_at(i, U, w):
    """Filter pair i = (k, c) of w (K × C·25, each 5×5 filter flat): G·g·Gᵀ into U[:, i]."""
    C = split(w.shape[1], 25)[0]
    k, c = split(i, C)
    store_filter(U, np.uint64(i), w[k], c * 25)


@njit(inline="always")
def _at3_column(M, j, col):
    """Aᵀ over column j of the 7×7 m = M[:, col]."""
    return at3(M[j, col], M[7 + j, col], M[14 + j, col], M[21 + j, col], M[28 + j, col],
               M[35 + j, col], M[42 + j, col])


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
    col = np.uint64(k * T + t)
    c0, c1, c2 = _at3_column(M, 0, col), _at3_column(M, 1, col), _at3_column(M, 2, col)
    c3, c4, c5 = _at3_column(M, 3, col), _at3_column(M, 4, col), _at3_column(M, 5, col)
    c6 = _at3_column(M, 6, col)
    dst = y[n, k]
    for a in range(min(3, OH - 3 * th)):
        v = at3(c0[a], c1[a], c2[a], c3[a], c4[a], c5[a], c6[a])
        for j in range(min(3, OW - 3 * tw)):
            dst[np.uint64((3 * th + a) * OW + 3 * tw + j)] = max(v[j] + bias, floor)


@njit(inline="always")
def output_grad_tile_at(i, dM, dy, y, relu, OH, OW, TH, TW):
    """Output-gradient tile i = (k, t), i < K·T: dM[:, k·T + t] = A·g·Aᵀ of the 3×3 tile g
    of dy (N×K×(OH·OW), planes flat; 0 outside OH×OW, and where y ≤ 0 when ``relu`` ≠ 0)."""
    N = dy.shape[0]
    T = N * TH * TW
    k, t = split(i, T)
    n, r = split(t, TH * TW)
    th, tw = split(r, TW)
    src, msk = dy[n, k], y[n, k]
    oy, ox = 3 * th, 3 * tw
    c0 = a3(_tap(src, msk, relu, oy, ox, OH, OW), _tap(src, msk, relu, oy + 1, ox, OH, OW),
            _tap(src, msk, relu, oy + 2, ox, OH, OW))  # A over each column of g
    c1 = a3(_tap(src, msk, relu, oy, ox + 1, OH, OW),
            _tap(src, msk, relu, oy + 1, ox + 1, OH, OW),
            _tap(src, msk, relu, oy + 2, ox + 1, OH, OW))
    c2 = a3(_tap(src, msk, relu, oy, ox + 2, OH, OW),
            _tap(src, msk, relu, oy + 1, ox + 2, OH, OW),
            _tap(src, msk, relu, oy + 2, ox + 2, OH, OW))
    col = np.uint64(k * T + t)
    for a in range(7):
        store7(dM, a, col, a3(c0[a], c1[a], c2[a]))


@njit(inline="always")
def _gt5_column(dU, j, col):
    """Gᵀ over column j of the 7×7 u = dU[:, col]."""
    return gt5(dU[j, col], dU[7 + j, col], dU[14 + j, col], dU[21 + j, col], dU[28 + j, col],
               dU[35 + j, col], dU[42 + j, col])


@njit(inline="always")
def filter_grad_at(i, dw, dU):
    """Filter pair i = (k, c) of dw (K × C·25): the 5×5 filter gradient Gᵀ·u·G of
    u = dU[:, k·C + c] (dU 49 × (K·C))."""
    C = split(dw.shape[1], 25)[0]
    k, c = split(i, C)
    col = np.uint64(i)
    # Gᵀ over the rows, column by column (q = Gᵀ·u, 5×7), then Gᵀ over each row of q
    q0, q1, q2 = _gt5_column(dU, 0, col), _gt5_column(dU, 1, col), _gt5_column(dU, 2, col)
    q3, q4, q5 = _gt5_column(dU, 3, col), _gt5_column(dU, 4, col), _gt5_column(dU, 5, col)
    q6 = _gt5_column(dU, 6, col)
    dst = dw[k]
    for r in range(5):
        f = gt5(q0[r], q1[r], q2[r], q3[r], q4[r], q5[r], q6[r])
        at = np.uint64(c * 25 + 5 * r)
        for j in range(5):
            dst[at + np.uint64(j)] = f[j]
