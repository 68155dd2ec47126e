"""Training-step time of a network under ``--conv-algo auto`` with its 3×3 Winograd
layers on F(2×2, 3×3) against F(4×4, 3×3), interleaved A/B in one process (the other
layers as ``auto`` gives them): what ``WINOGRAD43_AUTO_MIN_CK`` changes end to end.

    NUMBA_NUM_THREADS=2 python bench/winograd43_steps.py [--steps 9] [fmnist|alexnet]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from numbacnn.layers import Conv2D
from numbacnn.network import Network
from numbacnn.training.optim import SGD

# name → (spec file, batch, input C×H×W, classes)
NETWORKS = {"fmnist": ("data/specs/fmnist.spec", 128, (1, 28, 28), 10),
            "alexnet": ("data/specs/alexnet.spec", 16, (3, 227, 227), 1000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("networks", nargs="*", default=list(NETWORKS))
    parser.add_argument("--steps", type=int, default=9)
    options = parser.parse_args()
    for name in options.networks:
        spec, N, shape, classes = NETWORKS[name]
        nets, optimizers, threes = {}, {}, 0
        for algo in ("winograd", "winograd4"):  # one network each: their buffers differ
            net = Network.from_spec(Path(spec).read_text(), device="cpu").initialize(0)
            net.conv_algo = "auto"
            for layer in net.layers:
                if isinstance(layer, Conv2D) and layer.taps() == 9 and layer.algorithm() in (
                        "winograd", "winograd4"):
                    layer.algo = algo
                    threes += algo == "winograd"
            nets[algo], optimizers[algo] = net, SGD(momentum=0.9, weight_decay=0.0)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((N, *shape)).astype(np.float32)
        labels = rng.integers(0, classes, N)
        times: dict[str, list[float]] = {algo: [] for algo in nets}
        for step in range(options.steps + 1):
            for algo, net in nets.items():  # interleaved: the load hits both alike
                started = time.perf_counter()
                net.train_step(x, labels)
                optimizers[algo].step(net, 0.001)
                if step:  # the first: compiles, buffers
                    times[algo].append(time.perf_counter() - started)
        print(f"{name} (batch {N}, {threes} 3×3 Winograd layers), median ms a step: "
              + ", ".join(f"{algo} {1e3 * statistics.median(t):.1f} (min "
                          f"{1e3 * min(t):.1f})" for algo, t in times.items()))
    print(f"load average {os.getloadavg()[0]:.1f} (1 min), "
          f"{os.environ.get('NUMBA_NUM_THREADS', 'all')} threads")


if __name__ == "__main__":
    main()
