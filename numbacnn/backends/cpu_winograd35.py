"""The CPU's Winograd F(3×3, 5×5) convolution (bodies: ``numbacnn/kernels/winograd35.py``).

Built as ``cpu_winograd43.py`` (read that first), with 3×3 output tiles, 5×5 filters and
7×7 transformed tiles (49 positions): each thread takes its share of the batch and
works it a chunk of images at a time, the chunk's input tiles transformed (V,
49 × C·T), 49 CBLAS products with the transformed filters, the output transform with the
bias and the fused ReLU. Backward reads the forward's U again (backward follows the
forward of the same batch with the same weights), recomputes a chunk's V, sums the
filter gradient's 49 products per part (the first chunk's products overwrite, no
zeroing pass; the parts added in order after them, split among the threads) and
computes dx backward through the forward's transforms: dV[ξ] (C × T) = U[ξ]ᵀ @ dM[ξ],
then each tile's B·dV·Bᵀ added into the (padded) input plane.
Without a CBLAS function the whole batch runs in one chunk with numpy's batched matmul.
The Python side (workspace, parts on threads, the numpy path) is shared with the other
larger-tile variant: ``cpu_winograd_tiled.py``; here the compiled loops.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from numbacnn.backends import cblas, cpu_winograd_tiled, kernel_cache
from numbacnn.backends.cpu_conv import chunks_of_part
from numbacnn.kernels import winograd7_rows, winograd35, winograd35_rows, winograd_rows

_numba_cache_dir = kernel_cache.use_versioned_cache_dir()  # restored at the end of this module

__all__ = ["WINOGRAD35_AUTO_MIN_CK", "winograd35_backward", "winograd35_forward",
           "winograd35_workspace"]

# The smallest C·K at which ``algo=auto`` runs a 5×5 layer that the Winograd rule
# (WINOGRAD5_AUTO_MIN_CK) takes as F(3×3, 5×5) rather than F(2×2, 5×5); None: at none.
# bench/winograd35_layers.py, two threads (bench/RESULTS.md, "Winograd F(3×3, 5×5)"):
# faster at AlexNet's conv2 (C·K = 96·256, batch 16: 58.5–61.3 against 92.4–101.1 ms)
# and at cifar10's conv2 (32·64, the Winograd rule's least, batch 128: 29.3 against 34.2)
WINOGRAD35_AUTO_MIN_CK: int | None = 32 * 64

POSITIONS = 49  # the 7×7 transformed tile
# V and M of one chunk within a core's L2, but at least MIN_CHUNK_TILES tiles (as
# cpu_winograd5.py, without cpu_winograd.py's floor of 3× U's bytes a chunk): AlexNet's
# conv2 (batch 16, 27×27: 81 tiles an image) ran forward and backward in 118 ms in chunks
# of 1 image, 129 of 2, 137 of 3 (that floor's choice), 140 of 4, 153 of 8 on two threads;
# 113, 112 and 120 ms in chunks of 1, 2 and 3 on one (bench/RESULTS.md)
CHUNK_BYTES = 1 << 20
MIN_CHUNK_TILES = 64
NO_RELU = np.int64(0)
WITH_BIAS = np.int64(1)
BIAS_POSITION = 8  # position 7·1 + 1 of A·g·Aᵀ: the tile's sum


def _chunk(N: int, C: int, K: int, H: int, W: int, OH: int, OW: int, parts: int) -> int:
    """Images per chunk (``cpu_winograd._chunk`` with 49 positions, 3×3 tiles)."""
    tf = tiles(OH, OW)
    per_image = 4 * POSITIONS * (C + K) * tf[0] * tf[1]
    enough = -(-MIN_CHUNK_TILES // (tf[0] * tf[1]))
    return max(1, min(max(CHUNK_BYTES // per_image, enough), -(-N // parts)))


def tiles(OH: int, OW: int) -> tuple[int, int]:
    """(TH, TW): the 3×3 output tiles covering OH×OW."""
    return (OH + 2) // 3, (OW + 2) // 3


def _loops() -> cpu_winograd_tiled.TiledLoops:
    """This variant's compiled loops, named here so the warm-up finds them."""
    return cpu_winograd_tiled.TiledLoops(
        POSITIONS, BIAS_POSITION, tiles, _chunk, _winograd35_filters_part, _winograd35_inputs,
        _winograd35_outputs, _winograd35_output_grads, _winograd35_filter_grads,
        _winograd35_input_grads, _winograd35_forward_part, _winograd35_backward_part,
        _winograd35_finish_part, _winograd35_finish_bias)


