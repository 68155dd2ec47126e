"""CUDA backend: each kernel body becomes a grid-stride ``@cuda.jit`` kernel.

Drivers have the signatures of their twins in ``cpu.py``, but launch the bodies the
way a GPU wants them: one thread per output element, neighbouring threads on
neighbouring addresses.

* ``name(n, *args)`` (elementwise bodies) runs ``name_at(i, *args)`` for i < n,
  thread t taking i = t, t + T, t + 2T … (T threads in the grid).
* ``name(n, L, *args)`` (span bodies of n planes or rows of length L) runs
  ``name_at(i // L, i % L, i % L + 1, *args)`` for i < n·L: the same body the CPU
  calls once per plane, here once per element; im2col, col2im and max pooling run one-
  element bodies (the span bodies' whole-plane branches doubled their registers).
* The GEMM reorders (``gemm_to_nchw``, ``nchw_to_gemm``) run on a 3-D grid (x the
  element of a plane, y the channel, z the image: ``cuda_grid.plane_grid``), so no
  thread divides an index.
* Reductions (bias gradients, the batch's loss and accuracy) give each thread of a
  block a strided span of the body and add the partial sums in shared memory.

numba-cuda compiles the ``@njit`` bodies as device functions, so no body is written
twice. The backend is split by concern; this module keeps the drivers and re-exports
the rest under the same names:

* ``cuda_grid.py``: grid geometry and the launcher decorators (no fastmath; launches
  after the first bypass numba's dispatcher, ``launch.py``);
* ``cuda_memory.py``: allocations, host↔device copies, events;
* ``cuda_gemm.py``: the matrix product, with ``gemm_choice.py`` picking cuBLAS through
  CuPy (``cublas.py``) or the numba SGEMM of ``sgemm.py`` (``NUMBACNN_GEMM=cublas|numba``),
  and TF32;
* ``cuda_dry_run.py``: :func:`dry_run` (launches recorded instead of run, no GPU
  needed) and :data:`counters` of launches, copies and allocations.

Under ``NUMBA_ENABLE_CUDASIM=1`` kernels run as Python, so they call the bodies' Python
functions.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from numba import config, cuda, float32, njit

from numbacnn.backends import cuda_direct, cuda_winograd, cuda_winograd5, whole_batch
from numbacnn.backends import cuda_space_to_depth as cuda_s2d
from numbacnn.backends.cuda_cpu_only import *  # noqa: F403 (larger Winograd tiles: CPU only)
from numbacnn.backends.cuda_dry_run import (  # noqa: F401
    DryArray,
    counters,
    dry_run,
    reset_counters,
)

# Public names of the backend that live in its helper modules (layers call B.<name>)
from numbacnn.backends.cuda_gemm import gemm  # noqa: F401
from numbacnn.backends.cuda_grid import (
    REDUCE_THREADS,
    block_per_row,
    grid_stride,
    grid_stride_count,
    grid_stride_spans,
    one_block,
    plane_grid,
    python_bodies,
)
from numbacnn.backends.cuda_memory import (  # noqa: F401
    download,
    empty,
    event,
    pinned_empty,
    synchronize,
    to_device,
    to_host,
    upload,
)
from numbacnn.backends.gemm_choice import (  # noqa: F401
    GEMM_CHOICES,
    gemm_choice,
    gemm_label,
    gemm_name,
    set_gemm,
    set_tf32,
    tf32_label,
    using_gemm,
)
from numbacnn.kernels import (
    batchnorm,
    conv,
    dropout,
    elementwise,
    index,
    loss,
    lrn,
    maxout,
    optim,
    pool,
    reduce,
)

name = "cuda"
on_host = False  # arrays live in GPU memory: copy them with to_device/to_host

if config.ENABLE_CUDASIM:  # the simulator runs kernels as Python: call the bodies' Python source
    batchnorm, conv, dropout, elementwise, index, loss, lrn, maxout, optim, pool, reduce = map(  # noqa: F811
        python_bodies,
        (batchnorm, conv, dropout, elementwise, index, loss, lrn, maxout, optim, pool, reduce))

# --- memory (cuda_memory.py) ----------------------------------------------------------


def zeros(shape: tuple[int, ...], dtype: type = np.float32) -> Any:
    out = empty(shape, dtype)
    fill(out.size, out.reshape(-1), out.dtype.type(0))
    return out


# --- matrix product: cuda_gemm.py (cuBLAS or the numba SGEMM) -------------------------
# --- convolution (space-to-depth's rearrangements: cuda_space_to_depth.py) -----------------
S2D_AUTO_MIN_CK, space_to_depth, depth_to_space, s2d_filters, s2d_filter_grads = cuda_s2d.DRIVERS


def conv_workspace(N: int, C: int, K: int, F: int | tuple[int, int], OH: int, OW: int,
                   groups: int = 1) -> dict[str, tuple]:
    """Shapes of the buffers of :func:`conv_forward` and :func:`conv_backward`: the
    batch's im2col columns (C·FH·FW × N·OH·OW) and the GEMM output (K × N·OH·OW); F is
    the filter size, one number or (FH, FW)."""
    FH, FW = (F, F) if isinstance(F, int) else F
    return {"cols": (C * FH * FW, N * OH * OW), "out": (K, N * OH * OW)}


def conv_forward(x: Any, H: int, W: int, w2: Any, b: Any, y: Any, ws: dict[str, Any],
                 geo: tuple, groups: int, OH: int, OW: int, relu: int) -> None:
    """y (N×K×OH×OW, passed flat) = the convolution of x (N×C×H×W, passed as N×C×(H·W))
    with w2 (K × (C/G)·FH·FW, ``groups`` G) plus b, then ReLU when ``relu``; ``geo`` as
    ``kernels/conv.py`` takes it: im2col, one GEMM per group, the bias/ReLU reorder
    over the whole batch (``whole_batch.py``; the CPU backend runs the same bodies
    a chunk of images at a time)."""
    whole_batch.forward(sys.modules[__name__], x, H, W, w2, b, y, ws["cols"], ws["out"], geo,
                        groups, OH, OW, relu)


def conv_backward(x: Any, H: int, W: int, w2: Any, y: Any, dy: Any, dw2: Any, db: Any,
                  dx: Any, ws: dict[str, Any], geo: tuple, groups: int, OH: int, OW: int,
                  relu: int) -> None:
    """dw2, db and, unless it is None, dx from dy (y and dy passed flat, x and dx as
    N×C×(H·W)); ws["cols"] holds the forward pass's columns and is overwritten by the
    input gradient's columns when dx is computed."""
    whole_batch.backward(sys.modules[__name__], x, H, W, w2, y, dy, dw2, db, dx, ws["cols"],
                         ws["out"], geo, groups, OH, OW, relu)


