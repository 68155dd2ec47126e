"""Seconds from a fresh ``numbacnn train`` to its first training step, with numba's
cache empty (a fresh install) and then full.

Each run is a new process on a pseudo-terminal (so the progress bar draws, as for a
user) with ``NUMBACNN_CACHE_DIR`` pointing at a new empty folder; the first step is the
first progress bar line (it shows images/s). Cold runs alternate between the parallel
compile (``numbacnn.training.warmup``, the default) and the drivers compiling one after
the other on their first call (``NUMBACNN_PARALLEL_COMPILE=0``, as before), so both see
the same load on a shared machine; the medians are printed with the load average.

    python bench/cold_start.py                 # 3 runs of each, fmnist, 256 images
    python bench/cold_start.py --runs 5 -- fmnist-bn --limit 512
"""

from __future__ import annotations

import argparse
import os
import pty
import resource
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIRST_STEP = b"img/s"  # in the progress bar, drawn after the first step
COMPILE_LINE = b"compiling the CPU kernels"


def train_command() -> list[str]:
    script = shutil.which("numbacnn", path=str(Path(sys.executable).parent))
    if script:
        return [script]
    return [sys.executable, "-c", "from numbacnn_cli.main import cli; cli()"]


def timed_run(args: list[str], cache: Path, parallel: bool, workdir: Path) -> dict[str, float]:
    """Run ``numbacnn train ARGS`` once; {"compile_line", "first_step", "total"} seconds
    from the start of the process (nan where the output never showed it) and "cpu": the
    CPU seconds it used, its compiling processes included."""
    env = dict(os.environ, NUMBACNN_CACHE_DIR=str(cache), NUMBACNN_DEVICE="cpu",
               NUMBACNN_PARALLEL_COMPILE="1" if parallel else "0", COLUMNS="120")
    command = [*train_command(), "train", *args, "--out", str(workdir / "m.h5"), "--force"]
    master, slave = pty.openpty()
    cpu_before = _children_cpu()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                               env=env, cwd=workdir)
    os.close(slave)
    seen = {"compile_line": float("nan"), "first_step": float("nan")}
    output = b""
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if not ready:
            if process.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
        now = time.perf_counter() - started
        for key, marker in (("compile_line", COMPILE_LINE), ("first_step", FIRST_STEP)):
            if seen[key] != seen[key] and marker in output:
                seen[key] = now
    process.wait()
    os.close(master)
    if process.returncode != 0:
        shown = output.decode(errors="replace")
        sys.exit(f"numbacnn train failed ({process.returncode}):\n{shown}")
    seen["total"] = time.perf_counter() - started
    seen["cpu"] = _children_cpu() - cpu_before
    return seen


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes and theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="cold runs of each kind")
    parser.add_argument("train_args", nargs="*", help="after --: numbacnn train's arguments")
    options = parser.parse_args()
    args = options.train_args or ["fmnist", "--epochs", "1", "--limit", "256"]
    results: dict[str, list[dict[str, float]]] = {"parallel": [], "serial": [], "warm": []}
    with tempfile.TemporaryDirectory(prefix="numbacnn-cold-") as tmp:
        work = Path(tmp)
        for i in range(options.runs):
            for kind in ("parallel", "serial") if i % 2 == 0 else ("serial", "parallel"):
                cache = work / f"cache-{kind}-{i}"
                cache.mkdir()
                run = timed_run(args, cache, kind == "parallel", work)
                results[kind].append(run)
                print(f"{kind:8s} cold  first step {run['first_step']:6.1f} s  (compile line "
                      f"{run['compile_line']:4.1f} s, run {run['total']:5.1f} s, CPU "
                      f"{run['cpu']:5.1f} s)  load "
                      f"{os.getloadavg()[0]:.1f}", flush=True)
                if kind == "parallel":  # the same cache, now full
                    warm = timed_run(args, cache, True, work)
                    results["warm"].append(warm)
                    print(f"{'':8s} warm  first step {warm['first_step']:6.1f} s  (run "
                          f"{warm['total']:5.1f} s, CPU {warm['cpu']:5.1f} s)", flush=True)
    for kind, runs in results.items():
        median = statistics.median(r["first_step"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        print(f"median {kind:8s}: {median:.1f} s to the first step, {cpu:.1f} CPU seconds in "
              f"the run ({len(runs)} runs)")
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} "
          "cores")


if __name__ == "__main__":
    main()
