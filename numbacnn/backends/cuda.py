"""CUDA backend: each kernel body becomes a grid-stride ``@cuda.jit`` kernel.

Drivers have the signatures of their twins in ``cpu.py``, but launch the bodies the
way a GPU wants them: one thread per output element, neighbouring threads on
neighbouring addresses.

* ``name(n, *args)`` (elementwise bodies) runs ``name_at(i, *args)`` for i < n,
  thread t taking i = t, t + T, t + 2T … (T threads in the grid).
* ``name(n, L, *args)`` (span bodies of n planes or rows of length L) runs
  ``name_at(i // L, i % L, i % L + 1, *args)`` for i < n·L: the same body the CPU
  calls once per plane, here once per element.
* Reductions (bias gradients, the batch's loss and accuracy) give each thread of a
  block a strided span of the body and add the partial sums in shared memory.

numba-cuda compiles the ``@njit`` bodies as device functions, so no body is written
twice. Kernels are compiled without fastmath (``tanh.approx.f32`` and friends would
break the CPU's tolerances), except the SGEMM whose only use of it is FMA contraction.
Launches after the first of each signature bypass numba's dispatcher (``launch.py``).
The matrix product is cuBLAS through CuPy (``cublas.py``) when CuPy is installed, else
the numba SGEMM of ``sgemm.py``; ``NUMBACNN_GEMM=cublas|numba`` chooses.

Under ``NUMBA_ENABLE_CUDASIM=1`` kernels run as Python, so they call the bodies' Python
functions. :func:`dry_run` records every launch (kernel and argument types) instead
of running it, on host arrays: the tests compile each recorded kernel to PTX with
``numba.cuda.compile_ptx`` and need no GPU for that. :data:`counters` counts launches,
host↔device copies and device allocations (also during a dry run).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
from numba import config, cuda, float32, njit, typeof

from numbacnn.backends import cublas, sgemm, whole_batch
from numbacnn.backends.launch import FastLaunch
from numbacnn.errors import DeviceError
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
THREADS_PER_BLOCK = 256
MAX_BLOCKS = 65536
REDUCE_THREADS = 256  # threads of a reduction block (a power of two)
INDEX_LIMIT = 2**32  # kernels/index.py splits flat indices in unsigned 32-bit arithmetic
GEMM_CHOICES = ("cublas", "numba")

if config.ENABLE_CUDASIM:  # the simulator runs kernels as Python: call the bodies' Python source

    def _python_bodies(module: Any) -> SimpleNamespace:
        return SimpleNamespace(**{k: getattr(v, "py_func", v) for k, v in vars(module).items()})

    batchnorm, conv, dropout, elementwise, index, loss, lrn, maxout, optim, pool, reduce = map(  # noqa: F811
        _python_bodies,
        (batchnorm, conv, dropout, elementwise, index, loss, lrn, maxout, optim, pool, reduce))

_recording: list[tuple[Callable, tuple]] | None = None
counters = {"launches": 0, "h2d_copies": 0, "d2h_copies": 0, "allocations": 0}


def reset_counters() -> dict[str, int]:
    """Zero :data:`counters`; returns the counts before."""
    before = dict(counters)
    for key in counters:
        counters[key] = 0
    return before


@contextlib.contextmanager
def dry_run() -> Iterator[list[tuple[Callable, tuple]]]:
    """Record (python kernel, numba argument types) for each launch instead of running it.

    Inside the block, allocations return host numpy arrays and nothing is computed.
    """
    global _recording
    _recording = []
    try:
        yield _recording
    finally:
        _recording = None


class DryArray(np.ndarray):
    """A host array that stands in for a device array during :func:`dry_run`, so code
    that tells device arrays from host arrays takes its device path."""

    def copy_to_host(self) -> np.ndarray:
        return np.asarray(self).copy()

    def copy_to_device(self, host: np.ndarray, stream: Any = 0) -> None:
        pass  # nothing is computed in a dry run

    def is_c_contiguous(self) -> bool:
        return bool(self.flags.c_contiguous)


def _record(py_func: Callable, args: tuple) -> None:
    assert _recording is not None
    _recording.append((py_func, tuple(typeof(a) for a in args)))


def _blocks(n: int) -> int:
    return min(MAX_BLOCKS, (n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK)


def _launcher(fn: Callable, blocks_for: Callable[[int, tuple], int], threads: int,
              doc: str) -> Callable:
    """Compile ``fn(n, *args)`` (no fastmath) and return ``launch(n, *args)``, which runs it
    on ``blocks_for(n, args)`` blocks of ``threads`` (none when that is 0), records it in
    a dry run, and counts it."""
    kernel = cuda.jit(fastmath=False)(fn)
    fast = None if config.ENABLE_CUDASIM else FastLaunch(kernel)

    def launch(n: int, *args: Any) -> None:
        counters["launches"] += 1
        if _recording is not None:
            _record(fn, (n, *args))
            return
        blocks = blocks_for(n, args)
        if blocks > 0:
            if fast is None:
                kernel[blocks, threads](n, *args)
            else:
                fast(blocks, threads, (n, *args))

    launch.py_func = fn
    launch.fastmath = False
    launch.__name__ = fn.__name__
    launch.__doc__ = doc
    return launch


def _element_blocks(fn: Callable, total: int) -> int:
    """Blocks for one thread per element of ``total`` (grid-stride beyond MAX_BLOCKS)."""
    if total >= INDEX_LIMIT:
        raise DeviceError(f"{fn.__name__}: {total:,} elements exceed the GPU kernels' "
                          "32-bit index arithmetic; use a smaller batch")
    return _blocks(total)


def grid_stride(fn: Callable) -> Callable:
    """Compile ``fn(n, *args)`` as a CUDA kernel; return a launcher ``launch(n, *args)``.

    The launcher picks ⌈n / 256⌉ blocks of 256 threads (at most 65,536 blocks; the
    grid-stride loop covers the rest). ``launch.py_func`` is ``fn`` for compile_ptx.
    """
    return _launcher(fn, lambda n, args: _element_blocks(fn, n), THREADS_PER_BLOCK,
                     f"Grid-stride CUDA launch of body {fn.__name__}_at over n elements.")


def grid_stride_spans(fn: Callable) -> Callable:
    """Like :func:`grid_stride` for ``fn(n, L, *args)``: n planes of L elements, one
    thread per element (n·L threads)."""
    return _launcher(fn, lambda n, args: _element_blocks(fn, n * args[0]), THREADS_PER_BLOCK,
                     f"CUDA launch of span body {fn.__name__}_at, one thread per element.")


def block_per_row(fn: Callable) -> Callable:
    """Compile a reduction kernel ``fn(n, *args)`` that gives each of n rows to one block
    of REDUCE_THREADS threads (at most 65,536 blocks, block-stride over the rest)."""
    return _launcher(fn, lambda n, args: min(MAX_BLOCKS, n), REDUCE_THREADS,
                     f"CUDA block-per-row reduction {fn.__name__}.")


def one_block(fn: Callable) -> Callable:
    """Compile a reduction kernel ``fn(n, *args)`` over n items run by a single block."""
    return _launcher(fn, lambda n, args: 1 if n > 0 else 0, REDUCE_THREADS,
                     f"CUDA one-block reduction {fn.__name__}.")


# --- memory -------------------------------------------------------------------------------


def empty(shape: tuple[int, ...], dtype: type = np.float32) -> Any:
    """An uninitialized device array (a host array inside :func:`dry_run`)."""
    counters["allocations"] += 1
    if _recording is not None:
        return np.empty(shape, dtype=dtype).view(DryArray)
    return cuda.device_array(shape, dtype=dtype)


def zeros(shape: tuple[int, ...], dtype: type = np.float32) -> Any:
    out = empty(shape, dtype)
    fill(out.size, out.reshape(-1), out.dtype.type(0))
    return out


def to_device(a: np.ndarray) -> Any:
    """Copy a host array to the GPU as a C-contiguous array; float64 → float32."""
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    a = np.ascontiguousarray(a)
    counters["allocations"] += 1
    counters["h2d_copies"] += 1
    if _recording is not None:
        return a.copy().view(DryArray)
    return cuda.to_device(a)


def to_host(a: Any) -> np.ndarray:
    if hasattr(a, "copy_to_host"):
        counters["d2h_copies"] += 1
        return a.copy_to_host()
    return np.asarray(a)


def pinned_empty(shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    """Page-locked host memory: uploads from it are DMA transfers with no staging copy."""
    if _recording is not None or config.ENABLE_CUDASIM:
        return np.empty(shape, dtype=dtype)
    return cuda.pinned_array(shape, dtype=dtype)


def upload(host: np.ndarray, out: Any, asynchronous: bool = False) -> Any:
    """Copy ``host`` into the existing device array ``out`` of the same shape and dtype;
    returns ``out``. ``asynchronous``: queue the copy on the default stream and return at
    once (``host`` must then be pinned and left alone until the copy has run: see
    ``numbacnn/training/staging.py``); else the copy is done when this returns."""
    if host.shape != tuple(out.shape) or host.dtype != out.dtype:
        raise DeviceError(f"upload: host array {host.shape} {host.dtype} does not fit the "
                          f"device array {tuple(out.shape)} {out.dtype}")
    counters["h2d_copies"] += 1
    if _recording is None:
        if asynchronous and not config.ENABLE_CUDASIM:
            out.copy_to_device(host, stream=cuda.default_stream())
        else:
            out.copy_to_device(host)
    return out


def download(a: Any, out: np.ndarray) -> np.ndarray:
    """Copy the device array ``a`` into the existing host array ``out`` (page-locked for
    full speed) of the same shape and dtype; returns ``out`` once the copy is done, which
    is after every kernel queued before it on the default stream."""
    if tuple(a.shape) != out.shape or a.dtype != out.dtype:
        raise DeviceError(f"download: device array {tuple(a.shape)} {a.dtype} does not fit "
                          f"the host array {out.shape} {out.dtype}")
    counters["d2h_copies"] += 1
    if _recording is None:
        a.copy_to_host(out)
    else:
        np.copyto(out, a)
    return out


class _NoEvent:
    """Stands in for a CUDA event in a dry run and in the simulator."""

    def record(self) -> None: ...

    def synchronize(self) -> None: ...


def event() -> Any:
    """A CUDA event (``record()`` on the default stream, ``synchronize()`` waits for it)."""
    if _recording is not None or config.ENABLE_CUDASIM:
        return _NoEvent()
    return cuda.event(timing=False)


def synchronize() -> None:
    """Wait until every queued kernel has finished (for timing)."""
    if _recording is None:
        cuda.synchronize()


# --- matrix product --------------------------------------------------------------------------


def gemm_choice() -> str:
    """"cublas" or "numba": NUMBACNN_GEMM, else cuBLAS when CuPy is usable."""
    wanted = os.environ.get("NUMBACNN_GEMM", "").strip().lower()
    if wanted and wanted not in GEMM_CHOICES:
        raise DeviceError(f"NUMBACNN_GEMM={wanted!r}: choose cublas or numba")
    if wanted == "numba" or config.ENABLE_CUDASIM:
        return "numba"
    reason = cublas.unavailable_reason()
    if reason is None:
        return "cublas"
    if wanted == "cublas":
        raise DeviceError(f"NUMBACNN_GEMM=cublas but {reason}")
    return "numba"


_gemm_impl: list[str] = []  # resolved on first use


def set_tf32(enabled: bool) -> None:
    """Let cuBLAS SGEMM use TF32 tensor cores (the numba SGEMM is always FP32)."""
    cublas.set_tf32(enabled)


def tf32_label() -> str:
    """"tf32" when the matrix products run on TF32 tensor cores, else "fp32"."""
    return "tf32" if cublas.tf32_enabled() and gemm_name() == "cublas" else "fp32"


def gemm_name() -> str:
    """"cublas" or "numba": the GEMM in use (resolved on first use, see gemm_choice)."""
    if not _gemm_impl:
        _gemm_impl.append(gemm_choice())
    return _gemm_impl[0]


def set_gemm(name: str, check: bool = True) -> None:
    """Use cuBLAS ("cublas") or the numba SGEMM ("numba") from now on (``check``: that
    CuPy is usable; a dry run needs no GPU and may skip it)."""
    if name not in GEMM_CHOICES:
        raise DeviceError(f"unknown GEMM {name!r}: choose cublas or numba")
    if check and name == "cublas" and cublas.unavailable_reason() is not None:
        raise DeviceError(f"GEMM cublas asked for but {cublas.unavailable_reason()}")
    _gemm_impl[:] = [name]


_workspace: dict[str, Any] = {}


def _split_workspace(size: int) -> Any:
    """A flat float32 device buffer of at least ``size`` elements, kept across calls."""
    buf = _workspace.get("splits")
    if buf is None or buf.size < size:
        buf = _workspace["splits"] = empty((max(size, 1),))
    return buf


def gemm(a: Any, b: Any, out: Any, trans_a: bool = False, trans_b: bool = False) -> None:
    """out (M × N) = op(a) @ op(b): cuBLAS SGEMM, or the numba SGEMM with split-K."""
    M, N = out.shape
    K = a.shape[0] if trans_a else a.shape[1]
    if gemm_name() == "cublas" and K > 0:
        counters["launches"] += 1
        if _recording is None:
            cublas.sgemm(a, b, out, trans_a, trans_b)
        return
    kernel = sgemm.sgemm_kernel(trans_a, trans_b)
    splits, k_slice = sgemm.k_slices(M, N, K)
    if splits == 1:
        target = out.reshape(1, M, N)
    else:
        target = _split_workspace(splits * M * N)[:splits * M * N].reshape(splits, M, N)
    counters["launches"] += 1
    if _recording is not None:
        _record(kernel.py_func, (a, b, target, M, N, K, k_slice))
    elif M and N:
        grid, threads = sgemm.launch_config(M, N, splits)
        kernel[grid, threads](a, b, target, M, N, K, k_slice)
    if splits > 1:
        _sum_splits(out.reshape(-1), target.reshape(splits, M * N))


def _sum_splits(out: Any, parts: Any) -> None:
    counters["launches"] += 1
    if _recording is not None:
        _record(sgemm.sum_splits.py_func, (out, parts))
        return
    sgemm.sum_splits[_blocks(out.size), THREADS_PER_BLOCK](out, parts)


# --- convolution ---------------------------------------------------------------------------


def conv_workspace(N: int, C: int, K: int, F: int, OH: int, OW: int) -> dict[str, tuple]:
    """Shapes of the buffers of :func:`conv_forward` and :func:`conv_backward`: the
    batch's im2col columns (C·F·F × N·OH·OW) and the GEMM output (K × N·OH·OW)."""
    return {"cols": (C * F * F, N * OH * OW), "out": (K, N * OH * OW)}