# algo=auto's least C·K for Winograd F(2×2, 3×3), most C/G·FH·FW for direct: None, unmeasured
WINOGRAD_AUTO_MIN_CK: int | None = None
winograd_workspace = cuda_winograd.winograd_workspace
winograd_forward = cuda_winograd.winograd_forward
(direct_workspace, direct_forward, direct_backward, direct_pool_workspace, direct_pool_forward,
 direct_pool_backward, DIRECT_AUTO_MAX_TAPS, DIRECT_POOL_FUSES) = cuda_direct.DRIVERS
def winograd_backward(x: Any, H: int, W: int, w2: Any, y: Any, dy: Any, dw2: Any, db: Any,
                      dx: Any, ws: dict[str, Any], geo: tuple, OH: int, OW: int,
                      relu: int) -> None:
    """``cuda_winograd.winograd_backward`` with this backend's row sums (the bias gradient)."""
    cuda_winograd.winograd_backward(row_sum, x, H, W, w2, y, dy, dw2, db, dx, ws, geo, OH, OW,
                                    relu)
# Winograd F(2×2, 5×5) (cuda_winograd5.py; no auto rule until a GPU measures one)
WINOGRAD5_AUTO_MIN_CK, winograd5_workspace, winograd5_forward, winograd5_backward = (
    cuda_winograd5.backend_drivers(lambda: row_sum))


# --- kernels ---------------------------------------------------------------------------------


def block_sum(partial, tid):
    """Σ partial[0 … REDUCE_THREADS − 1], each thread tid < REDUCE_THREADS having written
    its own entry: a tree in shared memory. Every thread of the block must call it; all
    get the sum, and ``partial`` may be written again when it returns."""
    cuda.syncthreads()
    width = REDUCE_THREADS // 2
    while width > 0:
        if tid < width:
            partial[tid] += partial[tid + width]
        cuda.syncthreads()
        width //= 2
    total = partial[0]
    cuda.syncthreads()
    return total


