"""Direct convolution bodies: stride-1 convolutions with few taps per filter.

A convolution whose filters have few taps per output (C/G·FH·FW: 9 for fmnist's first
layer, one channel of 3×3) is a poor fit for im2col and one GEMM: the GEMM's inner
dimension is 9, so it runs far below its rate while im2col writes 9 copies of the input.
Here each output plane is computed from the input directly.

Geometry as in ``kernels/conv.py``: x N×C×H×W (each plane flat), filters K×(C/G)×FH×FW
(w2: K × (C/G)·FH·FW, taps T = FH·FW), ``geo`` = (FH, FW, SH, SW, PT, PL, DH, DW), here
with SH = SW = 1; output N×K×OH×OW.

The CPU's bodies work on "wide" planes: an input plane copied into a zero-padded plane
of HP rows of WP columns (HP = OH + (FH − 1)·DH, WP = OW + (FW − 1)·DW), so that output
(oy, ox) at wide position p = oy·WP + ox reads tap (fh, fw) at p + fh·DH·WP + fw·DW:
no bounds tests, one flat loop over L = (OH − 1)·WP + OW positions that LLVM vectorizes
(the WP − OW positions at the end of each row are computed and dropped). The input
gradient is the same correlation of the output gradient, padded by the window's reach
less the padding, with the filters rotated by 180°. The weight gradient of tap t is the
dot product of the (wide, masked) output gradient with the padded input shifted by t.

The GPU's bodies compute one output element each, gathering from the unpadded arrays
with bounds tests: forward y, the input gradient dx, and the weight and bias gradients
of one image (summed over the images by a second pass: no atomics).
"""

import numpy as np
from numba import njit

from numbacnn.kernels.index import split


@njit(inline="always")
def pad_plane_at(dst, src, mask, masked, H, W, top, left, HP, WP):
    """dst (flat HP·WP) = src (flat H·W) with its row 0 at row ``top`` and its column 0
    at column ``left`` of dst (either may be negative: src cropped), 0 elsewhere; where
    ``masked`` ≠ 0, src only where mask (flat H·W, a fused ReLU's output) > 0."""
    lo = min(WP, max(0, left))  # dst columns that hold src columns
    hi = max(lo, min(WP, left + W))
    for a in range(HP):
        row = a * WP
        iy = a - top
        if iy < 0 or iy >= H:
            for b in range(WP):
                dst[np.uint64(row + b)] = np.float32(0.0)
            continue
        for b in range(lo):
            dst[np.uint64(row + b)] = np.float32(0.0)
        s = iy * W - left  # src index of dst column b is s + b
        if masked:
            for b in range(lo, hi):
                v = src[np.uint64(s + b)]
                keep = mask[np.uint64(s + b)] > np.float32(0.0)
                dst[np.uint64(row + b)] = v if keep else np.float32(0.0)
        else:
            for b in range(lo, hi):
                dst[np.uint64(row + b)] = src[np.uint64(s + b)]
        for b in range(hi, WP):
            dst[np.uint64(row + b)] = np.float32(0.0)


@njit(inline="always")
def correlate_at(out, inp, w, w0, FH, FW, DH, DW, WP, L, first):
    """out[p] = (0 if ``first`` else out[p]) + Σ w[w0 + fh·FW + fw]·inp[p + fh·DH·WP + fw·DW]
    for the wide positions p < L. The taps are the inner loop, the sum in a register:
    with FH, FW, DH, DW constants (the drivers' 3×3 case) LLVM unrolls them and
    vectorizes p (fmnist's conv1, one thread: 0.83 ms a batch of 128 against 1.9 ms for
    :func:`correlate_taps_at`); with variables it would not vectorize at all (21 ms)."""
    for p in range(L):
        acc = np.float32(0.0) if first else out[np.uint64(p)]
        for fh in range(FH):
            for fw in range(FW):
                acc += w[w0 + fh * FW + fw] * inp[np.uint64(p + fh * DH * WP + fw * DW)]
        out[np.uint64(p)] = acc


