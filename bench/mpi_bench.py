"""Data-parallel measurements for bench/RESULTS.md (numbacnn/training/distributed.py).

    mpirun -n 2 --oversubscribe python bench/mpi_bench.py allreduce 421642 30
        time of one in-place float32 MPI_Allreduce of that many floats (the fmnist
        gradient; 62378344 for AlexNet), as numbacnn's GradientAllreduce calls it
    mpirun -n 2 --oversubscribe python bench/mpi_bench.py train 2048 128   (NUMBA_NUM_THREADS=1)
    NUMBA_NUM_THREADS=2 python bench/mpi_bench.py train 2048 128
        images/s of one epoch of fmnist training on that many images of the bundled
        Fashion-MNIST subset at that global batch size, after one warm-up epoch

    python bench/mpi_bench.py model
        the scaling model of bench/RESULTS.md: ring all-reduce time against step time
        on N nodes joined by a 25 Gb/s network (a markdown table)

Rank 0 prints one JSON line: the repeats in seconds and their median, min and max.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import numpy as np


def _summary(seconds: list[float]) -> dict[str, object]:
    return {"median_s": statistics.median(seconds), "min_s": min(seconds),
            "max_s": max(seconds), "repeats": len(seconds),
            "load_average": os.getloadavg()}


def allreduce(floats: int, repeats: int) -> None:
    from mpi4py import MPI

    from numbacnn.training.distributed import world

    ranks = world()
    buffer = np.ones(floats, np.float32)
    times = []
    for i in range(repeats + 3):  # 3 warm-up calls
        ranks.comm.Barrier()
        started = time.perf_counter()
        ranks.comm.Allreduce(MPI.IN_PLACE, [buffer, MPI.FLOAT])
        if i >= 3:
            times.append(time.perf_counter() - started)
    worst = np.array(times)
    ranks.comm.Allreduce(MPI.IN_PLACE, worst, op=MPI.MAX)  # the slowest rank's time
    if ranks.is_root:
        print(json.dumps({"what": "allreduce", "floats": floats, "ranks": ranks.size,
                          "MB": 4 * floats / 1e6, **_summary(list(worst))}))


def train(images: int, batch: int) -> None:
    import numba

    from numbacnn.io.dataset_files import load_dataset
    from numbacnn.network import Network
    from numbacnn.training.distributed import world
    from numbacnn.training.trainer import Trainer, TrainSettings

    ranks = world()
    seconds: list[float] = []
    settings = TrainSettings(spec="fmnist", epochs=4, batch_size=batch, limit=images,
                             val_split=0.0)
    trainer = Trainer(Network.from_spec("fmnist", device="cpu"), load_dataset("fashion-mnist-mini"),
                      settings, on_epoch=lambda record: seconds.append(record.seconds))
    trainer.run()
    timed = seconds[1:]  # the first epoch warms up
    allreduce = trainer.gradient_allreduce  # its own clock: the Allreduce and the waiting
    steps = allreduce.calls if allreduce is not None else 0
    if ranks.is_root:
        print(json.dumps({"what": "train fmnist", "ranks": ranks.size,
                          "allreduce_ms_per_step (incl. waiting for the other rank)":
                          1e3 * allreduce.seconds / steps if steps else 0.0,
                          "threads_per_rank": numba.get_num_threads(), "images": images,
                          "batch": batch, "images_per_s": [images / s for s in timed],
                          **_summary(timed)}))


LINK_BYTES_PER_S = 25e9 / 8  # 25 Gb/s line rate; TCP reaches perhaps 80-90 % of it
LATENCY_S = 10e-6  # per message, a rough figure for TCP between nodes
# (network, gradient floats, images per step per node, seconds per step on one node, where
# the step time comes from: each measured, bench/RESULTS.md)
CASES = [
    ("fmnist", 421_642, 128, 128 / 7138,
     "2-core CPU node, 7,138 img/s (1 process, 2 threads, 2026-11-28)"),
    ("alexnet", 62_378_344, 16, 16 / 38.6,
     "2-core CPU node, 38.6 img/s (run_cpu.sh, 2026-11-27)"),
    ("alexnet", 62_378_344, 128, 128 / 2733,
     "H200 GPU node, 2,733 img/s (gpu-check.sh at 75deb9f, 2026-11-27)"),
]


def ring_allreduce_seconds(floats: int, nodes: int, bandwidth: float = LINK_BYTES_PER_S,
                           latency: float = LATENCY_S) -> float:
    """Time of a ring all-reduce of float32 ``floats`` over ``nodes`` nodes: each node sends
    and receives 2(N-1)/N of the buffer in 2(N-1) messages."""
    if nodes < 2:
        return 0.0
    return 2 * (nodes - 1) / nodes * 4 * floats / bandwidth + 2 * (nodes - 1) * latency


def model(node_counts: tuple[int, ...] = (1, 2, 4, 8, 16, 64)) -> None:
    """Weak scaling (each node keeps its batch, the global batch grows with N), with no
    overlap of communication and computation (numbacnn reduces after backward):
    efficiency = step / (step + all-reduce), speed-up = N x efficiency."""
    print("| network, node | gradient MB | step (1 node) | " +
          " | ".join(f"N={n}" for n in node_counts) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in node_counts) + " |")
    for name, floats, batch, step, where in CASES:
        cells = []
        for n in node_counts:
            t = ring_allreduce_seconds(floats, n)
            cells.append(f"{1e3 * t:.1f} ms, {n * step / (step + t):.1f}x")
        print(f"| {name} batch {batch}/node, {where} | {4 * floats / 1e6:.1f} | "
              f"{1e3 * step:.0f} ms | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    what, *args = sys.argv[1:]
    if what == "allreduce":
        allreduce(int(args[0]), int(args[1]) if len(args) > 1 else 20)
    elif what == "train":
        train(int(args[0]), int(args[1]))
    elif what == "model":
        model()
    else:
        raise SystemExit(f"unknown measurement {what!r}: allreduce, train or model")