def block_max(partial, tid):
    """max of partial[0 … REDUCE_THREADS − 1], as :func:`block_sum`."""
    cuda.syncthreads()
    width = REDUCE_THREADS // 2
    while width > 0:
        if tid < width:
            partial[tid] = max(partial[tid], partial[tid + width])
        cuda.syncthreads()
        width //= 2
    top = partial[0]
    cuda.syncthreads()
    return top


if not config.ENABLE_CUDASIM:  # inlined into the kernels like the bodies (typed there)
    block_sum = njit(inline="always")(block_sum)
    block_max = njit(inline="always")(block_max)



# The hot element kernels step with while loops: a range() with a runtime step computes
# its trip count with a signed 64-bit division in every thread (bench/ptx_paths.py).
@grid_stride_count(lambda n, L, cols, x, *rest: x.shape[0] * x.shape[1] * L)
def im2col(n, L, cols, x, H, W, geo, OH, OW):
    total = x.shape[0] * x.shape[1] * L
    i = cuda.grid(1)
    if conv.is_3x3_same(geo):  # the usual case with constant loops, as on the CPU
        while i < total:
            conv.im2col_taps_at(i, cols, x, H, W, conv.GEO_3X3_SAME, OH, OW)
            i += cuda.gridsize(1)
    else:
        while i < total:
            conv.im2col_taps_at(i, cols, x, H, W, geo, OH, OW)
            i += cuda.gridsize(1)

@grid_stride_spans
def col2im(n, L, dx, dcols, H, W, geo, OH, OW):
    i = cuda.grid(1)
    if conv.is_3x3_same(geo):
        while i < n * L:
            conv.col2im_gather_at(i, dx, dcols, H, W, conv.GEO_3X3_SAME, OH, OW)
            i += cuda.gridsize(1)
    else:
        while i < n * L:
            conv.col2im_gather_at(i, dx, dcols, H, W, geo, OH, OW)
            i += cuda.gridsize(1)

@plane_grid
def gemm_to_nchw(n, L, y, out, b, K, P, relu):
    k = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    p = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if k < K and p < P:
        q = cuda.blockIdx.z * P  # n·P, image n = blockIdx.z, block-stride
        while q < out.shape[1]:
            conv.gemm_to_nchw_element_at(q, k, p, y, out, b, K, P, relu)
            q += cuda.gridDim.z * P

@plane_grid
def nchw_to_gemm(n, L, dy2, dy, y, K, P, relu):
    k = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    p = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if k < K and p < P:
        q = cuda.blockIdx.z * P
        while q < dy2.shape[1]:
            conv.nchw_to_gemm_element_at(q, k, p, dy2, dy, y, K, P, relu)
            q += cuda.gridDim.z * P

@block_per_row
def row_sum(n, out, m):
    partial = cuda.shared.array(REDUCE_THREADS, float32)
    tid = cuda.threadIdx.x
    for r in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        partial[tid] = reduce.row_sum_span(r, tid, m.shape[1], REDUCE_THREADS, m)
        total = block_sum(partial, tid)
        if tid == 0:
            out[r] = total

@block_per_row
def col_sum(n, out, m):
    partial = cuda.shared.array(REDUCE_THREADS, float32)
    tid = cuda.threadIdx.x
    for c in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        partial[tid] = reduce.col_sum_span(c, tid, m.shape[0], REDUCE_THREADS, m)
        total = block_sum(partial, tid)
        if tid == 0:
            out[c] = total

@grid_stride_spans
def max_pool_forward(n, L, y, argmax, x, FH, FW, SH, SW, PH, PW):
    i = cuda.grid(1)
    while i < n * L:
        pool.max_pool_forward_element_at(i, y, argmax, x, FH, FW, SH, SW, PH, PW)
        i += cuda.gridsize(1)

@grid_stride_spans
def max_pool_backward(n, L, dx, dy, argmax, FH, FW, SH, SW, PH, PW):
    i = cuda.grid(1)
    while i < n * L:
        pool.max_pool_backward_element_at(i, dx, dy, argmax, FH, FW, SH, SW, PH, PW)
        i += cuda.gridsize(1)

@grid_stride_spans
def avg_pool_forward(n, L, y, x, FH, FW, SH, SW, PH, PW, count_pad):
    for i in range(cuda.grid(1), n * L, cuda.gridsize(1)):
        t, lo = index.split(i, L)
        pool.avg_pool_forward_at(t, lo, lo + 1, y, x, FH, FW, SH, SW, PH, PW, count_pad)

