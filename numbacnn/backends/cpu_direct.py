"""The CPU's direct convolution (``algo=direct``; bodies: ``numbacnn/kernels/direct_conv.py``).

For stride-1 convolutions that keep the input's width (``pad=same`` and the like) with
few taps per output (C/G·FH·FW), where im2col and a GEMM with an inner dimension of 9
run far below the GEMM's rate. Each thread takes its share of the batch (a part, whole
images): an image's input planes copied with zero rows above and below (one copy per
filter column, ``shifted_copies_at``), then each output plane computed in one vectorized
flat loop with the bias and the fused ReLU, written once. Backward reads each output
gradient plane once for all its weight gradients and its bias gradient, summed per part
(the parts added in order: repeatable bit for bit for a thread count); the input
gradient is the correlation of the output gradient's copies with the filters rotated
by 180°.

3×3 windows without dilation run the bodies with the window as constants (LLVM unrolls
the taps and vectorizes the positions); other windows run the tap-by-tap bodies. The
parts are plain ``@njit(nogil=True, cache=True)`` functions on Python threads
(``cpu_threads.py``), as in ``cpu_conv.py``: no ``prange`` gufunc to compile.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit

from numbacnn.backends import cpu_threads, kernel_cache
from numbacnn.backends.cpu_conv import chunks_of_part
from numbacnn.kernels import direct_conv, pool

_numba_cache_dir = kernel_cache.use_versioned_cache_dir()  # restored at the end of this module

# Flags as int64 values, not literals (a literal is its own type: one compile each)
NO_MASK = np.int64(0)


def _copy_floats(rows: int, W: int, geo: tuple) -> int:
    """Floats of one shifted copy (``shifted_copies_at``) of a plane of W columns for an
    output of ``rows`` rows: the padded rows and S = (FW − 1)·DW zeros at either end."""
    FH, FW, _, _, _, _, DH, DW = geo
    return (rows + (FH - 1) * DH) * W + 2 * (FW - 1) * DW


def direct_workspace(N: int, C: int, K: int, H: int, W: int, OH: int, OW: int, geo: tuple,
                     groups: int) -> dict[str, tuple]:
    """Shapes of the float32 buffers of :func:`direct_forward` and :func:`direct_backward`:
    per part the shifted copies of an image's input planes (or of its output gradient's,
    for dx), a plane to sum channels in, its gradient sums; the filters rotated by 180°
    for dx (C × (K/G)·FH·FW)."""
    FH, FW = geo[0], geo[1]
    parts = numba.get_num_threads()
    taps = C // groups * FH * FW
    copies = max(C * _copy_floats(OH, W, geo), K * _copy_floats(H, W, geo))
    return {"direct_copies": (parts, FW * copies), "direct_acc": (parts, max(OH, H) * W),
            "direct_dW": (parts, K, taps), "direct_db": (parts, K),
            "direct_wf": (C, K // groups * FH * FW)}


def direct_forward(x: np.ndarray, H: int, W: int, w2: np.ndarray, b: np.ndarray, y: np.ndarray,
                   ws: dict[str, np.ndarray], geo: tuple, groups: int, OH: int, OW: int,
                   relu: int) -> None:
    """y (N×K×OH×OW, passed flat) = the stride-1 convolution of x (N×C×(H·W)) with w2
    (K × (C/G)·FH·FW) plus b, then ReLU when ``relu``; ``ws``: :func:`direct_workspace`."""
    N, K = x.shape[0], w2.shape[0]
    copies = ws["direct_copies"]
    cpu_threads.run_parts(_direct_forward_part, copies.shape[0], x, H, W, w2, b,
                          y.reshape(N, K, OH * OW), copies, ws["direct_acc"], geo, groups, OH,
                          np.int64(relu))


def direct_backward(x: np.ndarray, H: int, W: int, w2: np.ndarray, y: np.ndarray,
                    dy: np.ndarray, dw2: np.ndarray, db: np.ndarray, dx: np.ndarray | None,
                    ws: dict[str, np.ndarray], geo: tuple, groups: int, OH: int, OW: int,
                    relu: int) -> None:
    """dw2 (K × (C/G)·FH·FW), db (K) and, unless it is None, dx (N×C×(H·W)) from dy
    (N×K×OH×OW, passed flat like y), with the forward pass's input x and output y (its
    ReLU mask, when ``relu``)."""
    N, K = x.shape[0], w2.shape[0]
    T = geo[0] * geo[1]
    wf, copies = ws["direct_wf"], ws["direct_copies"]
    if dx is not None:  # the filters rotated by 180°, per input channel: C × (K/G)·FH·FW
        Kg = K // groups
        rotated = w2.reshape(groups, Kg, -1, T)[:, :, :, ::-1].transpose(0, 2, 1, 3)
        np.copyto(wf.reshape(rotated.shape), rotated)
    parts = copies.shape[0]
    y3, dy3 = y.reshape(N, K, OH * OW), dy.reshape(N, K, OH * OW)
    cpu_threads.run_parts(_direct_weight_grads_part, parts, x, y3, dy3, H, W, copies,
                          ws["direct_dW"], ws["direct_db"], geo, groups, OH, np.int64(relu))
    if dx is not None:  # its own function: a first layer's backward never compiles it
        cpu_threads.run_parts(_direct_input_grads_part, parts, wf, y3, dy3, dx, H, W, copies,
                              ws["direct_acc"], geo, groups, OH, np.int64(relu))
    # the parts' sums, added in part order (as cpu_conv.backward_in_chunks)
    np.sum(ws["direct_db"], axis=0, out=db)
    np.sum(ws["direct_dW"], axis=0, out=dw2)


@njit(inline="always")
def _plane(y, acc, cps, w, bias, relu, FH, FW, DH, DW, W, left, L, channels):
    """y (flat L) = Σ over ``channels`` input planes (their copies: cps[c·FW … (c + 1)·FW −
    1]) of their correlation with w[c·FH·FW …] (taps), plus bias, then ReLU when ``relu``;
    acc holds the sum between channels. 3×3 undilated windows run the bodies with the
    window and the first/last flags as constants; other windows the tap-by-tap bodies."""
    T = FH * FW
    if FH == 3 and FW == 3 and DH == 1 and DW == 1:
        if channels == 1:
            direct_conv.correlate_at(y, acc, cps, w, 0, bias, relu, 3, 3, 1, 1, 2, W, left, L,
                                     True)
            return
        direct_conv.accumulate_at(acc, cps[:3], w, 0, 3, 3, 1, 1, 2, W, left, L, True)
        for c in range(1, channels - 1):
            direct_conv.accumulate_at(acc, cps[3 * c:3 * c + 3], w, 9 * c, 3, 3, 1, 1, 2, W,
                                      left, L, False)
        c = channels - 1
        direct_conv.correlate_at(y, acc, cps[3 * c:3 * c + 3], w, 9 * c, bias, relu, 3, 3, 1,
                                 1, 2, W, left, L, False)
        return
    for c in range(channels):
        direct_conv.correlate_taps_at(acc, cps[FW * c:FW * (c + 1)], w, T * c, FH, FW, DH, DW,
                                      (FW - 1) * DW, W, left, L, c == 0)
    direct_conv.finish_at(y, acc, bias, relu, L)


@njit(nogil=True, fastmath=True, cache=True)
def _direct_forward_part(part, parts, x, H, W, w2, b, y3, copies, acc, geo, groups, OH, relu):
    """Part ``part``'s images: their input planes' copies, then each output plane."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    N, C = x.shape[0], x.shape[1]
    K = w2.shape[0]
    S = (FW - 1) * DW
    Cg, Kg = C // groups, K // groups
    RP = OH + (FH - 1) * DH
    E = RP * W + 2 * S  # floats of one copy
    cps = copies[part, :C * FW * E].reshape(C * FW, E)
    a = acc[part]
    n_lo, n_hi = chunks_of_part(part, parts, N, 1)
    for n in range(n_lo, n_hi):
        for c in range(C):
            direct_conv.shifted_copies_at(cps[c * FW:(c + 1) * FW], S, x[n, c], x[n, c], NO_MASK,
                                          H, W, PT, PL, FW, DW, RP)
        for k in range(K):
            c0 = (k // Kg) * Cg
            _plane(y3[n, k], a, cps[c0 * FW:(c0 + Cg) * FW], w2[k], b[k], relu, FH, FW, DH, DW,
                   W, PL, OH * W, Cg)


@njit(nogil=True, fastmath=True, cache=True)
def _direct_weight_grads_part(part, parts, x, y3, dy3, H, W, copies, dW_parts, db_parts, geo,
                              groups, OH, relu):
    """Part ``part``'s images: their weight and bias gradient sums into
    ``dW_parts[part]``, ``db_parts[part]``."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    N, C = x.shape[0], x.shape[1]
    K = dW_parts.shape[1]
    T, S = FH * FW, (FW - 1) * DW
    Cg, Kg = C // groups, K // groups
    RP = OH + (FH - 1) * DH  # rows of the input's copies
    E = RP * W + 2 * S
    cps = copies[part, :C * FW * E].reshape(C * FW, E)
    dWp, dbp = dW_parts[part], db_parts[part]
    dWp[:] = np.float32(0.0)
    dbp[:] = np.float32(0.0)
    n_lo, n_hi = chunks_of_part(part, parts, N, 1)
    for n in range(n_lo, n_hi):
        for c in range(C):
            direct_conv.shifted_copies_at(cps[c * FW:(c + 1) * FW], S, x[n, c], x[n, c], NO_MASK,
                                          H, W, PT, PL, FW, DW, RP)
        for k in range(K):
            c0 = (k // Kg) * Cg
            for cl in range(Cg):
                cp = cps[(c0 + cl) * FW:(c0 + cl + 1) * FW]
                if FH == 3 and FW == 3 and DH == 1 and DW == 1:
                    total = direct_conv.weight_grads_3x3_at(dWp[k], cl * T, dy3[n, k], y3[n, k],
                                                            relu, cp, 2, W, PL, OH * W)
                else:
                    total = direct_conv.weight_grads_at(dWp[k], cl * T, dy3[n, k], y3[n, k],
                                                        relu, cp, FH, FW, DH, DW, S, W, PL,
                                                        OH * W)
                if cl == 0:
                    dbp[k] += total


@njit(nogil=True, fastmath=True, cache=True)
def _direct_input_grads_part(part, parts, wf, y3, dy3, dx, H, W, copies, acc, geo, groups, OH,
                             relu):
    """Part ``part``'s images' input gradient: the output gradient's copies correlated
    with the rotated filters wf (C × (K/G)·FH·FW): dx[iy, ix] sums w[fh, fw]·g[iy + PT −
    fh·DH, ix + PL − fw·DW], i.e. top and left offsets of the window's reach less PT
    and PL."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    N, C = dx.shape[0], dx.shape[1]
    K = y3.shape[1]
    S = (FW - 1) * DW
    Cg, Kg = C // groups, K // groups
    RQ = H + (FH - 1) * DH  # rows of the output gradient's copies
    EQ = RQ * W + 2 * S
    gcps = copies[part, :K * FW * EQ].reshape(K * FW, EQ)
    a = acc[part]
    n_lo, n_hi = chunks_of_part(part, parts, N, 1)
    for n in range(n_lo, n_hi):
        for k in range(K):
            direct_conv.shifted_copies_at(gcps[k * FW:(k + 1) * FW], S, dy3[n, k], y3[n, k],
                                          relu, OH, W, (FH - 1) * DH - PT, (FW - 1) * DW - PL, FW,
                                          DW, RQ)
        for c in range(C):
            k0 = (c // Cg) * Kg  # the filters of c's group
            _plane(dx[n, c], a, gcps[k0 * FW:(k0 + Kg) * FW], wf[c], np.float32(0.0), NO_MASK,
                   FH, FW, DH, DW, W, (FW - 1) * DW - PL, H * W, Kg)



# --- conv → ReLU → 2×2 stride-2 max pooling in one pass --------------------------------
# fmnist's first convolution writes 12.8 MB (128×32×28×28) that its pooling reads, and in
# backward the pooling writes a gradient of that size, 3/4 zeros, that the convolution
# reads again with its ReLU mask: memory-bound passes. Fused, each output plane (OH·W
# floats, 3 KB there) is computed into a buffer in L1 and pooled from it; only the
# pooled output and argmax (the pool layer's) are written. Backward expands each pooled
# gradient plane into that buffer (each value at its winner, masked by the ReLU: the
# pooled value is the winner's, so y > 0 there) and runs the unfused bodies on it: the
# same values in the same order as the unfused passes, bit for bit.


def direct_pool_workspace(N: int, C: int, K: int, H: int, W: int, OH: int, OW: int,
                          geo: tuple, groups: int) -> dict[str, tuple]:
    """:func:`direct_workspace` and, per part, one output plane (OH·OW, or its gradient)
    for :func:`direct_pool_forward`/``_backward``."""
    parts = numba.get_num_threads()
    return {**direct_workspace(N, C, K, H, W, OH, OW, geo, groups),
            "direct_plane": (parts, OH * OW)}


def direct_pool_forward(x: np.ndarray, H: int, W: int, w2: np.ndarray, b: np.ndarray,
                        y: np.ndarray, argmax: np.ndarray, ws: dict[str, np.ndarray],
                        geo: tuple, groups: int, OH: int, OW: int, relu: int) -> None:
    """y and argmax (N×K×⌊OH/2⌋×⌊OW/2⌋, float32 and int32, as ``max_pool_forward``'s) =
    2×2 stride-2 max pooling of :func:`direct_forward`'s output (with ReLU when ``relu``),
    which is never written; ``ws``: :func:`direct_pool_workspace`."""
    copies = ws["direct_copies"]
    cpu_threads.run_parts(_direct_pool_forward_part, copies.shape[0], x, H, W, w2, b, y, argmax,
                          copies, ws["direct_acc"], ws["direct_plane"], geo, groups, OH,
                          np.int64(relu))


def direct_pool_backward(x: np.ndarray, H: int, W: int, w2: np.ndarray, y: np.ndarray,
                         argmax: np.ndarray, dy: np.ndarray, dw2: np.ndarray, db: np.ndarray,
                         dx: np.ndarray | None, ws: dict[str, np.ndarray], geo: tuple,
                         groups: int, OH: int, OW: int, relu: int) -> None:
    """:func:`direct_backward` from the pooled gradient dy with the pooled output y and
    argmax of :func:`direct_pool_forward` (all N×K×⌊OH/2⌋×⌊OW/2⌋)."""
    K = w2.shape[0]
    T = geo[0] * geo[1]
    wf, copies = ws["direct_wf"], ws["direct_copies"]
    if dx is not None:
        Kg = K // groups
        rotated = w2.reshape(groups, Kg, -1, T)[:, :, :, ::-1].transpose(0, 2, 1, 3)
        np.copyto(wf.reshape(rotated.shape), rotated)
    parts = copies.shape[0]
    plane = ws["direct_plane"]
    cpu_threads.run_parts(_direct_pool_weight_grads_part, parts, x, y, argmax, dy, H, W, copies,
                          plane, ws["direct_dW"], ws["direct_db"], geo, groups, OH,
                          np.int64(relu))
    if dx is not None:
        cpu_threads.run_parts(_direct_pool_input_grads_part, parts, wf, y, argmax, dy, dx, H, W,
                              copies, ws["direct_acc"], plane, geo, groups, OH, np.int64(relu))
    np.sum(ws["direct_db"], axis=0, out=db)
    np.sum(ws["direct_dW"], axis=0, out=dw2)


@njit(nogil=True, fastmath=True, cache=True)
def _direct_pool_forward_part(part, parts, x, H, W, w2, b, y, argmax, copies, acc, planes, geo,
                              groups, OH, relu):
    """Part ``part``'s images: their input planes' copies, then each output plane into
    ``planes[part]`` and its pooling into y and argmax."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    N, C = x.shape[0], x.shape[1]
    K = w2.shape[0]
    S = (FW - 1) * DW
    Cg, Kg = C // groups, K // groups
    RP = OH + (FH - 1) * DH
    E = RP * W + 2 * S
    cps = copies[part, :C * FW * E].reshape(C * FW, E)
    a = acc[part]
    plane = planes[part, :OH * W]
    plane2 = plane.reshape(OH, W)
    n_lo, n_hi = chunks_of_part(part, parts, N, 1)
    for n in range(n_lo, n_hi):
        for c in range(C):
            direct_conv.shifted_copies_at(cps[c * FW:(c + 1) * FW], S, x[n, c], x[n, c], NO_MASK,
                                          H, W, PT, PL, FW, DW, RP)
        for k in range(K):
            c0 = (k // Kg) * Cg
            _plane(plane, a, cps[c0 * FW:(c0 + Cg) * FW], w2[k], b[k], relu, FH, FW, DH, DW,
                   W, PL, OH * W, Cg)
            pool.max_pool_plane_by_selects(y[n, k], argmax[n, k], plane2, 2, 2, 2, 2)


@njit(nogil=True, fastmath=True, cache=True)
def _direct_pool_weight_grads_part(part, parts, x, y, argmax, dy, H, W, copies, planes,
                                   dW_parts, db_parts, geo, groups, OH, relu):
    """:func:`_direct_weight_grads_part` from the pooled gradient: each output gradient
    plane expanded into ``planes[part]`` (``pooled_grad_plane_at``) first."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    N, C = x.shape[0], x.shape[1]
    K = dW_parts.shape[1]
    T, S = FH * FW, (FW - 1) * DW
    Cg, Kg = C // groups, K // groups
    RP = OH + (FH - 1) * DH
    E = RP * W + 2 * S
    cps = copies[part, :C * FW * E].reshape(C * FW, E)
    dWp, dbp = dW_parts[part], db_parts[part]
    dWp[:] = np.float32(0.0)
    dbp[:] = np.float32(0.0)
    g = planes[part, :OH * W]
    n_lo, n_hi = chunks_of_part(part, parts, N, 1)
    for n in range(n_lo, n_hi):
        for c in range(C):
            direct_conv.shifted_copies_at(cps[c * FW:(c + 1) * FW], S, x[n, c], x[n, c], NO_MASK,
                                          H, W, PT, PL, FW, DW, RP)
        for k in range(K):
            direct_conv.pooled_grad_plane_at(g, dy[n, k], y[n, k], argmax[n, k], relu, OH * W, W)
            c0 = (k // Kg) * Cg
            for cl in range(Cg):
                cp = cps[(c0 + cl) * FW:(c0 + cl + 1) * FW]
                if FH == 3 and FW == 3 and DH == 1 and DW == 1:
                    total = direct_conv.weight_grads_3x3_at(dWp[k], cl * T, g, g, NO_MASK, cp, 2,
                                                            W, PL, OH * W)
                else:
                    total = direct_conv.weight_grads_at(dWp[k], cl * T, g, g, NO_MASK, cp, FH,
                                                        FW, DH, DW, S, W, PL, OH * W)
                if cl == 0:
                    dbp[k] += total


@njit(nogil=True, fastmath=True, cache=True)
def _direct_pool_input_grads_part(part, parts, wf, y, argmax, dy, dx, H, W, copies, acc, planes,
                                  geo, groups, OH, relu):
    """:func:`_direct_input_grads_part` from the pooled gradient: each output gradient
    plane expanded into ``planes[part]`` (``pooled_grad_plane_at``), then copied."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    N, C = dx.shape[0], dx.shape[1]
    K = y.shape[1]
    S = (FW - 1) * DW
    Cg, Kg = C // groups, K // groups
    RQ = H + (FH - 1) * DH
    EQ = RQ * W + 2 * S
    gcps = copies[part, :K * FW * EQ].reshape(K * FW, EQ)
    a = acc[part]
    g = planes[part, :OH * W]
    n_lo, n_hi = chunks_of_part(part, parts, N, 1)
    for n in range(n_lo, n_hi):
        for k in range(K):
            direct_conv.pooled_grad_plane_at(g, dy[n, k], y[n, k], argmax[n, k], relu, OH * W, W)
            direct_conv.shifted_copies_at(gcps[k * FW:(k + 1) * FW], S, g, g, NO_MASK, OH, W,
                                          (FH - 1) * DH - PT, (FW - 1) * DW - PL, FW, DW, RQ)
        for c in range(C):
            k0 = (c // Cg) * Kg
            _plane(dx[n, c], a, gcps[k0 * FW:(k0 + Kg) * FW], wf[c], np.float32(0.0), NO_MASK,
                   FH, FW, DH, DW, W, (FW - 1) * DW - PL, H * W, Kg)


kernel_cache.restore(_numba_cache_dir)
