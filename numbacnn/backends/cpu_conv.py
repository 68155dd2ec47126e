"""The CPU convolution a chunk of images at a time (``cpu.conv_forward``/``conv_backward``
run it where :func:`conv_in_chunks` says so; the whole-batch sequence otherwise).

The chunk passes are ``@njit(cache=True)``: like ``cpu.py`` they are compiled into the
cache folder named after the kernel sources (``kernel_cache.py`` hashes this file too).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit

from numbacnn.backends import cblas, cpu_threads, kernel_cache
from numbacnn.kernels import conv, reduce

_numba_cache_dir = kernel_cache.use_versioned_cache_dir()  # restored at the end of this module

# A convolution is im2col, one GEMM and the bias/ReLU reorder forward; the reorder, two
# GEMMs and col2im backward (``numbacnn/layers/conv.py``). Over the whole batch that
# is a column matrix of C·F·F × N·OH·OW floats (29 MB for fmnist's conv2 at batch 128)
# written to memory and read back by every step. Here each core takes its share of the
# batch in chunks of a few images: im2col of a chunk, its GEMM (numpy's own CBLAS
# SGEMM called from numba, ``cblas.py``) and its reorder run while the chunk's columns
# are in the core's cache, and backward computes the chunk's columns again instead
# of keeping them. The weight and bias gradients are summed per part of the batch
# (one part per thread, its chunks in order) and the parts added in order, so a run
# repeats bit for bit for a given thread count. Without a CBLAS function, and for large
# weight matrices, the whole-batch sequence with ``gemm`` runs instead.
CHUNK_BYTES = 1 << 19  # columns and GEMM output of one chunk: a quarter of a core's L2
# Larger weight matrices keep the whole-batch GEMM: BLAS packs the weights again for
# every chunk, and a chunk of AlexNet's 13×13 layers is one image of 169 columns (their
# passes took 10–17 % longer in chunks, one thread; conv1 and fmnist's gain).
CHUNK_MAX_WEIGHT_BYTES = 1 << 20


def _taps(F: int | tuple[int, int]) -> int:
    """FH·FW of a filter size given as one number F (F×F) or as (FH, FW)."""
    return F * F if isinstance(F, int) else F[0] * F[1]


def conv_in_chunks(C: int, K: int, F: int | tuple[int, int], groups: int = 1) -> bool:
    """Whether a convolution of C channels to K with F×F (or FH×FW) filters in
    ``groups`` groups runs in chunks."""
    return (cblas.sgemm() is not None
            and 4 * K * C // groups * _taps(F) <= CHUNK_MAX_WEIGHT_BYTES)


def conv_chunk(N: int, C: int, K: int, F: int | tuple[int, int], OH: int, OW: int,
               parts: int) -> int:
    """Images per chunk: columns and GEMM output within CHUNK_BYTES (at least one
    image), and no more than a part's share of the batch."""
    per_image = 4 * (C * _taps(F) + K) * OH * OW
    return max(1, min(CHUNK_BYTES // per_image, -(-N // parts)))


def conv_workspace(N: int, C: int, K: int, F: int | tuple[int, int], OH: int, OW: int,
                   groups: int = 1) -> dict[str, tuple]:
    """Shapes of the float32 buffers :func:`conv_forward` and :func:`conv_backward` need
    for a batch of N: per part a chunk's columns and GEMM output, and its gradient sums;
    the whole-batch columns and GEMM output otherwise (see conv_in_chunks)."""
    CFF, L = C * _taps(F), OH * OW
    if not conv_in_chunks(C, K, F, groups):
        return {"cols": (CFF, N * L), "out": (K, N * L)}
    parts = numba.get_num_threads()
    chunk = conv_chunk(N, C, K, F, OH, OW, parts)
    return {"chunk_cols": (parts, CFF * chunk * L), "chunk_out": (parts, K * chunk * L),
            "dW_parts": (parts, K, CFF // groups), "db_parts": (parts, K)}


def forward_in_chunks(x: np.ndarray, H: int, W: int, w2: np.ndarray, b: np.ndarray,
                      y: np.ndarray, ws: dict[str, np.ndarray], geo: tuple, groups: int,
                      OH: int, OW: int, relu: int) -> None:
    """``cpu.conv_forward`` with the chunk buffers of :func:`conv_workspace`."""
    N, C, K = x.shape[0], x.shape[1], w2.shape[0]
    chunk = conv_chunk(N, C, K, geo[:2], OH, OW, ws["chunk_cols"].shape[0])
    with cblas.one_blas_thread():
        cpu_threads.run_parts(_conv_forward_part, ws["chunk_cols"].shape[0], cblas.sgemm(), x,
                              H, W, w2, b, y, ws["chunk_cols"], ws["chunk_out"], geo, groups,
                              OH, OW, relu, chunk)


def backward_in_chunks(x: np.ndarray, H: int, W: int, w2: np.ndarray, y: np.ndarray,
                       dy: np.ndarray, dw2: np.ndarray, db: np.ndarray, dx: np.ndarray | None,
                       ws: dict[str, np.ndarray], geo: tuple, groups: int, OH: int, OW: int,
                       relu: int) -> None:
    """``cpu.conv_backward`` with the chunk buffers of :func:`conv_workspace`."""
    N, C, K = x.shape[0], x.shape[1], w2.shape[0]
    chunk = conv_chunk(N, C, K, geo[:2], OH, OW, ws["chunk_cols"].shape[0])
    with cblas.one_blas_thread():
        cpu_threads.run_parts(_conv_backward_part, ws["chunk_cols"].shape[0], cblas.sgemm(), x,
                              w2, y, dy, x if dx is None else dx, dx is not None, H, W,
                              ws["chunk_cols"], ws["chunk_out"], ws["dW_parts"],
                              ws["db_parts"], geo, groups, OH, OW, relu, chunk)
    # the parts' sums, added in part order (numpy adds the rows of an axis-0 sum one
    # after the other), so a run repeats bit for bit for a given thread count
    np.sum(ws["db_parts"], axis=0, out=db)
    np.sum(ws["dW_parts"], axis=0, out=dw2)


# A chunk's passes: plain (not parallel) functions each core calls on its own chunk,
# compiled once and shared by the forward and backward drivers (inlined into both, the
# backward driver alone took 26 s to compile). F, S and P stay variables: a second copy of
# each body with 3, 1, 1 as constants doubled their compile and was no faster (fmnist's
# chunks, one thread: im2col 75 and 52 µs either way, col2im 54 → 50 and 41 → 33 µs).
@njit(fastmath=True, cache=True)
def _im2col_chunk(cols, x, H, W, geo, OH, OW):
    for t in range(cols.shape[0] * x.shape[0]):
        conv.im2col_at(t, 0, OH * OW, cols, x, H, W, geo, OH, OW)


@njit(fastmath=True, cache=True)
def _col2im_chunk(dx, dcols, H, W, geo, OH, OW):
    m, C = dx.shape[0], dx.shape[1]
    for u in range(m * C):  # (c, n) order, as col2im
        c = u // m
        conv.col2im_at((u - c * m) * C + c, 0, H * W, dx, dcols, H, W, geo, OH, OW)


@njit(fastmath=True, cache=True)
def _gemm_to_nchw_chunk(y, out, b, L, relu):
    K = out.shape[0]
    for t in range(y.size // L):
        conv.gemm_to_nchw_at(t, 0, L, y, out, b, K, L, relu)


@njit(fastmath=True, cache=True)
def _nchw_to_gemm_chunk(dy2, dy, y, L, relu):
    K = dy2.shape[0]
    for t in range(dy.size // L):
        conv.nchw_to_gemm_at(t, 0, L, dy2, dy, y, K, L, relu)


@njit(inline="always")
def chunks_of_part(part, parts, N, chunk):
    """The chunks ci_lo … ci_hi − 1 of part ``part`` of ``parts`` (chunks of ``chunk``
    images, the last one shorter)."""
    chunks = (N + chunk - 1) // chunk
    return chunks * part // parts, chunks * (part + 1) // parts


# The two passes run one part of the batch each on its own thread (cpu_threads.py):
# plain functions that release the GIL, not a prange loop over the parts, which
# compiled in 8.1 CPU s against 4.5 (fmnist's, one thread).
@njit(nogil=True, fastmath=True, cache=True)
def _conv_forward_part(part, parts, sgemm, x, H, W, w2, b, yf, chunk_cols, chunk_out, geo,
                       groups, OH, OW, relu, chunk):
    N = x.shape[0]
    K, gCFF = w2.shape  # a group's filters: (K/G) × (C/G)·FH·FW of w2's rows
    Kg, CFF = K // groups, groups * gCFF
    L = OH * OW
    ci_lo, ci_hi = chunks_of_part(part, parts, N, chunk)
    for ci in range(ci_lo, ci_hi):
        n0 = ci * chunk
        m = min(N, n0 + chunk) - n0
        cols = chunk_cols[part, :CFF * m * L].reshape(CFF, m * L)
        out = chunk_out[part, :K * m * L].reshape(K, m * L)
        _im2col_chunk(cols, x[n0:n0 + m], H, W, geo, OH, OW)
        for g in range(groups):  # out's rows of group g = its filters @ its columns
            sgemm(cblas.ROW_MAJOR, cblas.NO_TRANS, cblas.NO_TRANS, Kg, m * L, gCFF,
                  np.float32(1.0), w2[g * Kg:].ctypes, gCFF, cols[g * gCFF:].ctypes, m * L,
                  np.float32(0.0), out[g * Kg:].ctypes, m * L)
        _gemm_to_nchw_chunk(yf[n0 * K * L:(n0 + m) * K * L], out, b, L, relu)


@njit(nogil=True, fastmath=True, cache=True)
def _conv_backward_part(part, parts, sgemm, x, w2, yf, dyf, dx, need_dx, H, W, chunk_cols,
                        chunk_out, dW_parts, db_parts, geo, groups, OH, OW, relu, chunk):
    """Part ``part``'s share of the batch: its weight and bias gradient sums into
    ``dW_parts[part]``, ``db_parts[part]`` and its images' input gradient."""
    N = x.shape[0]
    K, gCFF = w2.shape
    Kg, CFF = K // groups, groups * gCFF
    L = OH * OW
    dWp = dW_parts[part]
    dbp = db_parts[part]
    for k in range(K):
        dbp[k] = np.float32(0.0)
        for e in range(gCFF):
            dWp[k, e] = np.float32(0.0)
    ci_lo, ci_hi = chunks_of_part(part, parts, N, chunk)
    for ci in range(ci_lo, ci_hi):
        n0 = ci * chunk
        m = min(N, n0 + chunk) - n0
        cols = chunk_cols[part, :CFF * m * L].reshape(CFF, m * L)
        dy2 = chunk_out[part, :K * m * L].reshape(K, m * L)
        span_lo, span_hi = n0 * K * L, (n0 + m) * K * L
        _nchw_to_gemm_chunk(dy2, dyf[span_lo:span_hi], yf[span_lo:span_hi], L, relu)
        for k in range(K):
            dbp[k] += reduce.row_sum_span(k, 0, m * L, 1, dy2)
        _im2col_chunk(cols, x[n0:n0 + m], H, W, geo, OH, OW)
        for g in range(groups):
            sgemm(cblas.ROW_MAJOR, cblas.NO_TRANS, cblas.TRANS, Kg, gCFF, m * L,
                  np.float32(1.0), dy2[g * Kg:].ctypes, m * L, cols[g * gCFF:].ctypes, m * L,
                  np.float32(1.0), dWp[g * Kg:].ctypes, gCFF)
        if need_dx:  # the columns are spent: the input gradient's columns in their place
            for g in range(groups):
                sgemm(cblas.ROW_MAJOR, cblas.TRANS, cblas.NO_TRANS, gCFF, m * L, Kg,
                      np.float32(1.0), w2[g * Kg:].ctypes, gCFF, dy2[g * Kg:].ctypes, m * L,
                      np.float32(0.0), cols[g * gCFF:].ctypes, m * L)
            _col2im_chunk(dx[n0:n0 + m], cols, H, W, geo, OH, OW)


kernel_cache.restore(_numba_cache_dir)
