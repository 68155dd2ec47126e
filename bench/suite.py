"""The benchmark suite: the figures numbacnn's performance targets are judged by.

    python bench/suite.py [SPEC ...] [--compare torch] [--device cpu|cuda|auto] [--quick]
                          [--json] [--output RUN.json] ...      (--help for every option)

For each network (a preset name or spec; default fmnist and alexnet, ``--quick``
fmnist): numbacnn's profile (:mod:`numbacnn.training.profiler`: per-layer forward and backward
ms, images/s, the JIT warm-up), each convolution's GFLOP/s beside the SGEMM of the
same product (``gemm_rates.py``), and with ``--compare torch`` the PyTorch twin timed
the same way (``torch_models.py``) and numbacnn ÷ PyTorch. Run-wide: peak RSS of
training and the start-up of a second process, in fresh processes (``processes.py``;
on the CPU by default), on CUDA the SGEMM rates and each step's launches and copies
(``traffic.py``), and the targets (``targets.py``). ``report.py`` prints the result
and turns a saved one into a RESULTS.md section. The result's layout is in
bench/README.md.

PyTorch is never a numbacnn dependency: without it ``--compare torch`` is skipped, with
the reason recorded. Progress lines go to stderr, the result to stdout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batches import default_batch
from gemm_rates import conv_rates, gpu_sgemm
from processes import peak_rss, startup
from report import environment, format_text, load_average
from targets import evaluate_targets
from traffic import step_traffic

from numbacnn.errors import NumbacnnError
from numbacnn.io.atomic_file import replace_atomically
from numbacnn.io.output_policy import REPLACE, plan_output
from numbacnn.training.profiler import profile_training, spec_label

DEFAULT_SPECS = ("fmnist", "alexnet")
QUICK_SPECS = ("fmnist",)
DEFAULT_ITERATIONS, DEFAULT_WARMUP = 10, 2
QUICK_ITERATIONS, QUICK_WARMUP = 2, 1
TORCH_PIN = "torch==2.13.0"  # a CPU build; an unpinned torch downloads a CUDA build


def torch_unavailable_reason() -> str | None:
    """Why the PyTorch comparison cannot run, or None when it can."""
    if importlib.util.find_spec("torch") is None:
        return f"PyTorch is not installed (pip install {TORCH_PIN})"
    return None


def bench_numbacnn(spec: str, batch: int, iterations: int, warmup: int,
                   layers: bool = True, seed: int = 0, device: str = "auto") -> dict[str, Any]:
    """numbacnn's profile of ``spec`` on ``device`` ("auto", "cpu" or "cuda"), with its
    convolutions' GFLOP/s against SGEMM when the layers were timed."""
    from numbacnn.network import Network

    net = Network.from_spec(spec, device=device).initialize(seed)
    result = profile_training(net, batch, iterations, warmup, layers, seed)
    result["spec"] = spec_label(spec)
    if layers:
        result["conv_rate"] = conv_rates(net, result["layers"], batch, iterations)
    return result


def bench_torch(spec: str, batch: int, iterations: int, warmup: int, device: str,
                layers: bool = True, seed: int = 0, tf32: bool = False) -> dict[str, Any]:
    """The PyTorch twin of ``spec`` timed the same way; on CUDA in true FP32 (cuDNN's and
    cuBLAS's TF32 off) unless ``tf32``."""
    import torch_models

    from numbacnn.network import Network

    result = torch_models.bench_twin(Network.from_spec(spec), batch=batch,
                                     iterations=iterations, warmup=warmup, device=device,
                                     layers=layers, seed=seed, tf32=tf32)
    result["spec"] = spec_label(spec)
    return result


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """numbacnn ÷ PyTorch: images/s (above 1 = numbacnn faster) and per-layer and step ms
    (above 1 = numbacnn slower; None where PyTorch's time is 0)."""
    def ratio(a: float, b: float) -> float | None:
        return a / b if b > 0 else None

    out: dict[str, Any] = {
        "throughput": ours["train"]["images_per_s"] / theirs["train"]["images_per_s"]}
    if "layers" in ours and "layers" in theirs:
        out["layers_time"] = [{"index": a["index"],
                               "forward": ratio(a["forward_ms"], b["forward_ms"]),
                               "backward": ratio(a["backward_ms"], b["backward_ms"])}
                              for a, b in zip(ours["layers"], theirs["layers"], strict=True)]
        out["step_time"] = ratio(ours["total"]["step_ms"], theirs["total"]["step_ms"])
    return out


