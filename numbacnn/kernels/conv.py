"""Convolution bodies: im2col, col2im and the reorders around the GEMM.

Geometry: input x is N×C×H×W, filters are K×(C/G)×FH×FW, stride SH×SW, dilation
DH×DW (a window's taps DH rows and DW columns apart), zero padding PT rows on top and
PL columns on the left (the bottom and right padding only decide OH and OW: what
lies past the input is 0), output N×K×OH×OW (``numbacnn/geometry.py``). The
bodies take it as one tuple ``geo`` = (FH, FW, SH, SW, PT, PL, DH, DW). The column
matrix ``cols`` is (C·FH·FW) × (N·OH·OW): row r = (c, fy, fx), column j = (n, oy, ox),
so the forward pass is one GEMM  W(K × C·FH·FW) @ cols → (K × N·OH·OW), or with G
groups one per group on its blocks of rows (the columns are the same).

Each body computes a span ``lo … hi − 1`` of one plane or row t of its output, so it
can be launched the way each device wants: the CPU calls it once per plane with the
whole plane (index arithmetic paid once per plane, inner loops over contiguous
memory), the GPU once per element with ``hi = lo + 1`` (neighbouring threads write
neighbouring addresses). Inner loops index 1-D row views with ``np.uint64`` indices:
numba then skips its negative-index wraparound test, which halved im2col's CPU time
(the indices are never negative by construction).
"""

import numpy as np
from numba import njit

from numbacnn.kernels.index import split

# geo of the usual 3×3 stride-1 "same" convolution: the CPU drivers pass it as a
# constant (LLVM then unrolls the window loops); see ``is_3x3_same``.
GEO_3X3_SAME = (3, 3, 1, 1, 1, 1, 1, 1)


