"""Winograd F(2×2, 5×5) bodies: the transforms around 36 matrix products.

The 5×5 counterpart of ``winograd.py`` (read that first: the same layouts, with 6×6
input tiles and 36 positions ξ = 6·i + j in place of 4×4 and 16). A 5×5 stride-1
convolution (dilation 1, one group) computes each 2×2 output tile from a 6×6 input tile:

    y_tile = Aᵀ [ Σ_c (G g_kc Gᵀ) ⊙ (Bᵀ d_c B) ] A

from the interpolation points 0, 1, −1, 2, −2 and ∞ (Toom–Cook, as Lavin & Gray):

    Bᵀ = | 4  0 −5  0  1  0 |   G = |  1/4    0     0     0     0  |   Aᵀ = | 1 1  1 1  1 0 |
         | 0 −4 −4  1  1  0 |       | −1/6 −1/6  −1/6  −1/6  −1/6 |        | 0 1 −1 2 −2 1 |
         | 0  4 −4 −1  1  0 |       | −1/6  1/6  −1/6   1/6  −1/6 |
         | 0 −2 −1  2  1  0 |       | 1/24  1/12  1/6   1/3   2/3 |
         | 0  2 −1 −2  1  0 |       | 1/24 −1/12  1/6  −1/3   2/3 |
         | 0  4  0 −5  0  1 |       |   0     0     0     0     1  |

Bᵀ has integers only (the input transform, run on x and on the output gradient, is the
most frequent); the fractions sit in the filter transform. The points ±1/2 in place of
±2 gave 8% more float32 error on random tiles, {0, ±1, 2, 1/2} 58% more. 36 products
of K × C × (tiles) replace 25·4 = 100 multiply-adds per output pixel pair: 2.78× fewer.

Tile t = (n, th, tw) reads input rows 2·th − PT … + 5 and columns 2·tw − PL … + 5 (0
outside) and writes the output rows 2·th, 2·th + 1, columns 2·tw, 2·tw + 1 inside OH×OW.
V is 36 × (C·T), U 36 × (K·C), M 36 × (K·T), as in ``winograd.py``.

Backward: dM = A·g·Aᵀ of each 2×2 gradient tile (position 7 = 6·1 + 1 is the tile's
sum: the bias gradient is the row sum of dM[7]); dU[ξ] = dM[ξ] @ V[ξ]ᵀ and
dW = Gᵀ·dU·G (6×6 → 5×5). dx, on the GPU: the convolution of the gradient with the
filters flipped and transposed (W'[c, k, fy, fx] = W[k, c, 4 − fy, 4 − fx]), padding
4 − PT, 4 − PL, onto H×W, through the same forward transforms; the points are not closed
under x → 1/x, so the flipped filters' transform is no permutation of the unflipped one
(as the 3×3's is): their own transform (``flip``). On the CPU: backward through the input
transform, dV[ξ] = U[ξ]ᵀ @ dM[ξ] and each tile's B·dV·Bᵀ (``b6``) summed into the input
(``winograd5_rows.input_grad_tile_row``): no second input transform over K planes.

Each body computes one tile or one filter pair (the GPU runs one per thread; the CPU the
row bodies of ``winograd5_rows.py``, the same arithmetic; the input transform in
another order). float32 error against a float64 convolution (tests/test_winograd5.py):
up to 6.5e-6 of max |reference| for y, 7.8e-6 dx, 1.4e-5 dW, 1.4e-7 db at C = 96–256
(im2col: 4.0e-7, 3.0e-7, 7.4e-7, 2.1e-7).
"""

import numpy as np
from numba import njit

from numbacnn.kernels.index import split

ZERO = np.float32(0.0)
TWO = np.float32(2.0)
FOUR = np.float32(4.0)
FIVE = np.float32(5.0)
QUARTER = np.float32(0.25)
SIXTH = np.float32(1.0 / 6.0)
TWELFTH = np.float32(1.0 / 12.0)
TWENTYFOURTH = np.float32(1.0 / 24.0)
THIRD = np.float32(1.0 / 3.0)
TWO_THIRDS = np.float32(2.0 / 3.0)


