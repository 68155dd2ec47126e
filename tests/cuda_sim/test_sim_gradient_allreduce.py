"""The gradient all-reduce of numbacnn/training/distributed.py on a CUDA device, both ways: staged
through page-locked host memory, and handed to a CUDA-aware MPI as the device buffer.

MPI itself is a stand-in (one communicator whose Allreduce doubles the buffer, as two
equal ranks would), so this runs in one process: in numba's CUDA simulator in CI, and on
a real GPU when bench/gpu-check.sh runs tests/cuda_sim there, where it checks pinned
host memory and real copies. tests/test_distributed.py runs both paths under mpirun with
the real MPI in the simulator (the CUDA-aware one on simulated device pointers: no
CUDA-aware MPI is at hand).
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from numba import config

from numbacnn import to_host
from numbacnn.device import is_device_array
from numbacnn.layers import Conv2D, Dense
from numbacnn.network import Network
from numbacnn.training.distributed import GradientAllreduce, World
from numbacnn.training.flat_buffers import network_layout

pytestmark = pytest.mark.skipif(
    not os.environ.get("NUMBA_ENABLE_CUDASIM"),
    reason="needs NUMBA_ENABLE_CUDASIM=1 before numba is imported; "
           "tests/test_cuda_simulator.py runs these in a subprocess")

DEVICE = "cuda"  # read by the autouse fixture of tests/conftest.py
MPI = SimpleNamespace(IN_PLACE="IN_PLACE", FLOAT="FLOAT")  # what GradientAllreduce names


class DoublingComm:
    """Allreduce(IN_PLACE, [buffer, FLOAT]) as two ranks holding the same buffer: ×2.
    Records each buffer it was handed."""

    def __init__(self) -> None:
        self.handed: list[Any] = []

    def Allreduce(self, sendbuf: Any, recvbuf: list[Any]) -> None:  # noqa: N802 - MPI's name
        assert sendbuf is MPI.IN_PLACE and recvbuf[1] is MPI.FLOAT
        buffer = recvbuf[0]
        self.handed.append(buffer)
        if is_device_array(buffer):  # what a CUDA-aware MPI does to device memory
            buffer.copy_to_device(2 * buffer.copy_to_host())
        else:
            buffer *= 2


def reduce_on(cuda_aware: bool, monkeypatch: pytest.MonkeyPatch
              ) -> tuple[GradientAllreduce, DoublingComm, np.ndarray]:
    comm = DoublingComm()
    world = World(2, 0, 0, comm, cuda_aware=cuda_aware)
    monkeypatch.setattr(World, "_mpi", lambda self: MPI)
    net = Network([Conv2D(2, 3), Dense(3)], input_shape=(1, 4, 4), device=DEVICE).initialize(0)
    reduce = GradientAllreduce(world, net)
    gradient = np.arange(reduce.size, dtype=np.float32) + 1
    net.backend().upload(gradient, reduce.flat)
    reduce()
    return reduce, comm, gradient


def page_locked(a: np.ndarray) -> bool:
    """CUDA's own answer (through CuPy, which the cuda extra installs): the memory of
    ``a`` is registered host memory, not pageable."""
    runtime = pytest.importorskip("cupy.cuda.runtime")
    return runtime.pointerGetAttributes(a.ctypes.data).type == runtime.memoryTypeHost


def test_staged_through_pinned_host_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    reduce, comm, gradient = reduce_on(False, monkeypatch)
    assert reduce.staged and len(comm.handed) == 1
    assert comm.handed[0] is reduce.host and not is_device_array(reduce.host)
    if not config.ENABLE_CUDASIM:
        assert page_locked(reduce.host), "the staging buffer is pageable host memory"
    np.testing.assert_array_equal(to_host(reduce.flat), 2 * gradient)
    layout = network_layout(reduce.net)  # each gradient at its aligned offset
    for (_, _, grad), offset in zip(reduce.net.parameters(), layout.offsets, strict=True):
        assert is_device_array(grad)  # every layer's gradient sees the sum
        np.testing.assert_array_equal(to_host(grad).ravel(),
                                      2 * gradient[offset:offset + grad.size])
    assert layout.size == reduce.size


def test_handed_to_a_cuda_aware_mpi_as_the_device_buffer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    reduce, comm, gradient = reduce_on(True, monkeypatch)
    assert not reduce.staged and reduce.host is None
    assert len(comm.handed) == 1 and comm.handed[0] is reduce.flat
    assert is_device_array(reduce.flat)
    np.testing.assert_array_equal(to_host(reduce.flat), 2 * gradient)
    first = next(iter(reduce.net.parameters()))[2]
    np.testing.assert_array_equal(to_host(first).ravel(), 2 * gradient[:first.size])
