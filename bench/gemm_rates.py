"""Matrix-product rates for the benchmark suite.

* :func:`conv_rates`: each convolution's forward GFLOP/s (im2col + GEMM + bias and
  reorder) beside the rate of the bare SGEMM of the same product, K × CFF times
  CFF × N·OH·OW: numpy's BLAS on the CPU, numbacnn's CUDA GEMM on a GPU;
* :func:`conv_rate_runs`: the same on the CPU, measured in several fresh processes, each
  convolution's ratio given as the median and spread (min–max) of the runs;
* :func:`gpu_sgemm`: on a GPU, the n³ float32 SGEMM in TFLOP/s through the numba kernel,
  cuBLAS in true FP32 and cuBLAS with TF32 tensor cores, and torch's cuBLAS beside.

    python bench/gemm_rates.py [--size 4096] [--reps 10]     # on a GPU: gpu_sgemm
    python bench/gemm_rates.py --conv fmnist alexnet --runs 5 [--markdown]   # on the CPU

A 2-core VM's rates swing by ±20 % from one process to the next (the host's other
tenants, where the pages land), and one process's 10 steps can sit at either end, so the
CPU target is judged on the median of ``--runs`` processes, each with OPENBLAS_CORETYPE
and OPENBLAS_L2_SIZE unset (numpy's BLAS on its native kernel).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

from numbacnn.training.profiler import clock


def sgemm_seconds(M: int, K: int, N: int, reps: int, device: str) -> tuple[float, str]:
    """Mean seconds of one M×K @ K×N float32 product on ``device`` ("cpu" or "cuda"), and
    what computed it."""
    from numbacnn.device import backend

    rng = np.random.default_rng(1)
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((K, N), dtype=np.float32)
    if device == "cpu":
        out = np.empty((M, N), np.float32)
        np.matmul(a, b, out=out)
        start = time.perf_counter()
        for _ in range(reps):
            np.matmul(a, b, out=out)
        return (time.perf_counter() - start) / reps, "numpy SGEMM"
    B = backend(device)
    da, db, dout = B.to_device(a), B.to_device(b), B.empty((M, N))
    B.gemm(da, db, dout)
    start = clock(B.synchronize)
    for _ in range(reps):
        B.gemm(da, db, dout)
    name = "cuBLAS SGEMM" if B.gemm_name() == "cublas" else "numbacnn CUDA SGEMM"
    return (clock(B.synchronize) - start) / reps, f"{name} ({B.tf32_label()})"


def conv_rates(net: Any, rows: list[dict[str, Any]], batch: int,
               iterations: int) -> dict[str, Any]:
    """Forward GFLOP/s of each convolution of ``net`` (its profile's layer ``rows``, ms per
    step at ``batch`` images) beside the SGEMM of its matrix product, their ratio, and
    the sums over all convolutions; ``reference`` names the SGEMM."""
    out: list[dict[str, Any]] = []
    flops_total = conv_s = gemm_s = 0.0
    reference = ""
    for layer, row in zip(net.layers, rows, strict=True):
        if layer.kind != "conv":
            continue
        K, OH, OW = layer.output_shape
        CFF = layer.input_shape[0] // layer.groups * layer.taps()  # a filter's weights
        flops = 2.0 * K * CFF * batch * OH * OW
        t_conv = row["forward_ms"] / 1e3
        t_gemm, reference = sgemm_seconds(K, CFF, batch * OH * OW, max(3, iterations),
                                          net.device)
        out.append({"index": row["index"], "layer": row["layer"],
                    "gemm": f"{K}x{CFF} @ {CFF}x{batch * OH * OW}",
                    "gflops": flops / t_conv / 1e9, "sgemm_gflops": flops / t_gemm / 1e9,
                    "ratio": t_gemm / t_conv})
        flops_total += flops
        conv_s += t_conv
        gemm_s += t_gemm
    total = ({"gflops": flops_total / conv_s / 1e9, "sgemm_gflops": flops_total / gemm_s / 1e9,
              "ratio": gemm_s / conv_s} if out else {})
    return {"reference": reference, "layers": out, "total": total}


def conv_rate_child(spec: str, batch: int, iterations: int, warmup: int) -> dict[str, Any]:
    """:func:`conv_rates` of ``spec`` profiled on the CPU in this process."""
    from numbacnn.network import Network
    from numbacnn.training.profiler import profile_training

    net = Network.from_spec(spec, device="cpu").initialize(0)
    profile = profile_training(net, batch, iterations, warmup)
    return conv_rates(net, profile["layers"], batch, iterations)


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def conv_rate_runs(spec: str, batch: int, runs: int = 5, iterations: int = 20,
                   warmup: int = 3, timeout: float = 600.0) -> dict[str, Any]:
    """:func:`conv_rate_child` in ``runs`` fresh processes (``OPENBLAS_CORETYPE`` and
    ``OPENBLAS_L2_SIZE`` unset): per convolution and for all of them, the median and
    spread of the conv ÷ SGEMM ratio and the median GFLOP/s of each side."""
    from alternate import child_env  # OPENBLAS_* unset, this tree first on PYTHONPATH

    env = child_env(os.cpu_count() or 1)
    cmd = [sys.executable, __file__, "--conv-child", spec, "--batch", str(batch),
           "--iterations", str(iterations), "--warmup", str(warmup)]
    load_before = os.getloadavg()
    results = []
    for run in range(runs):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"conv rate run {run + 1} of {spec} failed: {tail[:200]}")
        results.append(json.loads(lines[-1]))
        total = results[-1]["total"]
        print(f"gemm_rates: {spec} run {run + 1}: all convolutions {total['ratio']:.0%}",
              file=sys.stderr, flush=True)
    layers = []
    for i, layer in enumerate(results[0]["layers"]):
        runs_of = [r["layers"][i] for r in results]
        layers.append({"index": layer["index"], "layer": layer["layer"], "gemm": layer["gemm"],
                       "ratio": _spread([r["ratio"] for r in runs_of]),
                       "gflops": statistics.median(r["gflops"] for r in runs_of),
                       "sgemm_gflops": statistics.median(r["sgemm_gflops"] for r in runs_of)})
    totals = [r["total"] for r in results]
    return {"spec": spec, "batch": batch, "runs": runs, "iterations": iterations,
            "reference": results[0]["reference"], "layers": layers,
            "total": {"ratio": _spread([t["ratio"] for t in totals]),
                      "gflops": statistics.median(t["gflops"] for t in totals),
                      "sgemm_gflops": statistics.median(t["sgemm_gflops"] for t in totals)},
            "load_before": load_before, "load_after": os.getloadavg()}


def conv_rate_markdown(results: list[dict[str, Any]]) -> str:
    """A RESULTS.md table of :func:`conv_rate_runs` results, a row per convolution."""
    lines = ["| network (batch) | convolution | product | conv GFLOP/s | SGEMM GFLOP/s | "
             "conv ÷ SGEMM, median (min–max) | runs | load avg before → after |",
             "| --- | --- | --- | ---: | ---: | --- | ---: | --- |"]

    def ratio(r: dict[str, float]) -> str:
        return f"{r['median']:.0%} ({r['min']:.0%}–{r['max']:.0%})"

    for res in results:
        where = f"{res['spec']} ({res['batch']})"
        load = f"{res['load_before'][0]:.2f} → {res['load_after'][0]:.2f}"
        for layer in res["layers"]:
            lines.append(f"| {where} | {layer['index']} {layer['layer']} | {layer['gemm']} | "
                         f"{layer['gflops']:.0f} | {layer['sgemm_gflops']:.0f} | "
                         f"{ratio(layer['ratio'])} | {res['runs']} | {load} |")
        total = res["total"]
        lines.append(f"| {where} | **all convolutions** | | {total['gflops']:.0f} | "
                     f"{total['sgemm_gflops']:.0f} | **{ratio(total['ratio'])}** | "
                     f"{res['runs']} | {load} |")
    return "\n".join(lines)


def gpu_sgemm(n: int = 4096, reps: int = 10) -> dict[str, Any]:
    """TFLOP/s of an n³ float32 product through numbacnn's CUDA GEMM: the numba SGEMM,
    cuBLAS in true FP32 and cuBLAS with TF32 tensor cores; torch's cuBLAS (FP32) beside.
    A part that cannot run says why ("skipped: ...")."""
    from numbacnn.backends import cuda as B

    flops = 2.0 * n**3
    chosen, tf32 = B.gemm_name(), B.cublas.tf32_enabled()
    out: dict[str, Any] = {"n": n}
    try:
        for name, label, use_tf32 in (("numba", "numbacnn_tflops", False),
                                      ("cublas", "cublas_fp32_tflops", False),
                                      ("cublas", "cublas_tf32_tflops", True)):
            if name == "cublas" and B.cublas.unavailable_reason() is not None:
                out[label.replace("_tflops", "")] = f"skipped: {B.cublas.unavailable_reason()}"
                continue
            B.set_gemm(name)
            B.set_tf32(use_tf32)
            seconds, _ = sgemm_seconds(n, n, n, reps, "cuda")
            out[label] = flops / seconds / 1e12
    finally:
        B.set_gemm(chosen)
        B.set_tf32(tf32)
    try:
        import torch_models

        out["torch_cublas_tflops"] = torch_models.cublas_tflops(n, reps)
    except Exception as exc:  # torch is optional
        out["torch_cublas"] = f"skipped: {type(exc).__name__}: {exc}"[:200]
    return out


def main(argv: list[str] | None = None) -> int:
    """``python bench/gemm_rates.py``: :func:`gpu_sgemm` as one JSON line (TFLOP/s rounded
    to 0.01); with ``--conv SPEC ...``: :func:`conv_rate_runs` of each spec on the CPU."""
    parser = argparse.ArgumentParser(prog="python bench/gemm_rates.py",
                                     description="SGEMM n³ rates on the GPU; with --conv, "
                                                 "conv forward against SGEMM on the CPU")
    parser.add_argument("--size", type=int, default=4096, help="n of the n³ product")
    parser.add_argument("--reps", type=int, default=10, help="timed products per rate")
    parser.add_argument("--conv", nargs="+", metavar="SPEC",
                        help="conv forward ÷ SGEMM of these networks on the CPU")
    parser.add_argument("--runs", type=int, default=5, help="--conv: fresh processes")
    parser.add_argument("--batch", type=int, help="--conv: batch [default: the suite's]")
    parser.add_argument("--iterations", type=int, default=20,
                        help="--conv: timed steps per process")
    parser.add_argument("--warmup", type=int, default=3, help="--conv: untimed steps first")
    parser.add_argument("--markdown", action="store_true", help="--conv: a RESULTS.md table")
    parser.add_argument("--conv-child", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.conv_child:
        print(json.dumps(conv_rate_child(args.conv_child, args.batch, args.iterations,
                                         args.warmup)))
        return 0
    if args.conv:
        from batches import default_batch

        results = [conv_rate_runs(spec, args.batch or default_batch(spec, "cpu", False),
                                  args.runs, args.iterations, args.warmup)
                   for spec in args.conv]
        print(conv_rate_markdown(results) if args.markdown else json.dumps(results, indent=2))
        return 0
    from numbacnn.device import resolve_device

    resolve_device("cuda")  # a DeviceError saying why there is no GPU, before any work
    rates = gpu_sgemm(args.size, args.reps)
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in rates.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
