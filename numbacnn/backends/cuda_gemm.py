"""The CUDA backend's matrix product: out = op(a) @ op(b) with cuBLAS through CuPy
(``cublas.py``) or the numba SGEMM of ``sgemm.py`` with split-K, as ``gemm_choice.py``
picks (``NUMBACNN_GEMM=cublas|numba``). Re-exported by ``cuda.py``."""

from __future__ import annotations

from typing import Any

from numbacnn.backends import cublas, sgemm
from numbacnn.backends import cuda_dry_run as dry
from numbacnn.backends.cuda_dry_run import counters
from numbacnn.backends.cuda_grid import THREADS_PER_BLOCK, blocks
from numbacnn.backends.cuda_memory import empty
from numbacnn.backends.gemm_choice import gemm_name

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
        if not dry.active():
            cublas.sgemm(a, b, out, trans_a, trans_b)
        return
    kernel = sgemm.sgemm_kernel(trans_a, trans_b)
    splits, k_slice = sgemm.k_slices(M, N, K)
    if splits == 1:
        target = out.reshape(1, M, N)
    else:
        target = _split_workspace(splits * M * N)[:splits * M * N].reshape(splits, M, N)
    counters["launches"] += 1
    if dry.active():
        dry.record(kernel.py_func, (a, b, target, M, N, K, k_slice))
    elif M and N:
        grid, threads = sgemm.launch_config(M, N, splits)
        kernel[grid, threads](a, b, target, M, N, K, k_slice)
    if splits > 1:
        _sum_splits(out.reshape(-1), target.reshape(splits, M * N))


def _sum_splits(out: Any, parts: Any) -> None:
    counters["launches"] += 1
    if dry.active():
        dry.record(sgemm.sum_splits.py_func, (out, parts))
        return
    sgemm.sum_splits[blocks(out.size), THREADS_PER_BLOCK](out, parts)
