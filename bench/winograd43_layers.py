"""Per-layer time of a 3×3 stride-1 convolution's forward and backward pass, Winograd
F(2×2, 3×3) (``cpu_winograd.py``) against F(4×4, 3×3) (``cpu_winograd43.py``), the
drivers called directly, interleaved A/B on a shared machine.

Cases: fmnist's conv2 (32→64, 14×14, pad 1) at batch 128 and AlexNet's conv3 (256→384),
conv4 (384→384) and conv5 (384→256) (13×13, pad 1) at batch 16, the fused ReLU and dx
as in the networks. Each figure is the median over the repetitions of the wall
seconds of one forward and one backward pass, its minimum, and the least CPU seconds
(``time.process_time``, all threads); run with one thread and with two:

    NUMBA_NUM_THREADS=1 python bench/winograd43_layers.py [--reps 9] [--cases alexnet]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from numbacnn.backends import cpu_winograd, cpu_winograd43

# name → (batch, C, K, H (= W))
CASES = {"fmnist conv2": (128, 32, 64, 14), "alexnet conv3": (16, 256, 384, 13),
         "alexnet conv4": (16, 384, 384, 13), "alexnet conv5": (16, 384, 256, 13)}
DRIVERS = {"F(2,3)": (cpu_winograd.winograd_workspace, cpu_winograd.winograd_forward,
                      cpu_winograd.winograd_backward),
           "F(4,3)": (cpu_winograd43.winograd43_workspace, cpu_winograd43.winograd43_forward,
                      cpu_winograd43.winograd43_backward)}


def measure(name: str, N: int, C: int, K: int, H: int, reps: int,
            rng: np.random.Generator) -> None:
    """Prints the two algorithms' lines for one case."""
    x = rng.standard_normal((N, C, H * H)).astype(np.float32)
    w2 = (0.05 * rng.standard_normal((K, C * 9))).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    dy = rng.standard_normal(N * K * H * H).astype(np.float32)
    y = np.empty(N * K * H * H, np.float32)
    dw2, db, dx = np.empty_like(w2), np.empty_like(b), np.empty_like(x)
    geo, relu = (1, 1, 1, 1, 1, 1), 1
    workspaces = {algo: {key: np.zeros(shape, np.float32)
                         for key, shape in make(N, C, K, H, H, H, H).items()}
                  for algo, (make, _, _) in DRIVERS.items()}

    def run(algo: str) -> tuple[float, float]:
        _, forward, backward = DRIVERS[algo]
        ws = workspaces[algo]
        started = time.perf_counter()
        forward(x, H, H, w2, b, y, ws, geo, H, H, relu)
        middle = time.perf_counter()
        backward(x, H, H, w2, y, dy, dw2, db, dx, ws, geo, H, H, relu)
        return middle - started, time.perf_counter() - middle

    for algo in DRIVERS:
        run(algo)  # compiled
    times: dict[str, list[tuple[float, float]]] = {algo: [] for algo in DRIVERS}
    cpu: dict[str, list[float]] = {algo: [] for algo in DRIVERS}
    for _ in range(reps):
        for algo in DRIVERS:  # interleaved: the load hits both alike
            cpu_started = time.process_time()
            times[algo].append(run(algo))
            cpu[algo].append(time.process_time() - cpu_started)
    for algo in DRIVERS:
        fwd = 1e3 * statistics.median(f for f, _ in times[algo])
        bwd = 1e3 * statistics.median(b for _, b in times[algo])
        total = 1e3 * statistics.median(f + b for f, b in times[algo])
        least = 1e3 * min(f + b for f, b in times[algo])
        print(f"{name:14s} {algo:9s} {fwd:7.1f} {bwd:7.1f} {total:9.1f} {least:6.1f} "
              f"{1e3 * min(cpu[algo]):7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--cases", default="", help="only the cases whose name has this")
    options = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'layer':14s} {'algorithm':9s} {'fwd ms':>7s} {'bwd ms':>7s} {'total ms':>9s} "
          f"{'min':>6s} {'CPU ms':>7s}  (median wall time of {options.reps}, "
          f"{os.environ.get('NUMBA_NUM_THREADS', 'all')} threads)")
    for name, (N, C, K, H) in CASES.items():
        if options.cases in name:
            measure(name, N, C, K, H, options.reps, rng)
    print(f"load average {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
