"""The CPU's Winograd F(4×4, 3×3) convolution (bodies: ``numbacnn/kernels/winograd43.py``).

Built as ``cpu_winograd5.py`` (read that first), with 4×4 output tiles and 3×3 filters:
each thread takes its share of the batch and works it a chunk of images at a time, the
chunk's input tiles transformed (V, 36 × C·T), 36 CBLAS products with the transformed
filters, the output transform with the bias and the fused ReLU. Backward reads the
forward's U again (as ``cpu_winograd.py``: backward follows the forward of the same batch
with the same weights), recomputes a chunk's V, sums the filter gradient's 36 products per
part (the first chunk's products overwrite, no zeroing pass; the parts added in order
after them, the filter transforms split among the threads: AlexNet's U and dU are 21 MB)
and computes dx backward through the forward's transforms: dV[ξ] (C × T) =
U[ξ]ᵀ @ dM[ξ], then each tile's B·dV·Bᵀ added into the (padded) input plane.
Without a CBLAS function the whole batch runs in one chunk with numpy's batched matmul.
The Python side (workspace, parts on threads, the numpy path) is shared with the other
larger-tile variant: ``cpu_winograd_tiled.py``; here the compiled loops.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from numbacnn.backends import cblas, cpu_winograd_tiled, kernel_cache
from numbacnn.backends.cpu_conv import chunks_of_part
from numbacnn.backends.cpu_winograd import MIN_CHUNK_OVER_U
from numbacnn.kernels import winograd5_rows, winograd43, winograd43_rows, winograd_rows

_numba_cache_dir = kernel_cache.use_versioned_cache_dir()  # restored at the end of this module

__all__ = ["winograd43_backward", "winograd43_forward", "winograd43_workspace"]

POSITIONS = 36  # the 6×6 transformed tile
# V and M of one chunk within a core's L2, but at least MIN_CHUNK_TILES tiles and
# MIN_CHUNK_OVER_U times U's bytes (the products stream all of U once a chunk), as
# cpu_winograd.py. 64 tiles, not 256: a 4×4 tile is 36 floats a channel, and fmnist's
# conv2 (batch 128, one thread) took 18.6 ms a pass in chunks of 4 images (64 tiles),
# 20.3 in chunks of 8 and 22.3 of 16, the products no slower (bench/RESULTS.md)
CHUNK_BYTES = 1 << 20
MIN_CHUNK_TILES = 64
NO_RELU = np.int64(0)
WITH_BIAS = np.int64(1)
BIAS_POSITION = 7  # position 6·1 + 1 of A·g·Aᵀ: the tile's sum


def _chunk(N: int, C: int, K: int, H: int, W: int, OH: int, OW: int, parts: int) -> int:
    """Images per chunk (``cpu_winograd._chunk`` with 36 positions, 4×4 tiles)."""
    tf = tiles(OH, OW)
    per_image = 4 * POSITIONS * (C + K) * tf[0] * tf[1]
    enough = max(-(-MIN_CHUNK_TILES // (tf[0] * tf[1])),
                 -(-MIN_CHUNK_OVER_U * 4 * POSITIONS * K * C // per_image))
    return max(1, min(max(CHUNK_BYTES // per_image, enough), -(-N // parts)))


def tiles(OH: int, OW: int) -> tuple[int, int]:
    """(TH, TW): the 4×4 output tiles covering OH×OW."""
    return (OH + 3) // 4, (OW + 3) // 4


def _loops() -> cpu_winograd_tiled.TiledLoops:
    """This variant's compiled loops, named here so the warm-up finds them."""
    return cpu_winograd_tiled.TiledLoops(
        POSITIONS, BIAS_POSITION, tiles, _chunk, _winograd43_filters_part, _winograd43_inputs,
        _winograd43_outputs, _winograd43_output_grads, _winograd43_filter_grads,
        _winograd43_input_grads, _winograd43_forward_part, _winograd43_backward_part,
        _winograd43_finish_part, _winograd43_finish_bias)


