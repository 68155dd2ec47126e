"""cuBLAS SGEMM through CuPy: the GPU's counterpart of numpy's BLAS on the CPU.

CuPy (``pip install 'numbacnn[cuda]'``, package ``cupy-cuda13x``) is used only for its
cuBLAS binding and handle; the matrices stay numba device arrays and are passed as raw
device pointers (zero-copy, the same memory CUDA Array Interface would expose). Both
libraries use the CUDA primary context and the legacy default stream, so cuBLAS calls
are ordered with numba's kernels without any synchronization.

Row-major C (M × N) = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ, so cuBLAS is
called with the operands swapped and each leading dimension equal to the row length
of the row-major array.

Precision: true FP32 by default (``CUBLAS_DEFAULT_MATH`` never uses TF32 for SGEMM).
:func:`set_tf32` switches on TF32 tensor cores (10-bit mantissa inputs, FP32
accumulation): faster, and labelled as such wherever results are reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numbacnn.backends.launch import device_pointer

CUBLAS_DEFAULT_MATH = 0
CUBLAS_TF32_TENSOR_OP_MATH = 3  # cublasMath_t; not exported by every CuPy version

_ONE = np.ones(1, np.float32)  # host scalars: cuBLAS's default pointer mode is host
_ZERO = np.zeros(1, np.float32)
_state: dict[str, Any] = {"handle": None, "tf32": False, "mode_set": None}


def unavailable_reason() -> str | None:
    """Why cuBLAS through CuPy cannot be used here, or None when it can."""
    try:
        import cupy  # noqa: F401
        from cupy.cuda import cublas  # noqa: F401
    except Exception as exc:  # ImportError, or a CuPy built for another CUDA
        return f"CuPy is not usable ({type(exc).__name__}: {exc}); pip install cupy-cuda13x"
    return None


def set_tf32(enabled: bool) -> None:
    """Let SGEMM use TF32 tensor cores (True) or keep true FP32 (False, the default)."""
    _state["tf32"] = bool(enabled)


def tf32_enabled() -> bool:
    return bool(_state["tf32"])


def _handle() -> Any:
    from cupy.cuda import cublas, device

    handle = _state["handle"]
    if handle is None:
        handle = _state["handle"] = device.get_cublas_handle()
    mode = CUBLAS_TF32_TENSOR_OP_MATH if _state["tf32"] else CUBLAS_DEFAULT_MATH
    if _state["mode_set"] != mode:
        cublas.setMathMode(handle, mode)
        _state["mode_set"] = mode
    return handle


def sgemm(a: Any, b: Any, out: Any, trans_a: bool, trans_b: bool) -> None:
    """out (M × N) = op(a) @ op(b) for C-contiguous float32 numba device arrays."""
    from cupy.cuda import cublas

    M, N = out.shape
    K = a.shape[0] if trans_a else a.shape[1]
    if M == 0 or N == 0:
        return
    cublas.sgemm(_handle(), int(trans_b), int(trans_a), N, M, K, _ONE.ctypes.data,
                 device_pointer(b), b.shape[1], device_pointer(a), a.shape[1], _ZERO.ctypes.data,
                 device_pointer(out), N)


def sgemm_strided_batched(a: Any, b: Any, out: Any, trans_a: bool, trans_b: bool) -> None:
    """out[i] (M × N) = op(a[i]) @ op(b[i]) for every i of the leading axis, one
    ``cublasSgemmStridedBatched`` call; a, b, out C-contiguous 3-D float32 device arrays."""
    from cupy.cuda import cublas

    batch, M, N = out.shape
    K = a.shape[1] if trans_a else a.shape[2]
    if batch == 0 or M == 0 or N == 0:
        return
    cublas.sgemmStridedBatched(_handle(), int(trans_b), int(trans_a), N, M, K, _ONE.ctypes.data,
                               device_pointer(b), b.shape[2], b.shape[1] * b.shape[2],
                               device_pointer(a), a.shape[2], a.shape[1] * a.shape[2],
                               _ZERO.ctypes.data, device_pointer(out), N, M * N, batch)
