"""Per-layer CPU time of a 3×3 stride-1 convolution's forward and backward pass, im2col
against Winograd F(2×2, 3×3) (``algo=``), interleaved A/B on a shared machine.

Cases: fmnist's conv1 (1→32, 28×28) and conv2 (32→64, 14×14) at its training batch (64),
AlexNet's conv3–5 (13×13, 256/384 channels) at batch 16. A first layer's backward
computes no dx (conv1 here). Each figure is the minimum over the repetitions of the CPU
seconds of one forward and one backward pass (``time.process_time``: it moves far less
with the machine's load than wall time); run with one thread:

    NUMBA_NUM_THREADS=1 python bench/winograd_layers.py [--reps 9]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from numbacnn.layers import Conv2D

# name → (batch, C, K, H (= W), first layer: backward without dx)
CASES = {"fmnist conv1": (64, 1, 32, 28, True), "fmnist conv2": (64, 32, 64, 14, False),
         "alexnet conv3": (16, 256, 384, 13, False), "alexnet conv4": (16, 384, 384, 13, False),
         "alexnet conv5": (16, 384, 256, 13, False)}
ALGORITHMS = ("im2col", "winograd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    options = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'layer':14s} {'algorithm':9s} {'forward ms':>11s} {'backward ms':>12s} "
          f"{'total ms':>9s}  (min CPU time of {options.reps}, "
          f"{os.environ.get('NUMBA_NUM_THREADS', 'all')} threads)")
    for name, (N, C, K, H, first) in CASES.items():
        x = rng.standard_normal((N, C, H, H)).astype(np.float32)
        dy = rng.standard_normal((N, K, H, H)).astype(np.float32)
        layers = {}
        for algo in ALGORITHMS:
            layer = Conv2D(K, 3, pad=1, algo=algo)
            layer.build((C, H, H))
            layer.init_params(np.random.default_rng(1))
            layer.fused_relu = True
            layer.forward(x)
            layer.backward(dy, need_dx=not first)  # compiled, buffers made
            layers[algo] = layer
        times: dict[str, list[tuple[float, float]]] = {algo: [] for algo in ALGORITHMS}
        for _ in range(options.reps):
            for algo in ALGORITHMS:  # interleaved: the load hits both alike
                layer = layers[algo]
                started = time.process_time()
                layer.forward(x)
                middle = time.process_time()
                layer.backward(dy, need_dx=not first)
                times[algo].append((middle - started, time.process_time() - middle))
        for algo in ALGORITHMS:
            fwd = 1e3 * min(f for f, _ in times[algo])
            bwd = 1e3 * min(b for _, b in times[algo])
            total = 1e3 * min(f + b for f, b in times[algo])
            print(f"{name:14s} {algo:9s} {fwd:11.1f} {bwd:12.1f} {total:9.1f}")
    print(f"load average {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
