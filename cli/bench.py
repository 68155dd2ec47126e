"""``numbacnn bench``: per-layer forward and backward times like ``caffe time``, training
throughput and the JIT warm-up of networks, from :mod:`numbacnn.training.profiler` (imported
inside the command, so that other subcommands start fast). The benchmark suite (PyTorch
beside numbacnn, memory, start-up, the project's targets) is ``bench/suite.py`` in the
source tree.
"""

from __future__ import annotations

from pathlib import Path

import click
from numbacnn_cli.options import device_option, echo_replaced, force_option

from numbacnn.training.bench_result import bench_result, bench_result_text  # imports no numba
from numbacnn.training.settings import CHOICES, TrainSettings

SUITE = "python bench/suite.py"  # the benchmark suite, run from the source tree


@click.command("bench")
@click.argument("specs", nargs=-1, metavar="[SPEC ...]")
@click.option("--batch", type=click.IntRange(min=1), default=TrainSettings.batch_size,
              show_default=True, help="Images per training step.")
@click.option("--iterations", type=click.IntRange(min=1), default=10, show_default=True,
              help="Timed training steps, for the per-layer table and again for throughput.")
@click.option("--warmup", type=click.IntRange(min=1), default=2, show_default=True,
              help="Untimed steps first; the first one's extra time is the JIT compile.")
@device_option()
@click.option("--tf32", is_flag=True, help="On a GPU, let the matrix products use TF32 "
              "tensor cores; default true FP32.")
@click.option("--conv-algo", type=click.Choice(tuple(CHOICES["conv_algo"])),
              default=TrainSettings.conv_algo, show_default=True,
              help="How the convolutions compute (a spec's algo= on a conv line wins).")
@click.option("--layers/--no-layers", default=True, show_default=True,
              help="Time every layer, or only whole steps.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the JSON result to this file (for numbacnn plot bench).")
@force_option("--output file")
@click.option("--compare", "compare_with", type=click.Choice(["torch"]), default=None,
              help=f"Not here: PyTorch beside numbacnn is the benchmark suite's ({SUITE} "
                   "--compare torch, in the source tree).")
def bench(specs: tuple[str, ...], batch: int, iterations: int, warmup: int, device: str,
          tf32: bool, conv_algo: str, layers: bool, as_json: bool, output: Path | None, force: bool,
          compare_with: str | None) -> None:
    """Profile training of SPEC networks (presets, spec files or spec text; default
    fmnist): per-layer forward and backward ms, images/s and the JIT warm-up.

    Every time is read after the device has finished its queued work; per-layer rows
    are averaged over the steps. PyTorch beside numbacnn, peak memory, start-up and the
    project's targets: python bench/suite.py --help, in the source tree.
    """
    if compare_with is not None:
        raise click.UsageError(f"--compare {compare_with} is the benchmark suite's: run "
                               f"{SUITE} {' '.join(specs) or 'fmnist'} --compare "
                               f"{compare_with} in the numbacnn source tree")
    from numbacnn.device import precision, resolve_device, set_tf32
    from numbacnn.training.profiler import format_profile, profile_spec, spec_label

    target = None
    if output is not None:  # refused now, not after the whole benchmark ran
        from numbacnn.io.output_policy import REPLACE, plan_output

        target = plan_output(output, inputs=specs, existing=REPLACE, force=force,
                             what="benchmark result", field="output", example="bench.json")
    chosen = resolve_device(device)
    set_tf32(tf32, chosen)
    networks = []
    for spec in specs or ("fmnist",):
        click.echo(f"bench: {spec_label(spec)}: batch {batch}, {warmup} warm-up + "
                   f"{iterations} steps", err=True)
        networks.append(profile_spec(spec, batch, iterations, warmup, layers, device=chosen,
                                     conv_algo=conv_algo))
    result = bench_result(networks, device=chosen, precision=precision(chosen), batch=batch,
                          iterations=iterations, warmup=warmup)
    text = bench_result_text(result)
    if target is not None:
        from numbacnn.errors import NumbacnnError
        from numbacnn.io.atomic_file import replace_atomically

        data = (text + "\n").encode("utf-8")
        replace_atomically(target.path, lambda fh: fh.write(data), NumbacnnError,
                           "benchmark result")
        echo_replaced(target)
    click.echo(text if as_json else "\n\n".join(format_profile(n) for n in networks))


COMMANDS = [bench]
