"""Programs that tests/test_distributed.py starts under ``mpirun -n 2``.

    python tests/mpi_programs.py die-after-epoch N ARGS    rank 1 is SIGKILLed after epoch N
    python tests/mpi_programs.py hang-after-epoch N ARGS   rank 1 stops answering after epoch N
    python tests/mpi_programs.py gpu-allreduce             GPU staging path (CUDA simulator)

ARGS are ``numbacnn`` command-line arguments (``train ...``).
"""

from __future__ import annotations

import os
import signal
import sys
import time


def _after_epoch(n: int, action) -> None:
    """Run ``action`` on rank 1 once epoch ``n`` has ended (its checkpoint written)."""
    from numbacnn.trainer import Trainer

    end_epoch = Trainer._end_epoch

    def patched(self: Trainer, sums: dict) -> None:
        end_epoch(self, sums)
        if self.world.rank == 1 and self.state.epoch == n:
            action()

    Trainer._end_epoch = patched  # type: ignore[method-assign]


def _cli(args: list[str]) -> None:
    from numbacnn_cli.main import cli

    cli(args, prog_name="numbacnn")


def gpu_allreduce() -> None:
    """Each rank fills its gradients with (rank + 1) · (index + 1); after the reduce every
    rank holds 3 · (index + 1) in every gradient, through the pinned host staging."""
    import numpy as np

    from numbacnn.device import backend, set_device, to_host
    from numbacnn.distributed import GradientAllreduce, world
    from numbacnn.layers import Conv2D, Dense
    from numbacnn.network import Network

    ranks = world()
    set_device("cuda")
    B = backend()
    net = Network([Conv2D(2, 3), Dense(3)], input_shape=(1, 4, 4)).initialize(0)
    reduce = GradientAllreduce(ranks, net)
    assert reduce.staged and reduce.host is not None and B.name == "cuda"
    for _, _, g in net.parameters():
        assert hasattr(g, "copy_to_host"), "gradients stay device arrays"
    expected = np.arange(reduce.size, dtype=np.float32) + 1
    B.upload((ranks.rank + 1) * expected, reduce.flat)
    reduce()
    assert reduce.calls == 1 and reduce.seconds > 0, "the all-reduce's own clock"
    np.testing.assert_array_equal(to_host(reduce.flat), 3 * expected)
    offset = 0
    for _, _, g in net.parameters():  # the layers' gradients are views of the flat buffer
        np.testing.assert_array_equal(to_host(g).ravel(), 3 * expected[offset:offset + g.size])
        offset += g.size
    print(f"rank {ranks.rank}: gpu all-reduce of {reduce.size} floats ok", flush=True)


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
