"""The shape calculator: every layer's output volume, with the arithmetic shown.

``shape_table(spec_or_network)`` walks the layers' own shape code (``build``,
``param_shapes``, ``flops``, ``window``; no kernel runs, numba is not imported) and
returns a :class:`ShapeReport`; ``format_table``, ``format_json``, ``format_csv`` and
``format_html`` print it (``str(report)`` is the text table, and a notebook shows the
HTML one). One row per layer: output W×H×D (``55x55x96``; fully connected outputs as
their length, ``4096``), the lecture's (W − F + 2P)/S + 1 with the numbers in, the
parameters with the lecture's (F·F·D1)·K + K, FLOPs for one image (2 × multiply-adds),
float32 activation memory for a batch, and the receptive field (rf += (F − 1)·jump,
jump *= S; a fully connected layer sees the whole input, reported as the input's larger
side).

This module imports no :mod:`numbacnn.network` (the network imports it for its
``summary``): a network is anything with ``layers``, ``input_shape`` and ``loss``.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import shutil
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from numbacnn.errors import ShapeError
from numbacnn.geometry import VOLUME_AXES, volume
from numbacnn.spec import Spec, format_layer, layer_kwargs, load_spec

if TYPE_CHECKING:
    from numbacnn.layers.base import Layer, Shape

FLOAT32_BYTES = 4
FIELDS = ("index", "name", "type", "spec", "output", "weights", "biases", "params", "flops",
          "activation_bytes", "receptive_field", "formula", "params_formula")


class NetworkLike(Protocol):
    """What the calculator reads of a network (:class:`numbacnn.network.Network`)."""

    layers: list[Layer]
    input_shape: Shape | None
    loss: Layer


@dataclass(frozen=True)
class ShapeRow:
    """One layer of the table. ``output`` is (W, H, D); ``flat`` marks a vector output
    (after fc or flatten), shown as D alone. ``formula`` is the output-size arithmetic,
    ``params_formula`` the parameter count's ('(5·5·3)·10 + 10 = 760'; '' for none)."""

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
    params_formula: str = ""

    @property
    def params(self) -> int:
        return self.weights + self.biases

    @property
    def output_text(self) -> str:
        W, H, D = self.output
        return str(D) if self.flat else f"{W}x{H}x{D}"

    @property
    def params_text(self) -> str:
        """The parameter count with its formula, or '0'."""
        return self.params_formula or f"{self.params:,}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON/CSV fields of this row (exact numbers)."""
        return {"index": self.index, "name": self.name, "type": self.type, "spec": self.spec,
                "output": list(self.output), "weights": self.weights, "biases": self.biases,
                "params": self.params, "flops": self.flops,
                "activation_bytes": self.activation_bytes,
                "receptive_field": self.receptive_field, "formula": self.formula,
                "params_formula": self.params_formula}


@dataclass(frozen=True, repr=False)
class ShapeReport:
    """The rows of a network for an input (C, H, W) and a batch size, with totals.

    ``str(report)`` and ``repr(report)`` are the text table fitted to the terminal
    (:func:`terminal_width`); a Jupyter notebook shows :meth:`_repr_html_`.
    """

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

    def __str__(self) -> str:
        return format_table(self, width=terminal_width()).rstrip("\n")

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return format_html(self)


def shape_table(spec_or_network: str | Spec | NetworkLike, input_shape: Shape | None = None,
                batch: int = 1) -> ShapeReport:
    """The report of a spec (preset name, file, text or Spec) or of a built Network.

    ``input_shape`` (C, H, W) overrides the spec's input line; a Network uses its own.
    A spec or network may end in any volume (no softmax needed). Geometry errors raise
    SpecError naming the spec line, with the arithmetic.
    """
    if batch < 1:
        raise ShapeError(f"batch must be ≥ 1, got {batch}")
    if isinstance(spec_or_network, str):
        spec_or_network = load_spec(spec_or_network)
    if isinstance(spec_or_network, Spec):
        layers = spec_or_network.build(input_shape)
        shape = input_shape or spec_or_network.input_shape
        source = spec_or_network.source
    elif hasattr(spec_or_network, "layers") and hasattr(spec_or_network, "input_shape"):
        network = spec_or_network
        if network.input_shape is None:
            raise ShapeError("network: build it with an input shape (C, H, W) first")
        layers = list(network.layers)
        loss = getattr(network, "loss", None)
        if loss is not None and loss.input_shape is not None:  # built: it ends in 1x1xK
            layers.append(loss)
        shape, source = network.input_shape, "network"
    else:
        raise TypeError(f"shape_table takes spec text, a preset name, a spec file, a Spec or "
                        f"a Network, not {type(spec_or_network).__name__}")
    shape = tuple(int(d) for d in shape)  # type: ignore[union-attr]
    return ShapeReport(shape, batch, tuple(_rows(layers, shape, batch)), source)  # type: ignore[arg-type]


def _rows(layers: list[Layer], input_shape: Shape, batch: int) -> list[ShapeRow]:
    rows = []
    counters: dict[str, int] = {}
    _, H0, W0 = input_shape
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
            params_formula=params_formula(shapes, layer.input_shape),  # type: ignore[arg-type]
        ))
    return rows


