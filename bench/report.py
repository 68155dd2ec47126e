"""The suite's result as text, and as a dated section of bench/RESULTS.md.

    python bench/report.py RUN.json [--command "..."] [--notes "..."] >> bench/RESULTS.md

:func:`environment` describes the machine a run measured (CPU, versions, BLAS kernel,
OPENBLAS_* variables, load average); :func:`format_text` prints a result like
``caffe time``, one table per network with PyTorch's columns beside numbacnn's when the
run compared them, then memory, start-up, GPU figures and the targets.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from targets import verdict

from numbacnn.training.profiler import (
    TABLE_WIDTH,
    layer_table_lines,
    profile_heading,
    throughput_line,
    warmup_line,
)

# ----------------------------------------------------------------------------- environment


def _cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in text.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def _blas() -> list[dict[str, Any]] | str:
    try:
        import threadpoolctl
    except ImportError:
        return "unknown (pip install threadpoolctl to see the BLAS kernel)"
    keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer")
    return [{k: info.get(k) for k in keys} for info in threadpoolctl.threadpool_info()
            if info.get("user_api") == "blas"]


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, where the system has them."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def environment(device: str) -> dict[str, Any]:
    """Date, machine, versions, BLAS kernel, the OPENBLAS_* variables in force, the load
    average now, and the GPU on CUDA."""
    import importlib.metadata

    import numpy as np

    from numbacnn import __version__
    from numbacnn.device import describe_cpu

    cpu = describe_cpu()
    versions = {"numbacnn": __version__, "python": platform.python_version(),
                "numba": cpu.numba_version, "numpy": np.__version__}
    try:
        versions["torch"] = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        versions["torch"] = None
    env: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(), "cpu": _cpu_model(), "llvm_cpu": cpu.name,
        "cores": cpu.cores, "numba_threads": cpu.threads, "platform": platform.platform(),
        "versions": versions, "blas": _blas(),
        "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
        "device": device, "load_average": load_average(),
    }
    if device == "cuda":
        from numba import cuda

        name = getattr(cuda.get_current_device(), "name", "CUDA simulator")
        env["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
    return env


# ----------------------------------------------------------------------------- text


def _ratio_text(ours: float, theirs: float) -> str:
    return f"{ours / theirs:>6.2f}" if theirs > 0 else f"{'-':>6}"


def _torch_columns(net: dict[str, Any]) -> list[str]:
    """PyTorch's cells for each line of numbacnn's layer table (header, layers, loss,
    update, total, step), with numbacnn ÷ PyTorch."""
    torch = net["torch"]

    def cells(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
        return (f"{theirs['forward_ms']:>9.3f} {theirs['backward_ms']:>9.3f} "
                f"{_ratio_text(ours['forward_ms'], theirs['forward_ms'])} "
                f"{_ratio_text(ours['backward_ms'], theirs['backward_ms'])}")

    return [f"{'torch fwd':>9} {'torch bwd':>9} {'÷ fwd':>6} {'÷ bwd':>6}",
            *(cells(ours, theirs)
              for ours, theirs in zip(net["layers"], torch["layers"], strict=True)),
            cells(net["loss"], torch["loss"]),
            f"{torch['update']['ms']:>9.3f} {'':>9} "
            f"{_ratio_text(net['update']['ms'], torch['update']['ms'])}",
            cells(net["total"], torch["total"]),
            f"{torch['total']['step_ms']:>9.3f} {'':>9} "
            f"{_ratio_text(net['total']['step_ms'], torch['total']['step_ms'])}"]


def network_text(net: dict[str, Any]) -> list[str]:
    """One network of a result: numbacnn's profile with PyTorch's beside it, conv rates."""
    torch = net.get("torch", {})
    lines = [profile_heading(net)]
    if "layers" in net:
        table = layer_table_lines(net)
        if "layers" in torch:
            table = [f"{ours:<{TABLE_WIDTH}} │ {theirs}"
                     for ours, theirs in zip(table, _torch_columns(net), strict=True)]
            table.append("     ÷ = numbacnn ms ÷ PyTorch ms: above 1 numbacnn is slower")
        lines += table
    line = throughput_line(net)
    if "train" in torch:
        line += (f"; PyTorch {torch['train']['images_per_s']:,.1f} images/s "
                 f"({torch['train']['step_ms']:.1f} ms/step); numbacnn ÷ PyTorch = "
                 f"{net['ratio']['throughput']:.2f}")
    elif "skipped" in torch:
        line += f"; PyTorch {torch['skipped']}"
    lines.append(line)
    line = warmup_line(net)
    if "warmup_times" in torch:
        line += f" (PyTorch first step {torch['warmup_times']['first_step_s']:.2f} s)"
    lines.append(line)
    rates = net.get("conv_rate")
    if rates and rates["layers"]:
        lines.append(f"conv forward rate vs {rates['reference']} of the same product:")
        for c in rates["layers"]:
            lines.append(f"  {c['index']:>3} {c['layer']:<34} {c['gemm']:<24} "
                         f"{c['gflops']:>7.1f} vs {c['sgemm_gflops']:>7.1f} GFLOP/s "
                         f"= {c['ratio']:>4.0%}")
        t = rates["total"]
        lines.append(f"      {'all convolutions':<59} {t['gflops']:>7.1f} vs "
                     f"{t['sgemm_gflops']:>7.1f} GFLOP/s = {t['ratio']:>4.0%}")
    return lines


def _memory_text(memory: dict[str, Any]) -> list[str]:
    lines = [f"peak RSS, {memory['spec']} batch {memory['batch']}, {memory['steps']} training "
             "steps in a fresh process:"]
    for framework in ("numbacnn", "torch"):
        if framework in memory:
            m = memory[framework]
            lines.append(f"  {framework:<9} " + (f"{m['peak_rss_mib']:,.0f} MiB"
                                                 if "peak_rss_mib" in m else m.get("error", "")))
    if "ratio" in memory:
        lines.append(f"  numbacnn ÷ PyTorch = {memory['ratio']:.2f}")
    return lines


def _startup_text(startup: dict[str, Any]) -> list[str]:
    cache = "kernels from numba's cache" if startup["fresh_cache"] else "numba's cache as it was"
    lines = [f"start-up, process start to the first finished training step ({cache}): "
             f"{startup['first_step_s']:.2f} s", f"  {startup['method']}"]
    if "train_command_s" in startup:
        lines.append(f"  numbacnn train: {startup['train_command_s']:.2f} s"
                     + (f" (cold cache: {startup['cold_train_command_s']:.2f} s)"
                        if "cold_train_command_s" in startup else ""))
    phases = startup["phases"]
    lines.append(f"  bare train_step process: {startup['train_step_process_s']:.2f} s"
                 + (f" (cold cache: {startup['cold_train_step_process_s']:.2f} s)"
                    if "cold_train_step_process_s" in startup else "")
                 + f"; import {phases['import_s']:.2f} s, build {phases['build_s']:.2f} s, "
                   f"step {phases['step_s']:.2f} s, the rest is the interpreter's start")
    if "train_command_error" in startup:
        lines.append(f"  (train command not timed: {startup['train_command_error']})")
    return lines


def _gpu_text(result: dict[str, Any]) -> list[str]:
    lines = []
    sgemm = result.get("sgemm")
    if sgemm:
        rates = [f"{name} {sgemm[key]:.2f}" for key, name in (
            ("numbacnn_tflops", "numba SGEMM (fp32)"),
            ("cublas_fp32_tflops", "cuBLAS via numbacnn (fp32)"),
            ("cublas_tf32_tflops", "cuBLAS via numbacnn (tf32)"),
            ("torch_cublas_tflops", "torch cuBLAS (fp32)")) if key in sgemm]
        lines += ["", f"SGEMM {sgemm['n']}³ TFLOP/s: " + ", ".join(rates)]
    for traffic in result.get("traffic", []):
        step, update = traffic["per_step"], traffic["per_progress_update"]
        lines.append(f"{traffic['spec']} batch {traffic['batch']}, one training step "
                     f"({traffic['gemm']}): {step['launches']} launches, {step['h2d_copies']} "
                     f"host→device and {step['d2h_copies']} device→host copies, "
                     f"{step['allocations']} device allocations; per progress update "
                     f"{update['d2h_copies']} device→host copy, {update['launches']} launch")
    return lines


def format_text(result: dict[str, Any]) -> str:
    """A suite result as tables, one per network, then the run-wide parts and targets."""
    env = result["environment"]
    lines = [f"bench/suite.py on {env['device']}: {env['cpu']}, {env['cores']} cores, "
             f"numba {env['versions']['numba']}, numpy {env['versions']['numpy']}"
             + (f", GPU {env['gpu']}" if "gpu" in env else "")]
    for net in result["networks"]:
        lines += ["", *network_text(net)]
    if result.get("memory"):
        lines += ["", *_memory_text(result["memory"])]
    if result.get("startup"):
        lines += ["", *_startup_text(result["startup"])]
    lines += _gpu_text(result)
    lines += ["", "targets:"]
    for row in result.get("targets", []):
        shown = row["measured"]  # "not measured", or a value to prefix with "measured"
        shown = shown if shown == "not measured" else f"measured {shown}"
        lines.append(f"  [{verdict(row['passed']):>4}] {row['target']}: {row['goal']}; {shown}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- RESULTS.md


def _load_text(values: list[float] | None) -> str:
    return " ".join(f"{v:.2f}" for v in values) if values else "unknown"


def markdown_section(result: dict[str, Any], command: str, notes: str = "") -> str:
    """A dated RESULTS.md section: machine, versions, command, the targets, the text."""
    env = result["environment"]
    v = env["versions"]
    blas = env["blas"]
    blas_text = (", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']}, "
                           f"{b['num_threads']} threads)" for b in blas)
                 if isinstance(blas, list) else str(blas))
    openblas = ", ".join(f"{k}={val if val is not None else '(unset)'}"
                         for k, val in env["openblas_env"].items())
    out = [f"## {env['date']} — {env['device']}, {env['cpu']}", "",
           f"- machine: {env['cpu']} ({env.get('llvm_cpu', 'unknown')}), {env['cores']} "
           f"cores, numba threads {env['numba_threads']}, {env['platform']}"
           + (f", GPU {env['gpu']}" if "gpu" in env else ""),
           f"- versions: numbacnn {v['numbacnn']}, Python {v['python']}, numba {v['numba']}, "
           f"numpy {v['numpy']}, torch {v['torch'] or '(not installed)'}",
           f"- BLAS (threadpoolctl): {blas_text}; {openblas}",
           f"- load average (1, 5, 15 min) at the start: {_load_text(env.get('load_average'))}, "
           f"at the end: {_load_text(env.get('load_average_end'))}",
           f"- command: `{command}`"]
    if notes:
        out.append(f"- notes: {notes}")
    out += ["", "### Targets", "", "| target | goal | measured | result |",
            "| --- | --- | --- | --- |"]
    for row in result.get("targets", []):
        out.append(f"| {row['target']} | {row['goal']} | {row['measured']} | "
                   f"{verdict(row['passed'])} |")
    out += ["", "### Output", "", "```", format_text(result), "```", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """``python bench/report.py RUN.json``: the RESULTS.md section of a saved result."""
    parser = argparse.ArgumentParser(prog="python bench/report.py",
                                     description="a RESULTS.md section from a saved result "
                                                 "(python bench/suite.py --output RUN.json)")
    parser.add_argument("file", type=Path)
    parser.add_argument("--command", default="python bench/suite.py",
                        help="the command that ran, as the section shows it")
    parser.add_argument("--notes", default="")
    args = parser.parse_args(argv)
    result = json.loads(args.file.read_text(encoding="utf-8"))
    print(markdown_section(result, args.command, args.notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