@njit(inline="always")
def bt6(d0, d1, d2, d3, d4, d5):
    """Bᵀ · (d0 … d5)."""
    a = d4 - FOUR * d2
    b = d3 - FOUR * d1
    c = d4 - d2
    e = TWO * (d3 - d1)
    return (FOUR * d0 - FIVE * d2 + d4, a + b, a - b, c + e, c - e,
            FOUR * d1 - FIVE * d3 + d5)


@njit(inline="always")
def b6(v0, v1, v2, v3, v4, v5):
    """B · (v0 … v5): the transpose of Bᵀ (the CPU's dx, ``winograd5_rows``)."""
    p = v1 + v2
    m = v1 - v2
    q = v3 + v4
    d = v3 - v4
    return (FOUR * v0, FOUR * (v5 - m) - TWO * d, -FIVE * v0 - FOUR * p - q,
            m + TWO * d - FIVE * v5, v0 + p + q, v5)


@njit(inline="always")
def g5(g0, g1, g2, g3, g4):
    """G · (g0 … g4)."""
    s = g0 + g2 + g4
    t = g1 + g3
    p = g0 + FOUR * g2 + np.float32(16.0) * g4
    q = TWO * g1 + np.float32(8.0) * g3
    return (QUARTER * g0, -SIXTH * (s + t), -SIXTH * (s - t), TWENTYFOURTH * (p + q),
            TWENTYFOURTH * (p - q), g4)


@njit(inline="always")
def at6(m0, m1, m2, m3, m4, m5):
    """Aᵀ · (m0 … m5)."""
    return m0 + (m1 + m2) + (m3 + m4), (m1 - m2) + TWO * (m3 - m4) + m5


@njit(inline="always")
def a6(v0, v1):
    """A · (v0, v1): the transpose of Aᵀ."""
    w = TWO * v1
    return v0, v0 + v1, v0 - v1, v0 + w, v0 - w, v1


@njit(inline="always")
def gt5(u0, u1, u2, u3, u4, u5):
    """Gᵀ · (u0 … u5): the transpose of G."""
    sp, sm = SIXTH * (u1 + u2), SIXTH * (u1 - u2)
    tp, tm = u3 + u4, u3 - u4
    return (QUARTER * u0 - sp + TWENTYFOURTH * tp, TWELFTH * tm - sm, SIXTH * tp - sp,
            THIRD * tm - sm, TWO_THIRDS * tp - sp + u5)


# --- element bodies ---------------------------------------------------------------------
@njit(inline="always")
def _tap(src, mask, relu, iy, ix, H, W):
    """src[iy·W + ix], 0 outside H×W, and 0 where mask ≤ 0 when ``relu`` ≠ 0 (clamped
    loads and a select, as ``winograd._tap``; a copy: the CUDA simulator runs this
    module's own Python bodies only)."""
    inside = iy >= 0 and iy < H and ix >= 0 and ix < W
    q = np.uint64(min(max(iy, 0), H - 1) * W + min(max(ix, 0), W - 1))
    v = src[q]
    m = mask[q] if relu else np.float32(1.0)  # the mask read only when it is used
    keep = inside and m > ZERO
    return v if keep else ZERO


@njit(inline="always")
def _row_bt_half(src, mask, relu, iy, x0, H, W, half):
    """Half ``half`` (0: columns 0–2, 1: columns 3–5) of row iy of the tile from column
    x0 times B: three of ``bt6``'s values (the same arithmetic) from the five taps they
    need, x0 + half … x0 + half + 4."""
    x = x0 + half
    e0, e1, e2 = (_tap(src, mask, relu, iy, x, H, W), _tap(src, mask, relu, iy, x + 1, H, W),
                  _tap(src, mask, relu, iy, x + 2, H, W))
    e3, e4 = _tap(src, mask, relu, iy, x + 3, H, W), _tap(src, mask, relu, iy, x + 4, H, W)
    edge = FOUR * e0 - FIVE * e2 + e4  # bt6's first value (half 0) or last (half 1)
    if half == 0:  # (d0 … d4) = (e0 … e4)
        a = e4 - FOUR * e2
        b = e3 - FOUR * e1
        return edge, a + b, a - b
    c = e3 - e1  # (d1 … d5) = (e0 … e4)
    e = TWO * (e2 - e0)
    return c + e, c - e, edge


