"""``numbacnn import MODEL.onnx OUT.h5``: an ONNX graph as a numbacnn model file
(numbacnn.io.onnx_import).

The graph must be a chain of the operators numbacnn has layers for; docs/onnx.md
("Importing") lists them. onnx is imported inside the command (optional extra ``onnx``).
"""

from __future__ import annotations

from pathlib import Path

import click
from numbacnn_cli.options import echo_replaced, force_option, with_command

from numbacnn.errors import SpecError, shown_path
from numbacnn.geometry import volume

_PATH = click.Path(path_type=Path)
_FROM = {"metadata": "from the metadata", "graph": "from the graph",
         "numbered": "numbered 0..K-1", "none": "none (the graph takes its input as it is)"}


@click.command("import")
@click.argument("model", type=_PATH, metavar="MODEL.onnx")
@click.argument("out", type=_PATH, metavar="OUT.h5")
@click.option("--input", "input_shape", metavar="WxHxD", default=None,
              help="Input size, e.g. 224x224x3, where the graph leaves it symbolic.")
@force_option("OUT.h5")
def import_(model: Path, out: Path, input_shape: str | None, force: bool) -> None:
    """Read the ONNX graph MODEL.onnx (raw pixels 0-255 in, as numbacnn export writes it)
    and write it as the model file OUT.h5 for shapes, inspect, evaluate, predict, plot and
    further training. An operator or attribute numbacnn lacks, or a graph that is not a
    chain, is refused and nothing is written. Needs the onnx package."""
    from numbacnn.errors import ModelFileError
    from numbacnn.io.onnx_import import OnnxImportError, import_onnx
    from numbacnn.io.output_policy import REFUSE, plan_output
    from numbacnn.spec import parse_input_size

    shape = None
    if input_shape is not None:
        try:
            shape = parse_input_size(input_shape)
        except SpecError as exc:
            raise click.BadParameter(str(exc), param_hint="--input") from None
    target = plan_output(out, inputs=[model], existing=REFUSE, force=force, what="model",
                         error=ModelFileError, example="model.h5")
    try:
        summary = import_onnx(model, target.path, shape)
    except OnnxImportError as exc:
        if exc.field == "input_shape" and shape is None:
            raise with_command(exc, f"run: numbacnn import {model} {out} --input WxHxD") from None
        raise
    echo_replaced(target)
    scores = f"{summary.classes} classes" if summary.classes else "ends in a volume"
    click.echo(f"wrote {shown_path(out)}: {summary.layers} layers, {summary.parameters:,} "
               f"parameters, input {volume(summary.input_shape)}, {scores}")
    click.echo(f"spec {_FROM[summary.spec_from]}; class names {_FROM[summary.class_names_from]}; "
               f"normalization {_FROM[summary.normalization_from]}")
    if summary.added_softmax:
        click.echo("note: the graph ends in class scores without Softmax; numbacnn adds its "
                   "softmax, so predict gives probabilities")
    click.echo(f"look at it with: numbacnn shapes {shown_path(out)}; numbacnn inspect "
               f"{shown_path(out)}")


COMMANDS = [import_]
