"""The project's performance targets (bench/README.md), judged on a suite result.

Each row is ``{target, goal, measured, passed}``: ``measured`` is text ("not measured"
when the run did not measure it) and ``passed`` is True, False or None (not measured).
A CUDA run is judged by the GPU targets of issue 8, any other run by the CPU targets
of issue 5.
"""

from __future__ import annotations

from typing import Any

# Issue 8 (GPU, H100/H200, FP32)
GPU_TARGET_CUBLAS_TFLOPS = 40.0  # SGEMM 4096³ through cuBLAS
GPU_TARGET_NUMBA_TFLOPS = 20.0  # the numba SGEMM
GPU_TARGET_FMNIST = 0.5  # × PyTorch FP32, batch 128
GPU_TARGET_ALEXNET = 0.33  # × PyTorch FP32, batch 128
# Issue 5 (CPU)
TARGET_FMNIST_THROUGHPUT = 1.0  # ≥ PyTorch's images/s
TARGET_CONV_RATE = 0.70  # conv forward GFLOP/s ≥ 70 % of numpy SGEMM
TARGET_ALEXNET_THROUGHPUT = 0.8  # ≥ 0.8 × PyTorch at batch 16
TARGET_STARTUP_S = 3.0  # second process: first finished training step
TARGET_RSS_RATIO = 1.5  # alexnet batch-16 peak RSS ≤ 1.5 × PyTorch's


def _row(target: str, goal: str, measured: str | None, passed: bool | None) -> dict[str, Any]:
    return {"target": target, "goal": goal, "measured": measured or "not measured",
            "passed": passed}


def _network(result: dict[str, Any], spec: str) -> dict[str, Any] | None:
    return next((n for n in result.get("networks", []) if n["spec"] == spec), None)


def _throughput_text(net: dict[str, Any], digits: int) -> str:
    return (f"{net['train']['images_per_s']:,.{digits}f} vs "
            f"{net['torch']['train']['images_per_s']:,.{digits}f} images/s = "
            f"{net['ratio']['throughput']:.2f} ×")


def _cpu_throughput_row(result: dict[str, Any], spec: str, goal: float,
                        digits: int) -> dict[str, Any]:
    net = _network(result, spec)
    if net and "ratio" in net:
        return _row(f"{spec} training throughput (batch {net['batch']})",
                    f"≥ {goal:.1f} × PyTorch", _throughput_text(net, digits),
                    net["ratio"]["throughput"] >= goal)
    return _row(f"{spec} training throughput", f"≥ {goal:.1f} × PyTorch", None, None)


def evaluate_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of the result's device with the measured values."""
    if result.get("config", {}).get("device") == "cuda":
        return evaluate_gpu_targets(result)
    rows = [_cpu_throughput_row(result, "fmnist", TARGET_FMNIST_THROUGHPUT, 0)]
    for net in result.get("networks", []):
        total = net.get("conv_rate", {}).get("total")
        if total:
            rows.append(_row(f"conv forward rate ({net['spec']}, batch {net['batch']})",
                             f"≥ {TARGET_CONV_RATE:.0%} of {net['conv_rate']['reference']}",
                             f"{total['gflops']:.1f} vs {total['sgemm_gflops']:.1f} GFLOP/s "
                             f"= {total['ratio']:.0%}", total["ratio"] >= TARGET_CONV_RATE))
    rows.append(_cpu_throughput_row(result, "alexnet", TARGET_ALEXNET_THROUGHPUT, 1))
    startup = result.get("startup")
    rows.append(_row("second process: start to first finished step",
                     f"≤ {TARGET_STARTUP_S:g} s",
                     f"{startup['first_step_s']:.2f} s ({startup['method']})" if startup else None,
                     startup["first_step_s"] <= TARGET_STARTUP_S if startup else None))
    memory = result.get("memory")
    if memory and "ratio" in memory:
        rows.append(_row(f"peak RSS ({memory['spec']} batch {memory['batch']} training)",
                         f"≤ {TARGET_RSS_RATIO:g} × PyTorch",
                         f"{memory['numbacnn']['peak_rss_mib']:,.0f} vs "
                         f"{memory['torch']['peak_rss_mib']:,.0f} MiB = {memory['ratio']:.2f} ×",
                         memory["ratio"] <= TARGET_RSS_RATIO))
    else:
        rows.append(_row("peak RSS (alexnet batch 16 training)",
                         f"≤ {TARGET_RSS_RATIO:g} × PyTorch", None, None))
    return rows


def evaluate_gpu_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 8's GPU targets (FP32; a TF32 run is reported but judged against FP32 goals
    only when both sides ran in TF32, and says so)."""
    rows = []
    precision = result.get("config", {}).get("precision", "fp32")
    sgemm = result.get("sgemm", {})
    for key, name, goal in (("cublas_fp32_tflops", "SGEMM 4096³ through cuBLAS (fp32)",
                             GPU_TARGET_CUBLAS_TFLOPS),
                            ("numbacnn_tflops", "SGEMM 4096³, numba kernel (fp32)",
                             GPU_TARGET_NUMBA_TFLOPS)):
        value = sgemm.get(key)
        rows.append(_row(name, f"≥ {goal:g} TFLOP/s",
                         None if value is None else f"{value:.1f} TFLOP/s",
                         None if value is None else value >= goal))
    for spec, goal in (("fmnist", GPU_TARGET_FMNIST), ("alexnet", GPU_TARGET_ALEXNET)):
        net = _network(result, spec)
        label = f"{spec} training, batch {net['batch'] if net else 128} ({precision})"
        if net and "ratio" in net:
            rows.append(_row(label, f"≥ {goal:g} × PyTorch {precision}",
                             _throughput_text(net, 0), net["ratio"]["throughput"] >= goal))
        else:
            rows.append(_row(label, f"≥ {goal:g} × PyTorch {precision}", None, None))
    return rows


def verdict(passed: bool | None) -> str:
    """"pass", "FAIL" or "n/a" (not measured)."""
    return "n/a" if passed is None else "pass" if passed else "FAIL"
