"""Every CUDA kernel compiles to PTX for sm_90 and computes in float32 only (no GPU needed).

Inside ``numbacnn.backends.cuda.dry_run()`` with the dispatcher forced to "cuda", the
forward and backward passes of every layer type, the loss, both optimizers, ``zeros``
(fill) and the four SGEMM transposes run on host arrays and record each launch as
(kernel function, numba argument types). Each distinct pair is compiled with
``numba.cuda.compile_ptx(..., cc=(9, 0))`` and its PTX must hold no ``.f64``: a bare
Python float in a kernel body silently makes the GPU compute in double precision.
Every driver of the CUDA backend must have been recorded, so a new kernel cannot
escape the check.
"""

from __future__ import annotations

import itertools
import os
import time
import warnings
from collections.abc import Callable

import numpy as np
import pytest

import numbacnn.device

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("NUMBA_ENABLE_CUDASIM")),
    reason="the CUDA simulator has no NVVM: PTX is compiled in a run without NUMBA_ENABLE_CUDASIM")

CC = (9, 0)


def ptx_unavailable_reason() -> str | None:
    """Why compile_ptx cannot run here (numba-cuda or its NVVM missing), or None."""
    try:
        import numba_cuda  # noqa: F401
        from numba import cuda, types
        from numba.cuda.cudadrv.error import CudaSupportError, NvvmError, NvvmSupportError
    except ImportError as exc:
        return f"numba-cuda is not installed ({exc})"

    def probe(out):
        out[0] = out[0] + np.float32(1.0)

    try:
        cuda.compile_ptx(probe, (types.float32[::1],), cc=CC)
    except (NvvmSupportError, NvvmError, CudaSupportError, OSError) as exc:
        return f"NVVM is not available to numba-cuda ({type(exc).__name__}: {exc})"
    return None


Record = tuple[Callable, tuple]


def drive_every_kernel() -> list[Record]:
    """Run all layers, the loss, SGD, Adam and the four GEMMs under dry_run on "cuda"."""
    from numbacnn.backends import cuda as cuda_backend
    from numbacnn.layers import (
        ELU,
        LRN,
        AvgPool2D,
        Conv2D,
        Dense,
        Dropout,
        Flatten,
        LeakyReLU,
        Maxout,
        MaxPool2D,
        ReLU,
        Sigmoid,
        Tanh,
    )
    from numbacnn.network import Network
    from numbacnn.optim import SGD, Adam

    rng = np.random.default_rng(0)
    with pytest.MonkeyPatch.context() as mp, cuda_backend.dry_run() as records, \
            warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # the loss reads unwritten buffers
        mp.setattr(numbacnn.device, "_current", "cuda")
        # Tanh first: the first layer's backward skips dx, the convolution's must not. The
        # ReLU after the first convolution is fused into it; the later one runs its kernels.
        layers = [Tanh(), Conv2D(4, 3, stride=2, pad=1), ReLU(), Maxout(2), LRN(3),
                  MaxPool2D(2), LeakyReLU(0.1), Conv2D(2, 1), AvgPool2D(2, 1), Sigmoid(), Tanh(),
                  ELU(), ReLU(), Dropout(0.5), Flatten(), Dense(6), Dense(3)]
        net = Network(layers, input_shape=(2, 7, 7)).initialize(seed=1)
        x = rng.standard_normal((2, 2, 7, 7)).astype(np.float32)
        net.train_step(x, np.array([0, 2]))
        for optimizer in (SGD(), Adam()):
            optimizer.step(net, 0.01)
        net.predict_proba(x)
        B = cuda_backend
        for trans_a, trans_b in itertools.product((False, True), repeat=2):
            a = np.ones((3, 5) if trans_a else (5, 3), np.float32)
            b = np.ones((4, 3) if trans_b else (3, 4), np.float32)
            B.gemm(a, b, B.empty((5, 4)), trans_a=trans_a, trans_b=trans_b)
        return list(records)


@pytest.fixture(scope="module")
def records() -> list[Record]:
    reason = ptx_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return drive_every_kernel()


def expected_kernels() -> dict[Callable, str]:
    """Every kernel function of the CUDA backend: its drivers and the 4 SGEMM variants."""
    from numbacnn.backends import cuda as cuda_backend
    from numbacnn.backends.sgemm import sgemm_kernel

    kernels = {obj.py_func: name for name, obj in vars(cuda_backend).items()
               if callable(obj) and hasattr(obj, "py_func")}
    for trans_a, trans_b in itertools.product((False, True), repeat=2):
        kernels[sgemm_kernel(trans_a, trans_b).py_func] = f"sgemm(trans_a={trans_a}, " \
                                                          f"trans_b={trans_b})"
    return kernels


def test_every_cuda_driver_is_recorded(records: list[Record]):
    """The dry run launched every kernel the CUDA backend defines (at least 35)."""
    expected = expected_kernels()
    assert len(expected) >= 35
    missing = sorted(name for fn, name in expected.items()
                     if fn not in {fn for fn, _ in records})
    assert not missing, f"kernels never launched by the dry run: {missing}"


def test_every_kernel_compiles_to_ptx_without_f64(records: list[Record]):
    """compile_ptx for sm_90 succeeds for each distinct (kernel, types) and uses no .f64."""
    from numba import cuda

    names = expected_kernels()
    failures = []
    started = time.perf_counter()
    distinct = dict.fromkeys(records)  # dedupe, keep the order of first launch
    for fn, argtypes in distinct:
        label = f"{names.get(fn, fn.__name__)}{argtypes}"
        try:
            ptx, _ = cuda.compile_ptx(fn, argtypes, cc=CC, fastmath=True)
        except Exception as exc:  # report every kernel, not just the first failure
            failures.append(f"{label}: does not compile: {type(exc).__name__}: {exc}")
            continue
        f64 = [line.strip() for line in ptx.splitlines() if ".f64" in line]
        if f64:
            failures.append(f"{label}: {len(f64)} float64 PTX lines, e.g. {f64[:3]}")
    elapsed = time.perf_counter() - started
    print(f"compiled {len(distinct)} kernels to PTX (cc {CC}) in {elapsed:.1f} s")
    assert len(distinct) >= 35
    assert not failures, "\n".join(failures)
