"""Export a numbacnn model to ONNX: the same input and output as ``numbacnn predict``.

The graph takes raw pixels, float32 N×C×H×W in 0–255 (input ``pixels``, N dynamic),
applies the model's stored normalization ``(x / 255 − mean[c]) / std[c]`` as its first
two nodes (Mul, Sub, the same float32 arithmetic as :func:`numbacnn.io.datasets.normalize`),
then every layer in order, and ends in the class probabilities, float32 N×K (output
``probabilities``). The class names, normalization, spec and numbacnn version are
stored as metadata. What each layer becomes is written in ``docs/onnx.md``.

The exporter knows no layer: it walks the network and calls each layer's
``onnx_nodes(builder, input_name) -> output_name`` hook (the mapping lives in the
layer's own file), then the loss's hook for the closing softmax. A layer without the
hook, a network that does not end in class scores, or a graph that ``onnx.checker``
refuses raises :class:`ExportError` (one line) and nothing is written.

    summary = export_onnx(net, info, "model.onnx")   # needs the onnx package

onnx is imported inside the functions, so ``import numbacnn`` stays light.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from numbacnn.errors import NumbacnnError
from numbacnn.io.atomic_file import replace_atomically
from numbacnn.limits import MAX_ABS_EXPORTED_VALUE, NORMALIZATION_MEAN, NORMALIZATION_STD
from numbacnn.version import __version__

if TYPE_CHECKING:
    from numbacnn.io.model_file import ModelInfo
    from numbacnn.network import Network

MIN_OPSET = 17
DEFAULT_OPSET = 17
INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"
MAX_BYTES = 2**31 - 2**24  # protobuf's 2 GiB limit on one file, less room for the graph


class ExportError(NumbacnnError):
    """The model cannot be exported (an unsupported layer or shape, onnx missing)."""


def require_onnx() -> Any:
    """The ``onnx`` module, or ExportError with the install command."""
    try:
        import onnx
    except ImportError:
        raise ExportError("exporting to ONNX needs the onnx package: pip install "
                          "'numbacnn[onnx]' (or pip install onnx)") from None
    return onnx


class OnnxBuilder:
    """Collects the nodes and initializers of the graph; the layers' hooks call it.

    Names are unique and start with the current layer's name (``03_conv/Conv``), so a
    graph viewer shows which layer each node came from.
    """

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.scope = ""
        self._used: set[str] = {INPUT_NAME}

    def _name(self, hint: str) -> str:
        base = f"{self.scope}/{hint}" if self.scope else hint
        name, i = base, 1
        while name in self._used:
            i += 1
            name = f"{base}_{i}"
        self._used.add(name)
        return name

    def constant(self, hint: str, array: Any) -> str:
        """Add ``array`` (host or device; float → float32, int → int64) as an
        initializer; returns its name."""
        from onnx import numpy_helper

        from numbacnn.device import to_host

        value = np.asarray(to_host(array))
        value = value.astype(np.int64 if np.issubdtype(value.dtype, np.integer) else np.float32)
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def shape(self, hint: str, dims: list[int] | tuple[int, ...]) -> str:
        """An int64 initializer for Reshape; 0 copies the input's dimension (the batch)."""
        return self.constant(hint, np.asarray(dims, np.int64))

    def node(self, op_type: str, inputs: list[str], **attributes: Any) -> str:
        """Add one node with a single output; returns the output's name."""
        from onnx import helper

        output = self._name(op_type)
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output,
                                           **attributes))
        return output

    def reduce_max(self, input_name: str, axis: int) -> str:
        """ReduceMax over one axis, the axis dropped (an attribute before opset 18, an
        input from 18 on)."""
        if self.opset >= 18:
            return self.node("ReduceMax", [input_name, self.shape("axes", [axis])], keepdims=0)
        return self.node("ReduceMax", [input_name], axes=[axis], keepdims=0)


@dataclass
class ExportSummary:
    """What was written: file, opset, node and initializer counts, the parameters."""

    path: Path
    opset: int
    nodes: int
    initializers: int
    parameters: int
    input_shape: tuple[int, int, int]
    classes: int
    bytes: int


def layer_scope(index: int, kind: str, count: int) -> str:
    """'03_conv': the layer's group name in the model file."""
    width = max(2, len(str(count - 1)))
    return f"{index:0{width}d}_{kind}"


