"""Space-to-depth bodies: a stride-S convolution as a stride-1 one over S×S blocks.

A convolution with an FH×FW window, stride SH×SW and padding PT, PL over C channels
(x: N×C×H×W, filters w: K×C×FH×FW, output N×K×OH×OW) equals the stride-1 convolution,
without padding, of the rearranged input

    x'[n, c·SH·SW + i·SW + j, Y, X] = x[n, c, SH·Y + i − PT, SW·X + j − PL]  (0 outside x)

(N × C·SH·SW × H' × W', H' = OH + FH' − 1, W' = OW + FW' − 1) with the filters

    w'[k, c·SH·SW + i·SW + j, a, b] = w[k, c, SH·a + i, SW·b + j]  (0 past FH, FW)

of FH' = ⌈FH/SH⌉ × FW' = ⌈FW/SW⌉ taps (``geometry.space_to_depth_shape``): output
(oy, ox) reads x' rows oy … oy + FH' − 1, i.e. x rows SH·oy − PT … SH·(oy + FH') − PT − 1.
AlexNet's conv1 (3 channels, 11×11, stride 4 on 227×227) becomes 48 channels, 3×3, on
57×57: a window Winograd F(2×2, 3×3) computes. Backward: dw from dw' (the padded taps'
gradients dropped), dx from dx' by the inverse rearrangement (each x element is one x'
element, or none past H' or W': no window reads it).

``geo`` = (FH, FW, SH, SW, PT, PL, DH, DW) of the strided convolution, as in
``kernels/conv.py`` (dilation 1). Each body computes a span ``lo … hi − 1`` of one plane
or row t of its output: the CPU calls it with the whole plane, the GPU once per element
(``hi = lo + 1``). Planes are flat (x is N×C×(H·W), x' N×C'×(H'·W')); inner loops index
with ``np.uint64`` (no wraparound test: the indices are never negative).
"""

import numpy as np
from numba import njit

from numbacnn.kernels.index import split


@njit(inline="always")
def space_to_depth_at(t, lo, hi, xs, x, H, W, geo, WS):
    """Plane t = (n, c') of x' (N×C'×(H'·W'), c' = c·SH·SW + i·SW + j), its elements
    lo … hi − 1 (Y·W' + X) from x (N×C×(H·W)), 0 in the padding and past x's end."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    n, cs = split(t, xs.shape[1])
    c, ij = split(cs, SH * SW)
    i, j = split(ij, SW)
    dst = xs[n, cs]
    src = x[n, c]
    w0 = j - PL  # x column of X = w0 + SW·X
    X_lo = min(WS, max(0, (SW - 1 - w0) // SW))  # the X whose column lies inside x
    X_hi = min(WS, max(X_lo, (W - 1 - w0) // SW + 1))
    Y0, _ = split(lo, WS)
    Y1, _ = split(hi - 1, WS)
    for Y in range(Y0, Y1 + 1):  # the rows of the span, clipped to it
        base = Y * WS
        a = max(lo - base, 0)
        b = min(hi - base, WS)
        h = SH * Y + i - PT
        if h < 0 or h >= H:
            for X in range(a, b):
                dst[np.uint64(base + X)] = np.float32(0.0)
            continue
        row = h * W + w0
        for X in range(a, min(b, X_lo)):
            dst[np.uint64(base + X)] = np.float32(0.0)
        for X in range(max(a, X_lo), min(b, X_hi)):
            dst[np.uint64(base + X)] = src[np.uint64(row + SW * X)]
        for X in range(max(a, X_hi), b):
            dst[np.uint64(base + X)] = np.float32(0.0)


@njit(inline="always")
def depth_to_space_at(t, lo, hi, dx, dxs, H, W, geo, HS, WS):
    """Plane t = (n, c) of dx (N×C×(H·W)), its elements lo … hi − 1 (h·W + w) from dx'
    (N×C'×(H'·W')): the x' element each x element became, 0 for those past H' or W'."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    n, c = split(t, dx.shape[1])
    dst = dx[n, c]
    h0, _ = split(lo, W)
    h1, _ = split(hi - 1, W)
    for h in range(h0, h1 + 1):
        base = h * W
        a = max(lo - base, 0)
        b = min(hi - base, W)
        Y, i = split(h + PT, SH)
        X, j = split(a + PL, SW)  # column a of x is column X of plane j, stepping along
        for w in range(a, b):
            if Y < HS and X < WS:
                dst[np.uint64(base + w)] = dxs[n, (c * SH + i) * SW + j, np.uint64(Y * WS + X)]
            else:
                dst[np.uint64(base + w)] = np.float32(0.0)
            j += 1
            if j == SW:
                j = 0
                X += 1


@njit(inline="always")
def filters_at(t, lo, hi, ws2, w2, geo):
    """Row t = k of w' (K × C'·FH'·FW'), its elements lo … hi − 1 ((c', a, b)) from w2
    (K × C·FH·FW): w2[k, (c, SH·a + i, SW·b + j)], 0 for the taps past FH or FW. The
    coordinates are split once and then stepped (a whole row on the CPU)."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    FHs, FWs = (FH + SH - 1) // SH, (FW + SW - 1) // SW
    cs, ab = split(lo, FHs * FWs)
    a, b_ = split(ab, FWs)
    c, ij = split(cs, SH * SW)
    i, j = split(ij, SW)
    for e in range(lo, hi):
        u, v = SH * a + i, SW * b_ + j
        if u < FH and v < FW:
            ws2[t, e] = w2[t, (c * FH + u) * FW + v]
        else:
            ws2[t, e] = np.float32(0.0)
        b_ += 1  # the next (c', a, b): b, then a, then c' = (c, i, j)
        if b_ == FWs:
            b_ = 0
            a += 1
            if a == FHs:
                a = 0
                j += 1
                if j == SW:
                    j = 0
                    i += 1
                    if i == SH:
                        i = 0
                        c += 1


@njit(inline="always")
def filter_grads_at(t, lo, hi, dw2, dws2, geo):
    """Row t = k of dw2 (K × C·FH·FW), its elements lo … hi − 1 ((c, u, v)) from dw'
    (K × C'·FH'·FW'): the gradient of the tap that w[k, c, u, v] became."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    FHs, FWs = (FH + SH - 1) // SH, (FW + SW - 1) // SW
    c, uv = split(lo, FH * FW)
    u, v = split(uv, FW)
    for e in range(lo, hi):
        a, i = split(u, SH)
        b_, j = split(v, SW)
        dw2[t, e] = dws2[t, (((c * SH + i) * SW + j) * FHs + a) * FWs + b_]
        v += 1
        if v == FW:
            v = 0
            u += 1
            if u == FH:
                u = 0
                c += 1
