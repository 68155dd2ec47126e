"""Measurements that need a fresh process: peak RSS of training, and start-up time.

The suite calls :func:`peak_rss` and :func:`startup`; each starts this file as a helper
process, which prints one JSON line last:

    python bench/processes.py rss {numbacnn,torch} SPEC [--batch N] [--steps N] [--device D]
    python bench/processes.py first-step SPEC [--batch N] [--device D]
    python bench/processes.py trainer-first-step SPEC [--batch N] [--limit N] [--device D]

Helpers import this source tree's numbacnn (it is put first on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from numbacnn.training.profiler import LEARNING_RATE, random_batch, spec_label

ROOT = Path(__file__).resolve().parents[1]


class HelperFailed(Exception):
    """A helper process ended without its result line."""


def run_helper(args: list[str], timeout: float = 600.0, env: dict[str, str] | None = None,
               cwd: str | None = None) -> dict[str, Any]:
    """Run ``python bench/processes.py ARGS`` and return its last stdout line, a JSON
    object; HelperFailed when it fails."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), environment.get("PYTHONPATH")) if p)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=environment | (env or {}))
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise HelperFailed(f"benchmark helper {' '.join(args)} failed "
                           f"(exit {proc.returncode}): {tail}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        raise HelperFailed(f"benchmark helper {' '.join(args)} ended without its result "
                           f"line (last line: {lines[-1][:200]!r})") from None


# ----------------------------------------------------------------------------- the suite's side


def peak_rss(spec: str, batch: int, steps: int, device: str,
             frameworks: tuple[str, ...]) -> dict[str, Any]:
    """Peak RSS (MiB) of ``steps`` training steps in a fresh process per framework, and
    numbacnn's ÷ PyTorch's when both ran."""
    out: dict[str, Any] = {"spec": spec_label(spec), "batch": batch, "steps": steps}
    for framework in frameworks:
        try:
            out[framework] = run_helper(["rss", framework, spec, "--batch", str(batch),
                                         "--steps", str(steps), "--device", device])
        except (HelperFailed, subprocess.TimeoutExpired) as exc:
            out[framework] = {"error": str(exc)}
    ours, theirs = out.get("numbacnn", {}), out.get("torch", {})
    if "peak_rss_mib" in ours and "peak_rss_mib" in theirs:
        out["ratio"] = ours["peak_rss_mib"] / theirs["peak_rss_mib"]
    return out


def startup(device: str, batch: int = 128, fresh_cache: bool = True) -> dict[str, Any]:
    """Seconds from a new process' start to its first finished training step.

    Two kinds of process are timed: one that starts as ``numbacnn train fmnist --epochs
    1 --limit 256`` does (the command imported, the Trainer on fashion-mnist-mini) and
    leaves at its first progress report, right after its first SGD update; and a bare
    one that builds fmnist at ``batch`` and runs one ``train_step`` and update. With
    ``fresh_cache`` each kind runs twice on an empty numba cache directory: the first
    process compiles every kernel it needs (the cold JIT cost), the second loads them
    from the cache and is the figure (each kind has its own empty cache); without it one
    process runs on the cache as it is. ``first_step_s`` is the trainer's figure when it
    ran, else the bare one's.
    """
    runs_per_kind = 2 if fresh_cache else 1
    with tempfile.TemporaryDirectory(prefix="numbacnn-bench-") as tmp:

        def timed(args: list[str], cache: str) -> tuple[float, dict[str, Any]]:
            # numbacnn keeps its CPU kernels under NUMBACNN_CACHE_DIR (backends/kernel_cache.py)
            env = {"NUMBA_CACHE_DIR": str(Path(tmp) / cache / "numba"),
                   "NUMBACNN_CACHE_DIR": str(Path(tmp) / cache / "numbacnn")} \
                if fresh_cache else {}
            started = time.time()
            result = run_helper(args, env=env, cwd=tmp)
            return result.pop("done_at") - started, result

        out: dict[str, Any] = {"batch": batch, "fresh_cache": fresh_cache}
        runs = [timed(["first-step", "fmnist", "--batch", str(batch), "--device", device],
                      "bare") for _ in range(runs_per_kind)]
        out["train_step_process_s"] = runs[-1][0]
        out["phases"] = runs[-1][1]
        if fresh_cache:
            out["cold_train_step_process_s"] = runs[0][0]
        out.update(method="new process: build fmnist, one train_step + SGD update",
                   first_step_s=runs[-1][0])
        try:
            runs = [timed(["trainer-first-step", "fmnist", "--limit", "256", "--device",
                           device], "train") for _ in range(runs_per_kind)]
        except HelperFailed as exc:
            out["train_command_error"] = str(exc)
        else:
            out["train_command_s"] = runs[-1][0]
            if fresh_cache:
                out["cold_train_command_s"] = runs[0][0]
            out.update(method="new process: numbacnn train fmnist --epochs 1 --limit 256 "
                              "(its imports and Trainer), to its first SGD update",
                       first_step_s=runs[-1][0])
    return out


# ----------------------------------------------------------------------------- the helpers


