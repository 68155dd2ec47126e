"""``numbacnn bench``: per-layer times like ``caffe time``, training throughput, JIT
warm-up, convolution GFLOP/s against SGEMM, peak memory and start-up, optionally beside
PyTorch (``--compare torch``). The work is done by :mod:`numbacnn.bench`, imported
inside the command so that other subcommands start fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("bench")
@click.argument("specs", nargs=-1, metavar="[SPEC ...]")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Batch size for every network [default: fmnist 128, alexnet 16 on the CPU "
                   "and 128 on CUDA; --quick: 32 and 2].")
@click.option("--iterations", type=click.IntRange(min=1), default=None,
              help="Timed training steps per measurement [default: 10; --quick: 2].")
@click.option("--warmup", type=click.IntRange(min=1), default=None,
              help="Untimed steps first; the first one's extra time is the JIT compile "
                   "[default: 2; --quick: 1].")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="auto",
              show_default=True, help="Device to run on.")
@click.option("--compare", "compare_with", type=click.Choice(["torch"]), default=None,
              help="Run the same networks in PyTorch in this process and print the ratios.")
@click.option("--tf32", is_flag=True, help="On a GPU, both frameworks may use TF32 tensor "
              "cores (reported as tf32); default true FP32 on both sides.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the JSON result to this file.")
@click.option("--quick", is_flag=True,
              help="Tiny sizes (fmnist batch 32, 2 steps; alexnet only when named, batch 2).")
@click.option("--layers/--no-layers", default=True, show_default=True,
              help="Time every layer (and the conv GFLOP/s), or only whole steps.")
@click.option("--memory/--no-memory", default=None,
              help="Peak RSS of training in fresh processes [default: on for the CPU].")
@click.option("--startup/--no-startup", default=None,
              help="Time a new process up to its first finished training step "
                   "[default: on for the CPU].")
def bench(specs: tuple[str, ...], batch: int | None, iterations: int | None,
          warmup: int | None, device: str, compare_with: str | None, tf32: bool, as_json: bool,
          output: Path | None, quick: bool, layers: bool, memory: bool | None,
          startup: bool | None) -> None:
    """Benchmark training of SPEC networks (presets, spec files or spec text).

    Default: fmnist and alexnet (--quick: fmnist). Every time is measured after the
    backend has finished its queued work; per-layer rows are averaged over the steps.
    """
    from numbacnn.bench import format_text, run_benchmarks

    if output is not None:  # refused now, not after the whole benchmark ran
        from numbacnn.model_io import check_writable

        check_writable(output, "--output")

    def log(line: str) -> None:
        click.echo(f"bench: {line}", err=True)

    result = run_benchmarks(specs, batch=batch, iterations=iterations, warmup=warmup,
                            device=device, compare_with=compare_with, quick=quick,
                            layers=layers, memory=memory, startup_check=startup, tf32=tf32,
                            log=log)
    text = json.dumps(result, indent=2)
    if output is not None:
        from numbacnn.atomic_file import replace_atomically
        from numbacnn.errors import NumbacnnError

        data = (text + "\n").encode("utf-8")
        replace_atomically(output, lambda fh: fh.write(data), NumbacnnError, "benchmark result")
    click.echo(text if as_json else format_text(result))


COMMANDS = [bench]
