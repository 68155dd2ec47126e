"""Per-layer time of a 5×5 stride-1 convolution's forward and backward pass, im2col
against Winograd F(2×2, 5×5) (``algo=``), interleaved A/B on a shared machine.

Cases: AlexNet's conv2 (96→256, 27×27, pad 2) at batch 16; cifar10's conv1 (3→32,
32×32, a first layer: no dx) and conv2 (32→64, 16×16) and lenet's conv2 (6→16, 14×14,
pad 0) at batch 64. Each figure is the median over the repetitions of the wall seconds
of one forward and one backward pass (the fused ReLU as in the networks), its minimum,
and the least CPU seconds (``time.process_time``, all threads: it moves less with the
machine's load than wall time); run with one thread and with two:

    NUMBA_NUM_THREADS=1 python bench/winograd5_layers.py [--reps 9] [--cases alexnet]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from numbacnn.layers import Conv2D

# name → (batch, C, K, H (= W), pad, first layer: backward without dx)
CASES = {"alexnet conv2": (16, 96, 256, 27, 2, False),
         "cifar10 conv1": (64, 3, 32, 32, 2, True), "cifar10 conv2": (64, 32, 64, 16, 2, False),
         "lenet conv2": (64, 6, 16, 14, 0, False)}
ALGORITHMS = ("im2col", "winograd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--cases", default="", help="only the cases whose name has this")
    options = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'layer':14s} {'algorithm':9s} {'fwd ms':>7s} {'bwd ms':>7s} {'total ms':>9s} "
          f"{'min':>6s} {'CPU ms':>7s}  (median wall time of {options.reps}, "
          f"{os.environ.get('NUMBA_NUM_THREADS', 'all')} threads)")
    for name, (N, C, K, H, pad, first) in CASES.items():
        if options.cases not in name:
            continue
        x = rng.standard_normal((N, C, H, H)).astype(np.float32)
        layers = {}
        for algo in ALGORITHMS:
            layer = Conv2D(K, 5, pad=pad, algo=algo)
            layer.build((C, H, H))
            layer.init_params(np.random.default_rng(1))
            layer.fused_relu = True
            dy = rng.standard_normal((N, *layer.output_shape)).astype(np.float32)
            layer.forward(x)
            layer.backward(dy, need_dx=not first)  # compiled, buffers made
            layers[algo] = layer
        times: dict[str, list[tuple[float, float]]] = {algo: [] for algo in ALGORITHMS}
        cpu: dict[str, list[float]] = {algo: [] for algo in ALGORITHMS}
        for _ in range(options.reps):
            for algo in ALGORITHMS:  # interleaved: the load hits both alike
                layer = layers[algo]
                started, cpu_started = time.perf_counter(), time.process_time()
                layer.forward(x)
                middle = time.perf_counter()
                layer.backward(dy, need_dx=not first)
                times[algo].append((middle - started, time.perf_counter() - middle))
                cpu[algo].append(time.process_time() - cpu_started)
        for algo in ALGORITHMS:
            fwd = 1e3 * statistics.median(f for f, _ in times[algo])
            bwd = 1e3 * statistics.median(b for _, b in times[algo])
            total = 1e3 * statistics.median(f + b for f, b in times[algo])
            least = 1e3 * min(f + b for f, b in times[algo])
            print(f"{name:14s} {algo:9s} {fwd:7.1f} {bwd:7.1f} {total:9.1f} {least:6.1f} "
                  f"{1e3 * min(cpu[algo]):7.1f}")
    print(f"load average {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