def params_formula(param_shapes: dict[str, tuple[int, ...]], input_shape: Shape) -> str:
    """The lecture's (F·F·D1)·K + K with the numbers in, read from a layer's learnable
    array shapes: an array (K, …) of K filters or units is (fan-in)·K, the fan-in written
    as the volume one filter covers, F·F·D1 for a conv's (K, D1, F, F) (F·F·D1/G for a
    conv in G groups, (K, D1/G, F, F)) and W·H·D of the
    input volume for a fully connected layer's (K, W·H·D); a vector (K,) is K.
    '(5·5·3)·10 + 10 = 760', '(6·6·256)·4096 + 4096 = 37,752,832'; '' for no parameters."""
    terms = []
    for shape in param_shapes.values():
        if len(shape) < 2:
            terms.append("·".join(str(d) for d in shape) or "1")
            continue
        K, *fan_in = shape
        C, H, W = input_shape
        if len(fan_in) == 1 and (H, W) != (1, 1) and C * H * W == fan_in[0]:
            covered = [W, H, C]  # an fc layer's filter spans the whole input volume
        else:
            covered = fan_in[::-1]  # (D1, F, F) → F·F·D1, as the lecture writes it
            if len(fan_in) == 3 and fan_in[0] != C and C % fan_in[0] == 0:
                covered[-1] = f"{C}/{C // fan_in[0]}"  # G groups: a filter sees D1/G
        inner = "·".join(str(d) for d in covered)
        terms.append(f"({inner})·{K}" if len(covered) > 1 else f"{inner}·{K}")
    if not terms:
        return ""
    return f"{' + '.join(terms)} = {sum(_size(s) for s in param_shapes.values()):,}"


def training_bytes(net: NetworkLike, batch: int) -> int:
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


def terminal_width() -> int:
    """The columns of the terminal: $COLUMNS when set, else the terminal's, else 80."""
    return shutil.get_terminal_size((80, 24)).columns


_WIDE = ("#", "name", "layer", "output", "arithmetic", "weights", "biases", "params",
         "FLOPs", "memory", "RF")
_COMPACT = ("#", "name", "layer", "output", "params", "memory")
_RIGHT = {"#", "weights", "biases", "params", "FLOPs", "memory", "RF"}
_GAP = "  "
_MIN_LAYER = 12  # the compact layer column wraps its text down to this width
MIN_WIDTH = 60  # the narrowest width the compact table keeps every line within


def _wide_cells(report: ShapeReport) -> tuple[list[list[str]], list[str]]:
    cells = [[str(r.index), r.name, r.spec, r.output_text, r.formula, f"{r.weights:,}",
              f"{r.biases:,}", r.params_text, human_count(r.flops),
              human_bytes(r.activation_bytes),
              f"{r.receptive_field} (all)" if r.sees_whole_input else str(r.receptive_field)]
             for r in report.rows]
    totals = ["", "total", "", "", "", "", "", f"{report.total_params:,}",
              human_count(report.total_flops), human_bytes(report.total_activation_bytes), ""]
    return cells, totals


def _compact_cells(report: ShapeReport) -> tuple[list[list[str]], list[str]]:
    cells = [[str(r.index), r.name, r.spec, r.output_text, f"{r.params:,}",
              human_bytes(r.activation_bytes)] for r in report.rows]
    totals = ["", "total", "", "", f"{report.total_params:,}",
              human_bytes(report.total_activation_bytes)]
    return cells, totals


def _widths(columns: Sequence[str], rows: list[list[str]]) -> list[int]:
    return [max(len(row[i]) for row in [list(columns), *rows]) for i in range(len(columns))]


def _line(columns: Sequence[str], widths: list[int], row: Sequence[str]) -> str:
    return _GAP.join(cell.rjust(w) if col in _RIGHT else cell.ljust(w)
                     for cell, w, col in zip(row, widths, columns, strict=True)).rstrip()


def wide_table_width(report: ShapeReport) -> int:
    """The characters of the widest line of the table with every column (title and
    summary lines aside: they wrap)."""
    cells, totals = _wide_cells(report)
    widths = _widths(_WIDE, [*cells, totals])
    return max(len(_line(_WIDE, widths, row)) for row in [list(_WIDE), *cells, totals])