def conv_forward(x: Any, H: int, W: int, w2: Any, b: Any, y: Any, ws: dict[str, Any], F: int,
                 S: int, P: int, OH: int, OW: int, relu: int) -> None:
    """y (N×K×OH×OW, passed flat) = the convolution of x (N×C×H×W, passed as N×C×(H·W))
    with w2 (K × C·F·F) plus b, then ReLU when ``relu``: im2col, one GEMM, the bias/ReLU
    reorder over the whole batch (``whole_batch.py``; the CPU backend runs the same bodies
    a chunk of images at a time)."""
    whole_batch.forward(sys.modules[__name__], x, H, W, w2, b, y, ws["cols"], ws["out"], F, S,
                        P, OH, OW, relu)


def conv_backward(x: Any, H: int, W: int, w2: Any, y: Any, dy: Any, dw2: Any, db: Any,
                  dx: Any, ws: dict[str, Any], F: int, S: int, P: int, OH: int, OW: int,
                  relu: int) -> None:
    """dw2, db and, unless it is None, dx from dy (y and dy passed flat, x and dx as
    N×C×(H·W)); ws["cols"] holds the forward pass's columns and is overwritten by the
    input gradient's columns when dx is computed."""
    whole_batch.backward(sys.modules[__name__], x, H, W, w2, y, dy, dw2, db, dx, ws["cols"],
                         ws["out"], F, S, P, OH, OW, relu)


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


