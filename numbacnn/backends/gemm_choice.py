"""Which matrix product the CUDA backend runs, and in what precision.

cuBLAS through CuPy (``cublas.py``) when CuPy is installed, else the numba SGEMM of
``sgemm.py``; ``NUMBACNN_GEMM=cublas|numba`` chooses, and :func:`set_gemm` (or the
:func:`using_gemm` block) changes it later. cuBLAS may use TF32 tensor cores
(:func:`set_tf32`); the numba SGEMM is always FP32. The CUDA backend's ``gemm`` driver
asks :func:`gemm_name` on every call.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from numba import config

from numbacnn.backends import cublas
from numbacnn.errors import DeviceError

GEMM_CHOICES = ("cublas", "numba")
_gemm_impl: list[str] = []  # resolved on first use


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


def gemm_label() -> str:
    """The GEMM in use, for benchmark reports: "cuBLAS" or "numbacnn SGEMM"."""
    return "cuBLAS" if gemm_name() == "cublas" else "numbacnn SGEMM"


def set_gemm(name: str, check: bool = True) -> None:
    """Use cuBLAS ("cublas") or the numba SGEMM ("numba") from now on (``check``: that
    CuPy is usable; a dry run needs no GPU and may skip it)."""
    if name not in GEMM_CHOICES:
        raise DeviceError(f"unknown GEMM {name!r}: choose cublas or numba")
    if check and name == "cublas" and cublas.unavailable_reason() is not None:
        raise DeviceError(f"GEMM cublas asked for but {cublas.unavailable_reason()}")
    _gemm_impl[:] = [name]


@contextlib.contextmanager
def using_gemm(name: str, check: bool = True) -> Iterator[None]:
    """:func:`set_gemm` for the duration of a ``with`` block; the GEMM before it after."""
    before = list(_gemm_impl)
    set_gemm(name, check)
    try:
        yield
    finally:
        _gemm_impl[:] = before
