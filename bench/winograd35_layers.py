"""Per-layer time of a 5×5 stride-1 convolution's forward and backward pass, Winograd
F(2×2, 5×5) (``cpu_winograd5.py``) against F(3×3, 5×5) (``cpu_winograd35.py``), the
drivers called directly, interleaved A/B on a shared machine.

Cases: AlexNet's conv2 (96 → 256, 27×27, pad 2) at batch 16 and cifar10's conv2
(32 → 64, 16×16, pad 2: C·K at the Winograd rule's least) at batch 128, the fused ReLU
and dx as in the networks. Each figure is the median over the repetitions of the wall
milliseconds of one forward and one backward pass, their spread (the lower and upper quartile of the
total), and the least CPU milliseconds (``time.process_time``, all threads). With
``--chunks 1,2,4`` F(3×3, 5×5) also runs in chunks of that many images (its chunk rule
set aside). Run with one thread and with two:

    NUMBA_NUM_THREADS=2 python bench/winograd35_layers.py [--reps 9] [--chunks 1,2,4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

from numbacnn.backends import cpu_winograd5, cpu_winograd35

# name → (batch, C, K, H (= W), pad)
CASES = {"alexnet conv2": (16, 96, 256, 27, 2), "cifar10 conv2": (128, 32, 64, 16, 2)}


def chunked(images: int | None) -> Callable[[], None]:
    """Sets cpu_winograd35's chunk rule to ``images`` images a chunk (None: its own)."""
    own = cpu_winograd35.MIN_CHUNK_TILES, cpu_winograd35.CHUNK_BYTES

    def setup() -> None:
        if images is None:
            cpu_winograd35.MIN_CHUNK_TILES, cpu_winograd35.CHUNK_BYTES = own
        else:  # 81 tiles an image at 27×27
            cpu_winograd35.MIN_CHUNK_TILES, cpu_winograd35.CHUNK_BYTES = 81 * images, 1
    return setup


def drivers(chunks: list[int]) -> dict[str, tuple]:
    """name → (workspace, forward, backward, setup)."""
    found = {"F(2,5)": (cpu_winograd5.winograd5_workspace, cpu_winograd5.winograd5_forward,
                        cpu_winograd5.winograd5_backward, lambda: None),
             "F(3,5)": (cpu_winograd35.winograd35_workspace, cpu_winograd35.winograd35_forward,
                        cpu_winograd35.winograd35_backward, chunked(None))}
    for images in chunks:
        found[f"F(3,5) c{images}"] = found["F(3,5)"][:3] + (chunked(images),)
    return found


def measure(name: str, N: int, C: int, K: int, H: int, pad: int, reps: int,
            algos: dict[str, tuple], rng: np.random.Generator) -> None:
    """Prints each algorithm's line for one case."""
    OH = H + 2 * pad - 4
    x = rng.standard_normal((N, C, H * H)).astype(np.float32)
    w2 = (0.05 * rng.standard_normal((K, C * 25))).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    dy = rng.standard_normal(N * K * OH * OH).astype(np.float32)
    y = np.empty(N * K * OH * OH, np.float32)
    dw2, db, dx = np.empty_like(w2), np.empty_like(b), np.empty_like(x)
    geo, relu = (1, 1, 5, 5, pad, pad), np.int64(1)
    workspaces = {}
    for algo, (make, _, _, setup) in algos.items():
        setup()
        workspaces[algo] = {key: np.zeros(shape, np.float32)
                            for key, shape in make(N, C, K, H, H, OH, OH).items()}

    def run(algo: str) -> tuple[float, float]:
        _, forward, backward, setup = algos[algo]
        setup()
        ws = workspaces[algo]
        started = time.perf_counter()
        forward(x, H, H, w2, b, y, ws, geo, OH, OH, relu)
        middle = time.perf_counter()
        backward(x, H, H, w2, y, dy, dw2, db, dx, ws, geo, OH, OH, relu)
        return middle - started, time.perf_counter() - middle

    for algo in algos:
        run(algo)  # compiled
    times: dict[str, list[tuple[float, float]]] = {algo: [] for algo in algos}
    cpu: dict[str, list[float]] = {algo: [] for algo in algos}
    for _ in range(reps):
        for algo in algos:  # interleaved: the load hits all alike
            cpu_started = time.process_time()
            times[algo].append(run(algo))
            cpu[algo].append(time.process_time() - cpu_started)
    for algo in algos:
        fwd = 1e3 * statistics.median(f for f, _ in times[algo])
        bwd = 1e3 * statistics.median(b for _, b in times[algo])
        totals = sorted(1e3 * (f + b) for f, b in times[algo])
        low, high = totals[len(totals) // 4], totals[(3 * len(totals)) // 4]
        print(f"{name:14s} {algo:11s} {fwd:7.1f} {bwd:7.1f} {statistics.median(totals):9.1f} "
              f"{low:6.1f}–{high:<6.1f} {1e3 * min(cpu[algo]):7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--chunks", default="", help="also F(3×3, 5×5) in chunks of these "
                        "many images, comma-separated")
    parser.add_argument("--cases", default="", help="only the cases whose name has this")
    options = parser.parse_args()
    algos = drivers([int(c) for c in options.chunks.split(",") if c])
    rng = np.random.default_rng(0)
    print(f"{'layer':14s} {'algorithm':11s} {'fwd ms':>7s} {'bwd ms':>7s} {'total ms':>9s} "
          f"{'quartiles':>13s} {'CPU ms':>7s}  (median wall time of {options.reps}, "
          f"{os.environ.get('NUMBA_NUM_THREADS', 'all')} threads)")
    for name, (N, C, K, H, pad) in CASES.items():
        if options.cases in name:
            measure(name, N, C, K, H, pad, options.reps, algos, rng)
    print(f"load average {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
