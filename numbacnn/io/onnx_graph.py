"""Read an ONNX file for ``numbacnn import``: the checks before and while parsing, and
the graph as plain Python (nodes, constants, the one input and output).

Only the ``onnx`` package reads the file (protobuf parsing; no operator runs, no code
from the file executes). Before parsing, the file must be a regular file under 2 GiB
(protobuf's limit) that fits in memory three times over; while reading, every tensor
must have dimensions in 0…MAX_INT whose product is at most MAX_ELEMENTS and hold
exactly the bytes its dimensions claim, in the file or in an external data file inside
the model's own folder (:mod:`numbacnn.io.onnx_external`: PyTorch's exporter writes
one; nothing outside the folder, no FIFO, only byte ranges inside the file). Every problem raises
:class:`OnnxImportError` with one line; onnx is imported inside the functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from numbacnn.errors import NumbacnnError, excerpt, shown_path
from numbacnn.io.onnx_external import ExternalData
from numbacnn.limits import MAX_INT, check_memory, check_regular_file

MAX_FILE_BYTES = 2**31  # protobuf cannot parse a larger message
MAX_ELEMENTS = 2**29  # one tensor: 2 GiB of float32
MIN_OPSET = 7  # BatchNormalization, Dropout and Gemm as numbacnn reads them


class OnnxImportError(NumbacnnError):
    """The ONNX file cannot be imported (unreadable, or an operator, attribute or graph
    shape numbacnn has no layer for); the message names the node."""


def require_onnx() -> Any:
    """The ``onnx`` module, or OnnxImportError with the install command."""
    try:
        import onnx
    except ImportError:
        raise OnnxImportError("importing ONNX needs the onnx package: pip install "
                              "'numbacnn[onnx]' (or pip install onnx)") from None
    return onnx


@dataclass
class Node:
    """One ONNX node: ``inputs``/``outputs`` are tensor names ('' for an optional one
    left out), ``attributes`` the attribute values as Python values."""

    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attributes: dict[str, Any]

    def __str__(self) -> str:
        return f"node {excerpt(self.name)} ({self.op})"


@dataclass
class Graph:
    """The parts of an ONNX model the importer reads.

    ``constants``: initializers and Constant nodes' values by tensor name (numpy);
    ``nodes``: every other node in the file's (topological) order; ``input_dims``: the
    input's dimensions, an int where the graph fixes it, else None (symbolic);
    ``metadata``: ``metadata_props`` as a dict; ``data_files``: the external data files
    read (real paths).
    """

    path: Path
    opset: int
    input_name: str
    input_dims: list[int | None]
    output_name: str
    nodes: list[Node]
    constants: dict[str, np.ndarray]
    metadata: dict[str, str] = field(default_factory=dict)
    data_files: list[Path] = field(default_factory=list)


def load_graph(path: str | Path) -> Graph:
    """Read and check the ONNX file at ``path`` (see the module docstring)."""
    onnx = require_onnx()
    path = Path(path)
    check_regular_file(path, "ONNX file", OnnxImportError,
                       "check the path, or write one with numbacnn export")
    size = path.stat().st_size
    if size >= MAX_FILE_BYTES:
        raise OnnxImportError(f"{shown_path(path)}: {size / 2**30:.1f} GiB is more than an ONNX "
                              "file can hold (2 GiB); it is not a single-file ONNX model")
    check_memory(3 * size, f"reading {shown_path(path)}", OnnxImportError,
                 "use a machine with more memory")
    try:
        model = onnx.load_model_from_string(path.read_bytes())
    except OSError as exc:
        raise OnnxImportError(f"{shown_path(path)}: cannot read it ({exc.strerror}); check "
                              "its permissions") from None
    except Exception as exc:  # protobuf's DecodeError and friends
        raise OnnxImportError(f"{shown_path(path)}: not an ONNX model ({type(exc).__name__}); "
                              "give a .onnx file") from None
    where = shown_path(path)
    graph = model.graph
    if not graph.node:
        raise OnnxImportError(f"{where}: the file holds no ONNX graph (no nodes); give a "
                              ".onnx model file")
    opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")),
                 0)
    if opset < MIN_OPSET:
        raise OnnxImportError(f"{where}: ONNX opset {opset} is older than numbacnn reads "
                              f"({MIN_OPSET} or newer); convert it with "
                              "onnx.version_converter")
    if len(graph.sparse_initializer):
        raise OnnxImportError(f"{where}: sparse initializers are not supported; store the "
                              "weights as dense tensors")
    external = ExternalData(path, OnnxImportError)
    constants = {t.name: _array(onnx, t, f"initializer {excerpt(t.name)}", where, external)
                 for t in graph.initializer}
    nodes = []
    for index, proto in enumerate(graph.node):
        node = Node(proto.name or f"#{index}", proto.op_type, list(proto.input),
                    list(proto.output), {})
        if proto.domain not in ("", "ai.onnx"):
            raise OnnxImportError(f"{where}: {node}: operators of domain "
                                  f"{excerpt(proto.domain)} are not supported; numbacnn reads "
                                  "only standard ONNX operators")
        if proto.op_type == "Constant":
            constants[proto.output[0]] = _constant(onnx, proto, node, where, external)
            continue
        node.attributes = {a.name: _attribute(onnx, a, node, where, external)
                           for a in proto.attribute}
        nodes.append(node)
    inputs = [v for v in graph.input if v.name not in constants]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise OnnxImportError(f"{where}: the graph has {len(inputs)} inputs and "
                              f"{len(graph.output)} outputs; numbacnn imports a network with "
                              "one image input and one output")
    return Graph(path=path, opset=opset, input_name=inputs[0].name,
                 input_dims=_input_dims(onnx, inputs[0], where),
                 output_name=graph.output[0].name, nodes=nodes, constants=constants,
                 metadata={p.key: p.value for p in model.metadata_props},
                 data_files=[Path(f) for f in sorted(external.files)])


def _array(onnx: Any, tensor: Any, what: str, where: str, external: ExternalData
           ) -> np.ndarray:
    """A TensorProto as numpy, after the checks of the module docstring."""
    from onnx import numpy_helper

    dims = [int(d) for d in tensor.dims]
    if any(d < 0 or d > MAX_INT for d in dims) or math.prod(dims) > MAX_ELEMENTS:
        raise OnnxImportError(f"{where}: {what} claims dimensions {dims}, more than numbacnn "
                              f"reads ({MAX_ELEMENTS:,} values at most); the file is damaged")
    if tensor.data_type not in _NUMERIC:
        raise OnnxImportError(f"{where}: {what} holds {_type_name(onnx, tensor.data_type)} "
                              "values; numbacnn reads float and integer tensors")
    if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
        data = external.read(tensor, what, math.prod(dims) * _ITEM_BYTES[tensor.data_type])
        tensor = _embedded(onnx, tensor, data)
    try:
        return np.asarray(numpy_helper.to_array(tensor))
    except Exception as exc:  # raw data of the wrong length, bad field contents
        raise OnnxImportError(f"{where}: {what} does not hold the {math.prod(dims):,} values "
                              f"its dimensions {dims} claim ({type(exc).__name__}); the file "
                              "is damaged") from None


# float, uint8, int8, uint16, int16, int32, int64, float16, double: bytes per value
_ITEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 10: 2, 11: 8}
_NUMERIC = tuple(_ITEM_BYTES)


def _embedded(onnx: Any, tensor: Any, data: bytes) -> Any:
    """A copy of the external-data ``tensor`` holding ``data`` as its raw bytes."""
    copy = onnx.TensorProto()
    copy.CopyFrom(tensor)
    copy.ClearField("external_data")
    copy.data_location = onnx.TensorProto.DEFAULT
    copy.raw_data = data
    return copy


def _type_name(onnx: Any, data_type: int) -> str:
    try:
        return str(onnx.TensorProto.DataType.Name(data_type)).lower()
    except ValueError:
        return f"type {data_type}"


def _constant(onnx: Any, proto: Any, node: Node, where: str, external: ExternalData
              ) -> np.ndarray:
    """The value of a Constant node (a tensor, or a float/int list attribute)."""
    if len(proto.output) != 1 or len(proto.attribute) != 1:
        raise OnnxImportError(f"{where}: {node} must have one output and one value")
    attr = proto.attribute[0]
    if attr.name == "value":
        return _array(onnx, attr.t, str(node), where, external)
    if attr.name in ("value_float", "value_floats"):
        return np.asarray(onnx.helper.get_attribute_value(attr), np.float32)
    if attr.name in ("value_int", "value_ints"):
        return np.asarray(onnx.helper.get_attribute_value(attr), np.int64)
    raise OnnxImportError(f"{where}: {node}: a constant given as {excerpt(attr.name)} is not "
                          "supported (numbacnn reads numeric constants)")


def _attribute(onnx: Any, attr: Any, node: Node, where: str, external: ExternalData) -> Any:
    """An attribute's value as int, float, str or a list of them; a tensor as numpy."""
    kinds = onnx.AttributeProto
    if attr.type == kinds.TENSOR:
        return _array(onnx, attr.t, f"{node}: attribute {excerpt(attr.name)}", where,
                      external)
    if attr.type in (kinds.GRAPH, kinds.GRAPHS, kinds.SPARSE_TENSOR, kinds.SPARSE_TENSORS,
                     kinds.TENSORS, kinds.TYPE_PROTO, kinds.TYPE_PROTOS):
        return None  # no operator numbacnn reads takes one: the op itself is refused
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
    return value


def _input_dims(onnx: Any, value: Any, where: str) -> list[int | None]:
    """The input's dimensions (None where symbolic); it must be a float tensor."""
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type") or tensor.elem_type != onnx.TensorProto.FLOAT:
        raise OnnxImportError(f"{where}: the input {excerpt(value.name)} is not a float32 "
                              "tensor; numbacnn imports networks that take float32 images")
    if not tensor.HasField("shape"):
        return [None] * 4
    dims = [int(d.dim_value) if d.HasField("dim_value") and 0 < d.dim_value <= MAX_INT
            else None for d in tensor.shape.dim]
    if len(dims) != 4:
        raise OnnxImportError(f"{where}: the input {excerpt(value.name)} has {len(dims)} "
                              "dimensions; numbacnn imports networks that take images "
                              "N x C x H x W")
    return dims
