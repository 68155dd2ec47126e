"""numpy's own BLAS SGEMM as a C function the CPU drivers call from inside numba.

The blocked convolution of ``cpu_conv.py`` multiplies one cache-sized chunk of images at a
time on each core, inside a ``prange`` loop, so it needs SGEMM without Python. numpy
links a CBLAS (its bundled OpenBLAS, ``scipy_cblas_sgemm64_`` with 64-bit integers, or
a system OpenBLAS or MKL with ``cblas_sgemm``); threadpoolctl names the library file,
ctypes finds the function in it, and numba calls the ctypes function object passed to
a driver as an argument (an argument, not a global, so the driver still goes to
numba's on-disk cache). Where no such function is found, :func:`sgemm` is None and the
convolution falls back to im2col over the whole batch and one ``gemm`` call.

The caller keeps BLAS on one thread while the drivers run (:func:`one_blas_thread`):
each core makes its own calls.
"""

from __future__ import annotations

import ctypes
import functools
import os
from contextlib import AbstractContextManager
from typing import Any

import threadpoolctl

ROW_MAJOR = 101  # CBLAS_ORDER / CBLAS_TRANSPOSE values of every CBLAS
NO_TRANS = 111
TRANS = 112

# (symbol, width of its integer arguments in bits), tried in this order
_SYMBOLS = (("scipy_cblas_sgemm64_", 64), ("cblas_sgemm64_", 64), ("scipy_cblas_sgemm", 32),
            ("cblas_sgemm", 32))


def _libraries() -> list[str]:
    """Paths of the BLAS libraries loaded in this process, numpy's first."""
    import numpy as np

    paths = [info["filepath"] for info in threadpoolctl.threadpool_info()
             if info.get("user_api") == "blas"]
    numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
    return sorted(paths, key=lambda p: not p.startswith(numpy_dir))


@functools.cache
def sgemm() -> Any:
    """``cblas_sgemm`` as a ctypes function numba can call, or None (then numbacnn uses
    ``np.matmul``). ``NUMBACNN_BLOCKED_CONV=0`` turns it off."""
    if os.environ.get("NUMBACNN_BLOCKED_CONV", "1").strip() == "0":
        return None
    try:
        libraries = _libraries()
    except Exception:  # threadpoolctl could not inspect the process
        return None
    for path in libraries:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol, bits in _SYMBOLS:
            address = getattr(lib, symbol, None)
            if address is None:
                continue
            i, n = ctypes.c_int, ctypes.c_int64 if bits == 64 else ctypes.c_int32
            f, p = ctypes.c_float, ctypes.c_void_p
            proto = ctypes.CFUNCTYPE(None, i, i, i, n, n, n, f, p, n, p, n, f, p, n)
            function = proto(ctypes.cast(address, ctypes.c_void_p).value)
            if _works(function):
                return function
    return None


def _works(function: Any) -> bool:
    """Whether ``function`` multiplies a small product right (a wrong guess of its
    integer width would not)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 5), dtype=np.float32)
    b = rng.standard_normal((5, 4), dtype=np.float32)
    c = np.full((3, 4), np.nan, np.float32)
    function(ROW_MAJOR, NO_TRANS, NO_TRANS, 3, 4, 5, 1.0, a.ctypes.data, 5, b.ctypes.data, 4,
             0.0, c.ctypes.data, 4)
    return bool(np.allclose(c, a @ b, rtol=1e-5, atol=1e-5))


_blas_controller: threadpoolctl.ThreadpoolController | None = None


def one_blas_thread() -> AbstractContextManager[object]:
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
