"""The CPU's direct convolution (``algo=direct``; bodies: ``numbacnn/kernels/direct_conv.py``).

For stride-1 convolutions with few taps per output (C/G·FH·FW), where im2col and one GEMM
with an inner dimension of 9 run far below the GEMM's rate. Each thread takes its share
of the batch (a part, whole images): an image's input planes copied into zero-padded
"wide" planes, then each output plane correlated from them in one vectorized loop, the
bias and the fused ReLU added as the wide plane is cut to the output's width. Backward:
the (masked) output gradient of each filter in the wide layout, its dot products with
the shifted input planes summed per part into the weight gradient (the parts added in
order: repeatable bit for bit for a thread count), and the input gradient as the
correlation of the padded output gradient with the filters rotated by 180°.

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
from numbacnn.kernels import direct_conv

_numba_cache_dir = kernel_cache.use_versioned_cache_dir()  # restored at the end of this module

# Flags as int64 values, not literals (a literal is its own type: one compile each)
NO_MASK = np.int64(0)


def _wide(geo: tuple, OH: int, OW: int, H: int, W: int) -> tuple[int, int, int, int]:
    """(HP, WP, HQ, WQ): the padded planes of the input (forward, weight gradient) and of
    the output gradient (input gradient)."""
    FH, FW, _, _, _, _, DH, DW = geo
    return OH + (FH - 1) * DH, OW + (FW - 1) * DW, H + (FH - 1) * DH, W + (FW - 1) * DW


def direct_workspace(N: int, C: int, K: int, H: int, W: int, OH: int, OW: int, geo: tuple,
                     groups: int) -> dict[str, tuple]:
    """Shapes of the float32 buffers of :func:`direct_forward` and :func:`direct_backward`:
    per part an image's padded planes, a wide plane to sum in and one of the output
    gradient, its gradient sums; the filters rotated by 180° (K × (C/G)·FH·FW)."""
    HP, WP, HQ, WQ = _wide(geo, OH, OW, H, W)
    parts = numba.get_num_threads()
    taps = C // groups * geo[0] * geo[1]
    return {"direct_pad": (parts, max(C * HP * WP, K * HQ * WQ)),
            "direct_acc": (parts, max(OH * WP, H * WQ)), "direct_grad": (parts, OH * WP),
            "direct_dW": (parts, K, taps), "direct_db": (parts, K), "direct_wf": (K, taps)}


def direct_forward(x: np.ndarray, H: int, W: int, w2: np.ndarray, b: np.ndarray, y: np.ndarray,
                   ws: dict[str, np.ndarray], geo: tuple, groups: int, OH: int, OW: int,
                   relu: int) -> None:
    """y (N×K×OH×OW, passed flat) = the stride-1 convolution of x (N×C×(H·W)) with w2
    (K × (C/G)·FH·FW) plus b, then ReLU when ``relu``; ``ws``: :func:`direct_workspace`."""
    N, K = x.shape[0], w2.shape[0]
    pad = ws["direct_pad"]
    cpu_threads.run_parts(_direct_forward_part, pad.shape[0], x, H, W, w2, b,
                          y.reshape(N, K, OH * OW), pad, ws["direct_acc"], geo, groups, OH,
                          OW, np.int64(relu))


def direct_backward(x: np.ndarray, H: int, W: int, w2: np.ndarray, y: np.ndarray,
                    dy: np.ndarray, dw2: np.ndarray, db: np.ndarray, dx: np.ndarray | None,
                    ws: dict[str, np.ndarray], geo: tuple, groups: int, OH: int, OW: int,
                    relu: int) -> None:
    """dw2 (K × (C/G)·FH·FW), db (K) and, unless it is None, dx (N×C×(H·W)) from dy
    (N×K×OH×OW, passed flat like y), with the forward pass's input x and output y (its
    ReLU mask, when ``relu``)."""
    N, K = x.shape[0], w2.shape[0]
    T = geo[0] * geo[1]
    wf, pad = ws["direct_wf"], ws["direct_pad"]
    if dx is not None:  # each filter's taps in reverse order: rotated by 180°
        np.copyto(wf.reshape(K, -1, T), w2.reshape(K, -1, T)[:, :, ::-1])
    cpu_threads.run_parts(_direct_backward_part, pad.shape[0], x, w2, wf,
                          y.reshape(N, K, OH * OW), dy.reshape(N, K, OH * OW),
                          x if dx is None else dx, dx is not None, H, W, pad, ws["direct_acc"],
                          ws["direct_grad"], ws["direct_dW"], ws["direct_db"], geo, groups, OH,
                          OW, np.int64(relu))
    # the parts' sums, added in part order (as cpu_conv.backward_in_chunks)
    np.sum(ws["direct_db"], axis=0, out=db)
    np.sum(ws["direct_dW"], axis=0, out=dw2)


@njit(inline="always")
def _correlate(out, inp, w, w0, FH, FW, DH, DW, WP, L, first):
    """The correlation body with the window as constants where it is 3×3 undilated."""
    if FH == 3 and FW == 3 and DH == 1 and DW == 1:
        direct_conv.correlate_at(out, inp, w, w0, 3, 3, 1, 1, WP, L, first)
    else:
        direct_conv.correlate_taps_at(out, inp, w, w0, FH, FW, DH, DW, WP, L, first)


@njit(nogil=True, fastmath=True, cache=True)
def _direct_forward_part(part, parts, x, H, W, w2, b, y3, pad, acc, geo, groups, OH, OW,
                         relu):
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    N, C = x.shape[0], x.shape[1]
    K = w2.shape[0]
    T = FH * FW
    Cg, Kg = C // groups, K // groups
    HP, WP = OH + (FH - 1) * DH, OW + (FW - 1) * DW
    PP, L = HP * WP, (OH - 1) * WP + OW
    xp, a = pad[part], acc[part]
    n_lo, n_hi = chunks_of_part(part, parts, N, 1)
    for n in range(n_lo, n_hi):
        for c in range(C):
            direct_conv.pad_plane_at(xp[c * PP:(c + 1) * PP], x[n, c], x[n, c], NO_MASK, H, W,
                                     PT, PL, HP, WP)
        for k in range(K):
            c0 = (k // Kg) * Cg
            for cl in range(Cg):
                _correlate(a, xp[(c0 + cl) * PP:(c0 + cl + 1) * PP], w2[k], cl * T, FH, FW, DH,
                           DW, WP, L, cl == 0)
            direct_conv.unwide_at(y3[n, k], a, b[k], relu, OH, OW, WP)


@njit(nogil=True, fastmath=True, cache=True)
def _direct_backward_part(part, parts, x, w2, wf, y3, dy3, dx, need_dx, H, W, pad, acc, grad,
                          dW_parts, db_parts, geo, groups, OH, OW, relu):
    """Part ``part``'s images: their weight and bias gradient sums into
    ``dW_parts[part]``, ``db_parts[part]`` and their input gradient."""
    FH, FW, SH, SW, PT, PL, DH, DW = geo
    N, C = x.shape[0], x.shape[1]
    K = w2.shape[0]
    T = FH * FW
    Cg, Kg = C // groups, K // groups
    HP, WP, HQ, WQ = OH + (FH - 1) * DH, OW + (FW - 1) * DW, H + (FH - 1) * DH, W + (FW - 1) * DW
    PP, L, PQ, LQ = HP * WP, (OH - 1) * WP + OW, HQ * WQ, (H - 1) * WQ + W
    buf, a, g = pad[part], acc[part], grad[part]
    dWp, dbp = dW_parts[part], db_parts[part]
    dWp[:] = np.float32(0.0)
    dbp[:] = np.float32(0.0)
    n_lo, n_hi = chunks_of_part(part, parts, N, 1)
    for n in range(n_lo, n_hi):
        for c in range(C):
            direct_conv.pad_plane_at(buf[c * PP:(c + 1) * PP], x[n, c], x[n, c], NO_MASK, H, W,
                                     PT, PL, HP, WP)
        for k in range(K):
            # the masked output gradient, wide (0 in the dropped columns)
            direct_conv.pad_plane_at(g, dy3[n, k], y3[n, k], relu, OH, OW, 0, 0, OH, WP)
            total = np.float32(0.0)
            for p in range(OH * WP):
                total += g[p]
            dbp[k] += total
            c0 = (k // Kg) * Cg
            for cl in range(Cg):
                inp = buf[(c0 + cl) * PP:(c0 + cl + 1) * PP]
                if FH == 3 and FW == 3 and DH == 1 and DW == 1:
                    direct_conv.weight_grads_3x3_at(dWp[k], cl * T, g, inp, WP, L)
                else:
                    direct_conv.weight_grads_at(dWp[k], cl * T, g, inp, FH, FW, DH, DW, WP, L)
        if not need_dx:
            continue
        # the input gradient: the output gradient padded by the window's reach less the
        # padding, correlated with the rotated filters (buf's input planes are spent)
        for k in range(K):
            direct_conv.pad_plane_at(buf[k * PQ:(k + 1) * PQ], dy3[n, k], y3[n, k], relu, OH,
                                     OW, (FH - 1) * DH - PT, (FW - 1) * DW - PL, HQ, WQ)
        for c in range(C):
            grp, cl = c // Cg, c % Cg
            for kk in range(Kg):
                k = grp * Kg + kk
                _correlate(a, buf[k * PQ:(k + 1) * PQ], wf[k], cl * T, FH, FW, DH, DW, WQ, LQ,
                           kk == 0)
            direct_conv.unwide_at(dx[n, c], a, np.float32(0.0), NO_MASK, H, W, WQ)


kernel_cache.restore(_numba_cache_dir)