if not config.ENABLE_CUDASIM:  # inlined into the kernels like the bodies (typed there)
    block_sum = njit(inline="always")(block_sum)



@grid_stride_spans
def im2col(n, L, cols, x, H, W, F, S, P, OH, OW):
    for i in range(cuda.grid(1), n * L, cuda.gridsize(1)):
        t, lo = index.split(i, L)
        conv.im2col_at(t, lo, lo + 1, cols, x, H, W, F, S, P, OH, OW)

@grid_stride_spans
def col2im(n, L, dx, dcols, H, W, F, S, P, OH, OW):
    for i in range(cuda.grid(1), n * L, cuda.gridsize(1)):
        t, lo = index.split(i, L)
        conv.col2im_at(t, lo, lo + 1, dx, dcols, H, W, F, S, P, OH, OW)

@grid_stride_spans
def gemm_to_nchw(n, L, y, out, b, K, P, relu):
    for i in range(cuda.grid(1), n * L, cuda.gridsize(1)):
        t, lo = index.split(i, L)
        conv.gemm_to_nchw_at(t, lo, lo + 1, y, out, b, K, P, relu)

@grid_stride_spans
def nchw_to_gemm(n, L, dy2, dy, y, K, P, relu):
    for i in range(cuda.grid(1), n * L, cuda.gridsize(1)):
        t, lo = index.split(i, L)
        conv.nchw_to_gemm_at(t, lo, lo + 1, dy2, dy, y, K, P, relu)

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
def max_pool_forward(n, L, y, argmax, x, F, S):
    for i in range(cuda.grid(1), n * L, cuda.gridsize(1)):
        t, lo = index.split(i, L)
        pool.max_pool_forward_at(t, lo, lo + 1, y, argmax, x, F, S)

