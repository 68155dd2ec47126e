"""The walk of ``numbacnn import`` along an ONNX graph: the state between nodes.

:class:`Walk` follows the graph from its input one node (or one known group of
nodes, :mod:`numbacnn.io.onnx_ops`) at a time and keeps what numbacnn needs: the
layers so far (each as spec text, built, with its weights), the volume (C, H, W) the
next layer gets, whether ONNX holds it flattened (N×K after Flatten or Gemm), and the
input normalization ``x·scale + shift`` read from the elementwise nodes before the
first layer. It refuses, with one line naming the node, a graph that is not a chain
(a tensor used by two nodes, a node taking two computed tensors), weights that are
computed rather than stored, and a layer whose options or weights do not fit.

Layers are made from spec text through the spec parser, so the spec written into the
model file rebuilds exactly the network the weights belong to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from numbacnn.errors import NumbacnnError, excerpt
from numbacnn.io.onnx_graph import Graph, Node, OnnxImportError
from numbacnn.layers import Layer
from numbacnn.spec import SYNTAX, parse_spec

Shape = tuple[int, int, int]
# Layers that act on each value alone: on a flattened tensor they give what they give on
# the volume, so a Flatten before them needs no flatten layer of its own.
ELEMENTWISE = ("relu", "leaky", "elu", "sigmoid", "tanh", "gelu", "dropout")


def refuse(node: Node, what: str) -> OnnxImportError:
    """The one-line error about ``node``: 'node 'conv2' (Conv): group=2 is not supported'."""
    return OnnxImportError(f"{node}: {what}")


@dataclass
class ImportedLayer:
    """One numbacnn layer read from the graph: its spec ``kind`` and option texts, the
    built layer, its weights and state (float32 numpy) and the node it came from."""

    kind: str
    options: dict[str, str]
    layer: Layer
    params: dict[str, np.ndarray]
    state: dict[str, np.ndarray]
    node: str

    @property
    def line(self) -> str:
        return " ".join([self.kind, *(f"{k}={v}" for k, v in self.options.items())])


@dataclass
class Walk:
    """The walk's state (see the module docstring); ``shape`` is (C, H, W)."""

    graph: Graph
    shape: Shape
    current: str = ""
    flat: bool = False
    layers: list[ImportedLayer] = field(default_factory=list)
    scale: np.ndarray = field(default_factory=lambda: np.ones(1))
    shift: np.ndarray = field(default_factory=lambda: np.zeros(1))
    softmax: Node | None = None
    consumers: dict[str, list[Node]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.current = self.current or self.graph.input_name
        C = self.shape[0]
        self.scale, self.shift = np.ones(C), np.zeros(C)
        for node in self.graph.nodes:
            for name in set(node.inputs):
                self.consumers.setdefault(name, []).append(node)

    # ------------------------------------------------------------------ the chain
    def computed(self, node: Node) -> list[str]:
        """The node's inputs that are neither constants nor left out."""
        return [t for t in node.inputs if t and t not in self.graph.constants]

    def check_chain(self, nodes: Sequence[Node]) -> None:
        """``nodes`` (one layer's) take only the current tensor and each other's
        outputs, and nothing else in the graph takes those (no branch, no residual)."""
        if self.current not in nodes[0].inputs:
            raise refuse(nodes[0], f"does not take the previous layer's output "
                         f"{excerpt(self.current)}; numbacnn imports a chain of layers from the "
                         "input (computed constants and side branches are not supported)")
        inside = {t for n in nodes for t in n.outputs if t}
        for node in nodes:
            for name in self.computed(node):
                if name != self.current and name not in inside:
                    raise refuse(node, f"takes {excerpt(name)}, which is not the previous "
                                 "layer's output: numbacnn imports a chain of layers (no "
                                 "branches, no residual connections)")
        final = nodes[-1].outputs[0]
        members = {id(n) for n in nodes}
        for name in sorted(inside | {self.current}):
            if name == final:
                continue
            other = next((n for n in self.consumers.get(name, []) if id(n) not in members),
                         None)
            if other is not None:
                raise refuse(other, f"takes {excerpt(name)}, which another node takes too: "
                             "the graph branches there, and numbacnn imports a chain of "
                             "layers (no branches, no residual connections)")
            if name == self.graph.output_name and name != self.current:
                raise refuse(nodes[0], f"its output {excerpt(name)} is the graph's output "
                             "but the graph goes on; numbacnn imports a chain of layers")

    def advance(self, nodes: Sequence[Node]) -> None:
        """``nodes`` are read: the last one's first output is the current tensor."""
        self.current = nodes[-1].outputs[0]

    # ------------------------------------------------------------------ inputs
    def constant(self, node: Node, index: int, what: str, optional: bool = False
                 ) -> np.ndarray | None:
        """Input ``index`` of ``node`` as a stored constant (None when optional and left
        out); refused when the graph computes it."""
        name = node.inputs[index] if index < len(node.inputs) else ""
        if not name:
            if optional:
                return None
            raise refuse(node, f"has no {what} (input {index + 1})")
        if name not in self.graph.constants:
            raise refuse(node, f"its {what} (input {excerpt(name)}) is computed in the graph, "
                         "not stored in the file; numbacnn imports fixed weights and shapes")
        return self.graph.constants[name]

    def weights(self, node: Node, index: int, what: str, optional: bool = False
                ) -> np.ndarray | None:
        """A stored constant that must hold finite floats (a weight array)."""
        array = self.constant(node, index, what, optional)
        if array is None:
            return None
        if array.dtype.kind != "f" or not np.all(np.isfinite(array)):
            raise refuse(node, f"its {what} are not finite floating-point numbers")
        return array

    def need_volume(self, node: Node) -> None:
        """Refused when the tensor is flattened (the op needs N×C×H×W)."""
        if self.flat:
            raise refuse(node, "its input is flattened (N x K) but the operator needs an image "
                         "volume N x C x H x W; numbacnn does not unflatten")

    # ------------------------------------------------------------------ layers
    def add(self, node: Node, kind: str, options: dict[str, str],
            params: dict[str, np.ndarray] | None = None,
            state: dict[str, np.ndarray] | None = None) -> Layer:
        """Append the layer ``kind options`` (spec option texts), built on the current
        volume, with ``params`` and ``state`` (reshaped when only their shape's ones
        differ, e.g. a bias 1×K). A pending flatten becomes a flatten layer first unless
        the layer is elementwise or fully connected."""
        if kind not in (*ELEMENTWISE, "fc", "flatten"):
            self.flatten_pending(node)
        entry = ImportedLayer(kind, options, None, {}, {}, node.name)  # type: ignore[arg-type]
        try:
            [parsed] = parse_spec(entry.line).layers
            layer = parsed.make_layer()
            output = layer.build(self.shape)
        except NumbacnnError as exc:
            raise refuse(node, f"`{entry.line}` does not fit: {_unprefixed(exc)}") from None
        entry.layer = layer
        entry.params = _arrays(node, entry.line, layer.param_shapes(), params or {})
        entry.state = _arrays(node, entry.line, layer.state_shapes(), state or {})
        self.layers.append(entry)
        self.shape = output
        return layer

    def flatten_pending(self, node: Node) -> None:
        """A flattened volume (H·W > 1) becomes a flatten layer (N×(C·H·W)×1×1)."""
        if self.flat and self.shape[1:] != (1, 1):
            self.add(node, "flatten", {})

    def options(self, node: Node, kind: str, table: Sequence[Any],
                values: dict[str, Any]) -> dict[str, str]:
        """The spec option texts for the ONNX attribute ``values`` by ``table`` (rows
        :class:`numbacnn.io.onnx_ops.Attribute`): each value is written as its option when
        the layer has that option and the option takes it; else it is refused unless
        numbacnn computes that value anyway (``needed`` False)."""
        syntax = SYNTAX[kind]
        written: dict[str, str] = {}
        for row in table:
            value = values[row.name]
            needed = row.needed(value, values, self.shape)
            if row.only_when_needed and not needed:
                continue
            option = syntax.option(row.option) if row.option else None
            text = row.text(value) if option is not None else None
            if option is not None and text is not None:
                try:
                    converted = option.convert(text)
                except ValueError:
                    pass
                else:
                    if option.required or converted != option.default:
                        written[option.key] = text
                    continue
            if not needed:
                continue
            if row.option is None:
                why = "numbacnn has no such option"
            elif option is None:
                why = (row.missing or "{kind} has no {option} option").format(
                    kind=kind, option=row.option)
            elif text is None:
                why = row.why
            else:
                why = f"{kind}'s {row.option} must be {option.rule()}"
            raise refuse(node, f"{row.name}={_shown(value)} is not supported ({why})")
        return written


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return str(np.float32(value))
    return str(list(value)) if isinstance(value, list | tuple | np.ndarray) else str(value)


def _unprefixed(exc: Exception) -> str:
    return str(exc).split(": ", 1)[-1] if str(exc).startswith("spec line") else str(exc)


def _arrays(node: Node, line: str, shapes: dict[str, tuple[int, ...]],
            given: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``given`` as float32 arrays of ``shapes`` (same values, size-1 axes may differ)."""
    arrays = {}
    for key, shape in shapes.items():
        array = given.get(key)
        if array is None:
            raise refuse(node, f"gives no {key} for `{line}`")  # pragma: no cover - handlers
        if array.size != int(np.prod(shape)) or [d for d in array.shape if d != 1] != [
                d for d in shape if d != 1]:
            raise refuse(node, f"its {key} has shape {list(array.shape)} but `{line}` on this "
                         f"input needs {list(shape)}")
        arrays[key] = np.ascontiguousarray(array.reshape(shape), np.float32)
    return arrays
