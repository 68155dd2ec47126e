"""Pooling bodies: max and average over FH×FW windows with stride SH×SW and padding PH×PW.

x and dx are N×C×H×W, y and dy are N×C×OH×OW; window (oy, ox) covers rows
oy·SH − PH … oy·SH − PH + FH − 1 and columns likewise, clipped to the input (the layer
rounds OH and OW, see ``numbacnn/geometry.py``, so that each window holds an input cell).
``argmax`` (int32, N×C×OH×OW) holds where the winner is in its window, as a distance in
its plane: (iy − y0)·W + (ix − x0) for the winner (iy, ix) of the window whose first
cell is (y0, x0) = (oy·SH − PH, ox·SW − PW); padded cells never win. Relative to the
window, the backward passes compare it with numbers that do not change along a row
(fy·W + fx), where a position would be compared with one computed per element: fmnist's
first pooling backward 1.24 → 0.7 ms, one thread (``bench/RESULTS.md``).
Each body computes a span lo … hi − 1 of one plane t = (n, c): the CPU passes whole
planes, the GPU one element per thread (see ``kernels/conv.py``).
Where no window needs clipping (no padding, and the windows end inside the input: every
exact or floor geometry without padding) a body runs the loops it always had (its
``*_inside_at`` part, which the CPU drivers also call alone with constant windows,
``backends/cpu.py``), else its ``*_clipped_at`` part.
"""

import numpy as np
from numba import njit

from numbacnn.geometry import windows_inside as _windows_inside
from numbacnn.kernels.index import split

# geometry's pure-Python rule, compiled into the bodies (the layer and the CPU driver
# choice call the same function in Python)
windows_inside = njit(inline="always")(_windows_inside)


@njit(inline="always")
def max_pool_forward_at(t, lo, hi, y, argmax, x, FH, FW, SH, SW, PH, PW):
    """Outputs lo … hi − 1 of plane t = (n, c) of y: the max of each window, over its
    input cells only, and where it was (the first of equal maxima in row order)."""
    if windows_inside(x.shape[2], x.shape[3], y.shape[2], y.shape[3], FH, FW, SH, SW, PH, PW):
        max_pool_forward_inside_at(t, lo, hi, y, argmax, x, FH, FW, SH, SW)
    else:
        max_pool_forward_clipped_at(t, lo, hi, y, argmax, x, FH, FW, SH, SW, PH, PW)


@njit(inline="always")
def max_pool_forward_inside_at(t, lo, hi, y, argmax, x, FH, FW, SH, SW):
    """``max_pool_forward_at`` where every window lies inside the input (the CPU
    driver's constant windows call it alone: it compiles in half the time of both)."""
    C = x.shape[1]
    W = x.shape[3]
    OW = y.shape[3]
    n, c = split(t, C)
    plane = x[n, c]
    oy, a = split(lo, OW)
    while oy * OW + a < hi:
        b = min(OW, hi - oy * OW)
        y_row = y[n, c, oy]
        at_row = argmax[n, c, oy]
        for ox in range(a, b):
            first = oy * SH * W + ox * SW
            best = plane[oy * SH, ox * SW]
            best_at = first
            for fy in range(FH):
                row = plane[oy * SH + fy]
                for fx in range(FW):
                    v = row[np.uint64(ox * SW + fx)]
                    if v > best:
                        best = v
                        best_at = (oy * SH + fy) * W + ox * SW + fx
            y_row[np.uint64(ox)] = best
            at_row[np.uint64(ox)] = best_at - first  # relative to the window
        oy += 1
        a = 0


@njit(inline="always")
def max_pool_forward_by_selects(t, y, argmax, x, FH, FW, SH, SW):
    """All of plane t = (n, c) of y where every window lies inside the input, as
    :func:`max_pool_forward_inside_at`, the winner found by selects instead of a branch
    on each cell (the CPU's 2×2 stride 2 driver): the max by max(), where by a select
    on v > the max so far; LLVM vectorizes the row (fy·W + fx is the same for all its
    windows). One thread, interleaved: fmnist's first pooling 1.18 → 1.0 ms; AlexNet's
    first (3×3/2, 55×55) 2.0 ms by branches, 3.4 by selects (three taps of stride 2
    make a slow vector loop), so its driver keeps the branches."""
    n, c = split(t, x.shape[1])
    max_pool_plane_by_selects(y[n, c], argmax[n, c], x[n, c], FH, FW, SH, SW)


