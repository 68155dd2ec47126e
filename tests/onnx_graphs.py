"""ONNX graphs built with onnx.helper for the import tests (no torch needed).

:class:`GraphBuilder` appends one node at a time to a chain from the input ``x``
(N×C×H×W float32, raw pixels 0-255), with random weights sized from the shapes onnx's
shape inference gives; :func:`import_and_compare` imports the saved graph with
``numbacnn import`` and compares numbacnn's probabilities with onnxruntime's (the
softmax of its output where the graph ends in logits) on 100 images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from helpers import assert_ok, run
from onnx import TensorProto, helper, numpy_helper

from numbacnn.io.model_file import load_model
from numbacnn.io.onnx_import import ImportSummary, read_onnx
from numbacnn.tools.inference import predict_images

TOLERANCE = 1e-4


def IMAGES(shape: tuple[int, int, int], count: int) -> np.ndarray:  # noqa: N802 - a constant's feel
    """``count`` random uint8 images of (C, H, W), the same every time."""
    return np.random.default_rng(0).integers(0, 256, (count, *shape), dtype=np.uint8)


class GraphBuilder:
    """A chain of nodes from the input ``x`` of (C, H, W); each method appends nodes and
    returns the builder. Node names are ``op_N`` (lower case)."""

    def __init__(self, C: int, H: int, W: int, opset: int = 17, seed: int = 0) -> None:
        self.input_shape = (C, H, W)
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.x = "x"
        self.count = 0
        self.last_op = ""

    def _name(self, hint: str) -> str:
        self.count += 1
        return f"{hint.lower()}_{self.count}"

    def const(self, array: Any, hint: str = "c") -> str:
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: int = 1, **attrs: Any) -> str:
        name = self._name(op)
        names = [name] + [f"{name}_out{i}" for i in range(1, outputs)]
        self.nodes.append(helper.make_node(op, inputs, names, name=name, **attrs))
        self.last_op = op
        return name

    def op(self, op: str, *constants: Any, **attrs: Any) -> GraphBuilder:
        """``op`` on the current tensor (and stored ``constants``)."""
        self.x = self.node(op, [self.x, *(self.const(c) for c in constants)], **attrs)
        return self

    def shape(self, dims: list[Any] | None = None) -> list[Any]:
        """The current tensor's shape (batch 1 unless ``dims`` of the input are given),
        from onnx's shape inference."""
        dims = dims or [1, *self.input_shape]
        if self.x == "x":
            return dims
        probe = helper.make_node("Identity", [self.x], ["probe"])
        graph = helper.make_graph(
            [*self.nodes, probe], "probe", [helper.make_tensor_value_info(
                "x", TensorProto.FLOAT, dims)],
            [helper.make_tensor_value_info("probe", TensorProto.FLOAT, None)], self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        for value in onnx.shape_inference.infer_shapes(model).graph.value_info:
            if value.name == self.x:
                return [d.dim_value if d.HasField("dim_value") else d.dim_param
                        for d in value.type.tensor_type.shape.dim]
        raise AssertionError(f"no shape for {self.x}")

    def _weights(self, shape: tuple[int, ...], fan_in: int, gain: float = 1.0) -> np.ndarray:
        return (self.rng.standard_normal(shape) * gain / np.sqrt(fan_in)).astype(np.float32)

    def normalize(self, mean: Any, std: Any) -> GraphBuilder:
        C = self.input_shape[0]
        self.op("Sub", np.asarray(mean, np.float32).reshape(1, C, 1, 1))
        return self.op("Div", np.asarray(std, np.float32).reshape(1, C, 1, 1))

    def conv(self, K: int, F: int | tuple[int, int], bias: bool = True, **attrs: Any
             ) -> GraphBuilder:
        C = self.shape()[1] // attrs.get("group", 1)
        FH, FW = (F, F) if isinstance(F, int) else F
        W = self._weights((K, C, FH, FW), C * FH * FW, 1.5)
        inputs = [self.x, self.const(W, "W")] + ([self.const(
            self.rng.standard_normal(K).astype(np.float32) * 0.1, "b")] if bias else [])
        if "auto_pad" not in attrs or attrs.get("auto_pad") == "NOTSET":
            attrs.setdefault("kernel_shape", [FH, FW])
        self.x = self.node("Conv", inputs, **attrs)
        return self

    def batchnorm(self, **attrs: Any) -> GraphBuilder:
        C = self.shape()[1]
        rng = self.rng
        arrays = [rng.uniform(0.5, 2, C), rng.standard_normal(C), rng.standard_normal(C) * 0.5,
                  rng.uniform(0.5, 2, C)]
        return self.op("BatchNormalization", *(a.astype(np.float32) for a in arrays), **attrs)

    def gemm(self, units: int, trans_b: bool) -> GraphBuilder:
        features = self.shape()[1]
        W = self._weights((units, features), features, 3.0)
        b = self.rng.standard_normal(units).astype(np.float32) * 0.1
        return self.op("Gemm", W if trans_b else W.T.copy(), b, transB=int(trans_b))

    def matmul_add(self, units: int) -> GraphBuilder:
        features = self.shape()[1]
        self.op("MatMul", self._weights((features, units), features, 3.0))
        return self.op("Add", self.rng.standard_normal(units).astype(np.float32) * 0.1)

    def dropout(self, ratio: float, as_attribute: bool = False) -> GraphBuilder:
        if as_attribute:
            return self.op("Dropout", ratio=ratio)
        return self.op("Dropout", np.float32(ratio))

    def reshape(self, target: list[int]) -> GraphBuilder:
        return self.op("Reshape", np.asarray(target, np.int64))

    def gelu_written_out(self) -> GraphBuilder:
        """x·(erf(x/√2) + 1)·½ as PyTorch exports nn.GELU before opset 20."""
        x = self.x
        self.op("Div", np.float32(2 ** 0.5)).op("Erf").op("Add", np.float32(1.0))
        self.x = self.node("Mul", [x, self.x])
        return self.op("Mul", np.float32(0.5))

    def _shape_or_none(self, dims: list[Any]) -> list[Any] | None:
        try:
            return self.shape(dims)
        except Exception:  # a graph built to be refused: shape inference fails on it
            return None

    def model(self, dims: list[Any] | None = None,
              metadata: dict[str, str] | None = None) -> Any:
        dims = dims or ["N", *self.input_shape]
        graph = helper.make_graph(
            self.nodes, "test", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
            [helper.make_tensor_value_info(self.x, TensorProto.FLOAT, self._shape_or_none(dims))],
            self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = int(helper.find_min_ir_version_for(
            [helper.make_opsetid("", self.opset)]))
        if metadata:
            helper.set_model_props(model, metadata)
        return model

    def save(self, path: Path, dims: list[Any] | None = None,
             metadata: dict[str, str] | None = None, check: bool = True) -> Path:
        model = self.model(dims, metadata)
        if check:
            onnx.checker.check_model(model)
        onnx.save(model, str(path))
        return path


def onnx_proba(path: Path, g: GraphBuilder, count: int) -> np.ndarray:
    """onnxruntime's output on ``count`` IMAGES; softmaxed unless the graph ends in one."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": IMAGES(g.input_shape, count).astype(np.float32)})[0]
    out = out.reshape(len(out), -1)
    if g.last_op in ("Softmax", "Identity") and np.allclose(out.sum(axis=1), 1, atol=1e-5):
        return out
    e = np.exp(out - out.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def proba_of(model: Path, g: GraphBuilder, count: int) -> np.ndarray:
    """numbacnn's probabilities of the model file on the same images."""
    net, info = load_model(model, "cpu")
    return predict_images(net, info, IMAGES(g.input_shape, count))


def import_and_compare(g: GraphBuilder, tmp_path: Path, count: int = 100) -> ImportSummary:
    """Save, import with ``numbacnn import``, compare with onnxruntime within 1e-4."""
    path = g.save(tmp_path / "model.onnx")
    out = tmp_path / "model.h5"
    assert_ok(run("import", path, out))
    expected = onnx_proba(path, g, count)
    got = proba_of(out, g, count)
    assert got.shape == expected.shape
    assert expected.max(axis=1).mean() > 1.5 / expected.shape[1]  # far from uniform
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    return read_onnx(path)[2]
