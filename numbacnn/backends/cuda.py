"""CUDA backend: each kernel body becomes a grid-stride ``@cuda.jit`` kernel.

Every driver has the signature ``name(n, *args)`` like its twin in ``cpu.py`` and
runs body ``name_at(i, *args)`` for i in 0 … n−1, thread t taking i = t, t + T,
t + 2T … (T threads in the grid). numba-cuda compiles the ``@njit`` bodies as
device functions, so no body is written twice. The matrix product is the tiled
SGEMM kernel of ``numbacnn/backends/sgemm.py``.

Under ``NUMBA_ENABLE_CUDASIM=1`` kernels run as Python, so they call the bodies'
Python functions. :func:`dry_run` records every launch (kernel and argument types)
instead of running it, on host arrays: the tests compile each recorded kernel to
PTX with ``numba.cuda.compile_ptx`` and need no GPU for that.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
from numba import config, cuda, typeof

from numbacnn.backends.sgemm import launch_config, sgemm_kernel
from numbacnn.kernels import conv, dropout, elementwise, loss, lrn, maxout, optim, pool, reduce

name = "cuda"
THREADS_PER_BLOCK = 256
MAX_BLOCKS = 65536

if config.ENABLE_CUDASIM:  # the simulator runs kernels as Python: call the bodies' Python source

    def _python_bodies(module: Any) -> SimpleNamespace:
        return SimpleNamespace(**{k: getattr(v, "py_func", v) for k, v in vars(module).items()})

    conv, dropout, elementwise, loss, lrn, maxout, optim, pool, reduce = map(  # noqa: F811
        _python_bodies, (conv, dropout, elementwise, loss, lrn, maxout, optim, pool, reduce))

_recording: list[tuple[Callable, tuple]] | None = None


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


def _record(py_func: Callable, args: tuple) -> None:
    assert _recording is not None
    _recording.append((py_func, tuple(typeof(a) for a in args)))


def grid_stride(fn: Callable) -> Callable:
    """Compile ``fn(n, *args)`` as a CUDA kernel; return a launcher ``launch(n, *args)``.

    The launcher picks ⌈n / 256⌉ blocks of 256 threads (at most 65,536 blocks; the
    grid-stride loop covers the rest). ``launch.py_func`` is ``fn`` for compile_ptx.
    """
    kernel = cuda.jit(fastmath=True)(fn)

    def launch(n: int, *args: Any) -> None:
        if _recording is not None:
            _record(fn, (n, *args))
            return
        if n > 0:
            blocks = min(MAX_BLOCKS, (n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK)
            kernel[blocks, THREADS_PER_BLOCK](n, *args)

    launch.py_func = fn
    launch.__name__ = fn.__name__
    launch.__doc__ = f"Grid-stride CUDA launch of body {fn.__name__}_at over n elements."
    return launch


def empty(shape: tuple[int, ...], dtype: type = np.float32) -> Any:
    """An uninitialized device array (a host array inside :func:`dry_run`)."""
    if _recording is not None:
        return np.empty(shape, dtype=dtype)
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
    if _recording is not None:
        return a
    return cuda.to_device(a)


def to_host(a: Any) -> np.ndarray:
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


def synchronize() -> None:
    """Wait until every queued kernel has finished (for timing)."""
    if _recording is None:
        cuda.synchronize()


def gemm(a: Any, b: Any, out: Any, trans_a: bool = False, trans_b: bool = False) -> None:
    """out (M × N) = op(a) @ op(b) with the tiled SGEMM kernel."""
    M, N = out.shape
    K = a.shape[0] if trans_a else a.shape[1]
    kernel = sgemm_kernel(trans_a, trans_b)
    if _recording is not None:
        _record(kernel.py_func, (a, b, out, M, N, K))
        return
    blocks, threads = launch_config(M, N)
    kernel[blocks, threads](a, b, out, M, N, K)


@grid_stride
def im2col(n, cols, x, F, S, P, OH, OW):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        conv.im2col_at(i, cols, x, F, S, P, OH, OW)

@grid_stride
def col2im(n, dx, dcols, F, S, P, OH, OW):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        conv.col2im_at(i, dx, dcols, F, S, P, OH, OW)

@grid_stride
def gemm_to_nchw(n, y, out, b, K, P, relu):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        conv.gemm_to_nchw_at(i, y, out, b, K, P, relu)

@grid_stride
def nchw_to_gemm(n, dy2, dy, y, K, P, relu):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        conv.nchw_to_gemm_at(i, dy2, dy, y, K, P, relu)

@grid_stride
def row_sum(n, out, m):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        reduce.row_sum_at(i, out, m)

@grid_stride
def col_sum(n, out, m):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        reduce.col_sum_at(i, out, m)

@grid_stride
def max_pool_forward(n, y, argmax, x, F, S):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        pool.max_pool_forward_at(i, y, argmax, x, F, S)

@grid_stride
def max_pool_backward(n, dx, dy, argmax, F, S):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        pool.max_pool_backward_at(i, dx, dy, argmax, F, S)

@grid_stride
def avg_pool_forward(n, y, x, F, S):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        pool.avg_pool_forward_at(i, y, x, F, S)

@grid_stride
def avg_pool_backward(n, dx, dy, F, S):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        pool.avg_pool_backward_at(i, dx, dy, F, S)

@grid_stride
def lrn_forward(n, y, scale, x, size, alpha_n, beta, k):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        lrn.lrn_forward_at(i, y, scale, x, size, alpha_n, beta, k)

@grid_stride
def lrn_backward(n, dx, dy, x, y, scale, size, alpha_n, beta):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        lrn.lrn_backward_at(i, dx, dy, x, y, scale, size, alpha_n, beta)

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
def maxout_forward(n, y, which, x, pieces):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        maxout.maxout_forward_at(i, y, which, x, pieces)

@grid_stride
def maxout_backward(n, dx, dy, which, pieces):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        maxout.maxout_backward_at(i, dx, dy, which, pieces)

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
