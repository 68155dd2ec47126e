"""CPU seconds numba spends compiling each CPU driver before a run's first step.

In this one process, with ``NUMBACNN_CACHE_DIR`` a new empty folder, runs what a compile
worker of ``numbacnn.training.warmup`` runs for the whole network (one training step and
one evaluation on four random images, no driver skipped) and lists, per compiled
function (drivers and the chunk functions they call), the CPU seconds between numba's
``numba:compile`` start and end events, without those of the functions it compiled
inside ("own") and with them ("with callees"). CPU seconds, not wall: on a shared
machine they move far less with the load.

    NUMBA_NUM_THREADS=1 python bench/compile_profile.py            # fmnist
    NUMBA_NUM_THREADS=1 python bench/compile_profile.py data/specs/alexnet.spec 3x227x227 1000
    NUMBA_NUM_THREADS=1 python bench/compile_profile.py --conv-algo winograd
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default="data/specs/fmnist.spec")
    parser.add_argument("input", nargs="?", default="1x28x28", help="C×H×W of the input")
    parser.add_argument("classes", nargs="?", type=int, default=10)
    parser.add_argument("--conv-algo", default="im2col", help="the run's conv_algo")
    options = parser.parse_args()
    os.environ["NUMBACNN_CACHE_DIR"] = tempfile.mkdtemp(prefix="numbacnn-compile-")

    from numba.core import event

    own: dict[str, float] = {}
    total: dict[str, float] = {}
    open_compiles: list[list[Any]] = []  # [name, CPU at start, CPU of callees]

    class CompileTimes(event.Listener):
        def on_start(self, ev: event.Event) -> None:
            open_compiles.append([ev.data["dispatcher"].py_func.__name__,
                                  time.process_time(), 0.0])

        def on_end(self, ev: event.Event) -> None:
            name, start, inner = open_compiles.pop()
            took = time.process_time() - start
            total[name] = total.get(name, 0.0) + took
            own[name] = own.get(name, 0.0) + took - inner
            if open_compiles:
                open_compiles[-1][2] += took

    event.register("numba:compile", CompileTimes())
    from numbacnn.training.settings import TrainSettings
    from numbacnn.training.warmup import compile_share

    spec = Path(options.spec).read_text()
    started = time.process_time()
    compile_share(spec, asdict(TrainSettings(spec=spec, data="-", conv_algo=options.conv_algo)),
                  [int(v) for v in options.input.split("x")], options.classes, [], [])
    spent = time.process_time() - started
    print(f"{'compiled function':34s} {'own':>6s} {'with callees':>13s}  (CPU seconds)")
    for name, seconds in sorted(own.items(), key=lambda kv: -kv[1]):
        print(f"{name:34s} {seconds:6.2f} {total[name]:13.2f}")
    print(f"{'all compiles':34s} {sum(own.values()):6.2f}; the whole step and evaluation "
          f"{spent:.2f} CPU s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
