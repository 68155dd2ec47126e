"""CPU backend: each kernel body becomes a ``prange`` loop over its flat index.

Every driver has the signature ``name(n, *args)`` and runs body ``name_at(i, *args)``
for i in 0 … n−1; a driver of a span body, ``name(n, L, *args)``, runs
``name_at(t, 0, L, *args)`` for each of n planes or rows t of length L — the whole
plane in one call, so its index arithmetic is paid once. All run on all cores
(``@njit(parallel=True, fastmath=True, cache=True)``: compiled once, then loaded from
numba's cache by later processes; see ``kernel_cache.py``). The matrix product is
numpy's BLAS. ``numbacnn/backends/cuda.py`` has the same drivers, launched one thread
per element.
"""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager, nullcontext

import numba
import numpy as np
import threadpoolctl
from numba import njit, prange

# numba's OpenMP threads spin after each prange loop by default, stealing the cores
# from the GEMM threads that run next; a passive wait measured 3,596 against 2,489
# images/s (fmnist, batch 128, 2 cores). Read by libgomp when numba first loads it;
# a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from numbacnn.backends import cblas, kernel_cache, whole_batch
from numbacnn.kernels import (
    batchnorm,
    conv,
    dropout,
    elementwise,
    loss,
    lrn,
    maxout,
    optim,
    pool,
    reduce,
)

name = "cpu"
_numba_cache_dir = kernel_cache.use_versioned_cache_dir()  # restored at the end of this module


