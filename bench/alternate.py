"""numbacnn and PyTorch timed in separate processes, alternating, several runs each.

    python bench/alternate.py fmnist --batch 128 --runs 5            # a quiet machine
    python bench/alternate.py fmnist --batch 128 --runs 5 --load     # beside a busy process
    python bench/alternate.py fmnist alexnet --markdown >> bench/RESULTS.md
    python bench/alternate.py fmnist --batch 128 --inference          # forward passes only

Why: in one process the two frameworks share OpenMP settings and thread pools
(numbacnn's ``OMP_WAIT_POLICY=PASSIVE`` slows PyTorch; PyTorch's spinning threads slow
numbacnn), and PyTorch's speed on this 2-core machine swings 10× with other load. So
each measurement is a fresh process training one framework: a warm-up, then ``--steps``
timed training steps (forward, loss, backward, SGD with momentum) on the same random
batch, with the same thread count, and ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE``
unset; numbacnn, PyTorch, numbacnn, PyTorch … The report gives, per framework, the
median and the spread (min–max) of the runs' images/s, the ratio of the medians, the
BLAS kernel numpy used (threadpoolctl), and the load average before and after.
``--load`` starts one other busy process (a numbacnn training of the same network on
one thread) beside every measurement: the laptop-in-use case.

PyTorch runs the twins of ``bench/torch_models.py`` (never a numbacnn dependency);
without it the PyTorch column says so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("numbacnn", "torch")


# --- child processes -----------------------------------------------------------------------


def child(framework: str, spec: str, batch: int, steps: int, warmup: int,
          inference: bool = False, conv_algo: str | None = None) -> dict[str, Any]:
    """Train ``spec`` in this process with one framework (``inference``: run inference
    forward passes instead, no gradients; ``conv_algo``: numbacnn's convolution
    algorithm, None for its default); images/s of the timed steps."""
    sys.path.insert(0, str(ROOT))
    from numbacnn.network import Network
    from numbacnn.training.profiler import LEARNING_RATE, random_batch

    net = Network.from_spec(spec, device="cpu")  # the torch twin reads its architecture
    if framework == "numbacnn":
        from numbacnn.training.optim import SGD

        net.initialize(0)
        if conv_algo is not None:
            net.conv_algo = conv_algo
        x, y = random_batch(net.input_shape, net.num_classes, batch)
        opt = SGD(momentum=0.9, weight_decay=5e-4)

        def step() -> None:
            if inference:
                net.forward(x, training=False)
            else:
                net.train_step_on_device(x, y)
                opt.step(net, LEARNING_RATE)
    else:
        import torch
        import torch_models

        model, xt, yt, opt = torch_models.setup_training(net, batch)
        if inference:
            model.eval()

        def step() -> None:
            if inference:
                with torch.inference_mode():
                    h = xt
                    for module in model:
                        h = module(h)
            else:
                torch_models.train_step(model, xt, yt, opt)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    out = {"framework": framework, "spec": spec, "batch": batch, "inference": inference,
           "images_per_s": batch * steps / sum(times), "best_step_ms": 1e3 * min(times)}
    try:
        import threadpoolctl

        out["blas"] = [f"{i['internal_api']} {i.get('architecture')} {i['num_threads']} threads"
                       for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    except ImportError:
        pass
    if framework == "numbacnn":
        from numbacnn.device import backend

        out["gemm"] = backend("cpu").gemm_label()  # the SGEMM numbacnn's drivers call
    return out


def busy(spec: str) -> None:
    """Train ``spec`` with numbacnn on one thread until killed (the --load process)."""
    os.environ["NUMBA_NUM_THREADS"] = "1"
    sys.path.insert(0, str(ROOT))
    from numbacnn.network import Network
    from numbacnn.training.optim import SGD
    from numbacnn.training.profiler import random_batch

    net = Network.from_spec(spec).initialize(1, device="cpu")
    x, y = random_batch(net.input_shape, net.num_classes, 64, seed=1)
    opt = SGD()
    while True:
        net.train_step_on_device(x, y)
        opt.step(net, 1e-3)


# --- the driver --------------------------------------------------------------------------


def child_env(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env["NUMBA_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_child(framework: str, spec: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", framework, spec, "--batch", str(args.batch),
           "--steps", str(args.steps), "--warmup", str(args.warmup),
           *(["--inference"] if args.inference else []),
           *(["--conv-algo", args.conv_algo] if args.conv_algo else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(args.threads),
                          timeout=args.timeout)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"framework": framework, "error": last[:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and spread of the runs' images/s (errors counted apart)."""
    rates = [r["images_per_s"] for r in runs if "images_per_s" in r]
    errors = [r["error"] for r in runs if "error" in r]
    if not rates:
        return {"runs": 0, "error": errors[0] if errors else "no runs"}
    return {"runs": len(rates), "median": statistics.median(rates), "min": min(rates),
            "max": max(rates), "errors": len(errors),
            "blas": next((r["blas"] for r in runs if "blas" in r), None),
            "gemm": next((r["gemm"] for r in runs if "gemm" in r), None)}