@grid_stride_spans
def max_pool_backward(n, L, dx, dy, argmax, F, S):
    for i in range(cuda.grid(1), n * L, cuda.gridsize(1)):
        t, lo = index.split(i, L)
        pool.max_pool_backward_at(t, lo, lo + 1, dx, dy, argmax, F, S)

@grid_stride_spans
def avg_pool_forward(n, L, y, x, F, S):
    for i in range(cuda.grid(1), n * L, cuda.gridsize(1)):
        t, lo = index.split(i, L)
        pool.avg_pool_forward_at(t, lo, lo + 1, y, x, F, S)

@grid_stride_spans
def avg_pool_backward(n, L, dx, dy, F, S):
    for i in range(cuda.grid(1), n * L, cuda.gridsize(1)):
        t, lo = index.split(i, L)
        pool.avg_pool_backward_at(t, lo, lo + 1, dx, dy, F, S)

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

@grid_stride
def softmax_cross_entropy_forward(n, probs, losses, logits, labels):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        loss.softmax_cross_entropy_forward_at(i, probs, losses, logits, labels)

@grid_stride
def softmax_cross_entropy_backward(n, dlogits, probs, labels, inv_n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        loss.softmax_cross_entropy_backward_at(i, dlogits, probs, labels, inv_n)

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
