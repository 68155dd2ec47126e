"""What a CUDA training step costs besides its kernels, counted without a GPU.

In ``numbacnn.backends.cuda.dry_run()`` every launch, host↔device copy and device
allocation is counted and nothing is computed. A training step as the trainer runs it
must allocate nothing (also when the last batch of an epoch is smaller), copy exactly
the batch and its labels to the device, and read nothing back: the loss and accuracy
come back once per progress update.
"""

from __future__ import annotations

import numpy as np
import pytest
from device_context import dry_cuda
from helpers import small_dataset
from traffic import step_traffic

from numbacnn.backends import cuda as cuda_backend
from numbacnn.network import Network
from numbacnn.training.trainer import Trainer, TrainSettings


@pytest.fixture
def dry_cuda_cublas():
    with dry_cuda("cublas"):
        yield


def counted(fn) -> dict[str, int]:
    cuda_backend.reset_counters()
    fn()
    return cuda_backend.reset_counters()


def test_trainer_step_allocates_nothing_and_reads_nothing_back(dry_cuda_cublas):
    net = Network.from_spec(
        "input 8x8x1; conv 4 3 pad=1; relu; maxpool 2; fc 16; relu; dropout 0.2; fc 4",
        device="cuda")
    trainer = Trainer(net, small_dataset(), TrainSettings(epochs=1, batch_size=16,
                                                          augment=True, val_split=0.0))
    order = np.arange(80)
    trainer._train_batch(order[:16])
    trainer._train_batch(order[16:32])
    full = counted(lambda: trainer._train_batch(order[32:48]))
    smaller = counted(lambda: trainer._train_batch(order[48:55]))  # a last, smaller batch
    again = counted(lambda: trainer._train_batch(order[55:71]))
    for counts in (full, smaller, again):
        assert counts["allocations"] == 0, counts
        assert counts["h2d_copies"] == 2, counts  # the images and their labels
        assert counts["d2h_copies"] == 0, counts
    assert full["launches"] == smaller["launches"] == again["launches"] > 20
    sums = {"loss": 0.0, "correct": 0.0, "seen": 0.0}
    update = counted(lambda: trainer._read_sums(sums, 16, 0, 5))
    assert update == {"launches": 1, "h2d_copies": 0, "d2h_copies": 1, "allocations": 0}


@pytest.mark.parametrize("gemm, launches", [("cublas", 36), ("numba", 39)])
def test_fmnist_step_traffic(gemm: str, launches: int):
    """The figures bench/RESULTS.md records for fmnist at batch 128 (numba: split-K adds a
    reduction launch to three weight-gradient products; the optimizer's update is one
    launch for the 8 parameters since the flat buffers, 43 and 46 before)."""
    counts = step_traffic("fmnist", 128, gemm)
    assert counts["per_step"] == {"launches": launches, "h2d_copies": 2, "d2h_copies": 0,
                                  "allocations": 0}
    assert counts["per_progress_update"]["d2h_copies"] == 1
