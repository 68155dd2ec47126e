"""Pooling's padding, rounding, count_pad and rectangular windows, beyond the per-layer
cases of tests/layer_cases.py: random geometries against onnxruntime (PyTorch's
semantics, which it follows), the spec and Python forms of the options, their errors,
and model files written before the options existed."""

from __future__ import annotations

import itertools
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import assert_ok, run

from numbacnn.errors import ShapeError
from numbacnn.geometry import output_size
from numbacnn.io.model_file import ModelInfo, load_model, save_model
from numbacnn.layers import AvgPool2D, MaxPool2D
from numbacnn.network import Network
from numbacnn.spec import parse_spec

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


def test_shapes_rounds_down_with_the_arithmetic_shown():
    """The issue's new user: 224x224x64 through maxpool 3 stride=2 is refused as it was,
    the error naming round=floor; with it, 111x111x64 and ⌊(224 − 3 + 2·0)/2⌋ + 1 = 111."""
    refused = run("shapes", "input 224x224x64; maxpool 3 stride=2")
    assert refused.exit_code == 2
    assert "(224 − 3 + 2·0)/2 + 1 = 111.50 is not whole" in refused.output
    assert "round=floor gives ⌊(224 − 3 + 2·0)/2⌋ + 1 = 111" in refused.output
    out = assert_ok(run("shapes", "input 224x224x64; maxpool 3 stride=2 round=floor"))
    assert "111x111x64" in out and "⌊(224 − 3 + 2·0)/2⌋ + 1 = 111" in out
    ceil = assert_ok(run("shapes", "input 8x5x1; avgpool 2 pad=1 round=ceil"))
    assert ("5x3x1" in ceil and "width ⌈(8 − 2 + 2·1)/2⌉ + 1 = 5, height ⌈(5 − 2 + 2·1)/2⌉ "
            "+ 1 − 1 = 3 (the last window would start in the padding)" in ceil)


def test_ceil_rounding_is_pytorchs():
    """⌈(W − F + 2P)/S⌉ + 1, less one where the last window would start in the right
    padding (torch.nn.functional's pooling_output_shape)."""
    def pytorch(W: int, F: int, S: int, P: int) -> int:
        out = (W + 2 * P - F + S - 1) // S + 1
        return out - 1 if (out - 1) * S >= W + P else out

    for W, F, S in itertools.product(range(1, 12), range(1, 5), range(1, 5)):
        for P in range(F // 2 + 1):
            if W + 2 * P >= F:
                assert output_size(W, F, S, P, rounding="ceil") == pytorch(W, F, S, P)
                assert output_size(W, F, S, P, rounding="floor") == (W + 2 * P - F) // S + 1
    assert output_size(5, 2, 2, 1, rounding="ceil") == 3  # ⌈5/2⌉ + 1 = 4 starts at 7 − 1


def test_options_in_python_and_spec_text():
    """Tuples in Python are HxW in the spec; the new options are left out at their
    defaults, so the text of a plain pooling layer is what it was."""
    layer = MaxPool2D((3, 2), stride=(2, 1), pad=(1, 0), round="ceil")
    assert layer.describe() == "maxpool 3x2 stride=2x1 pad=1x0 round=ceil"
    (parsed,) = parse_spec(layer.describe()).make_layers()
    assert parsed.arguments() == layer.arguments()
    assert MaxPool2D((2, 2), stride=2).size == 2  # equal axes are one number
    assert MaxPool2D(3, stride=2).describe() == "maxpool 3 stride=2"
    assert AvgPool2D(2, count_pad="no").describe() == "avgpool 2 stride=2 count_pad=no"
    assert AvgPool2D(2, pad=1).build((1, 6, 6)) == (1, 4, 4)
    with pytest.raises(ShapeError, match=r"pad 2 is more than half the window 3 \(width\); "
                                         r"use pad ≤ 1"):
        MaxPool2D((5, 3), pad=2).build((1, 9, 9))
    with pytest.raises(ShapeError, match="round must be one of exact, floor, ceil"):
        MaxPool2D(2, round="up")
    with pytest.raises(ShapeError, match="size must be an integer ≥ 1 or HxW, got 0"):
        MaxPool2D((2, 0))


def test_model_file_without_the_new_options_reads_as_before(tmp_path: Path):
    """A model saved before pad, round and count_pad existed lacks those attributes: it
    loads with their defaults (what it computed), not as a damaged file."""
    net = Network.from_spec("input 6x6x1; maxpool 2; avgpool 3; fc 2").initialize(1)
    info = ModelInfo("", net.input_shape, ["a", "b"], np.zeros(1, np.float32),
                     np.ones(1, np.float32))
    path = tmp_path / "old.h5"
    save_model(path, net, info)
    with h5py.File(path, "a") as f:
        for name in ("00_maxpool", "01_avgpool"):
            for key in ("pad", "round", "count_pad"):
                f["layers"][name].attrs.pop(key, None)
        rect = f["layers"]["00_maxpool"].attrs
        assert sorted(rect) == ["index", "init", "kind", "size", "stride"]
    loaded, _ = load_model(path)
    assert [layer.describe() for layer in loaded.layers] == ["maxpool 2 stride=2",
                                                             "avgpool 3 stride=3", "fc 2"]
    net = Network.from_spec("input 6x5x1; maxpool 3x2 stride=2x1; fc 2").initialize(1)
    save_model(path, net, info)
    assert load_model(path)[0].layers[0].describe() == "maxpool 3x2 stride=2x1"


def test_export_refuses_what_onnx_cannot_write(tmp_path: Path):
    """A ceil window that starts in the padding on one axis and a true ceil on the other
    with count_pad=yes has no ONNX form (onnx's shape inference keeps the window): a
    one-line ExportError; with count_pad=no it is written as floor windows with more end
    padding (tests/test_onnx_export.py runs that one)."""
    from numbacnn.io.onnx_export import ExportError, build_onnx_model

    spec = "input 6x5x1; avgpool 2x3 stride=2 pad=1 round=ceil{}; fc 2"
    info = ModelInfo("", (1, 5, 6), ["a", "b"], np.zeros(1, np.float32), np.ones(1, np.float32))
    build_onnx_model(Network.from_spec(spec.format(" count_pad=no")).initialize(1), info)
    build_onnx_model(Network.from_spec(spec.replace("avgpool", "maxpool").format(""))
                     .initialize(1), info)  # padding never wins a max
    with pytest.raises(ExportError, match=r"layer 1 \(avgpool 2x3 stride=2 pad=1 round=ceil\): "
                                          r"ONNX has no form of this window with count_pad=yes"):
        build_onnx_model(Network.from_spec(spec.format("")).initialize(1), info)
