"""CPU backend: each kernel body becomes a ``prange`` loop over its flat index.

Every driver has the signature ``name(n, *args)`` and runs body ``name_at(i, *args)``
for i in 0 … n−1; a driver of a span body, ``name(n, L, *args)``, runs
``name_at(t, 0, L, *args)`` for each of n planes or rows t of length L — the whole
plane in one call, so its index arithmetic is paid once. All run on all cores
(``@njit(parallel=True, fastmath=True, cache=True)``: compiled once, then loaded from
numba's cache by later processes; see ``kernel_cache.py``). The matrix product is
numpy's BLAS; the convolution runs a chunk of images at a time where it can
(``cpu_conv.py``). ``numbacnn/backends/cuda.py`` has the same drivers, launched one
thread per element.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext

import numba
import numpy as np
from numba import njit, prange

# numba's OpenMP threads spin after each prange loop by default, stealing the cores
# from the GEMM threads that run next; a passive wait measured 3,596 against 2,489
# images/s (fmnist, batch 128, 2 cores). Read by libgomp when numba first loads it;
# a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from numbacnn.backends import cblas, cpu_conv, kernel_cache, whole_batch
from numbacnn.backends.cpu_conv import conv_in_chunks, conv_workspace  # noqa: F401
from numbacnn.backends.cpu_direct import (  # noqa: F401
    direct_backward,
    direct_forward,
    direct_pool_backward,
    direct_pool_forward,
    direct_pool_workspace,
    direct_workspace,
)
from numbacnn.backends.cpu_pool import (  # noqa: F401
    avg_pool_backward,
    avg_pool_forward,
    max_pool_backward,
    max_pool_forward,
)
from numbacnn.backends.cpu_space_to_depth import *  # noqa: F403 (S2D_AUTO_MIN_CK, drivers)
from numbacnn.backends.cpu_winograd import (  # noqa: F401
    winograd_backward,
    winograd_forward,
    winograd_workspace,
)
from numbacnn.backends.cpu_winograd5 import *  # noqa: F403 (F(2×2, 5×5)'s drivers)
from numbacnn.backends.cpu_winograd35 import *  # noqa: F403 (F(3×3, 5×5), its auto rule)
from numbacnn.backends.cpu_winograd43 import *  # noqa: F403 (F(4×4, 3×3)'s drivers)
from numbacnn.backends.cpu_winograd43_pool import *  # noqa: F403 (WINOGRAD43_POOL_FUSES)
from numbacnn.kernels import (
    batchnorm,
    conv,
    dropout,
    elementwise,
    loss,
    lrn,
    maxout,
    optim,
    reduce,
)

name = "cpu"
on_host = True  # arrays are numpy arrays in host memory: nothing to copy
# The smallest C·K at which ``algo=auto`` runs a 3×3 stride-1 convolution as Winograd
# (layers/conv.py); None: at none. Measured with the row transforms (bench/RESULTS.md,
# "Winograd on the CPU, transforms by rows"): faster than im2col for fmnist's conv2
# (C·K = 32·64) and AlexNet's conv3–5, slower for fmnist's conv1 (C·K = 1·32)
WINOGRAD_AUTO_MIN_CK: int | None = 32 * 64
# The largest C/G·FH·FW (taps per output) at which ``algo=auto`` runs a stride-1
# convolution as the direct one (layers/conv.py); None: at none. Measured against
# im2col, forward and backward, batch 128 (bench/RESULTS.md, "Direct convolution"):
# faster for fmnist's conv1 (one channel, 3×3), even at 2 channels without dx, slower
# at 3·9 and with an input gradient, and for 5×5 windows (not unrolled)
DIRECT_AUTO_MAX_TAPS: int | None = 9
# Whether a ReLU'd direct convolution does the 2×2 stride-2 max pooling after it in its
# training passes (direct_pool_forward/_backward, cpu_direct.py; layers/conv.py)
DIRECT_POOL_FUSES = True

# The same for a 5×5 stride-1 convolution (Winograd F(2×2, 5×5)), measured by
# bench/winograd5_layers.py (bench/RESULTS.md, "Winograd F(2×2, 5×5)"): faster than im2col
# for cifar10's conv2 (C·K = 32·64), AlexNet's conv2 (96·256) and lenet's conv2 (6·16),
# 1.7x slower for cifar10's conv1 (3·32, the same C·K as lenet's: this rule leaves both)
WINOGRAD5_AUTO_MIN_CK: int | None = 32 * 64
# The smallest C·K at which ``algo=auto`` runs a 3×3 layer that the rule above gives
# Winograd as F(4×4, 3×3) (``cpu_winograd43.py``) rather than F(2×2, 3×3); None: at none.
# bench/winograd43_layers.py (bench/RESULTS.md, "Winograd F(4×4, 3×3)"): faster forward
# and backward for fmnist's conv2 (C·K = 32·64, batch 128) and AlexNet's conv3–5 (batch 16)
WINOGRAD43_AUTO_MIN_CK: int | None = 32 * 64
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


def set_tf32(enabled: bool) -> None:
    """No TF32 on the CPU: its matrix products always compute in true FP32."""


def tf32_label() -> str:
    """How the matrix products compute: always true FP32 on the CPU."""
    return "fp32"


def gemm_label() -> str:
    """The SGEMM in use, for benchmark reports: "MKL 2026.2", "OpenBLAS 0.3.31
    (SkylakeX)", ... (``cblas.name``)."""
    return cblas.name()


