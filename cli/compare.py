"""``numbacnn compare A.h5 B.h5 ...``: training runs side by side in one table, and the
loading that ``numbacnn plot curves A.h5 B.h5 ...`` shares with it.

The rows and the labels ("what differs") come from :mod:`numbacnn.tools.compare`; this
module prints them. numbacnn modules are imported inside the commands so that other
commands start fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from numbacnn_cli.options import batch_option, device_option

_PATH = click.Path(path_type=Path)


def _load_runs(paths: Sequence[Path], device: str) -> list[tuple[Path, Any, Any]]:
    from numbacnn.device import resolve_device
    from numbacnn.io.model_file import load_model

    device = resolve_device(device)  # once, before the first file is read
    return [(path, *load_model(path, device)) for path in paths]


def runs_curves(paths: Sequence[Path], *, data: str | None, test_accuracy: bool,
                per_step: bool, batch_size: int, device: str) -> Any:
    """The overlay figure of ``plot curves`` with several MODELs."""
    from numbacnn.tools.compare import compare_runs
    from numbacnn.tools.run_curves import RunCurves, runs_figure

    runs = _load_runs(paths, "cpu" if not test_accuracy else device)
    rows = compare_runs(runs, data, batch_size, test_accuracy)
    _notes(rows)
    if per_step:
        for path, _, info in runs:
            if not len(info.steps):
                click.echo(f"note: {path} has no per-step loss log (written before numbacnn "
                           "kept one); drawn per epoch", err=True)
    curves = [RunCurves(row.label, info.history, info.steps, row.test_accuracy)
              for row, (_, _, info) in zip(rows, runs, strict=True)]
    keys = sorted({key for row in rows for key in row.differences})
    title = (f"{len(runs)} runs differing in {', '.join(keys)}" if keys
             else f"{len(runs)} runs with the same settings and spec")
    return runs_figure(curves, per_step, title=title, where=[str(p) for p in paths])


def _notes(rows: Sequence[Any]) -> None:
    for row in rows:
        if row.note:
            click.echo(f"note: {row.path}: no test accuracy ({row.note})", err=True)


def _seconds(value: float) -> str:
    if math.isnan(value):
        return "—"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(round(value)), 60)
    return f"{minutes} min {seconds:02d} s"


def _loss(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.4f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """Aligned text columns, two spaces apart: the first ``left`` columns left-aligned
    (names), the others right-aligned (numbers)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths),
                      *(line(r) for r in rows)])


@click.command("compare")
@click.argument("models", nargs=-1, required=True, type=_PATH, metavar="MODEL [MODEL]...")
@click.option("--data", help="Dataset whose test split scores every model [default: the one "
              "each was trained on].")
@click.option("--test-accuracy/--no-test-accuracy", default=True, show_default=True,
              help="Score each model on the test split (model files store no test accuracy).")
@batch_option
@device_option()
def compare(models: tuple[Path, ...], data: str | None, test_accuracy: bool,
            batch_size: int, device: str) -> None:
    """Training runs side by side: one row per MODEL with what sets it apart from the
    others (its settings and spec as stored), test accuracy, final training and
    validation loss, epochs and training time.

    Runs are labelled as plot curves labels them (activation=tanh, lr=0.1, ...). The test
    accuracy is computed, as evaluate does, on the test split of --data or of the
    dataset each run was trained on, with the last epoch's weights.
    """
    from numbacnn.tools.compare import compare_runs

    runs = _load_runs(models, device if test_accuracy else "cpu")
    rows = compare_runs(runs, data, batch_size, test_accuracy)
    keys = list(dict.fromkeys(key for row in rows for key in row.differences))
    if len(models) == 1:
        click.echo(f"1 run: {models[0]} (give several model files to compare them)")
    elif len(keys) > 1:
        click.echo(f"{len(rows)} runs; they differ in: {', '.join(keys)} (one column each; "
                   f"plot curves labels a run by them: {rows[0].label})")
    elif keys:
        click.echo(f"{len(rows)} runs; they differ in: {keys[0]}")
    else:
        click.echo(f"{len(rows)} runs with the same settings and spec (labelled by file name)")
    # one difference: the label (activation=tanh) says it all; several: a column each
    columns = keys if len(keys) > 1 else []
    label = [] if columns else ["run"]
    headers = [*label, "file", *columns, "test acc", "train loss", "val loss", "epochs done",
               "time"]
    cells = []
    for row in rows:
        accuracy = "—" if row.test_accuracy is None else f"{100 * row.test_accuracy:.2f}%"
        cells.append([*([row.label] if label else []), str(row.path),
                      *(row.differences.get(k, "—") for k in columns), accuracy,
                      _loss(row.train_loss), _loss(row.val_loss), str(row.epochs),
                      _seconds(row.seconds)])
    click.echo(table(headers, cells, left=len(label) + 1 + len(columns)))
    sources = sorted({row.test_source for row in rows if row.test_source})
    if sources:
        click.echo(f"test acc: computed on the test split of {', '.join(sources)} with each "
                   "run's last-epoch weights (model files store no test accuracy)")
    click.echo("time: the epochs' wall-clock time summed (the first epoch of a process "
               "includes numba compiling the kernels)")
    _notes(rows)


COMMANDS = [compare]