def format_table(report: ShapeReport, width: int | None = None, layout: str = "auto") -> str:
    """The report as an aligned text table: a title line, a header, one row per layer,
    the totals and a summary line.

    ``layout`` "wide": every column (weights, biases, the parameter formula, FLOPs,
    receptive field), one line per layer. "compact": #, name, layer, output, params and
    memory, with the output-size and parameter arithmetic on indented lines under each
    row. "auto": wide when it fits ``width``, else compact. ``width`` None: no limit;
    otherwise every line is at most ``width`` characters (for widths ≥ MIN_WIDTH).
    """
    if layout not in ("auto", "wide", "compact"):
        raise ValueError(f"layout must be auto, wide or compact, got {layout!r}")
    if layout == "auto":
        fits = width is None or wide_table_width(report) <= width
        layout = "wide" if fits else "compact"
    body = _wide_body(report) if layout == "wide" else _compact_body(report, width)
    C, H, W = report.input_shape
    input_bytes = FLOAT32_BYTES * C * H * W * report.batch
    title = f"{report.source}: " if report.source and report.source != "<spec>" else ""
    header = (f"{title}input {volume(report.input_shape)} ({VOLUME_AXES}), batch "
              f"{report.batch}; input memory {human_bytes(input_bytes)}")
    count = len(report.rows)
    footer = (f"{count} layer{'' if count == 1 else 's'}, {report.total_params:,} parameters "
              f"({human_bytes(FLOAT32_BYTES * report.total_params)} float32), "
              f"{human_count(report.total_flops)} FLOPs per image, activations "
              f"{human_bytes(report.total_activation_bytes)} for a batch of {report.batch}")
    return "\n".join([*_wrap(header, width), *body, *_wrap(footer, width)]) + "\n"


_KEEP_TOGETHER = re.compile(r"(?<=\d) (?=B\b|KiB|MiB|GiB)| (?=x [A-Z]\b)|(?<= x) |(?<= =) ")


def _wrap(text: str, width: int | None, indent: str = "") -> list[str]:
    """``text`` in lines of at most ``width`` (None: one line), the first starting with
    ``indent``, the others two spaces further in. Lines break after ', ' or '; ' where
    they can, and never between a number and its unit, in 'W x H x D' or after '='."""
    if width is None:
        return [indent + text]
    more = indent + "  "
    lines: list[str] = []
    line = indent
    for chunk in re.split(r"(?<=[,;]) ", _KEEP_TOGETHER.sub("\xa0", text)):
        if line.strip() and len(line) + 1 + len(chunk) <= width:
            line += " " + chunk
            continue
        if line.strip():
            lines.append(line)
            line = more
        start = line
        pieces = textwrap.wrap(chunk, width=max(width - len(more), 20), break_on_hyphens=False)
        lines.extend(start + piece if i == 0 else more + piece for i, piece in
                     enumerate(pieces[:-1]))
        line = (start if len(pieces) == 1 else more) + pieces[-1]
    lines.append(line)
    return [piece.replace("\xa0", " ") for piece in lines]


def _wide_body(report: ShapeReport) -> list[str]:
    cells, totals = _wide_cells(report)
    widths = _widths(_WIDE, [*cells, totals])
    rule = "-" * len(_line(_WIDE, widths, ["-" * w for w in widths]))
    return [_line(_WIDE, widths, _WIDE), rule, *(_line(_WIDE, widths, row) for row in cells),
            rule, _line(_WIDE, widths, totals)]


def _compact_body(report: ShapeReport, width: int | None) -> list[str]:
    cells, totals = _compact_cells(report)
    widths = _widths(_COMPACT, [*cells, totals])
    layer = _COMPACT.index("layer")
    if width is not None:  # the layer column takes what the others leave, wrapping
        others = sum(widths) - widths[layer] + len(_GAP) * (len(_COMPACT) - 1)
        widths[layer] = max(min(widths[layer], width - others), _MIN_LAYER)
    # the arithmetic lines start under the layer column
    indent = " " * (sum(widths[:layer]) + len(_GAP) * layer)
    lines = [_line(_COMPACT, widths, _COMPACT)]
    for row, cell in zip(report.rows, cells, strict=True):
        pieces = textwrap.wrap(cell[layer], widths[layer], break_on_hyphens=False) or [""]
        lines.append(_line(_COMPACT, widths, [*cell[:layer], pieces[0], *cell[layer + 1:]]))
        blank = [""] * len(_COMPACT)
        for piece in pieces[1:]:
            lines.append(_line(_COMPACT, widths, [*blank[:layer], piece, *blank[layer + 1:]]))
        for label, text in (("output", row.formula), ("params", row.params_formula)):
            if text:
                lines.extend(_wrap(f"{label}: {text}", width, indent))
    rule = "-" * len(_line(_COMPACT, widths, ["-" * w for w in widths]))
    return [lines[0], rule, *lines[1:], rule, _line(_COMPACT, widths, totals)]


def format_html(report: ShapeReport) -> str:
    """The report as an HTML table (every column, one row per layer, the totals in its
    footer and the input in its caption), for Jupyter."""
    cells, totals = _wide_cells(report)
    right = ' style="text-align:right"'

    def row(cells: Sequence[str], tag: str = "td") -> str:
        return "<tr>" + "".join(
            f"<{tag}{right if col in _RIGHT else ''}>{html.escape(cell)}</{tag}>"
            for cell, col in zip(cells, _WIDE, strict=True)) + "</tr>"

    caption = html.escape(format_table(report).splitlines()[0])
    return "\n".join([
        "<table>", f"<caption>{caption}</caption>",
        "<thead>" + row(_WIDE, "th") + "</thead>",
        "<tbody>", *(row(cell) for cell in cells), "</tbody>",
        "<tfoot>" + row(totals) + "</tfoot>", "</table>"]) + "\n"


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


FORMATTERS = {"table": format_table, "json": format_json, "csv": format_csv,
              "html": format_html}
