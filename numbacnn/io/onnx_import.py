"""Import an ONNX graph as a numbacnn model file: ``numbacnn import MODEL.onnx OUT.h5``.

The graph must be a chain of operators numbacnn has a layer for (docs/onnx.md,
"Importing"): the per-channel normalization before the first layer (numbacnn export's
Mul + Sub, or Sub + Div) becomes the model's normalization, each operator (or each
group of nodes numbacnn export writes for one layer) a layer with its weights, and a
closing Softmax the spec's ``softmax`` (a graph that ends in class scores without one
gets it added: numbacnn's predict gives probabilities). The graph input is taken as
raw pixel values 0–255, as numbacnn export writes it. Class names, and the spec text
(with its dropout layers and initializers) when it describes the same layers, come
from the metadata numbacnn export writes; otherwise the classes are numbered and the
spec is written from the graph.

Anything else (an operator or attribute numbacnn lacks, a branch or residual
connection, a symbolic input size without ``input_shape``) raises
:class:`OnnxImportError`, one line naming the node, and nothing is written. Reading is
:func:`numbacnn.io.onnx_graph.load_graph` (size limits, external data only beside it); writing is
:func:`numbacnn.io.model_file.save_model` (atomic).

    net, info, summary = read_onnx("model.onnx")            # needs the onnx package
    summary = import_onnx("model.onnx", "model.h5")
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numbacnn.errors import NumbacnnError
from numbacnn.geometry import volume
from numbacnn.io.model_file import ModelInfo, check_model_writable, save_model
from numbacnn.io.onnx_graph import Graph, Node, OnnxImportError, load_graph
from numbacnn.io.onnx_ops import OPS
from numbacnn.io.onnx_patterns import PATTERNS
from numbacnn.io.onnx_walk import ImportedLayer, Walk, refuse
from numbacnn.network import Network
from numbacnn.spec import Spec, format_input, parse_spec

Shape = tuple[int, int, int]
__all__ = ["ImportSummary", "OnnxImportError", "import_onnx", "read_onnx"]


@dataclass
class ImportSummary:
    """What was read: the layers, parameters, input (C, H, W), classes (0 for a network
    that ends in a volume), and where the spec, class names and normalization came from
    ("metadata", "graph" or "numbered"/"none"); ``added_softmax``: the graph ended in
    class scores without a Softmax."""

    layers: int
    parameters: int
    input_shape: Shape
    classes: int
    spec_from: str
    class_names_from: str
    normalization_from: str
    added_softmax: bool
    path: Path | None = None
    data_files: tuple[Path, ...] = ()  # the external data files read


def import_onnx(path: str | Path, out: str | Path,
                input_shape: Shape | None = None) -> ImportSummary:
    """Read the ONNX file ``path`` and write it as the model file ``out`` (atomically:
    nothing is written when anything fails). ``input_shape`` (C, H, W): the input size
    where the graph leaves it symbolic."""
    check_model_writable(out)
    net, info, summary = read_onnx(path, input_shape)
    for data in summary.data_files:
        if Path(out).exists() and os.path.samefile(out, data):
            raise OnnxImportError(f"{out} is the file that holds the graph's weights (its "
                                  "external data), an input: choose another output path",
                                  field="out")
    save_model(out, net, info)
    summary.path = Path(out)
    return summary


def read_onnx(path: str | Path, input_shape: Shape | None = None
              ) -> tuple[Network, ModelInfo, ImportSummary]:
    """The network (on the CPU) and ModelInfo of the ONNX file ``path``; see the module
    docstring. Raises OnnxImportError."""
    graph = load_graph(path)
    walk = Walk(graph, _input_shape(graph, input_shape))
    _read_nodes(walk)
    scores = walk.shape[1:] == (1, 1)
    graph_text = "\n".join([f"input {format_input(walk.layers[0].layer.input_shape)}",
                            *(layer.line for layer in walk.layers),
                            *(["softmax"] if scores else [])]) + "\n"
    class_names, names_from = _class_names(graph, walk.shape[0] if scores else 0)
    mean, std, normalization_from = _normalization(graph, walk)
    info = ModelInfo(spec_text="", input_shape=walk.layers[0].layer.input_shape,
                     class_names=class_names, mean=mean, std=std)
    net, spec_from = _stored_spec(graph, walk, info), "metadata"
    if net is None:
        text = parse_spec(graph_text).to_text()
        net, spec_from = _network(walk, parse_spec(text), text), "graph"
    info.spec_text = net.spec_text or ""
    summary = ImportSummary(
        layers=len(net.layers), parameters=net.num_params(),
        input_shape=net.input_shape, classes=len(class_names),  # type: ignore[arg-type]
        spec_from=spec_from, class_names_from=names_from,
        normalization_from=normalization_from, added_softmax=scores and walk.softmax is None,
        data_files=tuple(graph.data_files))
    return net, info, summary


def _read_nodes(walk: Walk) -> None:
    """Walk the graph's nodes in order: each group numbacnn export writes for one layer,
    else each node on its own (OPS); refused at the first node that does not fit."""
    nodes = walk.graph.nodes
    for node in nodes:
        if not node.outputs or not node.outputs[0]:
            raise refuse(node, "has no output; the file is not a valid ONNX graph")
    i = 0
    while i < len(nodes):
        node = nodes[i]
        if walk.softmax is not None and node.op != "Identity":
            raise refuse(node, "comes after the softmax; numbacnn's softmax ends the network")
        try:
            group = _read_group(walk, nodes, i)
        except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError,
                OverflowError) as exc:  # attribute values of a form ONNX does not allow
            raise refuse(node, f"has attributes or inputs of an unexpected form "
                         f"({type(exc).__name__}); the file is not a valid ONNX graph") from None
        walk.advance(group)
        i += len(group)
    last = nodes[-1]
    if walk.current != walk.graph.output_name:
        raise refuse(last, f"its output is not the graph's output "
                     f"{walk.graph.output_name!r}; numbacnn imports a chain of layers")
    walk.flatten_pending(last)
    if not walk.layers:
        raise refuse(last, "the graph has no layer numbacnn can import")


def _read_group(walk: Walk, nodes: list[Node], i: int) -> list[Node]:
    """Read the layer starting at ``nodes[i]``: a group numbacnn export writes for one
    layer (PATTERNS), else the node on its own (OPS); returns the nodes read."""
    node = nodes[i]
    group, read = next(((found, read) for match, read in PATTERNS.get(node.op, ())
                        if (found := match(walk, nodes, i))), ([], None))
    if read is None:
        handler = OPS.get(node.op)
        if handler is None:
            raise refuse(node, "this operator is not supported (numbacnn has no layer for "
                         "it); docs/onnx.md lists the operators numbacnn imports")
        group, read = [node], lambda walk, group: handler(walk, group[0])
    walk.check_chain(group)
    read(walk, group)
    return group


def _input_shape(graph: Graph, given: Shape | None) -> Shape:
    """(C, H, W) of the graph's input: fixed by the graph, or ``given`` where symbolic."""
    dims = graph.input_dims[1:]
    fixed = tuple(dims) if all(d is not None for d in dims) else None
    shown = " x ".join(str(d) if d is not None else "?" for d in graph.input_dims)
    if given is not None:
        if any(d is not None and d != g for d, g in zip(dims, given, strict=True)):
            raise OnnxImportError(f"the graph's input is N x C x H x W = {shown}, which the "
                                  f"input size {volume(given)} (W x H x D) contradicts; give "
                                  "the size the graph has or leave it out", field="input_shape")
        return tuple(int(d) for d in given)  # type: ignore[return-value]
    if fixed is None:
        raise OnnxImportError(f"the graph's input size is symbolic (N x C x H x W = {shown}); "
                              "give it as an input size W x H x D", field="input_shape")
    return fixed  # type: ignore[return-value]