def run_benchmarks(specs: list[str] | tuple[str, ...] = (), batch: int | None = None,
                   iterations: int | None = None, warmup: int | None = None,
                   device: str = "auto", compare_with: str | None = None, quick: bool = False,
                   layers: bool = True, memory: bool | None = None,
                   startup_check: bool | None = None, tf32: bool = False,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the whole suite; returns the JSON-ready result (see bench/README.md).

    ``memory=None`` and ``startup_check=None`` measure peak RSS and start-up on the CPU
    only (CUDA kernels are compiled anew in every process). ``log`` receives progress lines.
    """
    from numbacnn.device import backend, resolve_device, set_tf32

    say = log or (lambda _line: None)
    dev = resolve_device(device)
    set_tf32(tf32, dev)
    specs = list(specs) or list(QUICK_SPECS if quick else DEFAULT_SPECS)
    iterations = iterations or (QUICK_ITERATIONS if quick else DEFAULT_ITERATIONS)
    warmup = warmup or (QUICK_WARMUP if quick else DEFAULT_WARMUP)
    memory = dev == "cpu" if memory is None else memory
    startup_check = dev == "cpu" if startup_check is None else startup_check
    torch_reason = torch_unavailable_reason() if compare_with == "torch" else None
    if torch_reason is not None:
        say(f"--compare torch skipped: {torch_reason}")
    with_torch = compare_with == "torch" and torch_reason is None
    threads = None
    if with_torch:
        import torch_models

        threads = torch_models.compute_threads()
    gemm = backend(dev).gemm_label()
    result: dict[str, Any] = {
        "suite": "bench/suite.py", "quick": quick, "environment": environment(dev),
        "config": {"specs": [spec_label(s) for s in specs], "iterations": iterations,
                   "warmup": warmup, "device": dev, "compare": compare_with,
                   "precision": "tf32" if tf32 and dev == "cuda" else "fp32",
                   "gemm": gemm, "torch_threads": threads},
        "networks": [],
    }
    for spec in specs:
        n = batch or default_batch(spec, dev, quick)
        say(f"{spec_label(spec)}: numbacnn, batch {n}, {warmup} warm-up + {iterations} steps")
        entry = bench_numbacnn(spec, n, iterations, warmup, layers=layers, device=dev)
        if with_torch:
            say(f"{spec_label(spec)}: PyTorch, batch {n}")
            entry["torch"] = bench_torch(spec, n, iterations, warmup, dev, layers=layers,
                                         tf32=tf32)
            entry["ratio"] = compare(entry, entry["torch"])
        elif compare_with == "torch":
            entry["torch"] = {"skipped": f"skipped: {torch_reason}"}
        result["networks"].append(entry)
    if memory:
        spec = "alexnet" if ("alexnet" in specs and not quick) else specs[0]
        n = batch or default_batch(spec, dev, quick)
        frameworks = ("numbacnn", "torch") if with_torch else ("numbacnn",)
        say(f"peak RSS: {spec_label(spec)} batch {n} in fresh processes ({', '.join(frameworks)})")
        result["memory"] = peak_rss(spec, n, 2 if quick else 3, dev, frameworks)
    if startup_check:
        say("start-up: a new process up to its first training step")
        result["startup"] = startup(dev, batch=32 if quick else 128, fresh_cache=not quick)
    if dev == "cuda":
        say("SGEMM rate")
        result["sgemm"] = gpu_sgemm(1024 if quick else 4096)
        result["traffic"] = [step_traffic(spec, batch or default_batch(spec, dev, quick))
                             for spec in specs]
    result["environment"]["load_average_end"] = load_average()
    result["targets"] = evaluate_targets(result)
    return result


def main(argv: list[str] | None = None) -> int:
    """``python bench/suite.py``: parse, run, print (and write ``--output``)."""
    parser = argparse.ArgumentParser(
        prog="python bench/suite.py", description="numbacnn's benchmark suite: per-layer "
        "times, throughput, warm-up, conv GFLOP/s against SGEMM, peak memory, start-up and "
        "the targets, optionally beside PyTorch")
    parser.add_argument("specs", nargs="*", metavar="SPEC",
                        help="presets, spec files or spec text [default: fmnist alexnet; "
                             "--quick: fmnist]")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size of every network [default: fmnist 128, alexnet 16 on "
                             "the CPU and 128 on CUDA, others 64; --quick: 32, alexnet 2]")
    parser.add_argument("--iterations", type=int, default=None,
                        help="timed steps per measurement [default: 10; --quick: 2]")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps first [default: 2; --quick: 1]")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument("--compare", dest="compare_with", choices=("torch",), default=None,
                        help="run the same networks in PyTorch in this process")
    parser.add_argument("--tf32", action="store_true",
                        help="on a GPU both frameworks may use TF32 tensor cores")
    parser.add_argument("--json", dest="as_json", action="store_true",
                        help="print the result as JSON")
    parser.add_argument("--output", type=Path, default=None,
                        help="also write the JSON result to this file (an existing one is "
                             "replaced; a model or dataset only with --force)")
    parser.add_argument("--force", action="store_true",
                        help="let --output replace a model or dataset file (never a SPEC file)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (fmnist batch 32, 2 steps; alexnet only when named)")
    parser.add_argument("--layers", action=argparse.BooleanOptionalAction, default=True,
                        help="time every layer (and the conv GFLOP/s), or only whole steps")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=None,
                        help="peak RSS in fresh processes [default: on for the CPU]")
    parser.add_argument("--startup", action=argparse.BooleanOptionalAction, default=None,
                        help="a new process up to its first training step "
                             "[default: on for the CPU]")
    args = parser.parse_args(argv)
    for name in ("batch", "iterations", "warmup"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    try:
        target = None if args.output is None else plan_output(
            args.output, inputs=args.specs, existing=REPLACE, force=args.force,
            what="benchmark result", field="output", example="run.json")
        result = run_benchmarks(
            args.specs, batch=args.batch, iterations=args.iterations, warmup=args.warmup,
            device=args.device, compare_with=args.compare_with, quick=args.quick,
            layers=args.layers, memory=args.memory, startup_check=args.startup,
            tf32=args.tf32, log=lambda line: print(f"bench: {line}", file=sys.stderr,
                                                   flush=True))
    except NumbacnnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    if target is not None:
        data = (text + "\n").encode("utf-8")
        try:
            replace_atomically(target.path, lambda fh: fh.write(data), NumbacnnError,
                               "benchmark result")
        except NumbacnnError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if target.replaces:
            print(f"replaced {target.given}", file=sys.stderr)
    print(text if args.as_json else format_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