def winograd35_workspace(N: int, C: int, K: int, H: int, W: int, OH: int,
                         OW: int) -> dict[str, tuple]:
    """Shapes of the float32 buffers of :func:`winograd35_forward` and
    :func:`winograd35_backward` for a batch of N: per part a chunk's V and M and its
    gradient sums and the transformed filters U (49 × K·C)."""
    return cpu_winograd_tiled.workspace(_loops(), N, C, K, H, W, OH, OW)


def winograd35_forward(x: np.ndarray, H: int, W: int, w2: np.ndarray, b: np.ndarray,
                       y: np.ndarray, ws: dict[str, np.ndarray], geo: tuple, OH: int, OW: int,
                       relu: int) -> None:
    """y (N×K×OH×OW, passed flat) = the 5×5 convolution of x (N×C×(H·W)) with w2
    (K × C·25) plus b, then ReLU when ``relu``; ``ws``: :func:`winograd35_workspace`'s."""
    cpu_winograd_tiled.forward(_loops(), x, H, W, w2, b, y, ws, geo, OH, OW, relu)


def winograd35_backward(x: np.ndarray, H: int, W: int, w2: np.ndarray, y: np.ndarray,
                        dy: np.ndarray, dw2: np.ndarray, db: np.ndarray,
                        dx: np.ndarray | None, ws: dict[str, np.ndarray], geo: tuple, OH: int,
                        OW: int, relu: int) -> None:
    """dw2 (K × C·25), db (K) and, unless it is None, dx (N×C×(H·W)) from dy (N×K×OH×OW,
    passed flat like y), with the forward pass's input x and output y (its ReLU mask)."""
    cpu_winograd_tiled.backward(_loops(), x, H, W, w2, y, dy, dw2, db, dx, ws, geo, OH, OW,
                                relu)


def backward_whole_from_grads(x: np.ndarray, H: int, W: int, U: np.ndarray, dw2: np.ndarray,
                              db: np.ndarray, dx: np.ndarray | None, V: np.ndarray,
                              M: np.ndarray, dU: np.ndarray, PT: int, PL: int, OH: int,
                              OW: int) -> None:
    """Backward without CBLAS once the output gradients' tiles are in M[0]
    (``cpu_winograd_tiled.backward_whole_from_grads``)."""
    cpu_winograd_tiled.backward_whole_from_grads(_loops(), x, H, W, U, dw2, db, dx, V, M, dU,
                                                 PT, PL, OH, OW)


