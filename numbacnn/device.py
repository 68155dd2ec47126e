"""Devices: which backend ("cpu" or "cuda") runs a network's kernels.

A :class:`~numbacnn.network.Network` owns its device: ``Network(..., device="auto")``
resolves the name once, at construction (:func:`resolve_device`; ``auto`` picks
``cuda`` when ``numba.cuda.is_available()`` and ``cpu`` otherwise), and every layer,
optimizer buffer, staging buffer and profile of that network uses the backend of that
device. There is no process-wide current device: a function that needs a backend takes
a device name (or a network). Backends are imported lazily, so importing numbacnn (or
running ``numbacnn shapes``) compiles and imports no kernel.

Like Caffe's ``Forward()`` dispatching to ``Forward_cpu``/``Forward_gpu``, a layer
asks :func:`backend` for its device's backend module and calls its drivers; the two
backend modules expose the same functions, and say what they are by capability
(``on_host``: arrays are numpy arrays in host memory), not by name.
"""

from __future__ import annotations

import importlib
import math
import os
import platform
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from numbacnn.errors import DeviceError

DEVICES = ("auto", "cpu", "cuda")


def cuda_unavailable_reason() -> str | None:
    """Why the CUDA backend cannot run here, or None when it can."""
    try:
        from numba import cuda
    except Exception as exc:  # pragma: no cover - numba is a dependency
        return f"numba.cuda cannot be imported ({exc})"
    if cuda.is_available():
        return None
    try:
        import numba_cuda  # noqa: F401
    except ImportError:
        return "numba-cuda is not installed (pip install 'numbacnn[cuda]')"
    return "no CUDA driver or NVIDIA GPU was found (numba.cuda.is_available() is False)"


def resolve_device(name: str = "auto") -> str:
    """"cpu" or "cuda" for a device name ("auto" picks); DeviceError when unusable.

    Inside the CUDA backend's dry run (``numbacnn.backends.cuda.dry_run()``, which
    records launches and needs no GPU) "cuda" is usable; "auto" still looks for a GPU.
    """
    name = name.strip().lower()
    if name not in DEVICES:
        raise DeviceError(f"unknown device {name!r}: choose one of {', '.join(DEVICES)}",
                          field="device")
    if name == "auto":
        return "cuda" if cuda_unavailable_reason() is None else "cpu"
    if name == "cuda" and not _dry_run_active():
        reason = cuda_unavailable_reason()
        if reason is not None:
            raise DeviceError(f"device 'cuda' was asked for but {reason}; use device 'cpu'",
                              field="device")
    return name


def _dry_run_active() -> bool:
    """True inside ``backends.cuda_dry_run.dry_run()`` (tests without a GPU); imported
    here, not at the top, so that building a network for its shapes imports no backend."""
    from numbacnn.backends import cuda_dry_run

    return cuda_dry_run.active()


def backend(name: str) -> ModuleType:
    """The backend module (``numbacnn.backends.cpu`` or ``.cuda``) of a resolved device
    ("cpu" or "cuda")."""
    module = _BACKENDS.get(name)  # layers ask ~50 times a step: importlib costs 4 µs
    if module is not None:
        return module
    if name not in DEVICES[1:]:
        raise DeviceError(f"no backend for device {name!r}: resolve it first "
                          "(numbacnn.device.resolve_device) to 'cpu' or 'cuda'", field="device")
    module = _BACKENDS[name] = importlib.import_module(f"numbacnn.backends.{name}")
    return module


_BACKENDS: dict[str, ModuleType] = {}


def set_tf32(enabled: bool, device: str) -> None:
    """Let ``device``'s matrix products use TF32 tensor cores (10-bit mantissa inputs,
    FP32 sums): faster, less exact, and reported as "tf32". Off by default (true FP32);
    the CPU always computes in FP32, so there it changes nothing."""
    backend(device).set_tf32(enabled)


def precision(device: str) -> str:
    """"tf32" or "fp32": how ``device``'s matrix products compute."""
    return backend(device).tf32_label()