@njit(inline="always")
def is_3x3_same(geo):
    """Whether geo is GEO_3X3_SAME."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    return (FH == 3 and FW == 3 and SH == 1 and SW == 1 and PT == 1 and PL == 1
            and DH == 1 and DW == 1)


@njit(inline="always")
def im2col_at(t, lo, hi, cols, x, H, W, geo, OH, OW):
    """Plane t = (r, n) of cols, t < C·FH·FW·N, elements lo … hi − 1 of its OH·OW columns
    cols[r, n·OH·OW + oy·OW + ox] = x[n, c, oy·SH − PT + fy·DH, ox·SW − PL + fx·DW], 0 in
    the padding. x is N×C×(H·W): each input plane flat.
    """
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    N = x.shape[0]
    r, n = split(t, N)
    c, rest = split(r, FH * FW)
    fy, fx = split(rest, FW)
    dy = fy * DH - PT  # input row oy·SH + dy, input column ox·SW + dx
    dx = fx * DW - PL
    # ox whose input column ox·SW + dx lies inside 0 … W − 1
    ox_lo = min(OW, max(0, (SW - 1 - dx) // SW))
    ox_hi = min(OW, max(ox_lo, (W - 1 - dx) // SW + 1))
    dst = cols[r]
    src = x[n, c]
    if SH == 1 and SW == 1 and OW == W and OH == H and lo == 0 and hi == OH * OW:
        # A whole plane of a stride-1 "same" convolution (the CPU's case): the input plane
        # shifted by d = dy·W + dx as one flat copy, then 0 in the columns whose
        # input column wrapped into the neighbouring row. fmnist's conv2 a chunk at a
        # time, one thread: 2.3 ms → 1.0 ms a pass over the batch (row by row, the loop
        # overhead of rows of 14 cost more than the copying).
        j0 = n * OH * OW
        d = dy * W + dx
        oy_lo = max(0, -dy)  # the rows with an input row
        oy_hi = max(oy_lo, min(H, H - dy))
        q0 = max(oy_lo * W, -d)
        q1 = max(q0, min(oy_hi * W, H * W - d))
        for p in range(q0):
            dst[np.uint64(j0 + p)] = np.float32(0.0)
        for p in range(q0, q1):
            dst[np.uint64(j0 + p)] = src[np.uint64(p + d)]
        for p in range(q1, OH * OW):
            dst[np.uint64(j0 + p)] = np.float32(0.0)
        for oy in range(oy_lo, oy_hi):
            for ox in range(ox_lo):
                dst[np.uint64(j0 + oy * W + ox)] = np.float32(0.0)
            for ox in range(ox_hi, OW):
                dst[np.uint64(j0 + oy * W + ox)] = np.float32(0.0)
        return
    oy0, a0 = split(lo, OW)  # the span's first row and column
    oy1, b1 = split(hi - 1, OW)  # its last row and column
    cut_first = a0 > 0 or oy0 == oy1  # the GPU's one element, or a span starting mid-row
    cut_last = b1 + 1 < OW and oy1 > oy0  # a span ending mid-row
    for k in range(2):  # the rows the span cuts, clipped to it
        if (k == 0 and not cut_first) or (k == 1 and not cut_last):
            continue
        oy = oy0 if k == 0 else oy1
        a = a0 if oy == oy0 else 0
        b = b1 + 1 if oy == oy1 else OW
        j0 = (n * OH + oy) * OW
        iy = oy * SH + dy
        if iy < 0 or iy >= H:
            for ox in range(a, b):
                dst[np.uint64(j0 + ox)] = np.float32(0.0)
            continue
        i0 = iy * W + dx  # input column ox·SW + dx of row iy is src[i0 + ox·SW]
        for ox in range(a, min(ox_lo, b)):
            dst[np.uint64(j0 + ox)] = np.float32(0.0)
        for ox in range(max(a, ox_lo), min(ox_hi, b)):
            dst[np.uint64(j0 + ox)] = src[np.uint64(i0 + ox * SW)]
        for ox in range(max(a, ox_hi), b):
            dst[np.uint64(j0 + ox)] = np.float32(0.0)
    # The rows it covers whole, the CPU's case, without clipping: a clipped loop measured
    # 2.3 ms against 1.8 ms for this one on fmnist's conv2 (batch 128, 2 cores).
    for oy in range(oy0 + cut_first, oy1 + 1 - cut_last):
        j0 = (n * OH + oy) * OW
        iy = oy * SH + dy
        if iy < 0 or iy >= H:
            for ox in range(OW):
                dst[np.uint64(j0 + ox)] = np.float32(0.0)
            continue
        i0 = iy * W + dx
        for ox in range(ox_lo):
            dst[np.uint64(j0 + ox)] = np.float32(0.0)
        for ox in range(ox_lo, ox_hi):
            dst[np.uint64(j0 + ox)] = src[np.uint64(i0 + ox * SW)]
        for ox in range(ox_hi, OW):
            dst[np.uint64(j0 + ox)] = np.float32(0.0)


@njit(inline="always")
def col2im_at(t, lo, hi, dx, dcols, H, W, geo, OH, OW):
    """Plane t = (n, c) of dx, elements lo … hi − 1 of its H·W, gather form: dx[n, c, y, x]
    sums every dcols entry that x[n, c, y, x] was copied to by im2col, in the order of fx,
    then oy. Only this call writes these elements. dx is N×C×(H·W): each plane flat."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    C = dx.shape[1]
    n, c = split(t, C)
    plane = dx[n, c]
    if (SH == 1 and SW == 1 and OW == W and OH == H and (FW - 1) * DW < W and lo == 0
            and hi == H * W):
        # A whole plane of a stride-1 "same" convolution (the CPU's case): each tap's
        # stretch of dcols added to the plane shifted by d = (fy·DH − PT)·W + fx·DW − PL,
        # one flat loop per tap. The tap's entries whose input column wrapped into the
        # neighbouring row (padding in im2col, their gradient discarded) are set to 0
        # first, so they add nothing. Only this call reads or writes this image's
        # stretch of these rows of dcols. fmnist's conv2 forward and backward a chunk at a
        # time, one thread: 22.3 → 21.2 ms. (FW − 1)·DW < W, i.e. PL + PR < W: every
        # tap's clipped columns lie within the row.
        j0 = n * OH * OW
        for q in range(H * W):
            plane[np.uint64(q)] = np.float32(0.0)
        for fx in range(FW):
            ddx = fx * DW - PL
            ox_lo = max(0, -ddx)  # outputs whose input column lies inside the row
            ox_hi = min(OW, W - ddx)
            for fy in range(FH - 1, -1, -1):  # oy ascending for each input row
                ddy = fy * DH - PT
                src = dcols[(c * FH + fy) * FW + fx]
                oy_lo = max(0, -ddy)  # outputs whose input row lies inside the plane
                oy_hi = max(oy_lo, min(OH, H - ddy))
                for oy in range(oy_lo, oy_hi):
                    for ox in range(ox_lo):
                        src[np.uint64(j0 + oy * OW + ox)] = np.float32(0.0)
                    for ox in range(ox_hi, OW):
                        src[np.uint64(j0 + oy * OW + ox)] = np.float32(0.0)
                d = ddy * W + ddx
                p0 = max(oy_lo * OW, -d)
                p1 = min(oy_hi * OW, H * W - d)
                for p in range(p0, p1):
                    plane[np.uint64(p + d)] += src[np.uint64(j0 + p)]
        return
    y0 = split(lo, W)[0]
    y1 = split(hi - 1, W)[0]  # last row of the span
    for y in range(y0, y1 + 1):
        xa = lo - y * W if y == y0 else 0
        xb = hi - y * W if y == y1 else W
        for xx in range(xa, xb):
            plane[np.uint64(y * W + xx)] = np.float32(0.0)
    reach = (FH - 1) * DH  # a window's rows span oy·SH − PT … oy·SH − PT + reach
    for fx in range(FW):
        ddx = fx * DW - PL
        for y in range(y0, y1 + 1):
            xa = lo - y * W if y == y0 else 0
            xb = hi - y * W if y == y1 else W
            # output columns ox whose input column ox·SW + ddx lies in xa … xb − 1
            ox_lo = max(0, -((ddx - xa) // SW))  # ⌈(xa − ddx) / SW⌉
            ox_hi = min(OW, (xb - 1 - ddx) // SW + 1)
            # output rows oy whose window covers input row y: oy·SH − PT ≤ y ≤ … + reach
            oy_lo = max(0, (y + PT - reach + SH - 1) // SH)
            oy_hi = min(OH - 1, (y + PT) // SH)
            i0 = y * W + ddx  # input column ox·SW + ddx of row y is plane[i0 + ox·SW]
            for oy in range(oy_lo, oy_hi + 1):
                fy = y + PT - oy * SH  # the tap on row y, times DH
                if DH != 1:  # dilated: a tap only where DH divides it
                    fy, off = split(fy, DH)
                    if off != 0:
                        continue
                src = dcols[(c * FH + fy) * FW + fx]
                j0 = (n * OH + oy) * OW
                for ox in range(ox_lo, ox_hi):
                    plane[np.uint64(i0 + ox * SW)] += src[np.uint64(j0 + ox)]


@njit(inline="always")
def gemm_to_nchw_at(t, lo, hi, y, out, b, K, P, relu):
    """Row t = (n, k), elements lo … hi − 1: y[n, k, p] = out[k, n·P + p] + b[k] (GEMM
    K × N·P → N×K×P), then max(·, 0) when ``relu`` ≠ 0 (a ReLU fused into the
    convolution); y is passed flat."""
    n, k = split(t, K)
    bias = b[k]
    floor = np.float32(0.0) if relu else np.float32(-np.inf)
    src = out[k]
    for p in range(lo, hi):
        y[np.uint64(t * P + p)] = max(src[np.uint64(n * P + p)] + bias, floor)


@njit(inline="always")
def nchw_to_gemm_at(t, lo, hi, dy2, dy, y, K, P, relu):
    """Row t = (k, n), elements lo … hi − 1: dy2[k, n·P + p] = dy[n, k, p] (N×K×P →
    K × N·P); dy and y flat. With ``relu`` ≠ 0 (fused ReLU) the gradient passes only
    where the output y > 0."""
    N = split(dy2.shape[1], P)[0]
    k, n = split(t, N)
    dst = dy2[k]
    for p in range(lo, hi):
        i = np.uint64((n * K + k) * P + p)
        g = dy[i] if (not relu or y[i] > np.float32(0.0)) else np.float32(0.0)
        dst[np.uint64(n * P + p)] = g


# --- the GPU's bodies: one thread per output element ---------------------------------
# The span bodies above are shaped for the CPU (whole planes, inner loops over
# contiguous memory); called once per element on the GPU they cost ~260 PTX instructions
# per copied float and their whole-plane branch doubles the registers (issue 22). These
# compute one output element each, summing in a register, in the CPU's order.


@njit(inline="always")
def gemm_to_nchw_element_at(q, k, p, y, out, b, K, P, relu):
    """Element p of plane (n, k), q = n·P: y[n, k, p] = out[k, n·P + p] + b[k], then
    max(·, 0) when ``relu`` ≠ 0; y flat. :func:`gemm_to_nchw_at` element by element, its
    row split handed in (the GPU's 3-D grid gives n, k and p: no division)."""
    floor = np.float32(0.0) if relu else np.float32(-np.inf)
    y[np.uint64(q * K + k * P + p)] = max(out[k, np.uint64(q + p)] + b[k], floor)


@njit(inline="always")
def nchw_to_gemm_element_at(q, k, p, dy2, dy, y, K, P, relu):
    """Element p of plane (n, k), q = n·P: dy2[k, n·P + p] = dy[n, k, p], 0 where the
    output y ≤ 0 when ``relu`` ≠ 0; dy and y flat. :func:`nchw_to_gemm_at` element by
    element, without its divisions."""
    i = np.uint64(q * K + k * P + p)
    g = dy[i] if (not relu or y[i] > np.float32(0.0)) else np.float32(0.0)
    dy2[k, np.uint64(q + p)] = g


@njit(inline="always")
def im2col_taps_at(i, cols, x, H, W, geo, OH, OW):
    """Output position i = (c, n, oy, ox), i < C·N·OH·OW: its FH·FW taps, cols[(c·FH + fy)·FW
    + fx, n·OH·OW + oy·OW + ox] = x[n, c, oy·SH − PT + fy·DH, ox·SW − PL + fx·DW], 0 in
    the padding (Caffe's im2col_gpu_kernel). x is N×C×(H·W). Neighbouring i write
    neighbouring addresses of each row of cols."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    N = x.shape[0]
    cn, p = split(i, OH * OW)
    c, n = split(cn, N)
    oy, ox = split(p, OW)
    src = x[n, c]
    j = np.uint64(n * OH * OW + p)
    r = c * FH * FW
    for fy in range(FH):
        iy = oy * SH - PT + fy * DH
        row_in = iy >= 0 and iy < H
        for fx in range(FW):
            ix = ox * SW - PL + fx * DW
            v = np.float32(0.0)
            if row_in and ix >= 0 and ix < W:
                v = src[np.uint64(iy * W + ix)]
            cols[np.uint64(r + fy * FW + fx), j] = v


@njit(inline="always")
def col2im_gather_at(i, dx, dcols, H, W, geo, OH, OW):
    """Element i = (n, c, y, x) of dx (N×C×(H·W), i < N·C·H·W), gather form: the sum of
    every dcols entry x[n, c, y, x] was copied to, in a register and in the CPU's order
    (fx ascending, then oy ascending: :func:`col2im_at`), stored once."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    C = dx.shape[1]
    t, q = split(i, H * W)
    n, c = split(t, C)
    y, xx = split(q, W)
    acc = np.float32(0.0)
    for fx in range(FW):
        tx = xx + PL - fx * DW  # ox·SW for the window whose tap fx lies on column xx
        if tx < 0:
            break  # tx falls as fx grows
        ox, rx = split(tx, SW)
        if rx != 0 or ox >= OW:
            continue
        for k in range(FH):
            fy = FH - 1 - k  # oy ascending
            ty = y + PT - fy * DH  # oy·SH
            if ty < 0:
                continue
            oy, ry = split(ty, SH)
            if oy >= OH:
                break  # oy grows with k
            if ry == 0:
                acc += dcols[np.uint64((c * FH + fy) * FW + fx),
                             np.uint64((n * OH + oy) * OW + ox)]
    dx[n, c, np.uint64(q)] = acc