def compare(spec: str, args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    loader = None
    if args.load:
        loader = subprocess.Popen([sys.executable, __file__, "--busy", spec],
                                  env=child_env(1), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        time.sleep(3)  # let it start computing
    runs: dict[str, list[dict[str, Any]]] = {fw: [] for fw in FRAMEWORKS}
    try:
        for _ in range(args.runs):
            for fw in FRAMEWORKS:
                runs[fw].append(run_child(fw, spec, args))
                print(f"alternate: {spec} {fw}: {runs[fw][-1]}", file=sys.stderr, flush=True)
    finally:
        if loader is not None:
            loader.kill()
            loader.wait()
    result = {"spec": spec, "batch": args.batch, "threads": args.threads, "steps": args.steps,
              "inference": bool(args.inference), "conv_algo": args.conv_algo,
              "load": bool(args.load), "load_before": load_before,
              "load_after": os.getloadavg(),
              "summary": {fw: summarize(runs[fw]) for fw in FRAMEWORKS}}
    ours, theirs = result["summary"]["numbacnn"], result["summary"]["torch"]
    if "median" in ours and "median" in theirs:
        result["ratio_of_medians"] = ours["median"] / theirs["median"]
    return result


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| network | batch | threads | other load | numbacnn images/s, median (min–max) | "
             "PyTorch images/s, median (min–max) | numbacnn ÷ PyTorch | load avg before → after |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]

    def cell(s: dict[str, Any]) -> str:
        if "median" not in s:
            return f"not measured ({s.get('error', '')})"
        return f"{s['median']:,.0f} ({s['min']:,.0f}–{s['max']:,.0f}), {s['runs']} runs"

    for r in results:
        ratio = f"{r['ratio_of_medians']:.2f}" if "ratio_of_medians" in r else "—"
        what = f"{r['spec']} (inference)" if r.get("inference") else r["spec"]
        details = [d for d in (r["summary"]["numbacnn"].get("gemm"), r.get("conv_algo")) if d]
        what += f" ({', '.join(details)})" if details else ""
        lines.append(f"| {what} | {r['batch']} | {r['threads']} | "
                     f"{'a second training' if r['load'] else 'none'} | "
                     f"{cell(r['summary']['numbacnn'])} | {cell(r['summary']['torch'])} | "
                     f"{ratio} | {r['load_before'][0]:.2f} → {r['load_after'][0]:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("specs", nargs="+", help="presets or spec text")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--runs", type=int, default=5, help="processes per framework")
    p.add_argument("--steps", type=int, default=20, help="timed steps per process")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--load", action="store_true", help="beside one other busy process")
    p.add_argument("--markdown", action="store_true", help="print a RESULTS.md table")
    p.add_argument("--inference", action="store_true",
                   help="time inference forward passes instead of training steps")
    p.add_argument("--conv-algo", choices=("im2col", "winograd", "winograd3", "winograd4", "direct",
                                                  "auto"),
                   default=None,
                   help="numbacnn's convolution algorithm (default: the library's)")
    p.add_argument("--child", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    p.add_argument("--busy", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.busy:
        busy(args.specs[0])
        return 0
    if args.child:
        print(json.dumps(child(args.child, args.specs[0], args.batch, args.steps,
                               args.warmup, args.inference, args.conv_algo)))
        return 0
    results = [compare(spec, args) for spec in args.specs]
    print(markdown(results) if args.markdown else json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
