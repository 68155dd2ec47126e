"""The performance figures of a GPU session, one framework per process, and their summary.

    python bench/gpu_results.py probe                       # exit 3 and one line: no GPU
    python bench/gpu_results.py run numbacnn alexnet DIR    # FP32 then TF32, → DIR/*.json
    python bench/gpu_results.py run torch alexnet DIR
    python bench/gpu_results.py collect DIR OUT.json [--runs RUNS.json]  # the summary

``run`` trains ``--batch`` (128) random images of the spec on "cuda" for ``--iterations``
steps after the warm-up, in true FP32 and then in TF32 (the same process, the kernels
compiled once; PyTorch's cuDNN and cuBLAS TF32 switched the same way), with the per-layer
table in FP32 only. numbacnn and PyTorch never share a process (their allocators, cuDNN
and OpenMP runtimes stay apart). ``collect`` writes what ``bench/gpu-check.sh`` hands
back as ``gpu-results.json``: the device's name, driver, the commit, the date, and per
network and precision the images/s of both and numbacnn ÷ PyTorch.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PRECISIONS = ("fp32", "tf32")


def no_gpu_reason() -> str | None:
    """Why there is no CUDA GPU to measure on, or None."""
    try:
        from numba import cuda
    except ImportError as exc:
        return f"numba cannot be imported ({exc})"
    try:
        if not cuda.is_available():
            return "numba sees no CUDA GPU (no driver or no device)"
        return None if cuda.gpus else "numba lists no CUDA device"
    except Exception as exc:  # the driver refuses: report it, no traceback
        return f"CUDA is not usable: {type(exc).__name__}: {exc}"


def run(framework: str, spec: str, out_dir: Path, batch: int, iterations: int,
        warmup: int) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    import suite

    from numbacnn.device import set_tf32

    for precision in PRECISIONS:
        tf32 = precision == "tf32"
        layers = not tf32
        if framework == "numbacnn":
            set_tf32(tf32, "cuda")
            result = suite.bench_numbacnn(spec, batch, iterations, warmup, layers=layers,
                                          device="cuda")
        else:
            result = suite.bench_torch(spec, batch, iterations, warmup, "cuda", layers=layers,
                                       tf32=tf32)
        result["precision"] = precision
        path = out_dir / f"{framework}-{Path(spec).stem}-{precision}.json"
        path.write_text(json.dumps(result, indent=1, default=str))
        print(f"{framework} {spec} {precision}: {result['train']['images_per_s']:,.0f} "
              f"images/s ({path.name})", flush=True)


def _command(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=30,
                              cwd=ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def commit() -> str:
    """The commit measured: git's, else GPU_CHECK_COMMIT (a copied tree has no .git)."""
    return (_command(["git", "rev-parse", "--short=12", "HEAD"])
            or os.environ.get("GPU_CHECK_COMMIT", "")
            or "unknown (no .git here: set GPU_CHECK_COMMIT)")


def collect(in_dir: Path, out: Path, runs_out: Path | None = None) -> dict[str, Any]:
    """Write the summary of the runs in ``in_dir`` to ``out`` (and, with ``runs_out``,
    every run's whole result, per-layer tables included, to that file)."""
    smi = _command(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                    "--format=csv,noheader"]).splitlines()
    name, driver, memory = ([s.strip() for s in smi[0].split(",")] + ["", "", ""])[:3] \
        if smi else ("", "", "")
    summary: dict[str, Any] = {
        "device": name or None, "driver": driver or None, "memory": memory or None,
        "commit": commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "networks": {},
    }
    reason = no_gpu_reason()
    if reason is not None:
        summary["no_gpu"] = reason
    runs = {}
    for path in sorted(in_dir.glob("*-*-*.json")):
        framework, rest = path.stem.split("-", 1)  # numbacnn-fmnist-bn-fp32
        spec, precision = rest.rsplit("-", 1)
        if framework not in ("numbacnn", "torch") or precision not in PRECISIONS:
            continue
        result = runs[path.stem] = json.loads(path.read_text())
        entry = summary["networks"].setdefault(spec, {}).setdefault(precision, {})
        entry[f"{framework}_images_per_s"] = round(result["train"]["images_per_s"], 1)
        entry["batch"] = result.get("batch")
    for by_precision in summary["networks"].values():
        for entry in by_precision.values():
            ours, theirs = entry.get("numbacnn_images_per_s"), entry.get("torch_images_per_s")
            if ours and theirs:
                entry["numbacnn_over_torch"] = round(ours / theirs, 3)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    if runs_out is not None:
        runs_out.write_text(json.dumps(runs, indent=1, default=str) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("probe", help="exit 3 with one line when there is no GPU")
    one = sub.add_parser("run", help="one framework, one spec, FP32 then TF32")
    one.add_argument("framework", choices=("numbacnn", "torch"))
    one.add_argument("spec")
    one.add_argument("out_dir", type=Path)
    one.add_argument("--batch", type=int, default=128)
    one.add_argument("--iterations", type=int, default=20)
    one.add_argument("--warmup", type=int, default=3)
    both = sub.add_parser("collect", help="the summary of a directory of runs")
    both.add_argument("in_dir", type=Path)
    both.add_argument("out", type=Path)
    both.add_argument("--runs", type=Path, default=None, help="every run's whole result")
    args = parser.parse_args(argv)
    if args.command == "collect":
        summary = collect(args.in_dir, args.out, args.runs)
        print(json.dumps(summary, indent=1))
        return 0
    reason = no_gpu_reason()
    if reason is not None:
        print(f"no GPU: {reason}")
        return 3
    if args.command == "run":
        args.out_dir.mkdir(parents=True, exist_ok=True)
        run(args.framework, args.spec, args.out_dir, args.batch, args.iterations, args.warmup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