@njit(inline="always")
def _mix3_3(p, q, r, a, b):
    """a·p + b·q + r, element by element (3-tuples)."""
    return a * p[0] + b * q[0] + r[0], a * p[1] + b * q[1] + r[1], a * p[2] + b * q[2] + r[2]


@njit(inline="always")
def _mix2_3(p, q, a, b):
    """a·p + b·q, element by element (3-tuples)."""
    return a * p[0] + b * q[0], a * p[1] + b * q[1], a * p[2] + b * q[2]


@njit(inline="always")
def _store3(V, at, col, p, q, sign):
    """V[at + j, col] = p[j] + sign·q[j] for j < 3 (sign 0 or ±1)."""
    V[at, col] = p[0] + sign * q[0]
    V[at + 1, col] = p[1] + sign * q[1]
    V[at + 2, col] = p[2] + sign * q[2]


@njit(inline="always")
def store6(V, i, col, v):
    """V[6·i + j, col] = v[j] for j < 6."""
    V[6 * i, col] = v[0]
    V[6 * i + 1, col] = v[1]
    V[6 * i + 2, col] = v[2]
    V[6 * i + 3, col] = v[3]
    V[6 * i + 4, col] = v[4]
    V[6 * i + 5, col] = v[5]


@njit(inline="always")
def input_tile_at(i, V, x, mask, relu, H, W, PT, PL, TH, TW):
    """Input half-tile i = (c, t, half), i < 2·C·T: columns 3·half … 3·half + 2 of
    V[:, c·T + t] = Bᵀ·d·B, d the 6×6 tile at rows 2·th − PT …, columns 2·tw − PL … of x
    (N×C×(H·W), planes flat), 0 outside; with ``relu`` ≠ 0 also 0 where ``mask`` (shaped
    as x) ≤ 0. Two threads a tile, each with half of it in registers: ptxas (sm_90) gave
    a whole tile 90 registers, a half 70, a third 80. Bᵀ over the rows as ``bt6``: rows
    1–4 are a ± b and c ± e (a = t4 − 4·t2, c = t4 − t2, b = t3 − 4·t1, e = 2·(t3 − t1),
    t_r row r times B), row 0 = 4·(t0 − t2) + c, row 5 = (4·t1 − 5·t3) + t5; the even
    rows are reduced to a and c before the odd ones are read."""
    N = x.shape[0]
    T = N * TH * TW
    ct, half = split(i, 2)
    c, t = split(ct, T)
    n, r = split(t, TH * TW)
    th, tw = split(r, TW)
    y0 = 2 * th - PT
    x0 = 2 * tw - PL
    src = x[n, c]
    msk = mask[n, c]
    col = np.uint64(c * T + t)
    j = 3 * half  # the first of this thread's three columns
    t2 = _row_bt_half(src, msk, relu, y0 + 2, x0, H, W, half)
    t4 = _row_bt_half(src, msk, relu, y0 + 4, x0, H, W, half)
    one = np.float32(1.0)
    a, cc = _mix2_3(t4, t2, one, -FOUR), _mix2_3(t4, t2, one, -one)  # a, c
    m0 = _mix3_3(_row_bt_half(src, msk, relu, y0, x0, H, W, half), t2, cc, FOUR, -FOUR)
    _store3(V, j, col, m0, m0, ZERO)
    t1 = _row_bt_half(src, msk, relu, y0 + 1, x0, H, W, half)
    t3 = _row_bt_half(src, msk, relu, y0 + 3, x0, H, W, half)
    b, e = _mix2_3(t3, t1, one, -FOUR), _mix2_3(t3, t1, TWO, -TWO)  # b, e
    r5 = _mix2_3(t1, t3, FOUR, -FIVE)
    _store3(V, 6 + j, col, a, b, one)
    _store3(V, 12 + j, col, a, b, -one)
    _store3(V, 18 + j, col, cc, e, one)
    _store3(V, 24 + j, col, cc, e, -one)
    _store3(V, 30 + j, col, r5, _row_bt_half(src, msk, relu, y0 + 5, x0, H, W, half), one)


