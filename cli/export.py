"""``numbacnn export MODEL OUT.onnx``: write a model as an ONNX graph (numbacnn.io.onnx_export).

The graph takes what ``numbacnn predict`` takes (raw pixels 0-255, float32 N×C×H×W) and
gives the class probabilities N×K; docs/onnx.md says what it contains. onnx is imported
inside the command (optional extra ``onnx``).
"""

from __future__ import annotations

from pathlib import Path

import click
from numbacnn_cli.options import echo_replaced, force_option

from numbacnn.errors import shown_path
from numbacnn.io.onnx_export import DEFAULT_OPSET, MIN_OPSET  # imports no onnx

_PATH = click.Path(path_type=Path)


@click.command("export")
@click.argument("model", type=_PATH)
@click.argument("out", type=_PATH, metavar="OUT.onnx")
@click.option("--opset", type=click.IntRange(min=MIN_OPSET), default=DEFAULT_OPSET,
              show_default=True, help=f"ONNX opset of the graph ({MIN_OPSET} or newer, up to "
              "what the installed onnx knows).")
@force_option("OUT.onnx")
def export(model: Path, out: Path, opset: int, force: bool) -> None:
    """Write MODEL as the ONNX file OUT.onnx: input pixels (float32 N x C x H x W, 0-255),
    the model's normalization, every layer, output probabilities (N x K); class names
    in the metadata. Needs the onnx package (pip install 'numbacnn[onnx]')."""
    from numbacnn.io.model_file import load_model
    from numbacnn.io.onnx_export import ExportError, export_onnx, require_onnx
    from numbacnn.io.output_policy import REPLACE, plan_output

    target = plan_output(out, inputs=[model], existing=REPLACE, force=force,
                         what="ONNX graph", error=ExportError, example="model.onnx")
    require_onnx()  # before reading a large model
    net, info = load_model(model, "cpu")  # the weights only need to reach the host
    summary = export_onnx(net, info, target.path, opset=opset)
    echo_replaced(target)
    C, H, W = summary.input_shape
    click.echo(f"wrote {shown_path(out)}: ONNX opset {summary.opset}, {summary.nodes} nodes, "
               f"{summary.parameters:,} parameters, {summary.bytes / 2**20:.1f} MiB; input "
               f"pixels float32 N x {C} x {H} x {W} (0-255), output probabilities float32 "
               f"N x {summary.classes}")


COMMANDS = [export]