def synchronize() -> None:
    """Wait for queued work (nothing to wait for on the CPU)."""


SPLIT_GEMM_FLOPS = 4_000_000  # smaller products run on the calling thread alone
# a · bᵀ with fewer rows than this (a small batch through a fully connected layer) and at
# least as many columns runs as (b · aᵀ)ᵀ: at 64 rows both took the same time
SHORT_BATCH_ROWS = 64


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray, trans_a: bool = False,
         trans_b: bool = False) -> None:
    """out (M × N) = op(a) @ op(b), op transposing when asked; float32 BLAS SGEMM.

    Large products are split along the longer side of ``out`` (rows of op(a), or
    columns of op(b) when the batch side is short, as in a fully connected layer at
    batch 16; a short a · bᵀ runs as (b · aᵀ)ᵀ, ``SHORT_BATCH_ROWS``) into one block per
    numba thread, each a one-thread CBLAS call made from
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
        with cblas.one_blas_thread() if small else nullcontext():
            np.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)
        return
    with cblas.one_blas_thread():
        if trans_b and not trans_a and not small and M < SHORT_BATCH_ROWS <= N:
            # a fully connected layer's forward at a small batch: outᵀ = b @ aᵀ, the
            # weights b as the long left operand, ran 1.3–1.7× faster (MKL and OpenBLAS,
            # AlexNet's fc6–8 at batch 16, bench/RESULTS.md); out is tiny to transpose
            out_t = np.empty((N, M), np.float32)
            _gemm_in_parts(sgemm, False, True, N, M, K, b.reshape(-1), a.reshape(-1),
                           out_t.reshape(-1), max(1, parts))
            np.copyto(out, out_t.T)
            return
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


# --- convolution (the chunked passes: cpu_conv.py) -----------------------------------------


def conv_forward(x: np.ndarray, H: int, W: int, w2: np.ndarray, b: np.ndarray, y: np.ndarray,
                 ws: dict[str, np.ndarray], geo: tuple, groups: int, OH: int, OW: int,
                 relu: int) -> None:
    """y (N×K×OH×OW, passed flat) = the convolution of x (N×C×H×W, passed as N×C×(H·W))
    with w2 (K × (C/G)·FH·FW, ``groups`` G) plus b, then ReLU when ``relu``; ``geo`` =
    (FH, FW, SH, SW, PT, PL, DH, DW) as ``kernels/conv.py`` takes it; ``ws`` holds the
    buffers of :func:`conv_workspace`: a chunk of images at a time, or the whole batch."""
    if "cols" in ws:
        whole_batch.forward(sys.modules[__name__], x, H, W, w2, b, y, ws["cols"], ws["out"],
                            geo, groups, OH, OW, relu)
    else:
        cpu_conv.forward_in_chunks(x, H, W, w2, b, y, ws, geo, groups, OH, OW, relu)


def conv_backward(x: np.ndarray, H: int, W: int, w2: np.ndarray, y: np.ndarray,
                  dy: np.ndarray, dw2: np.ndarray, db: np.ndarray, dx: np.ndarray | None,
                  ws: dict[str, np.ndarray], geo: tuple, groups: int, OH: int, OW: int,
                  relu: int) -> None:
    """dw2 (K × (C/G)·FH·FW), db (K) and, unless it is None, dx (N×C×(H·W), like x) from dy
    (N×K×OH×OW, passed flat like y), with the forward pass's input x and output y (its
    ReLU, when ``relu``). With the whole-batch buffers, ws["cols"] must hold the forward
    pass's columns (they are overwritten when dx is computed)."""
    if "cols" in ws:
        whole_batch.backward(sys.modules[__name__], x, H, W, w2, y, dy, dw2, db, dx, ws["cols"],
                             ws["out"], geo, groups, OH, OW, relu)
    else:
        cpu_conv.backward_in_chunks(x, H, W, w2, y, dy, dw2, db, dx, ws, geo, groups, OH, OW,
                                    relu)


