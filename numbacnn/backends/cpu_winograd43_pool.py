"""Conv → ReLU → 2×2 stride-2 max pooling fused into the CPU's Winograd F(4×4, 3×3)
training passes (``cpu_winograd43.py``; the direct convolution's: ``cpu_direct.py``).

Each 4×4 output tile holds four whole 2×2 pooling windows (both start at row and column
0; floor pooling drops a partial edge tile's windows past ⌊OH/2⌋×⌊OW/2⌋). Forward places
each output plane, after the bias and the ReLU, in a plane in cache (OH·OW floats) and
pools it there, writing only the pooled output and argmax (the pooling layer's buffers,
``kernels/pool.py``'s format and tie rule), never the convolution's output. Backward
builds each plane's output gradient from the pooled gradient at the winners (masked where
the pooled value ≤ 0: the ReLU's output at the winner) straight into the tiles of dM,
instead of reading a whole dy plane and y. The same values enter the same transforms and
products as unfused: the pooled values, argmax and gradients are those of the two layers
run in a row, bit for bit (tests/test_winograd43_pool_fusion.py). fmnist's conv2 + pool2:
bench/RESULTS.md.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from numbacnn.backends import cblas, cpu_threads, kernel_cache
from numbacnn.backends.cpu_conv import chunks_of_part
from numbacnn.backends.cpu_winograd43 import (
    _backward_chunk,
    _chunk,
    _winograd43_filters_part,
    _winograd43_finish_bias,
    _winograd43_finish_part,
    _winograd43_inputs,
    _zero_sums,
    backward_whole_from_grads,
    tiles,
)
from numbacnn.kernels import pool, winograd43_rows

_numba_cache_dir = kernel_cache.use_versioned_cache_dir()  # restored at the end of this module

__all__ = ["WINOGRAD43_POOL_FUSES", "winograd43_pool_backward", "winograd43_pool_forward"]

NO_RELU = np.int64(0)
# Whether a ReLU'd F(4×4, 3×3) convolution does the 2×2 stride-2 max pooling after it in
# its training passes (layers/conv.py)
WINOGRAD43_POOL_FUSES = True


def winograd43_pool_forward(x: np.ndarray, H: int, W: int, w2: np.ndarray, b: np.ndarray,
                            y: np.ndarray, argmax: np.ndarray, ws: dict[str, np.ndarray],
                            geo: tuple, OH: int, OW: int, relu: int) -> None:
    """y and argmax (N×K×⌊OH/2⌋×⌊OW/2⌋, float32 and int32, as ``max_pool_forward``'s) =
    2×2 stride-2 max pooling of ``winograd43_forward``'s output (with ReLU when ``relu``),
    which is never written; ``ws``: ``winograd43_workspace``'s."""
    PT, PL = geo[4], geo[5]
    U, V, M = ws["wino_U"], ws["wino_V"], ws["wino_M"]
    N, C, K = x.shape[0], x.shape[1], w2.shape[0]
    cpu_threads.run_parts(_winograd43_filters_part, V.shape[0], U, w2)
    sgemm = cblas.sgemm()
    if sgemm is None:  # one chunk, numpy's batched matmul
        TH, TW = tiles(OH, OW)
        T = N * TH * TW
        V2, M2 = V[0].reshape(36, -1), M[0].reshape(36, -1)
        _winograd43_inputs(V2, x, x, NO_RELU, H, W, PT, PL, TH, TW)
        np.matmul(U[:, :K * C].reshape(-1, K, C), V2[:, :C * T].reshape(-1, C, T),
                  out=M2[:, :K * T].reshape(-1, K, T))
        _winograd43_pooled_outputs(y, argmax, M2, b, relu, OH, OW, TH, TW)
        return
    chunk = _chunk(N, C, K, H, W, OH, OW, V.shape[0])
    with cblas.one_blas_thread():
        cpu_threads.run_parts(_winograd43_pool_forward_part, V.shape[0], chunk, sgemm, x, H, W,
                              U, b, y, argmax, V, M, PT, PL, OH, OW, relu)


def winograd43_pool_backward(x: np.ndarray, H: int, W: int, w2: np.ndarray, y: np.ndarray,
                             argmax: np.ndarray, dy: np.ndarray, dw2: np.ndarray,
                             db: np.ndarray, dx: np.ndarray | None, ws: dict[str, np.ndarray],
                             geo: tuple, OH: int, OW: int, relu: int) -> None:
    """``winograd43_backward`` from the pooled gradient dy with the pooled output y and
    argmax of :func:`winograd43_pool_forward` (all N×K×⌊OH/2⌋×⌊OW/2⌋)."""
    PT, PL = geo[4], geo[5]
    U, V, M, dU, dbp = ws["wino_U"], ws["wino_V"], ws["wino_M"], ws["wino_dU"], ws["wino_db"]
    sgemm = cblas.sgemm()
    if sgemm is None:  # one chunk, numpy's batched matmul
        TH, TW = tiles(OH, OW)
        _winograd43_pooled_output_grads(M[0].reshape(36, -1), dy, y, argmax, relu, OW, TH, TW)
        backward_whole_from_grads(x, H, W, U, dw2, db, dx, V, M, dU[0], PT, PL, OH, OW)
        return
    chunk = _chunk(x.shape[0], x.shape[1], w2.shape[0], H, W, OH, OW, V.shape[0])
    with cblas.one_blas_thread():
        cpu_threads.run_parts(_winograd43_pool_backward_part, V.shape[0], chunk, sgemm, x, H, W,
                              U, y, argmax, dy, x if dx is None else dx, dx is not None, V, M,
                              dU, dbp, PT, PL, OH, OW, relu)
    cpu_threads.run_parts(_winograd43_finish_part, dU.shape[0], dw2, dU)
    _winograd43_finish_bias(db, dbp)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd43_pooled_outputs(y, argmax, M, b, relu, OH, OW, TH, TW):
    """y and argmax (N×K×⌊OH/2⌋×⌊OW/2⌋) from M (36 × K·T), M overwritten: Aᵀ over each
    filter's T columns, then each of its N planes placed in a plane in cache (as the
    unfused pass places it, bit for bit) and pooled from there."""
    N, K = y.shape[0], y.shape[1]
    T = N * TH * TW
    plane = np.empty(OH * OW, np.float32)
    plane2 = plane.reshape(OH, OW)
    for k in range(K):
        winograd43_rows.output_columns_in_place(M, k * T, (k + 1) * T)
        for n in range(N):
            winograd43_rows.place_outputs(plane, k * T + n * TH * TW, M, b[k], relu, OH, OW, TH,
                                          TW)
            pool.max_pool_plane_by_selects(y[n, k], argmax[n, k], plane2, 2, 2, 2, 2)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd43_pooled_output_grads(dM, dy, y, argmax, relu, OW, TH, TW):
    """dM (36 × K·T) from the pooled gradient dy (N×K×⌊OH/2⌋×⌊OW/2⌋) at the winners."""
    N, K = dy.shape[0], dy.shape[1]
    T = N * TH * TW
    G = np.empty((4 * TH, 4 * TW), np.float32)
    for k in range(K):
        for n in range(N):
            winograd43_rows.gather_pooled_output_grads(dM, k * T + n * TH * TW, dy[n, k],
                                                       y[n, k], argmax[n, k], relu, OW, TH, TW,
                                                       G)
    winograd43_rows.output_grads_in_place(dM, 0, K * T)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd43_pool_forward_part(part, parts, chunk, sgemm, x, H, W, U, b, y, argmax, V, M, PT,
                                  PL, OH, OW, relu):
    N, C, K = x.shape[0], x.shape[1], y.shape[1]
    TH, TW = (OH + 3) // 4, (OW + 3) // 4
    ci_lo, ci_hi = chunks_of_part(part, parts, N, chunk)
    for ci in range(ci_lo, ci_hi):
        n0 = ci * chunk
        m = min(N, n0 + chunk) - n0
        T = m * TH * TW
        Vc = V[part].reshape(36, V.shape[1] // 36)
        Mc = M[part].reshape(36, M.shape[1] // 36)
        _winograd43_inputs(Vc, x[n0:n0 + m], x[n0:n0 + m], NO_RELU, H, W, PT, PL, TH, TW)
        for xi in range(36):  # M[ξ] (K × T) = U[ξ] (K × C) @ V[ξ] (C × T)
            sgemm(cblas.ROW_MAJOR, cblas.NO_TRANS, cblas.NO_TRANS, K, T, C, np.float32(1.0),
                  U[xi].ctypes, C, Vc[xi].ctypes, T, np.float32(0.0), Mc[xi].ctypes, T)
        _winograd43_pooled_outputs(y[n0:n0 + m], argmax[n0:n0 + m], Mc, b, relu, OH, OW, TH, TW)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd43_pool_backward_part(part, parts, chunk, sgemm, x, H, W, U, y, argmax, dy, dx,
                                   need_dx, V, M, dU_parts, db_parts, PT, PL, OH, OW, relu):
    N = x.shape[0]
    TH, TW = (OH + 3) // 4, (OW + 3) // 4
    _zero_sums(part, parts, N, chunk, dU_parts, db_parts)
    ci_lo, ci_hi = chunks_of_part(part, parts, N, chunk)
    for ci in range(ci_lo, ci_hi):
        n0 = ci * chunk
        m = min(N, n0 + chunk) - n0
        dM = M[part].reshape(36, M.shape[1] // 36)
        _winograd43_pooled_output_grads(dM, dy[n0:n0 + m], y[n0:n0 + m], argmax[n0:n0 + m],
                                        relu, OW, TH, TW)
        _backward_chunk(part, ci == ci_lo, n0, m, sgemm, x, H, W, U, dx, need_dx, V, M, dU_parts,
                        db_parts, PT, PL, OH, OW)


kernel_cache.restore(_numba_cache_dir)