def winograd43_workspace(N: int, C: int, K: int, H: int, W: int, OH: int,
                         OW: int) -> dict[str, tuple]:
    """Shapes of the float32 buffers of :func:`winograd43_forward` and
    :func:`winograd43_backward` for a batch of N: per part a chunk's V and M and its
    gradient sums and the transformed filters U (36 × K·C)."""
    return cpu_winograd_tiled.workspace(_loops(), N, C, K, H, W, OH, OW)


def winograd43_forward(x: np.ndarray, H: int, W: int, w2: np.ndarray, b: np.ndarray,
                       y: np.ndarray, ws: dict[str, np.ndarray], geo: tuple, OH: int, OW: int,
                       relu: int) -> None:
    """y (N×K×OH×OW, passed flat) = the 3×3 convolution of x (N×C×(H·W)) with w2
    (K × C·9) plus b, then ReLU when ``relu``; ``ws``: :func:`winograd43_workspace`'s."""
    cpu_winograd_tiled.forward(_loops(), x, H, W, w2, b, y, ws, geo, OH, OW, relu)


def winograd43_backward(x: np.ndarray, H: int, W: int, w2: np.ndarray, y: np.ndarray,
                        dy: np.ndarray, dw2: np.ndarray, db: np.ndarray,
                        dx: np.ndarray | None, ws: dict[str, np.ndarray], geo: tuple, OH: int,
                        OW: int, relu: int) -> None:
    """dw2 (K × C·9), db (K) and, unless it is None, dx (N×C×(H·W)) from dy (N×K×OH×OW,
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
def _winograd43_filters_part(part, parts, U, w2):
    """U (36 × K·C) from w2 (K × C·9), the filters of part ``part`` of ``parts``: AlexNet's
    U is 21 MB, ~2 ms a layer on one thread."""
    K = w2.shape[0]
    for k in range(K * part // parts, K * (part + 1) // parts):
        winograd43_rows.filter_tile_row(U, w2, k)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd43_input_grads(dx, dV, H, W, PT, PL, TH, TW):
    """dx (N×C×(H·W)) from dV (36 × C·T): each plane's tiles' B·dv·Bᵀ summed in a padded
    plane (tile (th, tw) at rows 4·th …, columns 4·tw …), then its inside copied out."""
    N, C = dx.shape[0], dx.shape[1]
    T = N * TH * TW
    P = np.empty((4 * TH + 2, 4 * TW + 2), np.float32)
    Q = np.empty((6, 4 * TW + 2), np.float32)
    for c in range(C):
        for n in range(N):
            P[:] = np.float32(0.0)
            for th in range(TH):
                winograd5_rows.input_grad_tile_row(P, 4 * th, dV, c * T + (n * TH + th) * TW,
                                                   TW, Q, 4)
            dst = dx[n, c]
            for iy in range(H):
                row = P[iy + PT]
                for ix in range(W):
                    dst[iy * W + ix] = row[ix + PL]


@njit(nogil=True, fastmath=True, cache=True)
def _winograd43_inputs(V, x, mask, relu, H, W, PT, PL, TH, TW):
    """V (36 × C·T) from x (N×C×(H·W)): each plane zero-padded once, then a row of tiles
    per call."""
    N, C = x.shape[0], x.shape[1]
    T = N * TH * TW
    P = np.empty((4 * TH + 2, 4 * TW + 2), np.float32)
    Q = np.empty((6, 4 * TW + 2), np.float32)
    for c in range(C):
        for n in range(N):
            winograd_rows.pad_plane(P, x[n, c], mask[n, c], relu, H, W, PT, PL)
            for th in range(TH):
                winograd5_rows.input_tile_row(V, c * T + (n * TH + th) * TW, P, 4 * th, TW, Q,
                                              4)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd43_outputs(y, M, b, relu, with_bias, OH, OW, TH, TW):
    """y (N×K×(OH·OW)) from M (36 × K·T), M overwritten: Aᵀ over each filter's T columns,
    then its N planes placed."""
    N, K = y.shape[0], y.shape[1]
    T = N * TH * TW
    for k in range(K):
        bias = b[k] if with_bias else np.float32(0.0)
        winograd43_rows.output_columns_in_place(M, k * T, (k + 1) * T)
        for n in range(N):
            winograd43_rows.place_outputs(y[n, k], k * T + n * TH * TW, M, bias, relu, OH, OW,
                                          TH, TW)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd43_output_grads(dM, dy, y, relu, OH, OW, TH, TW):
    """dM (36 × K·T) from dy (N×K×(OH·OW)), masked where y ≤ 0 when ``relu`` ≠ 0."""
    N, K = dy.shape[0], dy.shape[1]
    T = N * TH * TW
    G = np.empty((4 * TH, 4 * TW), np.float32)
    for k in range(K):
        for n in range(N):
            winograd43_rows.gather_output_grads(dM, k * T + n * TH * TW, dy[n, k], y[n, k],
                                                relu, OH, OW, TH, TW, G)
    winograd43_rows.output_grads_in_place(dM, 0, K * T)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd43_filter_grads(dw2, dU):
    for i in range(dw2.shape[0] * (dw2.shape[1] // 9)):
        winograd43.filter_grad_at(i, dw2, dU)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd43_forward_part(part, parts, chunk, sgemm, x, H, W, U, b, y, V, M, PT, PL, OH,
                             OW, relu):
    N, C, K = x.shape[0], x.shape[1], y.shape[1]
    TH, TW = (OH + 3) // 4, (OW + 3) // 4
    ci_lo, ci_hi = chunks_of_part(part, parts, N, chunk)
    for ci in range(ci_lo, ci_hi):
        n0 = ci * chunk
        m = min(N, n0 + chunk) - n0
        T = m * TH * TW
        Vc = V[part].reshape(36, V.shape[1] // 36)  # rows a pitch apart (cpu_winograd.pitch)
        Mc = M[part].reshape(36, M.shape[1] // 36)
        _winograd43_inputs(Vc, x[n0:n0 + m], x[n0:n0 + m], NO_RELU, H, W, PT, PL, TH, TW)
        for xi in range(36):  # M[ξ] (K × T) = U[ξ] (K × C) @ V[ξ] (C × T)
            sgemm(cblas.ROW_MAJOR, cblas.NO_TRANS, cblas.NO_TRANS, K, T, C, np.float32(1.0),
                  U[xi].ctypes, C, Vc[xi].ctypes, T, np.float32(0.0), Mc[xi].ctypes, T)
        _winograd43_outputs(y[n0:n0 + m], Mc, b, relu, WITH_BIAS, OH, OW, TH, TW)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd43_backward_part(part, parts, chunk, sgemm, x, H, W, U, y, dy, dx, need_dx, V,
                              M, dU_parts, db_parts, PT, PL, OH, OW, relu):
    N = x.shape[0]
    TH, TW = (OH + 3) // 4, (OW + 3) // 4
    _zero_sums(part, parts, N, chunk, dU_parts, db_parts)
    ci_lo, ci_hi = chunks_of_part(part, parts, N, chunk)
    for ci in range(ci_lo, ci_hi):
        n0 = ci * chunk
        m = min(N, n0 + chunk) - n0
        dM = M[part].reshape(36, M.shape[1] // 36)
        _winograd43_output_grads(dM, dy[n0:n0 + m], y[n0:n0 + m], relu, OH, OW, TH, TW)
        _backward_chunk(part, ci == ci_lo, n0, m, sgemm, x, H, W, U, dx, need_dx, V, M, dU_parts,
                        db_parts, PT, PL, OH, OW)


@njit(nogil=True, fastmath=True, cache=True)
def _zero_sums(part, parts, N, chunk, dU_parts, db_parts):
    """Part ``part``'s bias sums zeroed, and its filter sums when it has no images (the
    first chunk's products overwrite them)."""
    dUp, dbp = dU_parts[part], db_parts[part]
    ci_lo, ci_hi = chunks_of_part(part, parts, N, chunk)
    if ci_lo == ci_hi:
        for xi in range(36):  # a part without images still adds its (zero) sums
            for j in range(dUp.shape[1]):
                dUp[xi, j] = np.float32(0.0)
    for k in range(dbp.shape[0]):
        dbp[k] = np.float32(0.0)


