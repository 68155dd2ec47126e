"""Direct convolution bodies: stride-1 convolutions with few taps per output.

A convolution whose filters have few taps per output (C/G·FH·FW: 9 for fmnist's first
layer, one channel of 3×3) is a poor fit for im2col and one GEMM: the GEMM's inner
dimension is 9, and the column matrix is 9 copies of the input. Here each output plane
is computed from the input planes directly, in one pass that writes it once.

Geometry as in ``kernels/conv.py``: x N×C×H×W (each plane flat), filters K×(C/G)×FH×FW
(w2: K × (C/G)·FH·FW, taps T = FH·FW), ``geo`` = (FH, FW, SH, SW, PT, PL, DH, DW), here
with stride 1 and an output as wide as the input (OW = W: PL + PR = (FW − 1)·DW, e.g.
``pad=same``; any padding on top and bottom); output N×K×OH×W.

The CPU's bodies run flat loops over a plane's OH·W outputs, which LLVM vectorizes: output
q = oy·W + ox reads tap (fh, fw) at q + fh·DH·W + fw·DW − PL of a copy of the input plane
with zero rows above and below (:func:`shifted_copies_at`). A tap that reaches past the
row's end reads the neighbouring row there; each fw reads its own copy, in which those
columns are 0. The weight gradient of a tap is the dot product of the (masked) output
gradient with the same copies, all taps in one pass; the input gradient is the same
correlation of the output gradient (its copies) with the filters rotated by 180°.

The GPU's bodies compute one output element each, gathering from the unpadded arrays
with bounds tests: forward y, the input gradient dx, and the weight and bias gradients
of one image (summed over the images by a second pass: no atomics).
"""

import numpy as np
from numba import njit

from numbacnn.kernels.index import split


@njit(inline="always")
def shifted_copies_at(cp, S, src, mask, masked, R, W, top, left, FW, DW, RP):
    """Copy fw < FW of plane src (flat R·W) into cp[fw] (≥ 2S + RP·W floats): S zeros, RP
    rows of W where row j is src's row j − ``top`` (0 outside src), S zeros; in copy fw
    the columns a tap with column offset d = fw·DW − ``left`` reaches by wrapping into
    the neighbouring row are 0 (the last −d columns for d < 0, the first d for d > 0;
    |d| ≤ S < W). Where ``masked`` ≠ 0, src only where mask (flat R·W, a fused ReLU's
    output) > 0."""
    for fw in range(FW):
        dst = cp[fw]
        d = fw * DW - left
        zero_lo = max(0, d)  # columns 0 … zero_lo − 1 and zero_hi … W − 1 are 0
        zero_hi = min(W, W + d)
        for i in range(S):
            dst[i] = np.float32(0.0)
            dst[np.uint64(S + RP * W + i)] = np.float32(0.0)
        for j in range(RP):
            row = S + j * W
            iy = j - top
            if iy < 0 or iy >= R:
                for ix in range(W):
                    dst[np.uint64(row + ix)] = np.float32(0.0)
                continue
            for ix in range(W):
                v = src[np.uint64(iy * W + ix)]
                if masked and mask[np.uint64(iy * W + ix)] <= np.float32(0.0):
                    v = np.float32(0.0)
                if ix < zero_lo or ix >= zero_hi:
                    v = np.float32(0.0)
                dst[np.uint64(row + ix)] = v


@njit(inline="always")
def correlate_at(y, acc, cp, w, w0, bias, relu, FH, FW, DH, DW, S, W, left, L, first):
    """Output q < L of a plane: y[q] = v + bias, max(·, 0) when ``relu`` ≠ 0, where v =
    (0 if ``first`` else acc[q]) + Σ w[w0 + fh·FW + fw]·cp[fw, S + q + fh·DH·W + fw·DW −
    left] (cp: :func:`shifted_copies_at`; acc: the other channels' sum,
    :func:`accumulate_at`). The taps are the inner loop, the sum in a register: with FH,
    FW, DH, DW constants (the drivers' 3×3 case) LLVM unrolls them and vectorizes q
    (fmnist's conv1, one thread, batch 128: 0.77 ms, the output's 12.8 MB written
    once, against 1.7 ms for im2col and its GEMM); with variables it does not vectorize
    (21 ms): :func:`correlate_taps_at` then. ``first`` must be a constant at the call (a
    flag known only at run time kept LLVM from vectorizing the loop: 6× slower)."""
    floor = np.float32(0.0) if relu else np.float32(-np.inf)
    for q in range(L):
        v = np.float32(0.0) if first else acc[np.uint64(q)]
        for fh in range(FH):
            for fw in range(FW):
                v += w[w0 + fh * FW + fw] * cp[fw, np.uint64(S + q + fh * DH * W + fw * DW - left)]
        y[np.uint64(q)] = max(v + bias, floor)