def _stored_spec(graph: Graph, walk: Walk, info: ModelInfo) -> Network | None:
    """The network of the metadata's spec with the weights read from the graph, when
    numbacnn export writes exactly the graph's operators and attributes for it (the
    same layers, dropout aside, which export leaves out); else None."""
    from numbacnn.io.onnx_export import MIN_OPSET, build_onnx_model

    text = graph.metadata.get("spec", "")
    if not text or graph.opset < MIN_OPSET:
        return None
    try:
        net = _network(walk, parse_spec(text), text)
        exported = build_onnx_model(net, info, opset=graph.opset)
    except (NumbacnnError, ValueError, KeyError, IndexError):
        return None
    from onnx import helper

    ours = [(n.op_type, {a.name: helper.get_attribute_value(a) for a in n.attribute})
            for n in exported.graph.node if n.op_type != "Constant"]
    theirs = [(n.op, n.attributes) for n in graph.nodes]
    return net if ours == theirs else None


def _network(walk: Walk, spec: Spec, spec_text: str) -> Network:
    """The network of ``spec`` on the CPU with the weights read by ``walk``, matched to
    its layers in order (a dropout layer the graph has no node for aside); ValueError
    when they do not fit."""
    input_shape = walk.layers[0].layer.input_shape
    net = Network(spec.build(input_shape), input_shape=input_shape, spec_text=spec_text,
                  device="cpu")
    read: list[ImportedLayer] = list(walk.layers)
    B = net.backend()
    for layer in net.layers:
        if layer.kind == "dropout" and (not read or read[0].kind != "dropout"):
            continue  # numbacnn export writes no node for a dropout layer
        if not read or read[0].kind != layer.kind:
            raise ValueError(f"{layer.describe()} has no layer in the graph")
        imported = read.pop(0)
        for key, shape in layer.param_shapes().items():
            if imported.params[key].shape != tuple(shape):
                raise ValueError(f"{layer.describe()}: {key} does not fit")
            layer.params[key] = B.to_device(imported.params[key])
            layer.grads[key] = B.zeros(shape)
        for key, shape in layer.state_shapes().items():
            if imported.state[key].shape != tuple(shape):
                raise ValueError(f"{layer.describe()}: {key} does not fit")
            layer.state[key] = B.to_device(imported.state[key])
    if read:
        raise ValueError(f"the graph has more layers than {spec_text!r}")
    return net


