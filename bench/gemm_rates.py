"""Matrix-product rates for the benchmark suite.

* :func:`conv_rates`: each convolution's forward GFLOP/s (im2col + GEMM + bias and
  reorder) beside the rate of the bare SGEMM of the same product, K × CFF times
  CFF × N·OH·OW: numpy's BLAS on the CPU, numbacnn's CUDA GEMM on a GPU;
* :func:`gpu_sgemm`: on a GPU, the n³ float32 SGEMM in TFLOP/s through the numba kernel,
  cuBLAS in true FP32 and cuBLAS with TF32 tensor cores, and torch's cuBLAS beside.

    python bench/gemm_rates.py [--size 4096] [--reps 10]     # on a GPU: gpu_sgemm
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from numbacnn.profiler import clock


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
        CFF = layer.input_shape[0] * layer.size * layer.size
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
    to 0.01)."""
    parser = argparse.ArgumentParser(prog="python bench/gemm_rates.py",
                                     description="SGEMM n³ rates on the GPU")
    parser.add_argument("--size", type=int, default=4096, help="n of the n³ product")
    parser.add_argument("--reps", type=int, default=10, help="timed products per rate")
    args = parser.parse_args(argv)
    from numbacnn.device import set_device

    set_device("cuda")
    rates = gpu_sgemm(args.size, args.reps)
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in rates.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