@njit(inline="always")
def accumulate_at(acc, cp, w, w0, FH, FW, DH, DW, S, W, left, L, first):
    """acc[q] = (0 if ``first`` else acc[q]) + Σ w[w0 + fh·FW + fw]·cp[fw, S + q + fh·DH·W +
    fw·DW − left] for q < L: :func:`correlate_at`'s sum for a channel before the last
    (``first`` a constant at the call, as there)."""
    for q in range(L):
        v = np.float32(0.0) if first else acc[np.uint64(q)]
        for fh in range(FH):
            for fw in range(FW):
                v += w[w0 + fh * FW + fw] * cp[fw, np.uint64(S + q + fh * DH * W + fw * DW - left)]
        acc[np.uint64(q)] = v


@njit(inline="always")
def correlate_taps_at(acc, cp, w, w0, FH, FW, DH, DW, S, W, left, L, first):
    """acc[q] = (0 if ``first`` else acc[q]) + Σ w[w0 + fh·FW + fw]·cp[fw, S + q + fh·DH·W +
    fw·DW − left] for q < L, the taps as the outer loop (one vectorized pass over acc
    per tap): for windows given as variables; :func:`finish_at` writes the output."""
    if first:
        for q in range(L):
            acc[np.uint64(q)] = np.float32(0.0)
    for fh in range(FH):
        for fw in range(FW):
            wt = w[w0 + fh * FW + fw]
            src = cp[fw]
            d = S + fh * DH * W + fw * DW - left
            for q in range(L):
                acc[np.uint64(q)] += wt * src[np.uint64(q + d)]


@njit(inline="always")
def finish_at(y, acc, bias, relu, L):
    """y[q] = acc[q] + bias, then max(·, 0) when ``relu`` ≠ 0, for q < L."""
    floor = np.float32(0.0) if relu else np.float32(-np.inf)
    for q in range(L):
        y[np.uint64(q)] = max(acc[np.uint64(q)] + bias, floor)


@njit(inline="always")
def masked_grad(dy, y, relu, q):
    """dy[q], or 0 where a fused ReLU's output y[q] ≤ 0 (``relu`` ≠ 0)."""
    g = dy[np.uint64(q)]
    if relu and y[np.uint64(q)] <= np.float32(0.0):
        g = np.float32(0.0)
    return g


@njit(inline="always")
def weight_grads_at(dw, w0, dy, y, relu, cp, FH, FW, DH, DW, S, W, left, L):
    """dw[w0 + fh·FW + fw] += Σ_q g[q]·cp[fw, S + q + fh·DH·W + fw·DW − left], q < L, with
    g the output gradient dy of one filter's plane (masked where the fused ReLU's y ≤ 0):
    its taps on one input channel. Returns Σ g (the bias gradient's share)."""
    total = np.float32(0.0)
    for q in range(L):
        total += masked_grad(dy, y, relu, q)
    for fh in range(FH):
        for fw in range(FW):
            src = cp[fw]
            d = S + fh * DH * W + fw * DW - left
            acc = np.float32(0.0)
            for q in range(L):
                acc += masked_grad(dy, y, relu, q) * src[np.uint64(q + d)]
            dw[w0 + fh * FW + fw] += acc
    return total


