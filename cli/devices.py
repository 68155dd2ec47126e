"""``numbacnn devices``: what the dispatcher sees (CPU threads and SIMD width; the GPU
with its compute capability and memory, or why there is none). The probing is
:func:`numbacnn.device.describe_cpu` and :func:`numbacnn.device.describe_gpus`; this
module prints."""

from __future__ import annotations

import click


@click.command()
def devices() -> None:
    """Show the CPU and GPU that numbacnn can run on, and the device 'auto' picks."""
    import os

    from numbacnn.device import (
        cuda_unavailable_reason,
        describe_cpu,
        describe_gpus,
        resolve_device,
    )

    cpu = describe_cpu()
    click.echo(f"cpu: {cpu.name}, {cpu.cores} logical cores, numba threads {cpu.threads}, "
               f"SIMD {cpu.simd} ({cpu.float32_lanes} float32 lanes)")
    click.echo(f"     numba {cpu.numba_version}, threading layer {cpu.threading_layer}")
    reason = cuda_unavailable_reason()
    if reason is not None:
        click.echo(f"cuda: none ({reason})")
    for gpu in describe_gpus():
        major, minor = gpu.compute_capability
        memory = (f"{gpu.memory_bytes / 2**30:.1f} GiB ({gpu.free_bytes / 2**30:.1f} GiB free)"
                  if gpu.memory_bytes else "memory not reported")
        sms = f"{gpu.multiprocessors} SMs" if gpu.multiprocessors else "SMs not reported"
        click.echo(f"cuda:{gpu.index}: {gpu.name}, compute capability {major}.{minor}, "
                   f"{memory}, {sms}")
    selected = resolve_device(os.environ.get("NUMBACNN_DEVICE", "auto"))
    click.echo(f"selected: {selected} (set with --device or NUMBACNN_DEVICE)")


COMMANDS = [devices]
