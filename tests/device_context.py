"""Context managers that choose where tests run; none sets a device for the process (the
library has no such setting: a network owns its device).

    with cpu_only():      # "auto" resolves to the CPU even where there is a GPU
        net = Network.from_spec(spec).initialize(0)
    with dry_cuda(gemm="numba") as records:
        net = Network.from_spec(spec, device="cuda").initialize(0)  # no GPU needed

The autouse fixtures of ``tests/conftest.py`` run every test module in :func:`cpu_only`
(unless it sets ``DEVICE = "cuda"``). In :func:`dry_cuda` device "cuda"
resolves without a GPU (``numbacnn.device.resolve_device`` accepts it during the CUDA
backend's dry run), every launch is recorded in ``records`` and counted
(``numbacnn.backends.cuda.counters``) instead of run, and the GEMM is ``gemm``; the
GEMM choice before it is restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

import numbacnn.device

ON_THE_CPU = ("the tests run on the CPU (tests/device_context.py); a test module of the "
              "CUDA backend sets DEVICE = 'cuda'")
REAL_CUDA_UNAVAILABLE_REASON = numbacnn.device.cuda_unavailable_reason


@contextlib.contextmanager
def cpu_only() -> Iterator[None]:
    """CUDA reported unavailable: "auto" resolves to "cpu", "cuda" is refused."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(numbacnn.device, "cuda_unavailable_reason", lambda: ON_THE_CPU)
        yield


@contextlib.contextmanager
def dry_cuda(gemm: str = "cublas") -> Iterator[list]:
    """The CUDA backend's dry run with ``gemm`` ("cublas" or "numba") as the GEMM."""
    from numbacnn.backends import cuda

    with cuda.dry_run() as records, cuda.using_gemm(gemm, check=False):
        yield records
