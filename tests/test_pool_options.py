"""Pooling's padding, rounding, count_pad and rectangular windows, beyond the per-layer
cases of tests/layer_cases.py: random geometries against onnxruntime (PyTorch's
semantics, which it follows), the spec and Python forms of the options, their errors,
and model files written before the options existed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from numbacnn.layers import AvgPool2D, MaxPool2D

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def geometries():
    """(F, S, P, rounding, count_pad) per axis pairs over a 5×6 … 8×7 input: every valid one
    of a small grid (pad ≤ F/2, as PyTorch requires)."""
    for FH, FW, SH, SW, PH, PW, rounding, count_pad in itertools.product(
            (1, 2, 3), (2, 3), (1, 2, 3), (2,), (0, 1), (0, 1), ("floor", "ceil"),
            ("yes", "no")):
        if 2 * PH <= FH and 2 * PW <= FW:
            yield (FH, FW), (SH, SW), (PH, PW), rounding, count_pad


def onnx_pool(op: str, x: np.ndarray, attributes: dict) -> np.ndarray:
    """One MaxPool or AveragePool node run by onnxruntime, its output shape left to it."""
    from onnx import TensorProto, helper

    node = helper.make_node(op, ["x"], ["y"], **attributes)
    graph = helper.make_graph(
        [node], "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("shape", [(5, 6), (8, 7)])
def test_random_geometries_match_onnxruntime(shape: tuple[int, int]):
    """Forward output of max and average pooling equals onnxruntime's MaxPool and
    AveragePool with PyTorch's attributes (pads, ceil_mode, count_include_pad), size
    included: ORT drops a ceil window that would start in the right padding, as PyTorch."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, *shape)).astype(np.float32)
    checked = 0
    for F, S, P, rounding, count_pad in geometries():
        attributes = {"kernel_shape": list(F), "strides": list(S), "pads": [*P, *P],
                      "ceil_mode": int(rounding == "ceil")}
        max_layer = MaxPool2D(F, stride=S, pad=P, round=rounding)
        avg_layer = AvgPool2D(F, stride=S, pad=P, round=rounding, count_pad=count_pad)
        for layer, op, extra in ((max_layer, "MaxPool", {}),
                                 (avg_layer, "AveragePool",
                                  {"count_include_pad": int(count_pad == "yes")})):
            layer.build(x.shape[1:])
            want = onnx_pool(op, x, {**attributes, **extra})
            got = np.asarray(layer.forward(x))
            assert got.shape == want.shape, layer.describe()
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=layer.describe())
            checked += 1
    assert checked > 300
