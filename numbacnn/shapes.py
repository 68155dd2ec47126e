"""The shape calculator: every layer's output volume, with the arithmetic shown.

``shape_table(spec_or_network)`` walks the layers' own shape code (``build``,
``param_shapes``, ``flops``, ``window``; no kernel runs, numba is not imported) and
returns a :class:`ShapeReport`; ``format_table``, ``format_json`` and ``format_csv``
print it. One row per layer: output W×H×D (``55x55x96``; fully connected outputs
as their length, ``4096``), the lecture's (W − F + 2P)/S + 1 with the numbers in,
weights, biases, FLOPs for one image (2 × multiply-adds), float32 activation memory
for a batch, and the receptive field (rf += (F − 1)·jump, jump *= S; a fully
connected layer sees the whole input, reported as the input's larger side).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from numbacnn.errors import ShapeError
from numbacnn.spec import Spec, format_input, format_layer, layer_kwargs, load_spec

if TYPE_CHECKING:
    from numbacnn.layers.base import Layer, Shape
    from numbacnn.network import Network

FLOAT32_BYTES = 4
FIELDS = ("index", "name", "type", "spec", "output", "weights", "biases", "params", "flops",
          "activation_bytes", "receptive_field", "formula")


@dataclass(frozen=True)
class ShapeRow:
    """One layer of the table. ``output`` is (W, H, D); ``flat`` marks a vector output
    (after fc or flatten), shown as D alone."""

    index: int
    name: str
    type: str
    spec: str
    output: tuple[int, int, int]
    flat: bool
    formula: str
    weights: int
    biases: int
    flops: int
    activation_bytes: int
    receptive_field: int
    sees_whole_input: bool

    @property
    def params(self) -> int:
        return self.weights + self.biases

    @property
    def output_text(self) -> str:
        W, H, D = self.output
        return str(D) if self.flat else f"{W}x{H}x{D}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON/CSV fields of this row (exact numbers)."""
        return {"index": self.index, "name": self.name, "type": self.type, "spec": self.spec,
                "output": list(self.output), "weights": self.weights, "biases": self.biases,
                "params": self.params, "flops": self.flops,
                "activation_bytes": self.activation_bytes,
                "receptive_field": self.receptive_field, "formula": self.formula}


@dataclass(frozen=True)
class ShapeReport:
    """The rows of a network for an input (C, H, W) and a batch size, with totals."""

    input_shape: Shape
    batch: int
    rows: tuple[ShapeRow, ...]
    source: str = ""

    @property
    def total_params(self) -> int:
        return sum(row.params for row in self.rows)

    @property
    def total_flops(self) -> int:
        return sum(row.flops for row in self.rows)

    @property
    def total_activation_bytes(self) -> int:
        """Activation memory of every layer's output (the input not included)."""
        return sum(row.activation_bytes for row in self.rows)

    def to_dict(self) -> dict[str, Any]:
        C, H, W = self.input_shape
        return {"input": [W, H, C], "batch": self.batch,
                "layers": [row.to_dict() for row in self.rows],
                "total_params": self.total_params, "total_flops": self.total_flops,
                "total_activation_bytes": self.total_activation_bytes}


def shape_table(spec_or_network: str | Spec | Network, input_shape: Shape | None = None,
                batch: int = 1) -> ShapeReport:
    """The report of a spec (preset name, file, text or Spec) or of a built Network.

    ``input_shape`` (C, H, W) overrides the spec's input line; a Network uses its own.
    Geometry errors raise SpecError naming the spec line, with the arithmetic.
    """
    if batch < 1:
        raise ShapeError(f"batch must be ≥ 1, got {batch}")
    if isinstance(spec_or_network, str):
        spec_or_network = load_spec(spec_or_network)
    if isinstance(spec_or_network, Spec):
        layers = spec_or_network.build(input_shape)
        shape = input_shape or spec_or_network.input_shape
        source = spec_or_network.source
    else:
        network = spec_or_network
        if network.input_shape is None:
            raise ShapeError("network: build it with an input shape (C, H, W) first")
        layers = [*network.layers, network.loss]
        shape, source = network.input_shape, "network"
    return ShapeReport(tuple(shape), batch, tuple(_rows(layers, batch)), source)  # type: ignore[arg-type]