@grid_stride_spans
def avg_pool_backward(n, L, dx, dy, FH, FW, SH, SW, PH, PW, count_pad):
    for i in range(cuda.grid(1), n * L, cuda.gridsize(1)):
        t, lo = index.split(i, L)
        pool.avg_pool_backward_at(t, lo, lo + 1, dx, dy, FH, FW, SH, SW, PH, PW, count_pad)

@block_per_row
def batch_statistics(n, mean, inv_std, running_mean, running_var, x, momentum, eps):
    partial = cuda.shared.array(REDUCE_THREADS, float32)
    partial_sq = cuda.shared.array(REDUCE_THREADS, float32)
    tid = cuda.threadIdx.x
    M = x.shape[0] * x.shape[2]
    zero = float32(0.0)
    for c in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        partial[tid], _ = batchnorm.channel_sums_span(c, tid, M, REDUCE_THREADS, x, zero, x, zero,
                                                      x, 0)
        first_mean = block_sum(partial, tid) / float32(M)
        partial[tid], partial_sq[tid] = batchnorm.channel_sums_span(
            c, tid, M, REDUCE_THREADS, x, first_mean, x, first_mean, x, 0)
        d1 = block_sum(partial, tid)
        d2 = block_sum(partial_sq, tid)
        if tid == 0:
            batchnorm.batch_statistics_at(c, mean, inv_std, running_mean, running_var,
                                          first_mean, d1, d2, M, momentum, eps)

@grid_stride
def inverse_std(n, inv_std, var, eps):
    for c in range(cuda.grid(1), n, cuda.gridsize(1)):
        batchnorm.inverse_std_at(c, inv_std, var, eps)

@grid_stride_spans
def batchnorm_forward(n, L, y, x, mean, inv_std, gamma, beta, relu):
    for i in range(cuda.grid(1), n * L, cuda.gridsize(1)):
        t, lo = index.split(i, L)
        batchnorm.batchnorm_forward_at(t, lo, lo + 1, y, x, mean, inv_std, gamma, beta, relu)

@block_per_row
def batchnorm_parameter_grads(n, dgamma, dbeta, dy, x, y, mean, inv_std, relu):
    partial = cuda.shared.array(REDUCE_THREADS, float32)
    partial_dot = cuda.shared.array(REDUCE_THREADS, float32)
    tid = cuda.threadIdx.x
    M = x.shape[0] * x.shape[2]
    for c in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        partial[tid], partial_dot[tid] = batchnorm.channel_sums_span(
            c, tid, M, REDUCE_THREADS, dy, float32(0.0), x, mean[c], y, relu)
        sum_dy = block_sum(partial, tid)
        sum_dy_centered = block_sum(partial_dot, tid)
        if tid == 0:
            batchnorm.parameter_grads_at(c, dgamma, dbeta, inv_std, sum_dy, sum_dy_centered)

@grid_stride_spans
def batchnorm_backward(n, L, dx, dy, x, y, mean, inv_std, gamma, dgamma, dbeta, m_inv, relu):
    for i in range(cuda.grid(1), n * L, cuda.gridsize(1)):
        t, lo = index.split(i, L)
        batchnorm.batchnorm_backward_at(t, lo, lo + 1, dx, dy, x, y, mean, inv_std, gamma,
                                        dgamma, dbeta, m_inv, relu)

@grid_stride_spans
def lrn_forward(n, L, y, scale, x, size, alpha_n, beta, k):
    for i in range(cuda.grid(1), n * L, cuda.gridsize(1)):
        t, lo = index.split(i, L)
        lrn.lrn_forward_at(t, lo, lo + 1, y, scale, x, size, alpha_n, beta, k)

@grid_stride_spans
def lrn_backward(n, L, dx, dy, x, y, scale, size, alpha_n, beta):
    for i in range(cuda.grid(1), n * L, cuda.gridsize(1)):
        t, lo = index.split(i, L)
        lrn.lrn_backward_at(t, lo, lo + 1, dx, dy, x, y, scale, size, alpha_n, beta)

@grid_stride
def relu_forward(n, y, x):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        elementwise.relu_forward_at(i, y, x)

@grid_stride
def relu_backward(n, dx, dy, x):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        elementwise.relu_backward_at(i, dx, dy, x)