@njit(inline="always")
def filter_values(src, base, flip):
    """The 25 taps of the 5×5 filter at src[base …] (row by row), rotated by 180° when
    ``flip`` ≠ 0, as five columns: ((g00, g10, …, g40), (g01, …), …)."""
    g = (src[base], src[base + 1], src[base + 2], src[base + 3], src[base + 4],
         src[base + 5], src[base + 6], src[base + 7], src[base + 8], src[base + 9],
         src[base + 10], src[base + 11], src[base + 12], src[base + 13], src[base + 14],
         src[base + 15], src[base + 16], src[base + 17], src[base + 18], src[base + 19],
         src[base + 20], src[base + 21], src[base + 22], src[base + 23], src[base + 24])
    if flip:
        g = (g[24], g[23], g[22], g[21], g[20], g[19], g[18], g[17], g[16], g[15], g[14],
             g[13], g[12], g[11], g[10], g[9], g[8], g[7], g[6], g[5], g[4], g[3], g[2],
             g[1], g[0])
    return ((g[0], g[5], g[10], g[15], g[20]), (g[1], g[6], g[11], g[16], g[21]),
            (g[2], g[7], g[12], g[17], g[22]), (g[3], g[8], g[13], g[18], g[23]),
            (g[4], g[9], g[14], g[19], g[24]))


@njit(inline="always")
def store_filter(U, col, cols):
    """U[:, col] = G·g·Gᵀ from the five columns of g (``filter_values``)."""
    c0 = g5(cols[0][0], cols[0][1], cols[0][2], cols[0][3], cols[0][4])
    c1 = g5(cols[1][0], cols[1][1], cols[1][2], cols[1][3], cols[1][4])
    c2 = g5(cols[2][0], cols[2][1], cols[2][2], cols[2][3], cols[2][4])
    c3 = g5(cols[3][0], cols[3][1], cols[3][2], cols[3][3], cols[3][4])
    c4 = g5(cols[4][0], cols[4][1], cols[4][2], cols[4][3], cols[4][4])
    for i in range(6):
        store6(U, i, col, g5(c0[i], c1[i], c2[i], c3[i], c4[i]))


@njit(inline="always")
def filter_tile_at(i, U, w, flip):
    """Filter pair i of w (K × C·25, each 5×5 filter flat): G·g·Gᵀ into U. ``flip`` = 0:
    i = (k, c), U 36 × (K·C), column k·C + c. ``flip`` ≠ 0 (dx's filters): i = (c, k),
    U 36 × (C·K), column c·K + k, g the filter rotated by 180°."""
    K = w.shape[0]
    C = split(w.shape[1], 25)[0]
    if flip:
        c, k = split(i, K)
    else:
        k, c = split(i, C)
    store_filter(U, np.uint64(i), filter_values(w[k], c * 25, flip))


