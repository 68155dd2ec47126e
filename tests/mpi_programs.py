"""Programs that tests/test_distributed.py starts under ``mpirun -n 2``.

    python tests/mpi_programs.py die-after-epoch N ARGS    rank 1 is SIGKILLed after epoch N
    python tests/mpi_programs.py hang-after-epoch N ARGS   rank 1 stops answering after epoch N
    python tests/mpi_programs.py gpu-allreduce             GPU gradients: staged through host
                                                           memory, or with
                                                           NUMBACNN_MPI_CUDA_AWARE=1 handed to
                                                           MPI as the device buffer

ARGS are ``numbacnn`` command-line arguments (``train ...``).
"""

from __future__ import annotations

import os
import signal
import sys
import time


def _after_epoch(n: int, action) -> None:
    """Run ``action`` on rank 1 once epoch ``n`` has ended (its checkpoint written)."""
    from numbacnn.training.trainer import Trainer

    end_epoch = Trainer._end_epoch

    def patched(self: Trainer, sums: dict) -> None:
        end_epoch(self, sums)
        if self.world.rank == 1 and self.state.epoch == n:
            action()

    Trainer._end_epoch = patched  # type: ignore[method-assign]


def _cli(args: list[str]) -> None:
    from numbacnn_cli.main import cli

    cli(args, prog_name="numbacnn")


def _simulated_device_pointers() -> None:
    """Give numba's CUDA simulator arrays the ``__cuda_array_interface__`` of a real
    device array (numba-cuda's own keys, version 3), pointing at the host memory that
    stands in for device memory: what a CUDA-aware MPI does with a device pointer, real
    MPI and mpi4py do here with that memory. Never on a GPU, where it would not be
    needed (a non-CUDA-aware MPI given a real device pointer crashes)."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    def interface(self: FakeCUDAArray) -> dict:
        ary = self._ary
        assert ary.flags.c_contiguous, "the gradient buffer is one contiguous block"
        return {"shape": ary.shape, "strides": None, "data": (ary.ctypes.data, False),
                "typestr": ary.dtype.str, "stream": None, "version": 3}

    FakeCUDAArray.__cuda_array_interface__ = property(interface)  # type: ignore[attr-defined]


def gpu_allreduce() -> None:
    """Each rank fills its gradients with (rank + 1) · (index + 1); after the reduce every
    rank holds 3 · (index + 1) in every gradient, through the pinned host staging or,
    with NUMBACNN_MPI_CUDA_AWARE=1 (CUDA simulator only), on the device buffer itself."""
    import numpy as np
    from numba import config

    from numbacnn.device import to_host
    from numbacnn.layers import Conv2D, Dense
    from numbacnn.network import Network
    from numbacnn.training.distributed import GradientAllreduce, world
    from numbacnn.training.flat_buffers import network_layout

    ranks = world()
    ranks.start()  # reads NUMBACNN_MPI_CUDA_AWARE
    if ranks.cuda_aware:
        assert config.ENABLE_CUDASIM, "the CUDA-aware check is for the simulator"
        _simulated_device_pointers()
    net = Network([Conv2D(2, 3), Dense(3)], input_shape=(1, 4, 4), device="cuda").initialize(0)
    B = net.backend()
    reduce = GradientAllreduce(ranks, net)
    assert B.name == "cuda" and reduce.staged is not ranks.cuda_aware
    assert (reduce.host is None) is ranks.cuda_aware
    for _, _, g in net.parameters():
        assert hasattr(g, "copy_to_host"), "gradients stay device arrays"
    expected = np.arange(reduce.size, dtype=np.float32) + 1
    B.upload((ranks.rank + 1) * expected, reduce.flat)
    reduce()
    assert reduce.calls == 1 and reduce.seconds > 0, "the all-reduce's own clock"
    np.testing.assert_array_equal(to_host(reduce.flat), 3 * expected)
    layout = network_layout(net)  # each gradient a view at its aligned offset
    for (_, _, g), offset in zip(net.parameters(), layout.offsets, strict=True):
        np.testing.assert_array_equal(to_host(g).ravel(), 3 * expected[offset:offset + g.size])
    gradient_floats = sum(g.size for _, _, g in net.parameters())
    path = "as the device buffer" if ranks.cuda_aware else "staged"
    print(f"rank {ranks.rank}: gpu all-reduce of {gradient_floats} floats ok ({path})",
          flush=True)


def main(argv: list[str]) -> None:
    what = argv[0]
    if what == "die-after-epoch":
        _after_epoch(int(argv[1]), lambda: os.kill(os.getpid(), signal.SIGKILL))
        _cli(argv[2:])
    elif what == "hang-after-epoch":
        _after_epoch(int(argv[1]), lambda: time.sleep(3600))
        _cli(argv[2:])
    elif what == "gpu-allreduce":
        gpu_allreduce()
    else:
        raise SystemExit(f"unknown program {what!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