def is_device_array(a: Any) -> bool:
    """True for a numba CUDA device array (without importing numba.cuda needlessly)."""
    return hasattr(a, "copy_to_host")


def to_device(a: Any, device: str = "cpu") -> Any:
    """Copy a host array to ``device`` ("cpu" or "cuda": give the network's, ``net.device``)
    as C-contiguous float32 (ints stay ints); a device array is returned as is.

    On the CPU this returns a contiguous numpy array (no copy when it already is one),
    which a network on any device accepts (a GPU network copies it at each call).
    """
    if is_device_array(a):
        return a
    return backend(device).to_device(np.asarray(a))


def to_host(a: Any) -> np.ndarray:
    """Copy a device array back to a numpy array; a numpy array is returned as is."""
    if is_device_array(a):
        return backend("cuda").to_host(a)  # counts the copy (bench traffic report)
    return np.asarray(a)


# ----------------------------------------------------------------------------- description


@dataclass(frozen=True)
class CpuDescription:
    """The CPU the CPU backend runs on: ``name`` as LLVM (numba's compiler) calls it (e.g.
    znver4), logical ``cores``, numba's ``threads`` and ``threading_layer``, the widest
    ``simd`` instruction set LLVM may use with its ``float32_lanes`` per vector."""

    name: str
    cores: int
    threads: int
    threading_layer: str
    simd: str
    float32_lanes: int
    numba_version: str


@dataclass(frozen=True)
class GpuDescription:
    """One CUDA GPU: its ``index`` (cuda:N), ``name``, ``compute_capability`` (major,
    minor), ``memory_bytes`` in all and ``free_bytes`` now, and ``multiprocessors`` (SMs);
    0 where the device does not say (numba's CUDA simulator)."""

    index: int
    name: str
    compute_capability: tuple[int, int]
    memory_bytes: int
    free_bytes: int
    multiprocessors: int


# The widest SIMD set first: (LLVM feature, name, float32 lanes per vector)
_SIMD = (("avx512f", "AVX-512", 16), ("avx2", "AVX2", 8), ("avx", "AVX", 8),
         ("neon", "NEON", 4))


def describe_cpu() -> CpuDescription:
    """What the CPU backend runs on (imports numba, compiles nothing)."""
    import numba
    from numba.core import config

    try:
        import llvmlite.binding as llvm

        features = llvm.get_host_cpu_features()
        simd, lanes = next(((name, lanes) for feature, name, lanes in _SIMD
                            if features.get(feature)), ("SSE", 4))
        name = str(llvm.get_host_cpu_name())
    except Exception:  # pragma: no cover - llvmlite always comes with numba
        simd, lanes, name = "unknown", 1, platform.processor() or "unknown"
    return CpuDescription(name, os.cpu_count() or 1, int(config.NUMBA_NUM_THREADS),
                          str(config.THREADING_LAYER), simd, lanes, numba.__version__)


def describe_gpus() -> list[GpuDescription]:
    """Every CUDA GPU numba sees; empty when there is none (:func:`cuda_unavailable_reason`
    says why). Creates a context on each GPU to read its free memory."""
    if cuda_unavailable_reason() is not None:
        return []
    from numba import cuda

    def count(value: float) -> int:  # numba's CUDA simulator reports infinite memory
        return int(value) if math.isfinite(value) else 0

    found = []
    for index, gpu in enumerate(cuda.gpus):
        with gpu:
            context = cuda.current_context()
            free, total = context.get_memory_info()
            d = context.device
            # the simulator's fake device has no name, id or multiprocessor count
            name = getattr(d, "name", None) or "numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
            name = name.decode() if isinstance(name, bytes) else str(name)
            major, minor = d.compute_capability
            found.append(GpuDescription(int(getattr(d, "id", index)), name,
                                        (int(major), int(minor)), count(total), count(free),
                                        int(getattr(d, "MULTIPROCESSOR_COUNT", 0))))
    return found