@njit(inline="always")
def weight_grads_3x3_at(dw, w0, dy, y, relu, cp, S, W, left, L):
    """:func:`weight_grads_at` of a 3×3 window without dilation: the nine sums and Σ g
    in one pass over the output gradient, which is read from memory once (fmnist's
    conv1, one thread, batch 128: 1.1 ms, against 2.7 ms for im2col's backward)."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = total = np.float32(0.0)
    c0, c1, c2 = cp[0], cp[1], cp[2]
    d = S - left
    for q in range(L):
        g = masked_grad(dy, y, relu, q)
        total += g
        a0 += g * c0[np.uint64(q + d)]
        a1 += g * c1[np.uint64(q + d + 1)]
        a2 += g * c2[np.uint64(q + d + 2)]
        a3 += g * c0[np.uint64(q + d + W)]
        a4 += g * c1[np.uint64(q + d + W + 1)]
        a5 += g * c2[np.uint64(q + d + W + 2)]
        a6 += g * c0[np.uint64(q + d + 2 * W)]
        a7 += g * c1[np.uint64(q + d + 2 * W + 1)]
        a8 += g * c2[np.uint64(q + d + 2 * W + 2)]
    dw[w0] += a0
    dw[w0 + 1] += a1
    dw[w0 + 2] += a2
    dw[w0 + 3] += a3
    dw[w0 + 4] += a4
    dw[w0 + 5] += a5
    dw[w0 + 6] += a6
    dw[w0 + 7] += a7
    dw[w0 + 8] += a8
    return total


@njit(inline="always")
def pooled_grad_plane_at(g, dy2, y2, at2, relu, L, W):
    """g (flat, its first L = OH·W) = the output gradient of one plane from the gradient
    dy2 of its 2×2 stride-2 max pooling (dy2, y2, at2: ⌊OH/2⌋×⌊W/2⌋; at2 the winner's
    distance from its window's first cell, fy·W + fx, as ``kernels/pool.py`` stores it):
    dy2 at each window's winner, masked where the fused ReLU's output there (the pooled
    y2) is ≤ 0, and 0 elsewhere, also in an odd plane's last row or column. The plane
    is zeroed, then each window's value stored at its winner (the windows do not
    overlap: one store per element, the values of the pooling's tiles body): in cache,
    half the time of that body's compare per element (fmnist's conv1, one thread: 0.50
    against 1.05 ms with its masking pass). A winner outside the plane is skipped."""
    PH, PW = dy2.shape
    for q in range(L):
        g[np.uint64(q)] = np.float32(0.0)
    for py in range(PH):
        dy_row, y_row, at_row = dy2[py], y2[py], at2[py]
        first = 2 * py * W  # of window (py, 0)
        for px in range(PW):
            i = first + 2 * px + at_row[np.uint64(px)]
            if i < L:
                g[np.uint64(i)] = masked_grad(dy_row, y_row, relu, px)


# --- the GPU's bodies: one thread per output element ---------------------------------


@njit(inline="always")
def forward_element_at(i, y, x, w2, b, H, W, geo, groups, OH, OW, relu):
    """Element i = (n, k, oy, ox) of y (flat N×K×OH×OW): b[k] + Σ over the channels of
    k's group and the taps of w2[k]·x, 0 in the padding; max(·, 0) when ``relu`` ≠ 0.
    x is N×C×(H·W)."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    K = w2.shape[0]
    Cg = split(w2.shape[1], FH * FW)[0]  # unsigned 32-bit divisions (index.py)
    t, p = split(i, OH * OW)
    n, k = split(t, K)
    oy, ox = split(p, OW)
    c0 = split(k, split(K, groups)[0])[0] * Cg
    acc = b[k]
    wk = w2[k]
    for fh in range(FH):
        iy = oy - PT + fh * DH
        if iy < 0 or iy >= H:
            continue
        for fw in range(FW):
            ix = ox - PL + fw * DW
            if ix < 0 or ix >= W:
                continue
            q = np.uint64(iy * W + ix)
            for c in range(Cg):
                acc += wk[(c * FH + fh) * FW + fw] * x[n, c0 + c, q]
    if relu and acc < np.float32(0.0):
        acc = np.float32(0.0)
    y[np.uint64(i)] = acc


@njit(inline="always")
def input_grad_element_at(i, dx, dy, y, w2, H, W, geo, groups, OH, OW, relu):
    """Element i = (n, c, iy, ix) of dx (N×C×(H·W)), gather form: Σ over the filters k of
    c's group and the taps (fh, fw) whose output (iy + PT − fh·DH, ix + PL − fw·DW) lies
    in the plane of w2[k, c, fh, fw]·dy there (masked by the fused ReLU)."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    C = dx.shape[1]
    K = w2.shape[0]
    Cg, Kg = split(C, groups)[0], split(K, groups)[0]
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
                            * masked_grad(dy, y, relu, base + oy * OW + ox))
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
    Cg = split(C, groups)[0]
    t, e = split(i, E)
    n, k = split(t, K)
    base = (n * K + k) * OH * OW
    acc = np.float32(0.0)
    if e == E - 1:
        for p in range(OH * OW):
            acc += masked_grad(dy, y, relu, base + p)
        dw_images[n, k, e] = acc
        return
    cl, tap = split(e, FH * FW)
    fh, fw = split(tap, FW)
    src = x[n, split(k, split(K, groups)[0])[0] * Cg + cl]
    for oy in range(OH):
        iy = oy - PT + fh * DH
        if iy < 0 or iy >= H:
            continue
        for ox in range(OW):
            ix = ox - PL + fw * DW
            if ix >= 0 and ix < W:
                acc += (masked_grad(dy, y, relu, base + oy * OW + ox)
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
