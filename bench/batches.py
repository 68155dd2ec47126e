"""Batch sizes of the benchmark suite: the batch each network is timed at when
``--batch`` is not given, on the CPU, on CUDA and in ``--quick`` runs. Its own module so
that the suite (``suite.py``) and the convolution rates (``gemm_rates.py --conv``) share
it without importing each other.
"""

from __future__ import annotations

CPU_BATCH = {"fmnist": 128, "alexnet": 16}
GPU_BATCH = {"fmnist": 128, "alexnet": 128}
QUICK_BATCH = {"fmnist": 32, "alexnet": 2}
OTHER_BATCH, QUICK_OTHER_BATCH = 64, 32  # any other spec


def default_batch(spec: str, device: str, quick: bool) -> int:
    """Batch size of ``spec`` (a preset name or spec text) on ``device`` ("cpu" or
    "cuda") when ``--batch`` is not given."""
    table = QUICK_BATCH if quick else GPU_BATCH if device == "cuda" else CPU_BATCH
    return table.get(spec.strip(), QUICK_OTHER_BATCH if quick else OTHER_BATCH)