@njit(inline="always")
def correlate_taps_at(out, inp, w, w0, FH, FW, DH, DW, WP, L, first):
    """:func:`correlate_at` with the taps as the outer loop (one vectorized pass over
    out per tap): for windows given as variables."""
    if first:
        for p in range(L):
            out[np.uint64(p)] = np.float32(0.0)
    for fh in range(FH):
        for fw in range(FW):
            wt = w[w0 + fh * FW + fw]
            d = fh * DH * WP + fw * DW
            for p in range(L):
                out[np.uint64(p)] += wt * inp[np.uint64(p + d)]


@njit(inline="always")
def unwide_at(y, acc, bias, relu, OH, OW, WP):
    """y (flat OH·OW) = the wide plane acc (rows of WP) cut to OW columns, plus ``bias``,
    then max(·, 0) when ``relu`` ≠ 0."""
    floor = np.float32(0.0) if relu else np.float32(-np.inf)
    for oy in range(OH):
        for ox in range(OW):
            y[np.uint64(oy * OW + ox)] = max(acc[np.uint64(oy * WP + ox)] + bias, floor)


@njit(inline="always")
def weight_grads_at(dw, w0, g, inp, FH, FW, DH, DW, WP, L):
    """dw[w0 + fh·FW + fw] += Σ_p g[p]·inp[p + fh·DH·WP + fw·DW], p < L: one filter's
    taps on one input channel, g its wide output gradient (0 in the dropped columns)."""
    for fh in range(FH):
        for fw in range(FW):
            d = fh * DH * WP + fw * DW
            acc = np.float32(0.0)
            for p in range(L):
                acc += g[np.uint64(p)] * inp[np.uint64(p + d)]
            dw[w0 + fh * FW + fw] += acc


