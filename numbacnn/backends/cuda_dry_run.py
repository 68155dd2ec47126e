"""The CUDA backend's instrumentation: a dry run, and counters of what a step costs.

In :func:`dry_run` every kernel launch is recorded as (Python kernel function, numba
argument types) instead of run, device allocations return host arrays
(:class:`DryArray`), copies copy nothing, and nothing is computed: no GPU is needed.
The tests compile each recorded kernel to PTX with ``numba.cuda.compile_ptx``
(``tests/test_cuda_ptx.py``), and ``bench/traffic.py`` counts a training step's
traffic. :data:`counters` counts launches, host↔device copies and device allocations,
in a dry run and out of it. While a dry run is on, ``numbacnn.device.resolve_device``
accepts "cuda" without a GPU.

This module imports neither numba nor the CUDA backend (``numbacnn.device`` asks it
whether a dry run is on).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

Record = tuple[Callable, tuple]
_recording: list[Record] | None = None
counters = {"launches": 0, "h2d_copies": 0, "d2h_copies": 0, "allocations": 0}


def active() -> bool:
    """Whether a :func:`dry_run` is on (launches are recorded, not run)."""
    return _recording is not None


def reset_counters() -> dict[str, int]:
    """Zero :data:`counters`; returns the counts before."""
    before = dict(counters)
    for key in counters:
        counters[key] = 0
    return before


@contextlib.contextmanager
def dry_run() -> Iterator[list[Record]]:
    """Record (python kernel, numba argument types) for each launch instead of running it.

    Inside the block, allocations return host numpy arrays and nothing is computed.
    """
    global _recording
    _recording = []
    try:
        yield _recording
    finally:
        _recording = None


class DryArray(np.ndarray):
    """A host array that stands in for a device array during :func:`dry_run`, so code
    that tells device arrays from host arrays takes its device path."""

    def copy_to_host(self) -> np.ndarray:
        return np.asarray(self).copy()

    def copy_to_device(self, host: np.ndarray, stream: Any = 0) -> None:
        pass  # nothing is computed in a dry run

    def is_c_contiguous(self) -> bool:
        return bool(self.flags.c_contiguous)


def record(py_func: Callable, args: tuple) -> None:
    """Note a launch of ``py_func`` with ``args`` (called only during a dry run)."""
    from numba import typeof

    assert _recording is not None
    _recording.append((py_func, tuple(typeof(a) for a in args)))