@njit(inline="always")
def max_pool_plane_by_selects(y2, at2, plane, FH, FW, SH, SW):
    """:func:`max_pool_forward_by_selects` of one plane: y2 and at2 OH×OW (its outputs
    and argmax), plane H×W (its input); also the pooling of a convolution's plane while
    it is in cache (``backends/cpu_direct.py``'s fused conv → ReLU → max pooling)."""
    W = plane.shape[1]
    OH = y2.shape[0]
    OW = y2.shape[1]
    for oy in range(OH):
        y_row = y2[oy]
        at_row = at2[oy]
        for ox in range(OW):
            best = plane[oy * SH, np.uint64(ox * SW)]
            best_at = np.int32(0)
            for fy in range(FH):
                row = plane[oy * SH + fy]
                for fx in range(FW):
                    v = row[np.uint64(ox * SW + fx)]
                    best_at = np.int32(fy * W + fx) if v > best else best_at
                    best = max(best, v)
            y_row[np.uint64(ox)] = best
            at_row[np.uint64(ox)] = best_at


@njit(inline="always")
def max_pool_forward_clipped_at(t, lo, hi, y, argmax, x, FH, FW, SH, SW, PH, PW):
    """``max_pool_forward_at`` over padded or clipped windows: padded cells are −∞, so
    each window is searched clipped to the input."""
    C = x.shape[1]
    H = x.shape[2]
    W = x.shape[3]
    OW = y.shape[3]
    n, c = split(t, C)
    plane = x[n, c]
    oy, a = split(lo, OW)
    while oy * OW + a < hi:
        b = min(OW, hi - oy * OW)
        y_row = y[n, c, oy]
        at_row = argmax[n, c, oy]
        y0 = oy * SH - PH
        y_lo = max(y0, 0)
        y_hi = min(y0 + FH, H)
        for ox in range(a, b):
            x0 = ox * SW - PW
            x_lo = max(x0, 0)
            x_hi = min(x0 + FW, W)
            best = plane[y_lo, x_lo]
            best_at = (y_lo - y0) * W + x_lo - x0
            for iy in range(y_lo, y_hi):
                row = plane[iy]
                for ix in range(x_lo, x_hi):
                    v = row[ix]
                    if v > best:
                        best = v
                        best_at = (iy - y0) * W + ix - x0
            y_row[np.uint64(ox)] = best
            at_row[np.uint64(ox)] = best_at
        oy += 1
        a = 0


