"""The CUDA backend's memory: device allocations, host↔device copies, events.

Every allocation and copy is counted (``cuda_dry_run.counters``); in a dry run an
allocation is a host :class:`~numbacnn.backends.cuda_dry_run.DryArray` and a copy
copies nothing to a GPU. Under numba's CUDA simulator pinned memory and events are
plain host memory and no-ops.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import config, cuda

from numbacnn.backends import cuda_dry_run as dry
from numbacnn.backends.cuda_dry_run import DryArray, counters
from numbacnn.errors import DeviceError


def empty(shape: tuple[int, ...], dtype: type = np.float32) -> Any:
    """An uninitialized device array (a host array inside :func:`dry_run`)."""
    counters["allocations"] += 1
    if dry.active():
        return np.empty(shape, dtype=dtype).view(DryArray)
    return cuda.device_array(shape, dtype=dtype)


def to_device(a: np.ndarray) -> Any:
    """Copy a host array to the GPU as a C-contiguous array; float64 → float32."""
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    a = np.ascontiguousarray(a)
    counters["allocations"] += 1
    counters["h2d_copies"] += 1
    if dry.active():
        return a.copy().view(DryArray)
    return cuda.to_device(a)


def to_host(a: Any) -> np.ndarray:
    if hasattr(a, "copy_to_host"):
        counters["d2h_copies"] += 1
        return a.copy_to_host()
    return np.asarray(a)


def pinned_empty(shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    """Page-locked host memory: uploads from it are DMA transfers with no staging copy."""
    if dry.active() or config.ENABLE_CUDASIM:
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
    if not dry.active():
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
    if not dry.active():
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
    if dry.active() or config.ENABLE_CUDASIM:
        return _NoEvent()
    return cuda.event(timing=False)


def synchronize() -> None:
    """Wait until every queued kernel has finished (for timing)."""
    if not dry.active():
        cuda.synchronize()
