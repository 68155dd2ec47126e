"""``numbacnn shapes SPEC``: every layer's output volume, with the arithmetic shown.

SPEC is a preset name (``alexnet``), a spec file, spec text with ``;`` between layers
(``"input 7x7x1; conv 1 3 stride=2"``), or a numbacnn model file (``model.h5``,
recognised by its content: the table of its network, e.g. one ``numbacnn import``
wrote). The table fits the width: $COLUMNS when set, else the terminal's; written to a
file or a pipe without $COLUMNS it has every column (as ``--wide``). Where every column
does not fit, the compact layout puts the arithmetic on indented lines under each row.
The computation lives in :mod:`numbacnn.shapes`, imported inside the command; for a
spec neither imports numba, so the command answers without compiling anything.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from numbacnn.shapes import FORMATTERS  # imports no numba


class _ShapesCommand(click.Command):
    """The command, with the bundled presets listed at the end of its --help."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from numbacnn.spec import list_presets

        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(f"Presets: {', '.join(list_presets())}. "
                                 "The spec format is described in docs/spec.md.")


@click.command("shapes", cls=_ShapesCommand)
@click.argument("spec")
@click.option("--input", "input_size", metavar="WxHxD", default=None,
              help="Input size, e.g. 227x227x3 (overrides the spec's input line).")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size for the activation memory.")
@click.option("--format", "output_format", type=click.Choice(tuple(FORMATTERS)),
              default="table", show_default=True, help="Output format.")
@click.option("--wide/--compact", "wide", default=None,
              help="Every column on one line per layer, or the narrow layout with the "
                   "arithmetic under each row (default: wide when it fits the terminal).")
def shapes(spec: str, input_size: str | None, batch: int, output_format: str,
           wide: bool | None) -> None:
    """Print each layer's output size, parameters, FLOPs, memory and receptive field.

    SPEC is a preset (listed below), a .spec file, spec text such as
    "input 32x32x3; conv 10 5 stride=1 pad=2", or a model file (model.h5). The table
    fits the terminal ($COLUMNS when set); written to a file or pipe it has every column.
    """
    from numbacnn.errors import MissingInputError, SpecError
    from numbacnn.shapes import MIN_WIDTH, format_table, shape_table, wide_table_width
    from numbacnn.spec import parse_input_size

    input_shape = None
    if input_size is not None:
        try:
            input_shape = parse_input_size(input_size)
        except SpecError as exc:
            raise SpecError(f"--input: {exc}") from None
    model = _model_network(spec, input_size)
    try:
        report = shape_table(model or spec, input_shape=input_shape, batch=batch)
    except MissingInputError as exc:
        raise MissingInputError(f"{exc} or pass --input WxHxD") from None
    if model is not None:
        report = replace(report, source=spec)
    if output_format != "table":
        click.echo(FORMATTERS[output_format](report), nl=False)
        return
    width = _output_width()
    if width is not None:
        width = max(width, MIN_WIDTH)
    if wide is None:
        wide = width is None or wide_table_width(report) <= width
    click.echo(format_table(report, width=width, layout="wide" if wide else "compact"),
               nl=False)
    if not wide and width is not None:
        click.echo("(--wide shows weights, biases, FLOPs and receptive fields)")


def _model_network(spec: str, input_size: str | None) -> Any:
    """The network of the model file ``spec`` (on the CPU), or None when ``spec`` is no
    numbacnn model file (checked by content; a spec text or preset name opens nothing)."""
    import os

    if not os.path.isfile(spec):
        return None
    from numbacnn.io.model_file import is_model_file, load_model

    if not is_model_file(spec):
        return None
    if input_size is not None:
        raise click.BadParameter(f"{spec} is a model file: its input size is the one it was "
                                 "trained (or imported) with; leave --input out",
                                 param_hint="--input")
    return load_model(spec, device="cpu")[0]


def _output_width() -> int | None:
    """The width to fit: $COLUMNS when it is a number, else the terminal's columns when
    stdout is a terminal, else None (a file or pipe: no limit)."""
    import os
    import shutil
    import sys

    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size((80, 24)).columns
    return None


COMMANDS = [shapes]