@njit(inline="always")
def max_pool_backward_at(t, lo, hi, dx, dy, argmax, FH, FW, SH, SW, PH, PW):
    """Elements lo … hi − 1 of plane t = (n, c) of dx, gather form: each sums dy of the
    windows that cover it and chose it as their max. Only this call writes them. (The
    span form, which ``tests/test_span_bodies.py`` cuts at random: the CPU drivers run
    :func:`max_pool_backward_tiles_plane` for 2×2 stride 2 and
    :func:`max_pool_backward_plane` for other windows, the GPU its element body.)

    A part of a row (the GPU's one element), or any row of a padded or clipped geometry,
    scans the windows over it and adds the dy of those whose winner it is. A whole row
    of windows inside the input (the CPU's case) is written in the windows' order
    instead, without a branch on the data: with windows that do not overlap (S ≥ F)
    each element is stored once, dy of its window or 0; overlapping windows add their
    dy, or 0, to every element they cover. On random data the branch of the scan was
    mispredicted half the time: 8.2 ms against 1.0 ms for fmnist's first pooling
    (128×32×28×28, F = S = 2, one thread, with the CPU driver's constant F and S); one
    output row's dx rows one at a time, each element compared with the argmax relative
    to its window (fy·W + fx, the same along the row), 1.24 → 0.7 ms."""
    C = dx.shape[1]
    H = dx.shape[2]
    W = dx.shape[3]
    OH = dy.shape[2]
    OW = dy.shape[3]
    n, c = split(t, C)
    inside = windows_inside(H, W, OH, OW, FH, FW, SH, SW, PH, PW)
    yy, a = split(lo, W)
    while yy * W + a < hi:
        b = min(W, hi - yy * W)
        dst = dx[n, c, yy]
        oy_lo = max(0, (yy + PH - FH + SH) // SH)  # the rows of windows that cover row yy
        oy_hi = min(OH - 1, (yy + PH) // SH)
        if not inside or a > 0 or b < W or oy_lo > oy_hi:  # part of a row, a row no window covers
            for xx in range(a, b):
                dst[np.uint64(xx)] = np.float32(0.0)
            ox_lo = max(0, (a + PW - FW + SW) // SW)  # windows that overlap columns a … b − 1
            ox_hi = min(OW - 1, (b - 1 + PW) // SW)
            for oy in range(oy_lo, oy_hi + 1):
                at_row = argmax[n, c, oy]
                dy_row = dy[n, c, oy]
                # the winner's column in row yy: its distance from the window's first
                # cell, less the rows between that cell and row yy
                shift = (yy - (oy * SH - PH)) * W + PW
                for ox in range(ox_lo, ox_hi + 1):
                    at = at_row[np.uint64(ox)] - shift + ox * SW
                    if a <= at < b:
                        dst[np.uint64(at)] += dy_row[np.uint64(ox)]
        elif SH >= FH and SW >= FW:  # a whole row under one row of windows that do not overlap
            at_row = argmax[n, c, oy_lo]
            dy_row = dy[n, c, oy_lo]
            k = (yy - oy_lo * SH) * W  # fy·W: the window's row yy
            for ox in range(OW):
                at = at_row[np.uint64(ox)]
                g = dy_row[np.uint64(ox)]
                for x0 in range(ox * SW, min(ox * SW + SW, W)):  # the last gap may pass W
                    hit = at == np.int32(k + x0 - ox * SW)  # compared in 32 bits, as stored
                    dst[np.uint64(x0)] = g if hit else np.float32(0.0)
            for xx in range(OW * SW, W):
                dst[np.uint64(xx)] = np.float32(0.0)
        else:  # a whole row under overlapping windows
            for xx in range(W):
                dst[np.uint64(xx)] = np.float32(0.0)
            for oy in range(oy_lo, oy_hi + 1):
                at_row = argmax[n, c, oy]
                dy_row = dy[n, c, oy]
                k = (yy - oy * SH) * W
                for fx in range(FW - 1, -1, -1):  # each element's windows in ascending ox, as above
                    for ox in range(OW):
                        x0 = ox * SW + fx
                        hit = at_row[np.uint64(ox)] == np.int32(k + fx)
                        dst[np.uint64(x0)] += dy_row[np.uint64(ox)] if hit else np.float32(0.0)
        yy += 1
        a = 0


@njit(inline="always")
def max_pool_backward_tiles_plane(t, dx, dy, argmax, FH, FW, SH, SW):
    """All of plane t = (n, c) of dx where the windows lie inside the input and do not
    overlap (S ≥ F; the CPU's 2×2 stride 2 driver): each element is dy of its window
    where it is the winner, else 0, stored once, one dx row at a time, compared with
    the argmax as fy·W + fx (the same along the row: LLVM vectorizes it). The same
    values as :func:`max_pool_backward_at`, which walks the rows of dx with more
    bookkeeping per row: fmnist's first pooling 0.9 → 0.7 ms, one thread."""
    C = dx.shape[1]
    H = dx.shape[2]
    W = dx.shape[3]
    OH = dy.shape[2]
    OW = dy.shape[3]
    n, c = split(t, C)
    zero = np.float32(0.0)
    for oy in range(OH):
        at_row = argmax[n, c, oy]
        dy_row = dy[n, c, oy]
        for fy in range(FH):
            dst = dx[n, c, oy * SH + fy]
            for ox in range(OW):
                at = at_row[np.uint64(ox)]
                g = dy_row[np.uint64(ox)]
                for fx in range(FW):
                    hit = at == np.int32(fy * W + fx)  # compared in 32 bits, as stored
                    dst[np.uint64(ox * SW + fx)] = g if hit else zero
    # what no window covers: the columns between windows and after the last, the rows
    # between windows and below the last
    for yy in range(H):
        dst = dx[n, c, yy]
        if yy >= OH * SH or yy % SH >= FH:
            for xx in range(W):
                dst[np.uint64(xx)] = zero
        else:
            if SW > FW:  # (a constant test in the drivers: no loop where windows tile)
                for ox in range(OW):
                    for xx in range(ox * SW + FW, min(ox * SW + SW, W)):
                        dst[np.uint64(xx)] = zero
            for xx in range(OW * SW, W):
                dst[np.uint64(xx)] = zero


@njit(inline="always")
def max_pool_backward_plane(t, dx, dy, argmax, SH, SW, PH, PW):
    """All of plane t = (n, c) of dx, scatter form (the CPU drivers but 2×2 stride 2): zeros,
    then each window's dy added at its winner, windows in ascending (oy, ox) — the
    order in which :func:`max_pool_backward_at` adds them, so the sums are the same.
    No branch on the data, and each plane stays in L1: AlexNet's first pooling backward
    (16×96×55×55, 3×3 stride 2, overlapping windows) 6.1 → 1.0 ms, one thread. A winner
    outside the plane (an argmax not written by a forward pass) is skipped."""
    C = dx.shape[1]
    W = dx.shape[3]
    HW = dx.shape[2] * W
    OH = dy.shape[2]
    OW = dy.shape[3]
    n, c = split(t, C)
    dst = dx[n, c].reshape(HW)
    for i in range(HW):
        dst[np.uint64(i)] = np.float32(0.0)
    for oy in range(OH):
        src = dy[n, c, oy]
        at = argmax[n, c, oy]
        origin = (oy * SH - PH) * W - PW  # of window (oy, 0)
        for ox in range(OW):
            i = origin + ox * SW + at[np.uint64(ox)]
            if 0 <= i < HW:
                dst[np.uint64(i)] += src[np.uint64(ox)]


@njit(inline="always")
def window_cells(start, F, size, P, count_pad):
    """How many cells of one axis an average divides by for the window at ``start``
    (may be < 0: in the left padding): with ``count_pad`` those inside the padded input
    (PyTorch's and ONNX's count_include_pad), else those inside the input."""
    if count_pad:
        return min(start + F, size + P) - start
    return min(start + F, size) - max(start, 0)


@njit(inline="always")
def avg_pool_forward_at(t, lo, hi, y, x, FH, FW, SH, SW, PH, PW, count_pad):
    """Outputs lo … hi − 1 of plane t = (n, c) of y: the mean of each window (FH·FW cells
    when it lies inside the input; see ``window_cells`` for padded and clipped ones)."""
    if windows_inside(x.shape[2], x.shape[3], y.shape[2], y.shape[3], FH, FW, SH, SW, PH, PW):
        avg_pool_forward_inside_at(t, lo, hi, y, x, FH, FW, SH, SW)
    else:
        avg_pool_forward_clipped_at(t, lo, hi, y, x, FH, FW, SH, SW, PH, PW, count_pad)


@njit(inline="always")
def avg_pool_forward_inside_at(t, lo, hi, y, x, FH, FW, SH, SW):
    """``avg_pool_forward_at`` where every window lies inside the input: FH·FW cells."""
    C = x.shape[1]
    OW = y.shape[3]
    n, c = split(t, C)
    inv = np.float32(1.0) / np.float32(FH * FW)
    oy, a = split(lo, OW)
    while oy * OW + a < hi:
        b = min(OW, hi - oy * OW)
        for ox in range(a, b):
            acc = np.float32(0.0)
            for fy in range(FH):
                for fx in range(FW):
                    acc += x[n, c, oy * SH + fy, ox * SW + fx]
            y[n, c, oy, ox] = acc * inv
        oy += 1
        a = 0


@njit(inline="always")
def avg_pool_forward_clipped_at(t, lo, hi, y, x, FH, FW, SH, SW, PH, PW, count_pad):
    """``avg_pool_forward_at`` over padded or clipped windows: the sum of the window's
    input cells over its ``window_cells``."""
    C = x.shape[1]
    H = x.shape[2]
    W = x.shape[3]
    OW = y.shape[3]
    n, c = split(t, C)
    oy, a = split(lo, OW)
    while oy * OW + a < hi:
        b = min(OW, hi - oy * OW)
        y0 = oy * SH - PH
        rows = window_cells(y0, FH, H, PH, count_pad)
        for ox in range(a, b):
            x0 = ox * SW - PW
            inv = np.float32(1.0) / np.float32(rows * window_cells(x0, FW, W, PW, count_pad))
            acc = np.float32(0.0)
            for iy in range(max(y0, 0), min(y0 + FH, H)):
                for ix in range(max(x0, 0), min(x0 + FW, W)):
                    acc += x[n, c, iy, ix]
            y[n, c, oy, ox] = acc * inv
        oy += 1
        a = 0


@njit(inline="always")
def avg_pool_backward_at(t, lo, hi, dx, dy, FH, FW, SH, SW, PH, PW, count_pad):
    """Elements lo … hi − 1 of plane t = (n, c) of dx, gather form: Σ dy / cells over the
    windows covering each element (cells as in ``avg_pool_forward_at``)."""
    if windows_inside(dx.shape[2], dx.shape[3], dy.shape[2], dy.shape[3], FH, FW, SH, SW,
                      PH, PW):
        avg_pool_backward_inside_at(t, lo, hi, dx, dy, FH, FW, SH, SW)
    else:
        avg_pool_backward_clipped_at(t, lo, hi, dx, dy, FH, FW, SH, SW, PH, PW, count_pad)


@njit(inline="always")
def avg_pool_backward_inside_at(t, lo, hi, dx, dy, FH, FW, SH, SW):
    """``avg_pool_backward_at`` where every window lies inside the input: Σ dy / (FH·FW)."""
    C = dx.shape[1]
    W = dx.shape[3]
    OH = dy.shape[2]
    OW = dy.shape[3]
    n, c = split(t, C)
    inv = np.float32(1.0) / np.float32(FH * FW)
    yy, a = split(lo, W)
    while yy * W + a < hi:
        b = min(W, hi - yy * W)
        for xx in range(a, b):
            dx[n, c, yy, xx] = np.float32(0.0)
        ox_lo = max(0, (a - FW + SW) // SW)
        ox_hi = min(OW - 1, (b - 1) // SW)
        for oy in range(max(0, (yy - FH + SH) // SH), min(OH - 1, yy // SH) + 1):
            for ox in range(ox_lo, ox_hi + 1):
                g = dy[n, c, oy, ox] * inv
                for xx in range(max(a, ox * SW), min(b, ox * SW + FW)):
                    dx[n, c, yy, xx] += g
        yy += 1
        a = 0


@njit(inline="always")
def avg_pool_backward_clipped_at(t, lo, hi, dx, dy, FH, FW, SH, SW, PH, PW, count_pad):
    """``avg_pool_backward_at`` over padded or clipped windows: each window's dy over
    its ``window_cells``, to its input cells."""
    C = dx.shape[1]
    H = dx.shape[2]
    W = dx.shape[3]
    OH = dy.shape[2]
    OW = dy.shape[3]
    n, c = split(t, C)
    yy, a = split(lo, W)
    while yy * W + a < hi:
        b = min(W, hi - yy * W)
        for xx in range(a, b):
            dx[n, c, yy, xx] = np.float32(0.0)
        ox_lo = max(0, (a + PW - FW + SW) // SW)  # windows that overlap columns a … b − 1
        ox_hi = min(OW - 1, (b - 1 + PW) // SW)
        for oy in range(max(0, (yy + PH - FH + SH) // SH), min(OH - 1, (yy + PH) // SH) + 1):
            rows = window_cells(oy * SH - PH, FH, H, PH, count_pad)
            for ox in range(ox_lo, ox_hi + 1):
                x0 = ox * SW - PW
                cells = rows * window_cells(x0, FW, W, PW, count_pad)
                g = dy[n, c, oy, ox] * (np.float32(1.0) / np.float32(cells))
                for xx in range(max(a, x0), min(b, x0 + FW)):
                    dx[n, c, yy, xx] += g
        yy += 1
        a = 0


# --- the GPU's max-pooling bodies: one thread per output element ---------------------
# The span bodies above compile their whole-row branches into a per-element kernel
# (90 registers for the backward pass, issue 22); these gather in registers.


@njit(inline="always")
def max_pool_forward_element_at(i, y, argmax, x, FH, FW, SH, SW, PH, PW):
    """Output i = (n, c, oy, ox) of y (i < N·C·OH·OW): the max of its FH×FW window over
    its input cells only (padding never wins; a ceil window is clipped at the edge) and
    where it was, the first of equal values in row-major order as
    :func:`max_pool_forward_at`."""
    C = x.shape[1]
    H = x.shape[2]
    W = x.shape[3]
    OH = y.shape[2]
    OW = y.shape[3]
    t, p = split(i, OH * OW)
    n, c = split(t, C)
    oy, ox = split(p, OW)
    iy, ix = oy * SH - PH, ox * SW - PW  # the window's first row and column
    y_lo, x_lo = max(iy, 0), max(ix, 0)
    y_hi, x_hi = min(iy + FH, H), min(ix + FW, W)
    plane = x[n, c]
    best = plane[y_lo, np.uint64(x_lo)]
    best_at = y_lo * W + x_lo
    for row_at in range(y_lo, y_hi):
        row = plane[row_at]
        for col in range(x_lo, x_hi):
            v = row[np.uint64(col)]
            if v > best:
                best = v
                best_at = row_at * W + col
    y[n, c, oy, np.uint64(ox)] = best
    argmax[n, c, oy, np.uint64(ox)] = best_at - (iy * W + ix)  # relative to the window


@njit(inline="always")
def max_pool_backward_element_at(i, dx, dy, argmax, FH, FW, SH, SW, PH, PW):
    """Element i = (n, c, y, x) of dx (i < N·C·H·W), gather form: the sum, in a register,
    of dy over the windows that cover it and chose it, in ascending (oy, ox) as
    :func:`max_pool_backward_at`; stored once."""
    C = dx.shape[1]
    H = dx.shape[2]
    W = dx.shape[3]
    OH = dy.shape[2]
    OW = dy.shape[3]
    t, q = split(i, H * W)
    n, c = split(t, C)
    yy, xx = split(q, W)
    # windows o with o·S − P ≤ coordinate ≤ o·S − P + F − 1
    oy_lo = split(yy + PH + SH - FH, SH)[0] if yy + PH + SH >= FH else 0
    oy_hi = min(OH - 1, split(yy + PH, SH)[0])
    ox_lo = split(xx + PW + SW - FW, SW)[0] if xx + PW + SW >= FW else 0
    ox_hi = min(OW - 1, split(xx + PW, SW)[0])
    acc = np.float32(0.0)
    for oy in range(oy_lo, oy_hi + 1):
        rel = q - (oy * SH - PH) * W + PW  # q relative to window (oy, 0)'s first cell
        for ox in range(ox_lo, OW):
            if ox > ox_hi:
                break  # a second exit: no runtime unrolling of this ≤ ⌈F/S⌉-trip loop
            if argmax[n, c, oy, np.uint64(ox)] == rel - ox * SW:
                acc += dy[n, c, oy, np.uint64(ox)]
    dx[n, c, yy, np.uint64(xx)] = acc