@grid_stride
def leaky_relu_forward(n, y, x, alpha):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        elementwise.leaky_relu_forward_at(i, y, x, alpha)

@grid_stride
def leaky_relu_backward(n, dx, dy, x, alpha):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        elementwise.leaky_relu_backward_at(i, dx, dy, x, alpha)

@grid_stride
def sigmoid_forward(n, y, x):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        elementwise.sigmoid_forward_at(i, y, x)

@grid_stride
def sigmoid_backward(n, dx, dy, y):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        elementwise.sigmoid_backward_at(i, dx, dy, y)

@grid_stride
def tanh_forward(n, y, x):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        elementwise.tanh_forward_at(i, y, x)

@grid_stride
def tanh_backward(n, dx, dy, y):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        elementwise.tanh_backward_at(i, dx, dy, y)

@grid_stride
def elu_forward(n, y, x, alpha):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        elementwise.elu_forward_at(i, y, x, alpha)

@grid_stride
def elu_backward(n, dx, dy, x, y, alpha):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        elementwise.elu_backward_at(i, dx, dy, x, y, alpha)

@grid_stride
def gelu_forward(n, y, x):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        elementwise.gelu_forward_at(i, y, x)

@grid_stride
def gelu_backward(n, dx, dy, x):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        elementwise.gelu_backward_at(i, dx, dy, x)

@grid_stride
def multiply(n, out, a, b):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        elementwise.multiply_at(i, out, a, b)

@grid_stride
def add_bias_rows(n, y, b):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        elementwise.add_bias_rows_at(i, y, b)

@grid_stride
def fill(n, out, value):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        elementwise.fill_at(i, out, value)

@grid_stride
def dropout_forward(n, y, mask, x, p, scale, seed):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        dropout.dropout_forward_at(i, y, mask, x, p, scale, seed)

@block_per_row
def softmax_cross_entropy_forward(n, probs, losses, logits, labels):
    partial = cuda.shared.array(REDUCE_THREADS, float32)
    tid = cuda.threadIdx.x
    for r in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        partial[tid] = loss.row_max_span(r, tid, REDUCE_THREADS, logits)
        m = block_max(partial, tid)
        partial[tid] = loss.softmax_exp_span(r, tid, REDUCE_THREADS, probs, logits, m)
        total = block_sum(partial, tid)
        loss.softmax_finish_span(r, tid, REDUCE_THREADS, probs, losses, logits, labels, m,
                                 total)

@grid_stride
def softmax_cross_entropy_smoothing(n, losses, logits, labels, smoothing):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        loss.label_smoothing_at(i, losses, logits, labels, smoothing)

@grid_stride
def softmax_cross_entropy_backward(n, dlogits, probs, labels, inv_n, smoothing):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        loss.softmax_cross_entropy_backward_at(i, dlogits, probs, labels, inv_n, smoothing)

@grid_stride
def sgd_momentum(n, w, v, g, lr, momentum, weight_decay):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        optim.sgd_momentum_at(i, w, v, g, lr, momentum, weight_decay)

@grid_stride
def adam(n, w, m, v, g, lr_t, beta1, beta2, eps, weight_decay):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        optim.adam_at(i, w, m, v, g, lr_t, beta1, beta2, eps, weight_decay)

@grid_stride_spans
def maxout_forward(n, L, y, which, x, pieces):
    for i in range(cuda.grid(1), n * L, cuda.gridsize(1)):
        t, lo = index.split(i, L)
        maxout.maxout_forward_at(t, lo, lo + 1, y, which, x, pieces)

@grid_stride_spans
def maxout_backward(n, L, dx, dy, which, pieces):
    for i in range(cuda.grid(1), n * L, cuda.gridsize(1)):
        t, lo = index.split(i, L)
        maxout.maxout_backward_at(t, lo, lo + 1, dx, dy, which, pieces)

@one_block
def batch_stats(n, stats, losses, logits, labels):
    """stats[0] += Σ losses, stats[1] += correct predictions, over the n rows."""
    totals = cuda.shared.array(REDUCE_THREADS, float32)
    hits = cuda.shared.array(REDUCE_THREADS, float32)
    tid = cuda.threadIdx.x
    totals[tid], hits[tid] = loss.batch_stats_span(tid, n, REDUCE_THREADS, losses, logits,
                                                   labels)
    total = block_sum(totals, tid)
    correct = block_sum(hits, tid)
    if tid == 0:
        stats[0] += total
        stats[1] += correct
