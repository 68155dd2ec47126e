"""Winograd F(2×2, 3×3) bodies: the transforms around 16 matrix products.

A 3×3 stride-1 convolution (dilation 1, one group) of x (N×C×H×W) with filters
g (K×C×3×3) computes each 2×2 tile of the output from a 4×4 tile of the (padded) input:

    y_tile = Aᵀ [ Σ_c (G g_kc Gᵀ) ⊙ (Bᵀ d_c B) ] A

    Bᵀ = | 1  0 −1  0 |    G = | 1    0    0  |    Aᵀ = | 1  1  1  0 |
         | 0  1  1  0 |        | ½    ½    ½  |         | 0  1 −1 −1 |
         | 0 −1  1  0 |        | ½   −½    ½  |
         | 0  1  0 −1 |        | 0    0    1  |

(Lavin & Gray, 2016). The sum over c of the element-wise products is, for each of the
16 positions ξ = 4·i + j of the 4×4 tile, one matrix product
M[ξ] (K × T) = U[ξ] (K × C) @ V[ξ] (C × T), T = N·TH·TW tiles, TH = ⌈OH/2⌉, TW = ⌈OW/2⌉;
tile t = (n, th, tw) reads input rows 2·th − PT … + 3 and columns 2·tw − PL … + 3 (0
outside the input) and writes output rows 2·th, 2·th + 1 and columns 2·tw, 2·tw + 1
that lie inside OH×OW (a partial edge tile drops the rest). The layouts are 2-D:
V is 16 × (C·T) with column c·T + t, U is 16 × (K·C) with column k·C + c, M is
16 × (K·T) with column k·T + t.

Backward (the exact gradient of the computation above):

* dM[ξ] = (A · g_tile · Aᵀ)[ξ] of each 2×2 tile of the output gradient g (dy, masked
  by y > 0 under a fused ReLU); position ξ = 5 of A·g·Aᵀ is the sum of the tile, so the
  bias gradient is the row sum of dM[5];
* dU[ξ] (K × C) = dM[ξ] (K × T) @ V[ξ]ᵀ, and dW = Gᵀ · dU · G (4×4 → 3×3);
* dx is the convolution of g with the filters flipped and transposed (C×K×3×3,
  W'[c, k, fy, fx] = W[k, c, 2 − fy, 2 − fx]) and padding 2 − PT, 2 − PL, onto an H×W
  output: the same three forward transforms (input, filter with ``flip``, output
  without bias), the gradient's ReLU mask applied as the input tiles are read.

Each body computes one tile (input, output, gradient) or one filter pair (k, c): the GPU
runs one per thread; the CPU runs the row bodies of ``winograd_rows.py`` (a row of tiles
per call, the same arithmetic) and ``filter_grad_at`` in a loop. float32 throughout. Error against a
float64 convolution (``tests/test_winograd.py``, odd sizes, pads 0–2, C and K up to 256):
max |error| / max |reference| 4.0e-7 for y, 3.7e-7 dx, 5.0e-7 dW, 1.3e-7 db — the
transforms only add and halve, so about im2col's (4.3e-7, 1.8e-7, 3.9e-7, 1.6e-7).
"""

import numpy as np
from numba import njit

from numbacnn.kernels.index import split

HALF = np.float32(0.5)


@njit(inline="always")
def _bt(d0, d1, d2, d3):
    """Bᵀ · (d0, d1, d2, d3)."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(inline="always")
def _g(g0, g1, g2):
    """G · (g0, g1, g2)."""
    return g0, HALF * (g0 + g1 + g2), HALF * (g0 - g1 + g2), g2


@njit(inline="always")
def _at(m0, m1, m2, m3):
    """Aᵀ · (m0, m1, m2, m3)."""
    return m0 + m1 + m2, m1 - m2 - m3


@njit(inline="always")
def _a(v0, v1):
    """A · (v0, v1): the transpose of Aᵀ."""
    return v0, v0 + v1, v0 - v1, -v1


@njit(inline="always")
def _gt(u0, u1, u2, u3):
    """Gᵀ · (u0, u1, u2, u3): the transpose of G."""
    return u0 + HALF * (u1 + u2), HALF * (u1 - u2), HALF * (u1 + u2) + u3


@njit(inline="always")
def _tap(src, mask, relu, iy, ix, H, W):
    """src[iy·W + ix], 0 outside H×W, and 0 where mask ≤ 0 when ``relu`` ≠ 0. Both
    loads read a clamped index and the choice is a select: with early returns numba
    kept the arrays' reference counting in the loop (16 taps: 13× slower on the CPU)."""
    inside = iy >= 0 and iy < H and ix >= 0 and ix < W
    q = np.uint64(min(max(iy, 0), H - 1) * W + min(max(ix, 0), W - 1))
    v = src[q]
    m = mask[q]
    keep = inside and (relu == 0 or m > np.float32(0.0))
    return v if keep else np.float32(0.0)