def _class_names(graph: Graph, classes: int) -> tuple[list[str], str]:
    """The metadata's class names when they are ``classes`` strings, else '0', '1', ..."""
    try:
        names = json.loads(graph.metadata.get("class_names", "null"))
    except ValueError:
        names = None
    if (isinstance(names, list) and len(names) == classes
            and all(isinstance(n, str) for n in names) and classes):
        return names, "metadata"
    return [str(k) for k in range(classes)], "numbered"


def _normalization(graph: Graph, walk: Walk) -> tuple[np.ndarray, np.ndarray, str]:
    """mean and std (float32, pixel value / 255) whose normalization is the graph's
    ``x·scale + shift``: the metadata's when they give it (to the last bit), else
    computed; no prefix is x itself (std 1/255)."""
    if np.any(walk.scale <= 0):
        raise OnnxImportError("the input normalization before the first layer scales a "
                              "channel by a number ≤ 0; numbacnn's (x/255 − mean)/std needs a "
                              "positive scale per channel")
    std = (1.0 / (255.0 * walk.scale)).astype(np.float32)
    mean = (-walk.shift / walk.scale / 255.0).astype(np.float32)
    try:
        stored = [np.asarray(json.loads(graph.metadata[key]), np.float32).reshape(-1)
                  for key in ("normalization_mean", "normalization_std")]
    except (KeyError, ValueError, TypeError):
        stored = []
    if (stored and all(s.shape == std.shape for s in stored) and np.all(stored[1] > 0)
            and np.allclose(stored[0], mean, rtol=1e-5, atol=1e-6)
            and np.allclose(stored[1], std, rtol=1e-5, atol=0)):
        return stored[0], stored[1], "metadata"
    plain = bool(np.all(walk.scale == 1) and np.all(walk.shift == 0))
    return mean, std, "none" if plain else "graph"