@njit(inline="always")
def weight_grads_3x3_at(dw, w0, g, inp, WP, L):
    """:func:`weight_grads_at` of a 3×3 window without dilation: the nine sums in one
    pass over g (each g[p] loaded once; fmnist's conv1, one thread: 1.0 ms a batch
    of 128 against 1.5 ms for nine passes)."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = np.float32(0.0)
    for p in range(L):
        gp = g[np.uint64(p)]
        a0 += gp * inp[np.uint64(p)]
        a1 += gp * inp[np.uint64(p + 1)]
        a2 += gp * inp[np.uint64(p + 2)]
        a3 += gp * inp[np.uint64(p + WP)]
        a4 += gp * inp[np.uint64(p + WP + 1)]
        a5 += gp * inp[np.uint64(p + WP + 2)]
        a6 += gp * inp[np.uint64(p + 2 * WP)]
        a7 += gp * inp[np.uint64(p + 2 * WP + 1)]
        a8 += gp * inp[np.uint64(p + 2 * WP + 2)]
    dw[w0] += a0
    dw[w0 + 1] += a1
    dw[w0 + 2] += a2
    dw[w0 + 3] += a3
    dw[w0 + 4] += a4
    dw[w0 + 5] += a5
    dw[w0 + 6] += a6
    dw[w0 + 7] += a7
    dw[w0 + 8] += a8


# --- the GPU's bodies: one thread per output element ---------------------------------


@njit(inline="always")
def forward_element_at(i, y, x, w2, b, H, W, geo, groups, OH, OW, relu):
    """Element i = (n, k, oy, ox) of y (flat N×K×OH×OW): b[k] + Σ over the channels of
    k's group and the taps of w2[k]·x, 0 in the padding; max(·, 0) when ``relu`` ≠ 0.
    x is N×C×(H·W)."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    K = w2.shape[0]
    Cg = w2.shape[1] // (FH * FW)
    t, p = split(i, OH * OW)
    n, k = split(t, K)
    oy, ox = split(p, OW)
    c0 = (k // (K // groups)) * Cg
    acc = b[k]
    for c in range(Cg):
        src = x[n, c0 + c]
        for fh in range(FH):
            iy = oy - PT + fh * DH
            if iy < 0 or iy >= H:
                continue
            for fw in range(FW):
                ix = ox - PL + fw * DW
                if ix >= 0 and ix < W:
                    acc += w2[k, (c * FH + fh) * FW + fw] * src[np.uint64(iy * W + ix)]
    floor = np.float32(0.0) if relu else np.float32(-np.inf)
    y[np.uint64(i)] = max(acc, floor)


@njit(inline="always")
def output_grad_at(j, dy, y, relu):
    """dy[j], or 0 where a fused ReLU's output y[j] ≤ 0 (``relu`` ≠ 0); dy, y flat."""
    if relu and y[np.uint64(j)] <= np.float32(0.0):
        return np.float32(0.0)
    return dy[np.uint64(j)]


@njit(inline="always")
def input_grad_element_at(i, dx, dy, y, w2, H, W, geo, groups, OH, OW, relu):
    """Element i = (n, c, iy, ix) of dx (N×C×(H·W)), gather form: Σ over the filters k of
    c's group and the taps (fh, fw) whose output (iy + PT − fh·DH, ix + PL − fw·DW) lies
    in the plane of w2[k, c, fh, fw]·dy there (masked by the fused ReLU)."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    C = dx.shape[1]
    K = w2.shape[0]
    Cg, Kg = C // groups, K // groups
    t, q = split(i, H * W)
    n, c = split(t, C)
    iy, ix = split(q, W)
    g, cl = split(c, Cg)
    acc = np.float32(0.0)
    for kk in range(Kg):
        k = g * Kg + kk
        base = (n * K + k) * OH * OW
        for fh in range(FH):
            oy = iy + PT - fh * DH
            if oy < 0 or oy >= OH:
                continue
            for fw in range(FW):
                ox = ix + PL - fw * DW
                if ox >= 0 and ox < OW:
                    acc += (w2[k, (cl * FH + fh) * FW + fw]
                            * output_grad_at(base + oy * OW + ox, dy, y, relu))
    dx[n, c, np.uint64(q)] = acc


@njit(inline="always")
def image_grads_at(i, dw_images, x, dy, y, H, W, geo, groups, OH, OW, relu):
    """Entry i = (n, k, e) of dw_images (N × K × (C/G)·FH·FW + 1): the weight gradient
    of tap e = (c, fh, fw) of filter k from image n alone, Σ over its outputs of
    dy·x (masked by the fused ReLU); the last entry e = (C/G)·FH·FW is the bias
    gradient, Σ dy. x is N×C×(H·W), dy and y flat."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    C = x.shape[1]
    E = dw_images.shape[2]
    K = dw_images.shape[1]
    Cg = C // groups
    t, e = split(i, E)
    n, k = split(t, K)
    base = (n * K + k) * OH * OW
    acc = np.float32(0.0)
    if e == E - 1:
        for p in range(OH * OW):
            acc += output_grad_at(base + p, dy, y, relu)
        dw_images[n, k, e] = acc
        return
    cl, tap = split(e, FH * FW)
    fh, fw = split(tap, FW)
    src = x[n, (k // (K // groups)) * Cg + cl]
    for oy in range(OH):
        iy = oy - PT + fh * DH
        if iy < 0 or iy >= H:
            continue
        for ox in range(OW):
            ix = ox - PL + fw * DW
            if ix >= 0 and ix < W:
                acc += (output_grad_at(base + oy * OW + ox, dy, y, relu)
                        * src[np.uint64(iy * W + ix)])
    dw_images[n, k, e] = acc


@njit(inline="always")
def sum_images_at(j, dw2, db, dw_images):
    """Entry j = (k, e) of the image sums of :func:`image_grads_at`'s rows, images in
    order: dw2[k, e] for e < (C/G)·FH·FW, else db[k]."""
    N, K, E = dw_images.shape
    k, e = split(j, E)
    acc = np.float32(0.0)
    for n in range(N):
        acc += dw_images[n, k, e]
    if e == E - 1:
        db[k] = acc
    else:
        dw2[k, e] = acc