@njit(inline="always")
def _row4(src, mask, relu, iy, x0, H, W):
    """Four taps of row iy from column x0 (see :func:`_tap`)."""
    return (_tap(src, mask, relu, iy, x0, H, W), _tap(src, mask, relu, iy, x0 + 1, H, W),
            _tap(src, mask, relu, iy, x0 + 2, H, W), _tap(src, mask, relu, iy, x0 + 3, H, W))


@njit(inline="always")
def _row4_inside(src, q):
    """src[q … q + 3]."""
    one = np.uint64(1)
    return src[q], src[q + one], src[q + one + one], src[q + one + one + one]


@njit(inline="always")
def _store_row(V, i, col, v):
    """V[4·i + j, col] = v[j] for j < 4."""
    V[4 * i, col] = v[0]
    V[4 * i + 1, col] = v[1]
    V[4 * i + 2, col] = v[2]
    V[4 * i + 3, col] = v[3]


@njit(inline="always")
def input_tile_at(i, V, x, mask, relu, H, W, PT, PL, TH, TW):
    """Input tile i = (c, t), i < C·T, t = (n, th, tw): V[:, c·T + t] = Bᵀ·d·B of the 4×4
    tile d at rows 2·th − PT …, columns 2·tw − PL … of x (N×C×(H·W), planes flat), 0
    outside; with ``relu`` ≠ 0 also 0 where ``mask`` (shaped as x) ≤ 0."""
    N = x.shape[0]
    T = N * TH * TW
    c, t = split(i, T)
    n, r = split(t, TH * TW)
    th, tw = split(r, TW)
    y0 = 2 * th - PT
    x0 = 2 * tw - PL
    src = x[n, c]
    msk = mask[n, c]
    # A tile inside the input, unmasked, takes plain loads; the others clamped loads and a
    # select. Rows go through B in the order 0, 2, 1, 3, each stored as soon as it can
    # be, so that 8 values are live rather than 16: the GPU kernel takes 64 registers, not
    # 96. (Loading all 16 first under one branch was faster on the CPU alone, 4.3 against
    # 9 ms for 16 images of AlexNet's conv3 on one core, but a CPU driver with that order
    # left the layer's time where it was: bench/RESULTS.md, "Winograd F(2×2, 3×3)".)
    inside = relu == 0 and y0 >= 0 and x0 >= 0 and y0 + 4 <= H and x0 + 4 <= W
    q = np.uint64(max(y0, 0) * W + max(x0, 0))  # the tile's first element, when inside
    w = np.uint64(W)
    col = np.uint64(c * T + t)
    # Bᵀ·d·B = Bᵀ·(d·B): each row of d times B first, then the rows combined as Bᵀ says
    if inside:
        r0 = _row4_inside(src, q)
    else:
        r0 = _row4(src, msk, relu, y0, x0, H, W)
    t0 = _bt(r0[0], r0[1], r0[2], r0[3])
    if inside:
        r2 = _row4_inside(src, q + w + w)
    else:
        r2 = _row4(src, msk, relu, y0 + 2, x0, H, W)
    t2 = _bt(r2[0], r2[1], r2[2], r2[3])
    _store_row(V, 0, col, (t0[0] - t2[0], t0[1] - t2[1], t0[2] - t2[2], t0[3] - t2[3]))
    if inside:
        r1 = _row4_inside(src, q + w)
    else:
        r1 = _row4(src, msk, relu, y0 + 1, x0, H, W)
    t1 = _bt(r1[0], r1[1], r1[2], r1[3])
    _store_row(V, 1, col, (t1[0] + t2[0], t1[1] + t2[1], t1[2] + t2[2], t1[3] + t2[3]))
    _store_row(V, 2, col, (t2[0] - t1[0], t2[1] - t1[1], t2[2] - t1[2], t2[3] - t1[3]))
    if inside:
        r3 = _row4_inside(src, q + w + w + w)
    else:
        r3 = _row4(src, msk, relu, y0 + 3, x0, H, W)
    t3 = _bt(r3[0], r3[1], r3[2], r3[3])
    _store_row(V, 3, col, (t1[0] - t3[0], t1[1] - t3[1], t1[2] - t3[2], t1[3] - t3[3]))


