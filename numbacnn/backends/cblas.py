"""The BLAS SGEMM the CPU drivers call from inside numba: Intel MKL's when the ``mkl``
wheel is installed (``pip install -e ".[mkl]"``), else numpy's own.

The blocked convolution of ``cpu_conv.py`` multiplies one cache-sized chunk of images at a
time on each core, inside a ``prange`` loop, so it needs SGEMM without Python. numpy
links a CBLAS (its bundled OpenBLAS, ``scipy_cblas_sgemm64_`` with 64-bit integers, or
a system OpenBLAS or MKL with ``cblas_sgemm``); threadpoolctl names the library file,
ctypes finds the function in it, and numba calls the ctypes function object passed to
a driver as an argument (an argument, not a global, so the driver still goes to
numba's on-disk cache). Where no such function is found, :func:`sgemm` is None and the
convolution falls back to im2col over the whole batch and one ``gemm`` call.

MKL's SGEMM is 1.2–1.9× OpenBLAS's on one core of an AVX-512 Xeon for the products of
fmnist and AlexNet (bench/RESULTS.md, 2026-12-06): it is taken from the ``mkl`` wheel's
``libmkl_rt`` in its sequential threading layer (one thread per call, as the drivers
want). ``NUMBACNN_BLAS=numpy`` keeps numpy's BLAS, ``NUMBACNN_BLAS=mkl`` insists on
MKL; the default ``auto`` takes MKL where it is installed.

The caller keeps BLAS on one thread while the drivers run (:func:`one_blas_thread`):
each core makes its own calls.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import site
import sys
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import threadpoolctl

from numbacnn.errors import DeviceError

ROW_MAJOR = 101  # CBLAS_ORDER / CBLAS_TRANSPOSE values of every CBLAS
NO_TRANS = 111
TRANS = 112

# (symbol, width of its integer arguments in bits), tried in this order
_SYMBOLS = (("scipy_cblas_sgemm64_", 64), ("cblas_sgemm64_", 64), ("scipy_cblas_sgemm", 32),
            ("cblas_sgemm", 32))


MKL_THREADING_SEQUENTIAL = 1  # MKL_Set_Threading_Layer's value for "no threads of its own"


def blas_choice() -> str:
    """``NUMBACNN_BLAS``: "auto" (MKL where installed), "mkl" or "numpy"."""
    choice = os.environ.get("NUMBACNN_BLAS", "auto").strip().lower() or "auto"
    if choice not in ("auto", "mkl", "numpy"):
        raise DeviceError(f"NUMBACNN_BLAS={choice!r}: use auto, mkl or numpy")
    return choice


def mkl_library() -> str | None:
    """Path of the ``mkl`` wheel's ``libmkl_rt`` (pip puts it in the environment's
    ``lib``, the base installation's under a venv, or the user base's), or None where
    it is not installed."""
    names = ("libmkl_rt.so.*", "libmkl_rt.so", "libmkl_rt.*.dylib", "mkl_rt.*.dll")
    roots = dict.fromkeys([sys.prefix, sys.base_prefix, getattr(site, "USER_BASE", None) or ""])
    for root in roots:
        for folder in (os.path.join(root, "lib"), os.path.join(root, "Library", "bin")):
            for name in names:
                found = sorted(glob.glob(os.path.join(folder, name)))
                if found:
                    return found[-1]
    return None


@functools.cache
def _mkl() -> ctypes.CDLL | None:
    """libmkl_rt, loaded with its sequential threading layer, or None."""
    path = mkl_library()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
        lib.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]
        lib.MKL_Set_Threading_Layer(MKL_THREADING_SEQUENTIAL)
    except (OSError, AttributeError):
        return None
    return lib


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
    choice = blas_choice()
    if choice in ("auto", "mkl"):
        function = library_sgemm("mkl")
        if function is None and choice == "mkl":
            raise DeviceError("NUMBACNN_BLAS=mkl but MKL is not installed: "
                               "pip install mkl (or unset NUMBACNN_BLAS)")
        if function is not None:
            return function
    return library_sgemm("numpy")


def library_sgemm(library: str) -> Any:
    """The ``cblas_sgemm`` of ``library`` ("mkl": the mkl wheel's; "numpy": numpy's BLAS)
    as a ctypes function, or None where it has none (:func:`sgemm` picks one of them)."""
    candidates: list[ctypes.CDLL] = []
    if library == "mkl":
        mkl = _mkl()
        candidates = [mkl] if mkl is not None else []
    else:
        try:
            paths = _libraries()
        except Exception:  # threadpoolctl could not inspect the process
            return None
        for path in paths:
            try:
                candidates.append(ctypes.CDLL(path))
            except OSError:
                continue
    for lib in candidates:
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
    if _mkl_sgemm():  # numpy's BLAS is not called between products: nothing spins
        return nullcontext()
    if _blas_controller is None:
        _blas_controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
    return _blas_controller.limit(limits=1)


@functools.cache
def _mkl_sgemm() -> bool:
    """Whether :func:`sgemm` is MKL's (sequential: no threads of its own)."""
    function = sgemm()
    mkl = _mkl() if function is not None and blas_choice() != "numpy" else None
    return mkl is not None and ctypes.cast(function, ctypes.c_void_p).value == ctypes.cast(
        mkl.cblas_sgemm, ctypes.c_void_p).value


def name() -> str:
    """Which SGEMM the CPU drivers call, for benchmark reports: "MKL 2026.2",
    "OpenBLAS 0.3.31 (SkylakeX)", or "numpy matmul" where no CBLAS function is used."""
    function = sgemm()
    if function is None:
        return "numpy matmul"
    if _mkl_sgemm():
        mkl = _mkl()
        version = ctypes.create_string_buffer(256)
        mkl.MKL_Get_Version_String(version, 256)
        words = version.value.decode(errors="replace").split()
        number = next((w for w in words if w[:1].isdigit()), "").split("-")[0]
        return f"MKL {number}".strip()
    infos = [info for info in threadpoolctl.threadpool_info() if info.get("user_api") == "blas"]
    if not infos:
        return "CBLAS"
    info = infos[0]
    library = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS"}.get(
        info.get("internal_api", ""), "BLAS")
    return f"{library} {info.get('version', '')} ({info.get('architecture', '?')})"