def empty(shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    """An uninitialized C-contiguous array."""
    return np.empty(shape, dtype=dtype)


def zeros(shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


def to_device(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy (or the array itself when it already is one); float64 → float32."""
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    return np.ascontiguousarray(a)


def to_host(a: np.ndarray) -> np.ndarray:
    return a


def pinned_empty(shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    """Host staging memory for uploads (plain memory on the CPU)."""
    return np.empty(shape, dtype=dtype)


def upload(host: np.ndarray, out: np.ndarray, asynchronous: bool = False) -> np.ndarray:
    """Copy ``host`` into the existing array ``out`` of the same shape; returns ``out``
    (``asynchronous`` makes no difference on the CPU)."""
    np.copyto(out, host, casting="same_kind")
    return out


def download(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Copy ``a`` into the existing host array ``out`` of the same shape; returns ``out``."""
    np.copyto(out, a, casting="same_kind")
    return out


def tf32_label() -> str:
    """How the matrix products compute: always true FP32 on the CPU."""
    return "fp32"


def synchronize() -> None:
    """Wait for queued work (nothing to wait for on the CPU)."""


_blas_controller: threadpoolctl.ThreadpoolController | None = None


def _one_blas_thread() -> AbstractContextManager[object]:
    """Run numpy's BLAS on one thread for the duration of a ``with`` block.

    Between two products the second BLAS thread spin-waits, and on a machine with as
    many cores as numba has threads it then slows every ``prange`` kernel that runs
    in between; measured on the fmnist network at batch 128 on 2 cores: 716–881
    images/s with two BLAS threads, 2,189–2,528 with one (bench/RESULTS.md).
    """
    global _blas_controller
    if _blas_controller is None:
        _blas_controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
    return _blas_controller.limit(limits=1)


SPLIT_GEMM_FLOPS = 4_000_000  # smaller products run on the calling thread alone


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray, trans_a: bool = False,
         trans_b: bool = False) -> None:
    """out (M × N) = op(a) @ op(b), op transposing when asked; float32 BLAS SGEMM.

    Large products are split along the longer side of ``out`` (rows of op(a), or
    columns of op(b) when the batch side is short, as in a fully connected layer at
    batch 16) into one block per numba thread, each a one-thread CBLAS call made from
    numba's own threads (``_gemm_in_parts``), so no other thread pool waits beside
    numba's. The split depends only on the shape and the thread count, so runs with
    the same seed repeat bit for bit; another thread count (or no split) can change
    the last bits (BLAS picks its blocking by block size). Without a CBLAS function, or
    for arrays that are not C-contiguous, numpy's ``matmul`` runs on BLAS's threads.
    """
    M, N = out.shape
    K = a.shape[0] if trans_a else a.shape[1]
    parts = min(numba.get_num_threads(), max(M, N) // 8)
    sgemm = cblas.sgemm()
    small = 2 * out.size * K < SPLIT_GEMM_FLOPS
    if (sgemm is None or not (a.flags.c_contiguous and b.flags.c_contiguous
                              and out.flags.c_contiguous)):
        with _one_blas_thread() if small else nullcontext():
            np.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)
        return
    with _one_blas_thread():
        _gemm_in_parts(sgemm, trans_a, trans_b, M, N, K, a.reshape(-1), b.reshape(-1),
                       out.reshape(-1), 1 if small else max(1, parts))


@njit(parallel=True, cache=True)
def _gemm_in_parts(sgemm, trans_a, trans_b, M, N, K, a, b, out, parts):
    """The product of :func:`gemm` on flat C-contiguous a, b and out, in ``parts``
    blocks of out's rows (M ≥ N) or columns, one CBLAS call per block on numba's
    threads. A block's operands start at an offset into the flat arrays; the leading
    dimensions stay those of the whole matrices."""
    lda = M if trans_a else K
    ldb = K if trans_b else N
    by_rows = M >= N
    side = M if by_rows else N
    for part in prange(parts):
        lo = side * part // parts
        width = side * (part + 1) // parts - lo
        if by_rows:  # rows lo … of op(a) and of out
            a_at = lo if trans_a else lo * lda
            b_at = 0
            out_at = lo * N
            m, n = width, N
        else:  # columns lo … of op(b) and of out
            a_at = 0
            b_at = lo * ldb if trans_b else lo
            out_at = lo
            m, n = M, width
        sgemm(cblas.ROW_MAJOR, cblas.TRANS if trans_a else cblas.NO_TRANS,
              cblas.TRANS if trans_b else cblas.NO_TRANS, m, n, K, np.float32(1.0),
              a[a_at:].ctypes, lda, b[b_at:].ctypes, ldb, np.float32(0.0),
              out[out_at:].ctypes, N)


# --- convolution -----------------------------------------------------------------------------
#
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


def conv_in_chunks(C: int, K: int, F: int) -> bool:
    """Whether a convolution of C channels to K with F×F filters runs in chunks."""
    return cblas.sgemm() is not None and 4 * K * C * F * F <= CHUNK_MAX_WEIGHT_BYTES


def conv_chunk(N: int, C: int, K: int, F: int, OH: int, OW: int, parts: int) -> int:
    """Images per chunk: columns and GEMM output within CHUNK_BYTES (at least one
    image), and no more than a part's share of the batch."""
    per_image = 4 * (C * F * F + K) * OH * OW
    return max(1, min(CHUNK_BYTES // per_image, -(-N // parts)))


def conv_workspace(N: int, C: int, K: int, F: int, OH: int, OW: int) -> dict[str, tuple]:
    """Shapes of the float32 buffers :func:`conv_forward` and :func:`conv_backward` need
    for a batch of N: per part a chunk's columns and GEMM output, and its gradient sums;
    the whole-batch columns and GEMM output otherwise (see conv_in_chunks)."""
    CFF, L = C * F * F, OH * OW
    if not conv_in_chunks(C, K, F):
        return {"cols": (CFF, N * L), "out": (K, N * L)}
    parts = numba.get_num_threads()
    chunk = conv_chunk(N, C, K, F, OH, OW, parts)
    return {"chunk_cols": (parts, CFF * chunk * L), "chunk_out": (parts, K * chunk * L),
            "dW_parts": (parts, K, CFF), "db_parts": (parts, K)}


def conv_forward(x: np.ndarray, H: int, W: int, w2: np.ndarray, b: np.ndarray, y: np.ndarray,
                 ws: dict[str, np.ndarray], F: int, S: int, P: int, OH: int, OW: int,
                 relu: int) -> None:
    """y (N×K×OH×OW, passed flat) = the convolution of x (N×C×H×W, passed as N×C×(H·W))
    with w2 (K × C·F·F) plus b, then ReLU when ``relu``; ``ws`` holds the buffers of
    :func:`conv_workspace`."""
    if "cols" in ws:
        whole_batch.forward(sys.modules[__name__], x, H, W, w2, b, y, ws["cols"], ws["out"], F,
                            S, P, OH, OW, relu)
        return
    N, C, K = x.shape[0], x.shape[1], w2.shape[0]
    chunk = conv_chunk(N, C, K, F, OH, OW, ws["chunk_cols"].shape[0])
    with _one_blas_thread():
        _conv_forward_chunks(cblas.sgemm(), x, H, W, w2, b, y, ws["chunk_cols"],
                             ws["chunk_out"], F, S, P, OH, OW, relu, chunk)


def conv_backward(x: np.ndarray, H: int, W: int, w2: np.ndarray, y: np.ndarray,
                  dy: np.ndarray, dw2: np.ndarray, db: np.ndarray, dx: np.ndarray | None,
                  ws: dict[str, np.ndarray], F: int, S: int, P: int, OH: int, OW: int,
                  relu: int) -> None:
    """dw2 (K × C·F·F), db (K) and, unless it is None, dx (N×C×(H·W), like x) from dy
    (N×K×OH×OW, passed flat like y), with the forward pass's input x and output y (its
    ReLU, when ``relu``). With the
    whole-batch buffers, ws["cols"] must hold the forward pass's columns (they are
    overwritten when dx is computed)."""
    if "cols" in ws:
        whole_batch.backward(sys.modules[__name__], x, H, W, w2, y, dy, dw2, db, dx, ws["cols"],
                             ws["out"], F, S, P, OH, OW, relu)
        return
    N, C, K = x.shape[0], x.shape[1], w2.shape[0]
    chunk = conv_chunk(N, C, K, F, OH, OW, ws["chunk_cols"].shape[0])
    with _one_blas_thread():
        _conv_backward_chunks(cblas.sgemm(), x, w2, y, dy, dw2, db,
                              x if dx is None else dx, dx is not None, H, W,
                              ws["chunk_cols"],
                              ws["chunk_out"], ws["dW_parts"], ws["db_parts"], F, S, P, OH,
                              OW, relu, chunk)


# A chunk's passes: plain (not parallel) functions each core calls on its own chunk,
# compiled once and shared by the forward and backward drivers (inlined into both, the
# backward driver alone took 26 s to compile).
@njit(fastmath=True, cache=True)
def _im2col_chunk(cols, x, H, W, F, S, P, OH, OW):
    planes = cols.shape[0] * x.shape[0]
    if F == 3 and S == 1 and P == 1:
        for t in range(planes):
            conv.im2col_at(t, 0, OH * OW, cols, x, H, W, 3, 1, 1, OH, OW)
    else:
        for t in range(planes):
            conv.im2col_at(t, 0, OH * OW, cols, x, H, W, F, S, P, OH, OW)


@njit(fastmath=True, cache=True)
def _col2im_chunk(dx, dcols, H, W, F, S, P, OH, OW):
    m, C = dx.shape[0], dx.shape[1]
    if F == 3 and S == 1 and P == 1:
        for u in range(m * C):  # (c, n) order, as col2im
            c = u // m
            conv.col2im_at((u - c * m) * C + c, 0, H * W, dx, dcols, H, W, 3, 1, 1, OH, OW)
    else:
        for u in range(m * C):
            c = u // m
            conv.col2im_at((u - c * m) * C + c, 0, H * W, dx, dcols, H, W, F, S, P, OH, OW)


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
def _chunk_of(part, parts, N, chunk):
    """The chunks ci_lo … ci_hi − 1 of part ``part`` of ``parts`` (chunks of ``chunk``
    images, the last one shorter)."""
    chunks = (N + chunk - 1) // chunk
    return chunks * part // parts, chunks * (part + 1) // parts


@njit(parallel=True, fastmath=True, cache=True)
def _conv_forward_chunks(sgemm, x, H, W, w2, b, yf, chunk_cols, chunk_out, F, S, P, OH, OW,
                         relu, chunk):
    parts = chunk_cols.shape[0]
    N = x.shape[0]
    K, CFF = w2.shape
    L = OH * OW
    for part in prange(parts):
        ci_lo, ci_hi = _chunk_of(part, parts, N, chunk)
        for ci in range(ci_lo, ci_hi):
            n0 = ci * chunk
            m = min(N, n0 + chunk) - n0
            cols = chunk_cols[part, :CFF * m * L].reshape(CFF, m * L)
            out = chunk_out[part, :K * m * L].reshape(K, m * L)
            _im2col_chunk(cols, x[n0:n0 + m], H, W, F, S, P, OH, OW)
            sgemm(cblas.ROW_MAJOR, cblas.NO_TRANS, cblas.NO_TRANS, K, m * L, CFF,
                  np.float32(1.0), w2.ctypes, CFF, cols.ctypes, m * L, np.float32(0.0),
                  out.ctypes, m * L)
            _gemm_to_nchw_chunk(yf[n0 * K * L:(n0 + m) * K * L], out, b, L, relu)


@njit(parallel=True, fastmath=True, cache=True)
def _conv_backward_chunks(sgemm, x, w2, yf, dyf, dw2, db, dx, need_dx, H, W, chunk_cols,
                          chunk_out, dW_parts, db_parts, F, S, P, OH, OW, relu, chunk):
    parts = chunk_cols.shape[0]
    N = x.shape[0]
    K, CFF = w2.shape
    L = OH * OW
    for part in prange(parts):
        dWp = dW_parts[part]
        dbp = db_parts[part]
        for k in range(K):
            dbp[k] = np.float32(0.0)
            for e in range(CFF):
                dWp[k, e] = np.float32(0.0)
        ci_lo, ci_hi = _chunk_of(part, parts, N, chunk)
        for ci in range(ci_lo, ci_hi):
            n0 = ci * chunk
            m = min(N, n0 + chunk) - n0
            cols = chunk_cols[part, :CFF * m * L].reshape(CFF, m * L)
            dy2 = chunk_out[part, :K * m * L].reshape(K, m * L)
            span_lo, span_hi = n0 * K * L, (n0 + m) * K * L
            _nchw_to_gemm_chunk(dy2, dyf[span_lo:span_hi], yf[span_lo:span_hi], L, relu)
            for k in range(K):
                dbp[k] += reduce.row_sum_span(k, 0, m * L, 1, dy2)
            _im2col_chunk(cols, x[n0:n0 + m], H, W, F, S, P, OH, OW)
            sgemm(cblas.ROW_MAJOR, cblas.NO_TRANS, cblas.TRANS, K, CFF, m * L, np.float32(1.0),
                  dy2.ctypes, m * L, cols.ctypes, m * L, np.float32(1.0), dWp.ctypes, CFF)
            if need_dx:  # the columns are spent: the input gradient's columns in their place
                sgemm(cblas.ROW_MAJOR, cblas.TRANS, cblas.NO_TRANS, CFF, m * L, K,
                      np.float32(1.0), w2.ctypes, CFF, dy2.ctypes, m * L, np.float32(0.0),
                      cols.ctypes, m * L)
                _col2im_chunk(dx[n0:n0 + m], cols, H, W, F, S, P, OH, OW)
    for r in prange(K):  # the parts' sums, added in order
        db[r] = db_parts[0, r]
        for part in range(1, parts):
            db[r] += db_parts[part, r]
        for e in range(CFF):
            acc = dW_parts[0, r, e]
            for part in range(1, parts):
                acc += dW_parts[part, r, e]
            dw2[r, e] = acc


# im2col and col2im call their body with F, S and P as constants for the usual 3×3
# stride-1 "same" convolution (LLVM then unrolls the window loops).
@njit(parallel=True, fastmath=True, cache=True)
def im2col(n, L, cols, x, H, W, F, S, P, OH, OW):
    if F == 3 and S == 1 and P == 1:
        for t in prange(n):
            conv.im2col_at(t, 0, L, cols, x, H, W, 3, 1, 1, OH, OW)
    else:
        for t in prange(n):
            conv.im2col_at(t, 0, L, cols, x, H, W, F, S, P, OH, OW)

@njit(parallel=True, fastmath=True, cache=True)
def col2im(n, L, dx, dcols, H, W, F, S, P, OH, OW):
    # Planes in (c, n) order, not the body's (n, c): consecutive planes then read
    # neighbouring stretches of the same F·F rows of dcols instead of jumping F·F rows
    # (F·F·N·OH·OW floats) ahead. fmnist's conv2, one thread: 7.8 ms → 4.2 ms.
    N = dx.shape[0]
    C = dx.shape[1]
    if F == 3 and S == 1 and P == 1:
        for u in prange(n):
            c = u // N
            conv.col2im_at((u - c * N) * C + c, 0, L, dx, dcols, H, W, 3, 1, 1, OH, OW)
    else:
        for u in prange(n):
            c = u // N
            conv.col2im_at((u - c * N) * C + c, 0, L, dx, dcols, H, W, F, S, P, OH, OW)

@njit(parallel=True, fastmath=True, cache=True)
def gemm_to_nchw(n, L, y, out, b, K, P, relu):
    for t in prange(n):
        conv.gemm_to_nchw_at(t, 0, L, y, out, b, K, P, relu)

@njit(parallel=True, fastmath=True, cache=True)
def nchw_to_gemm(n, L, dy2, dy, y, K, P, relu):
    for t in prange(n):
        conv.nchw_to_gemm_at(t, 0, L, dy2, dy, y, K, P, relu)

@njit(parallel=True, fastmath=True, cache=True)
def row_sum(n, out, m):
    for r in prange(n):
        out[r] = reduce.row_sum_span(r, 0, m.shape[1], 1, m)

@njit(parallel=True, fastmath=True, cache=True)
def col_sum(n, out, m):
    for c in prange(n):
        out[c] = reduce.col_sum_span(c, 0, m.shape[0], 1, m)

# The pooling drivers call their body with F and S as constants for the usual windows
# (2×2 stride 2, 3×3 stride 2): inlined, LLVM then unrolls and vectorizes the window
# loops. fmnist's first pooling forward, one thread: 2.4 ms with F and S as variables,
# 0.7 ms as constants.
@njit(parallel=True, fastmath=True, cache=True)
def max_pool_forward(n, L, y, argmax, x, F, S):
    if F == 2 and S == 2:
        for t in prange(n):
            pool.max_pool_forward_at(t, 0, L, y, argmax, x, 2, 2)
    elif F == 3 and S == 2:
        for t in prange(n):
            pool.max_pool_forward_at(t, 0, L, y, argmax, x, 3, 2)
    else:
        for t in prange(n):
            pool.max_pool_forward_at(t, 0, L, y, argmax, x, F, S)

@njit(parallel=True, fastmath=True, cache=True)
def max_pool_backward(n, L, dx, dy, argmax, F, S):
    if F == 2 and S == 2:
        for t in prange(n):
            pool.max_pool_backward_at(t, 0, L, dx, dy, argmax, 2, 2)
    elif F == 3 and S == 2:
        for t in prange(n):
            pool.max_pool_backward_at(t, 0, L, dx, dy, argmax, 3, 2)
    else:
        for t in prange(n):
            pool.max_pool_backward_at(t, 0, L, dx, dy, argmax, F, S)

@njit(parallel=True, fastmath=True, cache=True)
def avg_pool_forward(n, L, y, x, F, S):
    for t in prange(n):
        pool.avg_pool_forward_at(t, 0, L, y, x, F, S)

@njit(parallel=True, fastmath=True, cache=True)
def avg_pool_backward(n, L, dx, dy, F, S):
    for t in prange(n):
        pool.avg_pool_backward_at(t, 0, L, dx, dy, F, S)

@njit(parallel=True, fastmath=True, cache=True)
def batch_statistics(n, mean, inv_std, running_mean, running_var, x, momentum, eps):
    M = x.shape[0] * x.shape[2]
    zero = np.float32(0.0)
    for c in prange(n):
        total, _ = batchnorm.channel_sums_span(c, 0, M, 1, x, zero, x, zero, x, 0)
        first_mean = total / np.float32(M)
        d1, d2 = batchnorm.channel_sums_span(c, 0, M, 1, x, first_mean, x, first_mean, x, 0)
        batchnorm.batch_statistics_at(c, mean, inv_std, running_mean, running_var, first_mean,
                                      d1, d2, M, momentum, eps)

@njit(parallel=True, fastmath=True, cache=True)
def inverse_std(n, inv_std, var, eps):
    for c in prange(n):
        batchnorm.inverse_std_at(c, inv_std, var, eps)

@njit(parallel=True, fastmath=True, cache=True)
def batchnorm_forward(n, L, y, x, mean, inv_std, gamma, beta, relu):
    if relu:  # a constant flag inside: the loop vectorizes either way
        for t in prange(n):
            batchnorm.batchnorm_forward_at(t, 0, L, y, x, mean, inv_std, gamma, beta, 1)
    else:
        for t in prange(n):
            batchnorm.batchnorm_forward_at(t, 0, L, y, x, mean, inv_std, gamma, beta, 0)

@njit(parallel=True, fastmath=True, cache=True)
def batchnorm_parameter_grads(n, dgamma, dbeta, dy, x, y, mean, inv_std, relu):
    M = x.shape[0] * x.shape[2]
    for c in prange(n):
        sum_dy, sum_dy_centered = batchnorm.channel_sums_span(c, 0, M, 1, dy, np.float32(0.0),
                                                              x, mean[c], y, relu)
        batchnorm.parameter_grads_at(c, dgamma, dbeta, inv_std, sum_dy, sum_dy_centered)

@njit(parallel=True, fastmath=True, cache=True)
def batchnorm_backward(n, L, dx, dy, x, y, mean, inv_std, gamma, dgamma, dbeta, m_inv, relu):
    if relu:
        for t in prange(n):
            batchnorm.batchnorm_backward_at(t, 0, L, dx, dy, x, y, mean, inv_std, gamma, dgamma,
                                            dbeta, m_inv, 1)
    else:
        for t in prange(n):
            batchnorm.batchnorm_backward_at(t, 0, L, dx, dy, x, y, mean, inv_std, gamma, dgamma,
                                            dbeta, m_inv, 0)

@njit(parallel=True, fastmath=True, cache=True)
def lrn_forward(n, L, y, scale, x, size, alpha_n, beta, k):
    for t in prange(n):
        lrn.lrn_forward_at(t, 0, L, y, scale, x, size, alpha_n, beta, k)

@njit(parallel=True, fastmath=True, cache=True)
def lrn_backward(n, L, dx, dy, x, y, scale, size, alpha_n, beta):
    for t in prange(n):
        lrn.lrn_backward_at(t, 0, L, dx, dy, x, y, scale, size, alpha_n, beta)

@njit(parallel=True, fastmath=True, cache=True)
def relu_forward(n, y, x):
    for i in prange(n):
        elementwise.relu_forward_at(i, y, x)

@njit(parallel=True, fastmath=True, cache=True)
def relu_backward(n, dx, dy, x):
    for i in prange(n):
        elementwise.relu_backward_at(i, dx, dy, x)

@njit(parallel=True, fastmath=True, cache=True)
def leaky_relu_forward(n, y, x, alpha):
    for i in prange(n):
        elementwise.leaky_relu_forward_at(i, y, x, alpha)

@njit(parallel=True, fastmath=True, cache=True)
def leaky_relu_backward(n, dx, dy, x, alpha):
    for i in prange(n):
        elementwise.leaky_relu_backward_at(i, dx, dy, x, alpha)

@njit(parallel=True, fastmath=True, cache=True)
def sigmoid_forward(n, y, x):
    for i in prange(n):
        elementwise.sigmoid_forward_at(i, y, x)

@njit(parallel=True, fastmath=True, cache=True)
def sigmoid_backward(n, dx, dy, y):
    for i in prange(n):
        elementwise.sigmoid_backward_at(i, dx, dy, y)

@njit(parallel=True, fastmath=True, cache=True)
def tanh_forward(n, y, x):
    for i in prange(n):
        elementwise.tanh_forward_at(i, y, x)

@njit(parallel=True, fastmath=True, cache=True)
def tanh_backward(n, dx, dy, y):
    for i in prange(n):
        elementwise.tanh_backward_at(i, dx, dy, y)

@njit(parallel=True, fastmath=True, cache=True)
def elu_forward(n, y, x, alpha):
    for i in prange(n):
        elementwise.elu_forward_at(i, y, x, alpha)

@njit(parallel=True, fastmath=True, cache=True)
def elu_backward(n, dx, dy, x, y, alpha):
    for i in prange(n):
        elementwise.elu_backward_at(i, dx, dy, x, y, alpha)

@njit(parallel=True, fastmath=True, cache=True)
def multiply(n, out, a, b):
    for i in prange(n):
        elementwise.multiply_at(i, out, a, b)

@njit(parallel=True, fastmath=True, cache=True)
def add_bias_rows(n, y, b):
    for i in prange(n):
        elementwise.add_bias_rows_at(i, y, b)

@njit(parallel=True, fastmath=True, cache=True)
def fill(n, out, value):
    for i in prange(n):
        elementwise.fill_at(i, out, value)

@njit(parallel=True, fastmath=True, cache=True)
def maxout_forward(n, L, y, which, x, pieces):
    for t in prange(n):
        maxout.maxout_forward_at(t, 0, L, y, which, x, pieces)

@njit(parallel=True, fastmath=True, cache=True)
def maxout_backward(n, L, dx, dy, which, pieces):
    for t in prange(n):
        maxout.maxout_backward_at(t, 0, L, dx, dy, which, pieces)

@njit(parallel=True, fastmath=True, cache=True)
def dropout_forward(n, y, mask, x, p, scale, seed):
    for i in prange(n):
        dropout.dropout_forward_at(i, y, mask, x, p, scale, seed)

@njit(parallel=True, fastmath=True, cache=True)
def softmax_cross_entropy_forward(n, probs, losses, logits, labels):
    for i in prange(n):
        loss.softmax_cross_entropy_forward_at(i, probs, losses, logits, labels)

@njit(parallel=True, fastmath=True, cache=True)
def softmax_cross_entropy_backward(n, dlogits, probs, labels, inv_n):
    for i in prange(n):
        loss.softmax_cross_entropy_backward_at(i, dlogits, probs, labels, inv_n)

@njit(parallel=True, fastmath=True, cache=True)
def sgd_momentum(n, w, v, g, lr, momentum, weight_decay):
    for i in prange(n):
        optim.sgd_momentum_at(i, w, v, g, lr, momentum, weight_decay)

@njit(parallel=True, fastmath=True, cache=True)
def adam(n, w, m, v, g, lr_t, beta1, beta2, eps, weight_decay):
    for i in prange(n):
        optim.adam_at(i, w, m, v, g, lr_t, beta1, beta2, eps, weight_decay)


@njit(fastmath=True, cache=True)
def batch_stats(n, stats, losses, logits, labels):
    total, correct = loss.batch_stats_span(0, n, 1, losses, logits, labels)
    stats[0] += total
    stats[1] += correct


kernel_cache.restore(_numba_cache_dir)