def _max_rss_mib() -> float:
    """resource.getrusage(RUSAGE_SELF).ru_maxrss in MiB (bytes on macOS, KiB elsewhere)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def own_peak_rss() -> dict[str, Any]:
    """This process' peak RSS in MiB.

    Linux carries the parent's peak into a child's ru_maxrss across fork and exec (the
    child starts as a copy of the benchmark process), so there the figure is VmHWM of
    /proc/self/status, the high-water mark of this program's own memory; ru_maxrss is
    kept beside it.
    """
    out: dict[str, Any] = {"ru_maxrss_mib": _max_rss_mib()}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    out["peak_rss_mib"] = int(line.split()[1]) / 1024
                    out["rss_source"] = "VmHWM"
    except OSError:
        pass
    if "peak_rss_mib" not in out:
        out["peak_rss_mib"] = out["ru_maxrss_mib"]
        out["rss_source"] = "ru_maxrss"
    return out


def rss_helper(framework: str, spec: str, batch: int, steps: int,
               device: str) -> dict[str, Any]:
    """Train ``steps`` steps in this (fresh) process and report its peak RSS."""
    from numbacnn.network import Network

    # the torch twin reads only the architecture: a CPU network imports no numba
    net = Network.from_spec(spec, device="cpu" if framework == "torch" else device)
    if framework == "torch":
        import torch_models

        torch_models.train_steps(net, batch=batch, steps=steps, device=device)
    else:
        from numbacnn.training.optim import SGD

        net.initialize(0)
        B = net.backend()
        optimizer = SGD()
        x_host, labels_host = random_batch(net.input_shape, net.num_classes, batch)
        x, labels = B.to_device(x_host), B.to_device(labels_host)
        for _ in range(steps):
            net.train_step(x, labels)
            optimizer.step(net, LEARNING_RATE)
    return {"framework": framework, **own_peak_rss(), "numba_loaded": "numba" in sys.modules,
            "torch_loaded": "torch" in sys.modules}


def first_step_helper(spec: str, batch: int, device: str) -> dict[str, Any]:
    """Import, build and run one training step; ``done_at`` is the wall clock at its end,
    beside the seconds of the import, the build and the step."""
    started = time.perf_counter()
    from numbacnn.network import Network
    from numbacnn.training.optim import SGD

    imported = time.perf_counter()
    net = Network.from_spec(spec, device=device).initialize(0)
    B = net.backend()
    optimizer = SGD()
    x_host, labels_host = random_batch(net.input_shape, net.num_classes, batch)
    x, labels = B.to_device(x_host), B.to_device(labels_host)
    built = time.perf_counter()
    net.train_step(x, labels)
    optimizer.step(net, LEARNING_RATE)
    B.synchronize()
    stepped = time.perf_counter()
    return {"done_at": time.time(), "import_s": imported - started, "build_s": built - imported,
            "step_s": stepped - built}


def trainer_first_step_helper(spec: str, batch: int | None, limit: int, device: str) -> None:
    """Start as ``numbacnn train SPEC --epochs 1 --limit LIMIT`` does (the command's
    modules imported, the dataset loaded, a Trainer built) and leave at the Trainer's
    first progress report, which comes right after the first SGD update: prints the JSON
    line with ``done_at`` and ends the process there."""
    import numbacnn_cli.main  # noqa: F401  (the command's own import, counted)

    from numbacnn.io.dataset_files import load_dataset
    from numbacnn.network import Network
    from numbacnn.training.settings import TrainSettings
    from numbacnn.training.trainer import Trainer

    settings = TrainSettings(spec=spec, epochs=1, limit=limit)
    if batch is not None:
        settings.batch_size = batch

    def first_report(progress: Any) -> None:
        print(json.dumps({"done_at": time.time()}), flush=True)
        os._exit(0)

    net = Network.from_spec(settings.spec, device=device)
    trainer = Trainer(net, load_dataset(settings.data), settings, on_batch=first_report)
    trainer.progress_seconds = 0.0  # report after the first batch on a GPU too
    trainer.run()
    raise SystemExit("training ended without a progress report")


def main(argv: list[str] | None = None) -> int:
    """The helper processes' command line (see the module's doc)."""
    parser = argparse.ArgumentParser(prog="python bench/processes.py")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("rss", help="peak RSS of a few training steps in this process")
    p.add_argument("framework", choices=("numbacnn", "torch"))
    p.add_argument("spec")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p = sub.add_parser("first-step", help="time to the first finished training step")
    p.add_argument("spec")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p = sub.add_parser("trainer-first-step",
                       help="start as numbacnn train does, leave after the first update")
    p.add_argument("spec")
    p.add_argument("--batch", type=int, default=None, help="default: numbacnn train's")
    p.add_argument("--limit", type=int, default=256)
    p.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.what == "rss":
        out = rss_helper(args.framework, args.spec, args.batch, args.steps, args.device)
    elif args.what == "first-step":
        out = first_step_helper(args.spec, args.batch, args.device)
    else:
        trainer_first_step_helper(args.spec, args.batch, args.limit, args.device)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
