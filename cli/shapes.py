"""``numbacnn shapes SPEC``: every layer's output volume, with the arithmetic shown.

SPEC is a preset name (``alexnet``), a spec file, or spec text with ``;`` between
layers (``"input 7x7x1; conv 1 3 stride=2"``). The computation lives in
:mod:`numbacnn.shapes`, imported inside the command; neither imports numba, so the
command answers without compiling anything.
"""

from __future__ import annotations

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
def shapes(spec: str, input_size: str | None, batch: int, output_format: str) -> None:
    """Print each layer's output size, parameters, FLOPs, memory and receptive field.

    SPEC is a preset (listed below), a .spec file, or spec text such as
    "input 32x32x3; conv 10 5 stride=1 pad=2".
    """
    from numbacnn.errors import MissingInputError, SpecError
    from numbacnn.shapes import shape_table
    from numbacnn.spec import parse_input_size

    input_shape = None
    if input_size is not None:
        try:
            input_shape = parse_input_size(input_size)
        except SpecError as exc:
            raise SpecError(f"--input: {exc}") from None
    try:
        report = shape_table(spec, input_shape=input_shape, batch=batch)
    except MissingInputError as exc:
        raise MissingInputError(f"{exc} or pass --input WxHxD") from None
    click.echo(FORMATTERS[output_format](report), nl=False)


COMMANDS = [shapes]