# --- compiled loops over the bodies ---------------------------------------------------
@njit(nogil=True, fastmath=True, cache=True)
def _winograd35_filters_part(part, parts, U, w2):
    """U (49 × K·C) from w2 (K × C·25), the filters of part ``part`` of ``parts``: AlexNet's
    conv2's U is 4.8 MB."""
    K = w2.shape[0]
    S = np.empty((60, w2.shape[1] // 25), np.float32)
    for k in range(K * part // parts, K * (part + 1) // parts):
        winograd35_rows.filter_tile_row(U, w2, k, S)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd35_input_grads(dx, dV, H, W, PT, PL, TH, TW):
    """dx (N×C×(H·W)) from dV (49 × C·T): each plane's tiles' B·dv·Bᵀ summed in a padded
    plane (tile (th, tw) at rows 3·th …, columns 3·tw …), then its inside copied out."""
    N, C = dx.shape[0], dx.shape[1]
    T = N * TH * TW
    P = np.empty((3 * TH + 4, 3 * TW + 4), np.float32)
    Q = np.empty((7, 3 * TW + 4), np.float32)
    for c in range(C):
        for n in range(N):
            P[:] = np.float32(0.0)
            for th in range(TH):
                winograd7_rows.input_grad_tile_row(P, 3 * th, dV, c * T + (n * TH + th) * TW,
                                                   TW, Q, 3)
            dst = dx[n, c]
            for iy in range(H):
                row = P[iy + PT]
                for ix in range(W):
                    dst[iy * W + ix] = row[ix + PL]


@njit(nogil=True, fastmath=True, cache=True)
def _winograd35_inputs(V, x, mask, relu, H, W, PT, PL, TH, TW):
    """V (49 × C·T) from x (N×C×(H·W)): each plane zero-padded once, then a row of tiles
    per call."""
    N, C = x.shape[0], x.shape[1]
    T = N * TH * TW
    P = np.empty((3 * TH + 4, 3 * TW + 4), np.float32)
    Q = np.empty((7, 3 * TW + 4), np.float32)
    for c in range(C):
        for n in range(N):
            winograd_rows.pad_plane(P, x[n, c], mask[n, c], relu, H, W, PT, PL)
            for th in range(TH):
                winograd7_rows.input_tile_row(V, c * T + (n * TH + th) * TW, P, 3 * th, TW, Q,
                                              3)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd35_outputs(y, M, b, relu, with_bias, OH, OW, TH, TW):
    """y (N×K×(OH·OW)) from M (49 × K·T), M overwritten: Aᵀ over each filter's T columns,
    then its N planes placed."""
    N, K = y.shape[0], y.shape[1]
    T = N * TH * TW
    for k in range(K):
        bias = b[k] if with_bias else np.float32(0.0)
        winograd35_rows.output_columns_in_place(M, k * T, (k + 1) * T)
        for n in range(N):
            winograd35_rows.place_outputs(y[n, k], k * T + n * TH * TW, M, bias, relu, OH, OW,
                                          TH, TW)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd35_output_grads(dM, dy, y, relu, OH, OW, TH, TW):
    """dM (49 × K·T) from dy (N×K×(OH·OW)), masked where y ≤ 0 when ``relu`` ≠ 0."""
    N, K = dy.shape[0], dy.shape[1]
    T = N * TH * TW
    G = np.empty((3 * TH, 3 * TW), np.float32)
    for k in range(K):
        for n in range(N):
            winograd35_rows.gather_output_grads(dM, k * T + n * TH * TW, dy[n, k], y[n, k],
                                                relu, OH, OW, TH, TW, G)
    winograd35_rows.output_grads_in_place(dM, 0, K * T)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd35_filter_grads(dw2, dU):
    for i in range(dw2.shape[0] * (dw2.shape[1] // 25)):
        winograd35.filter_grad_at(i, dw2, dU)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd35_forward_part(part, parts, chunk, sgemm, x, H, W, U, b, y, V, M, PT, PL, OH,
                             OW, relu):
    N, C, K = x.shape[0], x.shape[1], y.shape[1]
    TH, TW = (OH + 2) // 3, (OW + 2) // 3
    ci_lo, ci_hi = chunks_of_part(part, parts, N, chunk)
    for ci in range(ci_lo, ci_hi):
        n0 = ci * chunk
        m = min(N, n0 + chunk) - n0
        T = m * TH * TW
        Vc = V[part].reshape(49, V.shape[1] // 49)  # rows a pitch apart (cpu_winograd.pitch)
        Mc = M[part].reshape(49, M.shape[1] // 49)
        _winograd35_inputs(Vc, x[n0:n0 + m], x[n0:n0 + m], NO_RELU, H, W, PT, PL, TH, TW)
        for xi in range(49):  # M[ξ] (K × T) = U[ξ] (K × C) @ V[ξ] (C × T)
            sgemm(cblas.ROW_MAJOR, cblas.NO_TRANS, cblas.NO_TRANS, K, T, C, np.float32(1.0),
                  U[xi].ctypes, C, Vc[xi].ctypes, T, np.float32(0.0), Mc[xi].ctypes, T)
        _winograd35_outputs(y[n0:n0 + m], Mc, b, relu, WITH_BIAS, OH, OW, TH, TW)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd35_backward_part(part, parts, chunk, sgemm, x, H, W, U, y, dy, dx, need_dx, V,
                              M, dU_parts, db_parts, PT, PL, OH, OW, relu):
    N = x.shape[0]
    TH, TW = (OH + 2) // 3, (OW + 2) // 3
    _winograd35_zero_sums(part, parts, N, chunk, dU_parts, db_parts)
    ci_lo, ci_hi = chunks_of_part(part, parts, N, chunk)
    for ci in range(ci_lo, ci_hi):
        n0 = ci * chunk
        m = min(N, n0 + chunk) - n0
        dM = M[part].reshape(49, M.shape[1] // 49)
        _winograd35_output_grads(dM, dy[n0:n0 + m], y[n0:n0 + m], relu, OH, OW, TH, TW)
        _winograd35_backward_chunk(part, ci == ci_lo, n0, m, sgemm, x, H, W, U, dx, need_dx,
                                   V, M, dU_parts, db_parts, PT, PL, OH, OW)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd35_zero_sums(part, parts, N, chunk, dU_parts, db_parts):
    """Part ``part``'s bias sums zeroed, and its filter sums when it has no images (the
    first chunk's products overwrite them)."""
    dUp, dbp = dU_parts[part], db_parts[part]
    ci_lo, ci_hi = chunks_of_part(part, parts, N, chunk)
    if ci_lo == ci_hi:
        for xi in range(49):  # a part without images still adds its (zero) sums
            for j in range(dUp.shape[1]):
                dUp[xi, j] = np.float32(0.0)
    for k in range(dbp.shape[0]):
        dbp[k] = np.float32(0.0)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd35_backward_chunk(part, first, n0, m, sgemm, x, H, W, U, dx, need_dx, V, M,
                               dU_parts, db_parts, PT, PL, OH, OW):
    """The chunk of images n0 … n0 + m − 1 with its dM (49 × K·T) in M[part]: the bias
    sums, dU (overwritten by the part's ``first`` chunk) and dx when ``need_dx``."""
    C, K = x.shape[1], db_parts.shape[1]
    TH, TW = (OH + 2) // 3, (OW + 2) // 3
    T = m * TH * TW
    dUp, dbp = dU_parts[part], db_parts[part]
    dM = M[part].reshape(49, M.shape[1] // 49)
    Vc = V[part].reshape(49, V.shape[1] // 49)
    for k in range(K):  # position 8 of A·g·Aᵀ is the tile's sum
        acc = np.float32(0.0)
        for t in range(k * T, (k + 1) * T):
            acc += dM[BIAS_POSITION, t]
        dbp[k] += acc
    _winograd35_inputs(Vc, x[n0:n0 + m], x[n0:n0 + m], NO_RELU, H, W, PT, PL, TH, TW)
    beta = np.float32(0.0) if first else np.float32(1.0)  # no zeroing pass over dU
    for xi in range(49):  # dU[ξ] (K × C) += dM[ξ] (K × T) @ V[ξ]ᵀ
        sgemm(cblas.ROW_MAJOR, cblas.NO_TRANS, cblas.TRANS, K, C, T, np.float32(1.0),
              dM[xi].ctypes, T, Vc[xi].ctypes, T, beta, dUp[xi].ctypes, C)
    if need_dx:  # dV[ξ] (C × T) = U[ξ]ᵀ @ dM[ξ] (K × T), into V's buffer; B·dV·Bᵀ
        for xi in range(49):
            sgemm(cblas.ROW_MAJOR, cblas.TRANS, cblas.NO_TRANS, C, T, K, np.float32(1.0),
                  U[xi].ctypes, C, dM[xi].ctypes, T, np.float32(0.0), Vc[xi].ctypes, T)
        _winograd35_input_grads(dx[n0:n0 + m], Vc, H, W, PT, PL, TH, TW)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd35_finish_part(part, parts, dw2, dU_parts):
    """dw2 = Gᵀ·dU·G for the filter pairs of part ``part`` of ``parts``, dU the parts'
    sums added in order (the same sums whatever the split: repeatable bit for bit)."""
    KC = dw2.shape[0] * (dw2.shape[1] // 25)
    lo, hi = KC * part // parts, KC * (part + 1) // parts
    dU = dU_parts[0]
    for p in range(1, dU_parts.shape[0]):
        for xi in range(49):
            for j in range(lo, hi):
                dU[xi, j] += dU_parts[p, xi, j]
    for i in range(lo, hi):
        winograd35.filter_grad_at(i, dw2, dU)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd35_finish_bias(db, db_parts):
    """db from the parts' sums, added in order."""
    for k in range(db.shape[0]):
        acc = db_parts[0, k]
        for p in range(1, db_parts.shape[0]):
            acc += db_parts[p, k]
        db[k] = acc


kernel_cache.restore(_numba_cache_dir)
