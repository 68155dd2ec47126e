"""``numbacnn devices``: what the dispatcher sees (CPU threads and SIMD width; the GPU
with its compute capability and memory, or why there is none)."""

from __future__ import annotations

import os
import platform

import click


def _cpu_lines() -> list[str]:
    import numba
    from numba.core import config

    try:
        import llvmlite.binding as llvm

        features = llvm.get_host_cpu_features()
        simd = ("AVX-512 (16 float32 lanes)" if features.get("avx512f") else
                "AVX2 (8 float32 lanes)" if features.get("avx2") else
                "AVX (8 float32 lanes)" if features.get("avx") else
                "NEON (4 float32 lanes)" if features.get("neon") else "SSE (4 float32 lanes)")
        cpu_name = llvm.get_host_cpu_name()
    except Exception:  # pragma: no cover - llvmlite always present with numba
        simd, cpu_name = "unknown", platform.processor() or "unknown"
    return [
        f"cpu: {cpu_name}, {os.cpu_count()} logical cores, numba threads "
        f"{config.NUMBA_NUM_THREADS}, SIMD {simd}",
        f"     numba {numba.__version__}, threading layer {config.THREADING_LAYER}",
    ]


def _gpu_lines() -> list[str]:
    from numbacnn.device import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if reason is not None:
        return [f"cuda: none ({reason})"]
    from numba import cuda

    lines = []
    for dev in cuda.gpus:
        with dev:
            ctx = cuda.current_context()
            free, total = ctx.get_memory_info()
            d = ctx.device
            cc = d.compute_capability
            name = d.name.decode() if isinstance(d.name, bytes) else d.name
            lines.append(f"cuda:{d.id}: {name}, compute capability {cc[0]}.{cc[1]}, "
                         f"{total / 2**30:.1f} GiB ({free / 2**30:.1f} GiB free), "
                         f"{d.MULTIPROCESSOR_COUNT} SMs")
    return lines


@click.command()
def devices() -> None:
    """Show the CPU and GPU that numbacnn can run on, and the device 'auto' picks."""
    from numbacnn.device import get_device

    for line in _cpu_lines() + _gpu_lines():
        click.echo(line)
    click.echo(f"selected: {get_device()} (set with --device or NUMBACNN_DEVICE)")


COMMANDS = [devices]