# im2col and col2im call their body with the geometry as a constant for the usual 3×3
# stride-1 "same" convolution (LLVM then unrolls the window loops).
@njit(parallel=True, fastmath=True, cache=True)
def im2col(n, L, cols, x, H, W, geo, OH, OW):
    if conv.is_3x3_same(geo):
        for t in prange(n):
            conv.im2col_at(t, 0, L, cols, x, H, W, conv.GEO_3X3_SAME, OH, OW)
    else:
        for t in prange(n):
            conv.im2col_at(t, 0, L, cols, x, H, W, geo, OH, OW)

@njit(parallel=True, fastmath=True, cache=True)
def col2im(n, L, dx, dcols, H, W, geo, OH, OW):
    # Planes in (c, n) order, not the body's (n, c): consecutive planes then read
    # neighbouring stretches of the same F·F rows of dcols instead of jumping F·F rows
    # (F·F·N·OH·OW floats) ahead. fmnist's conv2, one thread: 7.8 ms → 4.2 ms.
    N = dx.shape[0]
    C = dx.shape[1]
    if conv.is_3x3_same(geo):
        for u in prange(n):
            c = u // N
            conv.col2im_at((u - c * N) * C + c, 0, L, dx, dcols, H, W, conv.GEO_3X3_SAME, OH,
                           OW)
    else:
        for u in prange(n):
            c = u // N
            conv.col2im_at((u - c * N) * C + c, 0, L, dx, dcols, H, W, geo, OH, OW)

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

# The pooling drivers: numbacnn/backends/cpu_pool.py (one compiled driver per window).

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
        lrn.lrn_forward_row(t, y, scale, x, size, alpha_n, beta, k)

@njit(parallel=True, fastmath=True, cache=True)
def lrn_backward(n, L, dx, dy, x, y, scale, size, alpha_n, beta):
    for t in prange(n):
        lrn.lrn_backward_row(t, dx, dy, x, y, scale, size, alpha_n, beta)

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
def gelu_forward(n, y, x):
    for i in prange(n):
        elementwise.gelu_forward_at(i, y, x)

@njit(parallel=True, fastmath=True, cache=True)
def gelu_backward(n, dx, dy, x):
    for i in prange(n):
        elementwise.gelu_backward_at(i, dx, dy, x)

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
def softmax_cross_entropy_smoothing(n, losses, logits, labels, smoothing):
    for i in prange(n):
        loss.label_smoothing_at(i, losses, logits, labels, smoothing)

@njit(parallel=True, fastmath=True, cache=True)
def softmax_cross_entropy_backward(n, dlogits, probs, labels, inv_n, smoothing):
    for i in prange(n):
        loss.softmax_cross_entropy_backward_at(i, dlogits, probs, labels, inv_n, smoothing)

@njit(parallel=True, fastmath=True, cache=True)
def sgd_momentum(n, w, v, g, lr, momentum, weight_decay):
    for i in prange(n):
        optim.sgd_momentum_at(i, w, v, g, lr, momentum, weight_decay)

# Exact sqrt and division (no "afn"/"arcp"): with them the vectorized loop and its
# scalar remainder rounded differently, so an element's update depended on where it fell
# in its thread's share (the thread count, the flat buffer's layout). Now every element
# gets the IEEE result, as on the GPU.
@njit(parallel=True, fastmath={"nnan", "ninf", "nsz", "contract"}, cache=True)
def adam(n, w, m, v, g, lr_t, beta1, beta2, eps, weight_decay):
    for i in prange(n):
        optim.adam_at(i, w, m, v, g, lr_t, beta1, beta2, eps, weight_decay)


@njit(fastmath=True, cache=True)
def batch_stats(n, stats, losses, logits, labels):
    total, correct = loss.batch_stats_span(0, n, 1, losses, logits, labels)
    stats[0] += total
    stats[1] += correct


kernel_cache.restore(_numba_cache_dir)