def build_onnx_model(net: Network, info: ModelInfo, opset: int = DEFAULT_OPSET) -> Any:
    """The checked ``onnx.ModelProto`` of ``net`` with ``info``'s normalization and
    class names (see the module docstring). Raises ExportError."""
    onnx = require_onnx()
    from onnx import TensorProto, helper

    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old: numbacnn writes opset {MIN_OPSET} or "
                          f"newer; use opset {MIN_OPSET}", field="opset")
    newest = int(onnx.defs.onnx_opset_version())
    if opset > newest:
        raise ExportError(f"opset {opset} is newer than the installed onnx {onnx.__version__} "
                          f"knows (up to {newest}); use opset {newest} or lower, or upgrade "
                          "onnx", field="opset")
    if net.input_shape is None:
        raise ExportError("the network has no input shape; build it before exporting")
    C, H, W = net.input_shape
    K, OH, OW = net.output_shape
    if (OH, OW) != (1, 1):
        raise ExportError(f"the network ends in a {OW}x{OH}x{K} volume, not class scores, so "
                          "it has no class probabilities to export; end the spec with fc K "
                          "(and softmax)")
    weight_bytes = 4 * net.num_params()
    if weight_bytes >= MAX_BYTES:
        raise ExportError(f"the model's weights take {weight_bytes / 2**30:.1f} GiB, more than "
                          "the 2 GiB a single ONNX file can hold; export a smaller network")
    mean = np.asarray(info.mean, np.float32).reshape(-1)
    std = np.asarray(info.std, np.float32).reshape(-1)
    _check_values(net, mean, std)
    builder = OnnxBuilder(opset)
    builder.scope = "normalize"
    scale = (1.0 / (255.0 * std)).reshape(1, -1, 1, 1)  # as numbacnn.io.datasets.normalize
    shift = (mean / std).reshape(1, -1, 1, 1)
    x = builder.node("Mul", [INPUT_NAME, builder.constant("scale", scale)])
    x = builder.node("Sub", [x, builder.constant("shift", shift)])
    for index, layer in enumerate(net.layers):
        hook = getattr(layer, "onnx_nodes", None)
        if hook is None:
            raise ExportError(f"layer {index + 1} ({layer.describe()}, class "
                              f"{type(layer).__name__}) has no ONNX mapping (no onnx_nodes "
                              "method); nothing was written: remove the layer or add the "
                              "method to its class")
        builder.scope = layer_scope(index, layer.kind, len(net.layers))
        try:
            x = hook(builder, x)
        except NotImplementedError as exc:  # an option ONNX cannot express
            raise ExportError(f"layer {index + 1} ({layer.describe()}): {exc}; nothing was "
                              "written") from None
    builder.scope = "softmax"
    x = net.loss.onnx_nodes(builder, x)
    builder.scope = ""
    builder.nodes.append(helper.make_node("Identity", [x], [OUTPUT_NAME], name=OUTPUT_NAME))
    graph = helper.make_graph(
        builder.nodes, "numbacnn",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", C, H, W])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", K])],
        builder.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="numbacnn", producer_version=__version__)
    model.ir_version = min(model.ir_version, _ir_version_for(onnx, opset))
    model.doc_string = ("numbacnn model: input pixels float32 N x C x H x W, raw values "
                        "0-255; output probabilities float32 N x K")
    helper.set_model_props(model, {
        "class_names": json.dumps(list(info.class_names)),
        "normalization_mean": json.dumps([float(v) for v in mean]),
        "normalization_std": json.dumps([float(v) for v in std]),
        "input": "pixels: float32 N x C x H x W, raw pixel values 0-255",
        "spec": info.spec_text or net.spec_text or "",
        "numbacnn_version": __version__,
    })
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # onnx raises ValidationError or InferenceError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"onnx.checker refused the exported graph ({first}); nothing was "
                          "written: please report this as a numbacnn bug") from None
    return model


def _check_values(net: Network, mean: np.ndarray, std: np.ndarray) -> None:
    """ExportError unless the normalization is within its bounds and every weight and
    running statistic within ±MAX_ABS_EXPORTED_VALUE: beyond them the exported graph
    computes inf and NaN (numbacnn's own load refuses the first, predict the second)."""
    from numbacnn.device import to_host

    for name, values, bounds in (("mean", mean, NORMALIZATION_MEAN),
                                 ("std", std, NORMALIZATION_STD)):
        bad = [c for c, v in enumerate(values) if float(v) not in bounds]
        if bad:
            raise ExportError(f"the normalization's {name} must be {bounds.text()}, got "
                              f"{float(values[bad[0]]):g} for channel {bad[0]}; nothing was "
                              "written: export a model trained by numbacnn")
    for index, layer in enumerate(net.layers):
        for key, array in (*layer.params.items(), *getattr(layer, "state", {}).items()):
            values = np.asarray(to_host(array))
            if values.size and not np.all(np.abs(values) <= MAX_ABS_EXPORTED_VALUE):
                worst = values.reshape(-1)[int(np.argmax(np.nan_to_num(
                    np.abs(values), nan=np.inf).reshape(-1)))]
                raise ExportError(
                    f"layer {index + 1} ({layer.describe()}) has {key} = {float(worst):g}, "
                    f"beyond ±{MAX_ABS_EXPORTED_VALUE:g}: the exported graph would compute "
                    "inf and NaN; nothing was written: train the model again with a lower "
                    "learning rate")


def _ir_version_for(onnx: Any, opset: int) -> int:
    """The IR version that goes with ``opset`` (so older runtimes can load the file)."""
    try:
        return int(onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)]))
    except Exception:  # pragma: no cover - older onnx
        return int(onnx.IR_VERSION)


def _write_bytes(target: Any, data: bytes) -> None:
    """Write ``data`` to the temporary file ``replace_atomically`` hands over: a path or
    an open binary file (both forms of its ``write`` callback)."""
    if hasattr(target, "write"):
        target.write(data)
    else:
        Path(target).write_bytes(data)


def export_onnx(net: Network, info: ModelInfo, path: str | Path,
                opset: int = DEFAULT_OPSET) -> ExportSummary:
    """Write ``net`` as an ONNX file at ``path`` atomically (temp file + rename).

    Raises ExportError, one line, when the network cannot be exported (a layer without
    a mapping, no class scores, onnx missing) or the path cannot be written; then nothing
    is written and an existing file at ``path`` is left as it was.
    """
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path}: is a directory; give the .onnx file to write")
    if not path.parent.is_dir():
        raise ExportError(f"{path}: directory {path.parent} does not exist; create it "
                          f"(mkdir -p {path.parent}) or choose another path")
    model = build_onnx_model(net, info, opset)
    data = model.SerializeToString()
    replace_atomically(path, lambda target: _write_bytes(target, data), ExportError,
                       "ONNX model")
    return ExportSummary(path=path, opset=opset, nodes=len(model.graph.node),
                         initializers=len(model.graph.initializer),
                         parameters=net.num_params(),
                         input_shape=net.input_shape,  # type: ignore[arg-type]
                         classes=net.num_classes, bytes=len(data))