@njit(inline="always")
def output_values(M, col, bias, floor):
    """The 2×2 outputs (top left, top right, bottom left, bottom right) of column col of
    M: Aᵀ·m·A plus ``bias``, then max(·, floor)."""
    c0 = at6(M[0, col], M[6, col], M[12, col], M[18, col], M[24, col], M[30, col])
    c1 = at6(M[1, col], M[7, col], M[13, col], M[19, col], M[25, col], M[31, col])
    c2 = at6(M[2, col], M[8, col], M[14, col], M[20, col], M[26, col], M[32, col])
    c3 = at6(M[3, col], M[9, col], M[15, col], M[21, col], M[27, col], M[33, col])
    c4 = at6(M[4, col], M[10, col], M[16, col], M[22, col], M[28, col], M[34, col])
    c5 = at6(M[5, col], M[11, col], M[17, col], M[23, col], M[29, col], M[35, col])
    top = at6(c0[0], c1[0], c2[0], c3[0], c4[0], c5[0])
    bottom = at6(c0[1], c1[1], c2[1], c3[1], c4[1], c5[1])
    return (max(top[0] + bias, floor), max(top[1] + bias, floor),
            max(bottom[0] + bias, floor), max(bottom[1] + bias, floor))


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
    oy, ox = 2 * th, 2 * tw
    right = ox + 1 < OW
    dst[np.uint64(oy * OW + ox)] = v[0]
    if right:
        dst[np.uint64(oy * OW + ox + 1)] = v[1]
    if oy + 1 < OH:
        dst[np.uint64((oy + 1) * OW + ox)] = v[2]
        if right:
            dst[np.uint64((oy + 1) * OW + ox + 1)] = v[3]


@njit(inline="always")
def store_output_grad(dM, col, g00, g01, g10, g11):
    """dM[:, col] = A·g·Aᵀ of the 2×2 tile g."""
    left = a6(g00, g10)  # A over the tile's left column, then its right
    right = a6(g01, g11)
    for i in range(6):
        store6(dM, i, col, a6(left[i], right[i]))


@njit(inline="always")
def output_grad_tile_at(i, dM, dy, y, relu, OH, OW, TH, TW):
    """Output-gradient tile i = (k, t), i < K·T: dM[:, k·T + t] = A·g·Aᵀ of the 2×2 tile g
    of dy (N×K×(OH·OW), planes flat; 0 outside OH×OW, and where y ≤ 0 when ``relu`` ≠ 0)."""
    N = dy.shape[0]
    T = N * TH * TW
    k, t = split(i, T)
    n, r = split(t, TH * TW)
    th, tw = split(r, TW)
    src = dy[n, k]
    msk = y[n, k]
    oy, ox = 2 * th, 2 * tw
    store_output_grad(dM, np.uint64(k * T + t), _tap(src, msk, relu, oy, ox, OH, OW),
                      _tap(src, msk, relu, oy, ox + 1, OH, OW),
                      _tap(src, msk, relu, oy + 1, ox, OH, OW),
                      _tap(src, msk, relu, oy + 1, ox + 1, OH, OW))


@njit(inline="always")
def filter_grad_at(i, dw, dU):
    """Filter pair i = (k, c) of dw (K × C·25): the 5×5 filter gradient Gᵀ·u·G of
    u = dU[:, k·C + c] (dU 36 × (K·C))."""
    C = split(dw.shape[1], 25)[0]
    k, c = split(i, C)
    col = np.uint64(i)
    # Gᵀ over the rows, column by column (q = Gᵀ·u, 5×6), then Gᵀ over each row of q
    q0 = gt5(dU[0, col], dU[6, col], dU[12, col], dU[18, col], dU[24, col], dU[30, col])
    q1 = gt5(dU[1, col], dU[7, col], dU[13, col], dU[19, col], dU[25, col], dU[31, col])
    q2 = gt5(dU[2, col], dU[8, col], dU[14, col], dU[20, col], dU[26, col], dU[32, col])
    q3 = gt5(dU[3, col], dU[9, col], dU[15, col], dU[21, col], dU[27, col], dU[33, col])
    q4 = gt5(dU[4, col], dU[10, col], dU[16, col], dU[22, col], dU[28, col], dU[34, col])
    q5 = gt5(dU[5, col], dU[11, col], dU[17, col], dU[23, col], dU[29, col], dU[35, col])
    dst = dw[k]
    for r in range(5):
        f = gt5(q0[r], q1[r], q2[r], q3[r], q4[r], q5[r])
        at = np.uint64(c * 25 + 5 * r)
        dst[at] = f[0]
        dst[at + np.uint64(1)] = f[1]
        dst[at + np.uint64(2)] = f[2]
        dst[at + np.uint64(3)] = f[3]
        dst[at + np.uint64(4)] = f[4]