@njit(inline="always")
def filter_tile_at(i, U, w, flip):
    """Filter pair i of w (K × C·9, each 3×3 filter flat): G·g·Gᵀ into U. ``flip`` = 0:
    i = (k, c), U is 16 × (K·C), column k·C + c. ``flip`` ≠ 0 (dx's filters): i = (c, k),
    U is 16 × (C·K), column c·K + k, g the filter rotated by 180°."""
    K = w.shape[0]
    C = split(w.shape[1], 9)[0]
    if flip:
        c, k = split(i, K)
    else:
        k, c = split(i, C)
    src = w[k]
    base = c * 9
    g = (src[base], src[base + 1], src[base + 2], src[base + 3], src[base + 4],
         src[base + 5], src[base + 6], src[base + 7], src[base + 8])
    if flip:
        g = (g[8], g[7], g[6], g[5], g[4], g[3], g[2], g[1], g[0])
    col = np.uint64(i)  # k·C + c, or c·K + k
    # G over the columns (p = G·g, 4×3), then G over each row of p
    c0 = _g(g[0], g[3], g[6])
    c1 = _g(g[1], g[4], g[7])
    c2 = _g(g[2], g[5], g[8])
    _store_row(U, 0, col, _g(c0[0], c1[0], c2[0]))
    _store_row(U, 1, col, _g(c0[1], c1[1], c2[1]))
    _store_row(U, 2, col, _g(c0[2], c1[2], c2[2]))
    _store_row(U, 3, col, _g(c0[3], c1[3], c2[3]))


@njit(inline="always")
def output_values(M, col, bias, floor):
    """The 2×2 outputs (top left, top right, bottom left, bottom right) of column col of
    M: Aᵀ·m·A plus ``bias``, then max(·, floor) (``output_tile_at``, and the CPU's row bodies)."""
    u0 = (M[0, col] + M[4, col] + M[8, col], M[1, col] + M[5, col] + M[9, col],
          M[2, col] + M[6, col] + M[10, col], M[3, col] + M[7, col] + M[11, col])
    u1 = (M[4, col] - M[8, col] - M[12, col], M[5, col] - M[9, col] - M[13, col],
          M[6, col] - M[10, col] - M[14, col], M[7, col] - M[11, col] - M[15, col])
    top = _at(u0[0], u0[1], u0[2], u0[3])
    bottom = _at(u1[0], u1[1], u1[2], u1[3])
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
    bias = b[k] if with_bias else np.float32(0.0)
    floor = np.float32(0.0) if relu else np.float32(-np.inf)
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
    g00 = _tap(src, msk, relu, oy, ox, OH, OW)
    g01 = _tap(src, msk, relu, oy, ox + 1, OH, OW)
    g10 = _tap(src, msk, relu, oy + 1, ox, OH, OW)
    g11 = _tap(src, msk, relu, oy + 1, ox + 1, OH, OW)
    col = np.uint64(k * T + t)
    left = _a(g00, g10)  # A over the column of the tile's left, then its right outputs
    right = _a(g01, g11)
    _store_row(dM, 0, col, _a(left[0], right[0]))
    _store_row(dM, 1, col, _a(left[1], right[1]))
    _store_row(dM, 2, col, _a(left[2], right[2]))
    _store_row(dM, 3, col, _a(left[3], right[3]))


@njit(inline="always")
def filter_grad_at(i, dw, dU):
    """Filter pair i = (k, c) of dw (K × C·9): the 3×3 filter gradient Gᵀ·u·G of
    u = dU[:, k·C + c] (dU 16 × (K·C))."""
    C = split(dw.shape[1], 9)[0]
    k, c = split(i, C)
    col = np.uint64(i)
    # Gᵀ over the rows, column by column (q = Gᵀ·u, 3×4), then Gᵀ over each row of q
    q0 = _gt(dU[0, col], dU[4, col], dU[8, col], dU[12, col])
    q1 = _gt(dU[1, col], dU[5, col], dU[9, col], dU[13, col])
    q2 = _gt(dU[2, col], dU[6, col], dU[10, col], dU[14, col])
    q3 = _gt(dU[3, col], dU[7, col], dU[11, col], dU[15, col])
    dst = dw[k]
    base = c * 9
    _store3(dst, base, _gt(q0[0], q1[0], q2[0], q3[0]))
    _store3(dst, base + 3, _gt(q0[1], q1[1], q2[1], q3[1]))
    _store3(dst, base + 6, _gt(q0[2], q1[2], q2[2], q3[2]))


@njit(inline="always")
def _store3(dst, at, f):
    """dst[at + j] = f[j] for j < 3."""
    dst[np.uint64(at)] = f[0]
    dst[np.uint64(at + 1)] = f[1]
    dst[np.uint64(at + 2)] = f[2]
