"""The process that compiles the CPU kernels and a later one that loads them from numba's
on-disk cache compute the same bits (docs/reliability.md): numba optimizes the two
differently, so a kernel whose result depends on how LLVM contracts or orders float
operations would not repeat the first run of a seed. BatchNorm is the known exception
(its fast-math sums) and is left out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROGRAM = """
import hashlib
import numpy as np
from numbacnn import to_device, to_host
from numbacnn.layers import (ELU, LRN, AvgPool2D, Conv2D, Dense, Dropout, Flatten, LeakyReLU,
                             Maxout, MaxPool2D, ReLU, Sigmoid, Tanh)
from numbacnn.network import Network
from numbacnn.training.optim import SGD

net = Network([Tanh(), Conv2D(4, 3, stride=2, pad=1), ReLU(), Maxout(2), LRN(3), MaxPool2D(2),
               LeakyReLU(0.1), Conv2D(3, 3, pad=1, algo="winograd"), Conv2D(4, 1),
               AvgPool2D(2, 1), Sigmoid(), ELU(), Dropout(0.5),
               Flatten(), Dense(6), ReLU(), Dense(3)], input_shape=(2, 15, 15),
              device="cpu").initialize(seed=1)
rng = np.random.default_rng(0)
x = rng.standard_normal((6, 2, 15, 15)).astype(np.float32)
labels = rng.integers(0, 3, 6)
digest = hashlib.sha1()
for _ in range(2):
    net.train_step(to_device(x), labels)
    for _, _, g in net.parameters():
        digest.update(np.ascontiguousarray(to_host(g)).tobytes())
    SGD(momentum=0.9).step(net, 0.05)
digest.update(np.ascontiguousarray(to_host(net.predict_proba(to_device(x)))).tobytes())
print(digest.hexdigest())
"""


def test_compiling_process_and_cached_process_agree_bit_for_bit(tmp_path: Path) -> None:
    env = dict(os.environ, NUMBACNN_CACHE_DIR=str(tmp_path / "cache"))
    runs = [subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True,
                           text=True, timeout=600) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    first, cached = (run.stdout.strip() for run in runs)
    assert any((tmp_path / "cache").rglob("*.nbi")), "the first process wrote no cache"
    assert first == cached