@njit(nogil=True, fastmath=True, cache=True)
def _backward_chunk(part, first, n0, m, sgemm, x, H, W, U, dx, need_dx, V, M, dU_parts,
                    db_parts, PT, PL, OH, OW):
    """The chunk of images n0 … n0 + m − 1 with its dM (36 × K·T) in M[part]: the bias
    sums, dU (overwritten by the part's ``first`` chunk) and dx when ``need_dx``."""
    C, K = x.shape[1], db_parts.shape[1]
    TH, TW = (OH + 3) // 4, (OW + 3) // 4
    T = m * TH * TW
    dUp, dbp = dU_parts[part], db_parts[part]
    dM = M[part].reshape(36, M.shape[1] // 36)
    Vc = V[part].reshape(36, V.shape[1] // 36)
    for k in range(K):  # position 7 of A·g·Aᵀ is the tile's sum
        acc = np.float32(0.0)
        for t in range(k * T, (k + 1) * T):
            acc += dM[BIAS_POSITION, t]
        dbp[k] += acc
    _winograd43_inputs(Vc, x[n0:n0 + m], x[n0:n0 + m], NO_RELU, H, W, PT, PL, TH, TW)
    beta = np.float32(0.0) if first else np.float32(1.0)  # no zeroing pass over dU
    for xi in range(36):  # dU[ξ] (K × C) += dM[ξ] (K × T) @ V[ξ]ᵀ
        sgemm(cblas.ROW_MAJOR, cblas.NO_TRANS, cblas.TRANS, K, C, T, np.float32(1.0),
              dM[xi].ctypes, T, Vc[xi].ctypes, T, beta, dUp[xi].ctypes, C)
    if need_dx:  # dV[ξ] (C × T) = U[ξ]ᵀ @ dM[ξ] (K × T), into V's buffer; B·dV·Bᵀ
        for xi in range(36):
            sgemm(cblas.ROW_MAJOR, cblas.TRANS, cblas.NO_TRANS, C, T, K, np.float32(1.0),
                  U[xi].ctypes, C, dM[xi].ctypes, T, np.float32(0.0), Vc[xi].ctypes, T)
        _winograd43_input_grads(dx[n0:n0 + m], Vc, H, W, PT, PL, TH, TW)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd43_finish_part(part, parts, dw2, dU_parts):
    """dw2 = Gᵀ·dU·G for the filter pairs of part ``part`` of ``parts``, dU the parts'
    sums added in order (the same sums whatever the split: repeatable bit for bit)."""
    KC = dw2.shape[0] * (dw2.shape[1] // 9)
    lo, hi = KC * part // parts, KC * (part + 1) // parts
    dU = dU_parts[0]
    for p in range(1, dU_parts.shape[0]):
        for xi in range(36):
            for j in range(lo, hi):
                dU[xi, j] += dU_parts[p, xi, j]
    for i in range(lo, hi):
        winograd43.filter_grad_at(i, dw2, dU)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd43_finish_bias(db, db_parts):
    """db from the parts' sums, added in order."""
    for k in range(db.shape[0]):
        acc = db_parts[0, k]
        for p in range(1, db_parts.shape[0]):
            acc += db_parts[p, k]
        db[k] = acc


kernel_cache.restore(_numba_cache_dir)