def _rows(layers: list[Layer], batch: int) -> list[ShapeRow]:
    rows = []
    counters: dict[str, int] = {}
    _, H0, W0 = layers[0].input_shape  # type: ignore[misc]
    rf, jump, whole, flat = 1, 1, False, False
    for index, layer in enumerate(layers, start=1):
        window = layer.window()
        if window is None:
            whole, flat = True, True
        elif not whole:
            F, S = window
            rf, jump = rf + (F - 1) * jump, jump * S
        if layer.spatial:
            flat = False
        C, H, W = layer.output_shape  # type: ignore[misc]
        shapes = layer.param_shapes()
        biases = sum(_size(shapes[key]) for key in layer.bias_keys if key in shapes)
        # rows named as in the lecture: CONV1 … CONV5, FC6 … (layers numbered together)
        group = layer.numbered_with or layer.kind
        counters[group] = counters.get(group, 0) + 1
        rows.append(ShapeRow(
            index=index,
            name=f"{layer.table_name or layer.kind.upper()}{counters[group]}",
            type=layer.kind,
            spec=format_layer(layer.kind, layer_kwargs(layer)),
            output=(W, H, C),
            flat=flat,
            formula=layer.arithmetic(),
            weights=layer.num_params() - biases,
            biases=biases,
            flops=int(layer.flops()),
            activation_bytes=FLOAT32_BYTES * C * H * W * batch,
            receptive_field=max(H0, W0) if whole else rf,
            sees_whole_input=whole,
        ))
    return rows


def training_bytes(net: Network, batch: int) -> int:
    """An estimate of the memory a training step of ``net`` with ``batch`` images needs:
    weights, gradients and two optimizer slots, and per layer its output, its input
    gradient and a second buffer (mask, argmax, scale), plus a convolution's im2col
    columns. Exact integers, so absurd sizes are reported, not overflowed."""
    params = sum(layer.num_params() for layer in net.layers)
    total = 4 * FLOAT32_BYTES * params
    for layer in net.layers:
        C, H, W = layer.output_shape  # type: ignore[misc]
        total += 3 * FLOAT32_BYTES * batch * C * H * W + layer.workspace_bytes(batch)
    C, H, W = net.input_shape  # type: ignore[misc]
    return total + 2 * FLOAT32_BYTES * batch * C * H * W


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n if shape else 0


# --- printing ------------------------------------------------------------------------

def human_count(n: float) -> str:
    """1234567 → '1.2M' (SI prefixes; plain below 1000)."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(int(n))


def human_bytes(n: int) -> str:
    """1161600 → '1.1 MiB' (binary prefixes)."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


_COLUMNS = ("#", "name", "layer", "output", "arithmetic", "weights", "biases", "params",
            "FLOPs", "memory", "RF")
_RIGHT = {"#", "weights", "biases", "params", "FLOPs", "memory", "RF"}


def format_table(report: ShapeReport) -> str:
    """The report as an aligned text table with a header line and a totals line."""
    cells = [[str(r.index), r.name, r.spec, r.output_text, r.formula, f"{r.weights:,}",
              f"{r.biases:,}", f"{r.params:,}", human_count(r.flops),
              human_bytes(r.activation_bytes),
              f"{r.receptive_field} (all)" if r.sees_whole_input else str(r.receptive_field)]
             for r in report.rows]
    totals = ["", "total", "", "", "", "", "", f"{report.total_params:,}",
              human_count(report.total_flops), human_bytes(report.total_activation_bytes), ""]
    widths = [max(len(row[i]) for row in [list(_COLUMNS), *cells, totals])
              for i in range(len(_COLUMNS))]

    def line(row: list[str] | tuple[str, ...]) -> str:
        return "  ".join(cell.rjust(w) if col in _RIGHT else cell.ljust(w)
                         for cell, w, col in zip(row, widths, _COLUMNS, strict=True)).rstrip()

    rule = "-" * len(line(["-" * w for w in widths]))
    C, H, W = report.input_shape
    input_bytes = FLOAT32_BYTES * C * H * W * report.batch
    title = f"{report.source}: " if report.source and report.source != "<spec>" else ""
    header = (f"{title}input {format_input(report.input_shape)} (W x H x D), batch "
              f"{report.batch}; input memory {human_bytes(input_bytes)}")
    footer = (f"{len(report.rows)} layer{'' if len(report.rows) == 1 else 's'}, "
              f"{report.total_params:,} parameters "
              f"({human_bytes(FLOAT32_BYTES * report.total_params)} float32), "
              f"{human_count(report.total_flops)} FLOPs per image, activations "
              f"{human_bytes(report.total_activation_bytes)} for a batch of {report.batch}")
    body = [line(_COLUMNS), rule, *(line(row) for row in cells), rule, line(totals)]
    return "\n".join([header, *body, footer]) + "\n"


def format_json(report: ShapeReport) -> str:
    """The report as JSON (exact numbers; ``input`` and ``output`` are [W, H, D])."""
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


def format_csv(report: ShapeReport) -> str:
    """A header row and one row per layer (``output`` written as WxHxD)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FIELDS)
    for row in report.rows:
        fields = row.to_dict()
        fields["output"] = "x".join(str(d) for d in row.output)
        writer.writerow([fields[key] for key in FIELDS])
    return buffer.getvalue()


FORMATTERS = {"table": format_table, "json": format_json, "csv": format_csv}
