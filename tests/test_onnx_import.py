"""``numbacnn import MODEL.onnx OUT.h5`` (numbacnn/io/onnx_import.py).

Round trips: every classifier preset, a spec with every layer option and each layer
kind alone (tests/layer_cases.py) go export → import with bit-identical weights, state,
normalization, spec and class names, and predictions within 1e-5 (with the metadata, and
without it: the spec then comes from the graph). Graphs built with onnx.helper (the
operators other tools write: Sub/Div normalization, Gemm with and without transB,
MatMul + Add, Flatten, Reshape, global pooling, opsets 11-20) import and match
onnxruntime within 1e-4 on 100 images. Refusals are one line naming the node, exit 2,
nothing written. The options other layers gain later (groups, dilation, rectangular
windows, pooling pad and ceil mode) have tests that run once the layer declares them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_ok, run
from layer_cases import LAYER_CASES
from onnx_graphs import IMAGES, GraphBuilder, import_and_compare, proba_of
from test_onnx_export import EVERY_KIND, make_model

from numbacnn.device import to_host
from numbacnn.io.dataset_files import load_dataset
from numbacnn.io.model_file import load_model
from numbacnn.io.onnx_export import export_onnx
from numbacnn.io.onnx_import import read_onnx
from numbacnn.spec import list_presets
from numbacnn.tools.inference import predict_images

onnx = pytest.importorskip("onnx", reason="needs onnx: pip install -e '.[test]'")
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install -e '.[test]'")

# Every option of every layer kind that is not in EVERY_KIND's values: strides, init=,
# activation= shorthand, overlapping pools, even LRN with other constants, gelu.
EVERY_OPTION = ("input 13x13x2; conv 6 3 stride=2 pad=1 init=xavier activation=leaky;"
                " maxpool 3 stride=1; lrn size=2 alpha=0.01 beta=0.5 k=1.5; avgpool 2 stride=1;"
                " conv 4 1 init=lecun activation=gelu; batchnorm momentum=0.8 eps=0.001; elu 0.5;"
                " maxout 2; fc 7 init=normal activation=sigmoid; dropout 0.2; leaky 0.3; fc 3;"
                " softmax")
VOLUME_PRESETS = {"lecture-example"}  # ends in a volume: export refuses it (no classes)
ROUND_TRIPS = {
    **{name: (name, 4 if name == "alexnet" else 100) for name in list_presets()},
    "every-kind": (EVERY_KIND, 100), "every-option": (EVERY_OPTION, 100),
    **{f"case-{kind}": (case.network_spec(), 200) for kind, case in LAYER_CASES.items()},
}


def exported(spec: str, count: int, tmp_path: Path) -> tuple[np.ndarray, Path, Path]:
    x, model = make_model(spec, tmp_path / "model.h5", count)
    net, info = load_model(model, "cpu")
    export_onnx(net, info, tmp_path / "model.onnx")
    return x, model, tmp_path / "model.onnx"


def without_metadata(path: Path) -> Path:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    bare = path.with_name("bare.onnx")
    onnx.save(model, str(bare))
    return bare


@pytest.mark.parametrize("spec, count", list(ROUND_TRIPS.values()), ids=list(ROUND_TRIPS))
def test_export_import_round_trip(spec: str, count: int, tmp_path: Path) -> None:
    if spec in VOLUME_PRESETS:
        pytest.skip(f"{spec} ends in a volume, not class scores: numbacnn export refuses it")
    x, model, path = exported(spec, count, tmp_path)
    out = tmp_path / "imported.h5"
    assert "from the metadata" in assert_ok(run("import", path, out))
    before, info = load_model(model, "cpu")
    for source, bare in ((out, False), (without_metadata(path), True)):
        net, got = (read_onnx(source)[:2] if bare else load_model(source, "cpu"))
        kept = [layer for layer in before.layers if not (bare and layer.kind == "dropout")]
        # from the graph alone a layer may be written otherwise but computes the same
        assert [(layer.kind, layer.output_shape) for layer in net.layers] == [
            (layer.kind, layer.output_shape) for layer in kept]
        for old, new in zip(kept, net.layers, strict=True):
            for key in old.params:
                assert np.array_equal(to_host(old.params[key]), to_host(new.params[key]))
            for key in old.state:
                assert np.array_equal(to_host(old.state[key]), to_host(new.state[key]))
        if not bare:  # the metadata gives these back exactly
            assert [layer.describe() for layer in net.layers] == [
                layer.describe() for layer in kept]
            assert got.spec_text == info.spec_text
            assert [layer.init for layer in net.layers] == [layer.init for layer in kept]
            assert got.class_names == info.class_names
            np.testing.assert_array_equal(got.mean, info.mean)
            np.testing.assert_array_equal(got.std, info.std)
        batch = 4 if spec == "alexnet" else 256
        np.testing.assert_allclose(predict_images(net, got, x, batch),
                                   predict_images(before, info, x, batch), rtol=0, atol=1e-5)


def test_imported_model_works_with_the_commands(tmp_path: Path) -> None:
    """predict, evaluate, inspect and plot read the imported file; its weights train."""
    x, _, path = exported("fmnist", 100, tmp_path)
    out = tmp_path / "imported.h5"
    assert_ok(run("import", path, out))
    np.save(tmp_path / "images.npy", x)
    assert_ok(run("predict", out, tmp_path / "images.npy", "--save-proba", tmp_path / "p.npy",
                  "--device", "cpu"))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_p = session.run(["probabilities"], {"pixels": x.astype(np.float32)})[0]
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), onnx_p, rtol=0, atol=1e-4)
    assert "accuracy" in assert_ok(run("evaluate", out, "--data", "fashion-mnist-mini",
                                       "--device", "cpu")).lower()
    assert "conv" in assert_ok(run("inspect", out))
    pytest.importorskip("matplotlib", reason="plot needs matplotlib")
    assert_ok(run("plot", "features", out, "-o", tmp_path / "f.png", "--image", 3,
                  "--data", "fashion-mnist-mini"))
    assert_ok(run("plot", "filters", out, "-o", tmp_path / "w.png"))
    net, info = load_model(out, "cpu")  # the imported weights train on (plain SGD steps)
    batch, labels = info.normalize(x[:64]), load_dataset("fashion-mnist-mini").y_test[:64]

    def loss() -> float:
        return float(net.loss.forward(net.forward(batch, training=False), labels))

    start = loss()
    for _ in range(5):
        net.train_step(batch, labels)
        for _, param, grad in net.parameters():
            param -= 0.01 * grad
    assert loss() < start


# ----------------------------------------------------------------------------- graphs


def test_conv_chain_with_sub_div_prefix_matches_onnxruntime(tmp_path: Path) -> None:
    g = GraphBuilder(3, 16, 16, opset=17, seed=1)
    g.normalize(mean=(120, 110, 100), std=(60, 62, 64))  # (x − m) / s, as torchvision
    g.conv(8, 3, pads=[1, 1, 1, 1]).op("Relu").op("MaxPool", kernel_shape=[2, 2],
                                                  strides=[2, 2])
    g.conv(8, 3, bias=False, auto_pad="SAME_UPPER").op("LeakyRelu", alpha=0.2)
    g.batchnorm(epsilon=1e-3).op("AveragePool", kernel_shape=[2, 2], strides=[2, 2])
    g.op("LRN", size=3, alpha=1e-2, beta=0.75, bias=1.5).op("Elu", alpha=0.7)
    g.op("Flatten", axis=1).gemm(20, trans_b=True).op("Tanh").dropout(0.3)
    g.matmul_add(10).op("Softmax", axis=1)
    summary = import_and_compare(g, tmp_path)
    assert (summary.layers, summary.classes, summary.added_softmax) == (13, 10, False)
    assert summary.normalization_from == "graph"


def test_global_pooling_and_logits_get_a_softmax(tmp_path: Path) -> None:
    g = GraphBuilder(2, 9, 9, opset=11, seed=2)
    g.normalize(mean=(128, 128), std=(64, 64))
    g.conv(6, 3).op("Sigmoid").op("GlobalAveragePool").op("Flatten")
    g.gemm(5, trans_b=False)  # no Softmax: numbacnn adds its own
    summary = import_and_compare(g, tmp_path)
    assert summary.added_softmax and summary.classes == 5


def test_global_max_pool_reshape_identity_and_old_dropout(tmp_path: Path) -> None:
    g = GraphBuilder(1, 10, 10, opset=11, seed=3)
    g.conv(4, 5, strides=[1, 1]).op("Relu").op("GlobalMaxPool")
    g.reshape([0, -1]).dropout(0.5, as_attribute=True).gemm(6, trans_b=True)
    g.op("Identity").op("Softmax", axis=1)
    assert import_and_compare(g, tmp_path).classes == 6


@pytest.mark.parametrize("op, opset, keepdims", [("ReduceMean", 18, 0), ("ReduceMean", 14, 1),
                                                 ("ReduceMax", 18, 1)])
def test_reduce_over_the_plane_is_global_pooling(op: str, opset: int, keepdims: int,
                                                 tmp_path: Path) -> None:
    """PyTorch's AdaptiveAvgPool2d(1) / x.mean((2, 3)); axes an input from opset 18."""
    g = GraphBuilder(2, 6, 6, opset=opset, seed=6)
    g.conv(5, 3).op("Relu")
    axes = [-2, -1] if keepdims else [2, 3]
    if opset >= 18:
        g.op(op, np.asarray(axes, np.int64), keepdims=keepdims)
    else:
        g.op(op, axes=axes, keepdims=keepdims)
    if keepdims:
        g.op("Reshape", np.asarray([-1, 5], np.int64), allowzero=1)
    g.gemm(4, trans_b=True)
    assert import_and_compare(g, tmp_path).layers == 4  # conv, relu, pool, fc


def test_flatten_before_softmax_becomes_a_flatten_layer(tmp_path: Path) -> None:
    g = GraphBuilder(1, 8, 8, opset=13, seed=4)
    g.conv(2, 3, pads=[1, 1, 1, 1]).op("MaxPool", kernel_shape=[4, 4], strides=[4, 4])
    g.op("Flatten").op("Softmax", axis=-1)
    summary = import_and_compare(g, tmp_path)
    assert summary.classes == 8
    assert "flatten" in load_model(tmp_path / "model.h5", "cpu")[1].spec_text


def test_gelu_operator_and_gelu_written_out(tmp_path: Path) -> None:
    g = GraphBuilder(2, 6, 6, opset=20, seed=5)
    g.normalize(mean=(127, 127), std=(80, 80)).conv(4, 3).op("Gelu").op("Flatten")
    g.gemm(4, trans_b=True).gelu_written_out().gemm(3, trans_b=True)
    assert "gelu\n" in _spec_of(import_and_compare(g, tmp_path), tmp_path)


def test_a_graph_that_ends_in_a_volume(tmp_path: Path) -> None:
    g = GraphBuilder(3, 8, 8, opset=17, seed=6)
    g.normalize(mean=(100, 100, 100), std=(50, 50, 50)).conv(5, 3, pads=[1, 1, 1, 1])
    path = g.save(tmp_path / "model.onnx")
    net, info, summary = read_onnx(path)
    assert summary.classes == 0 and net.output_shape == (5, 8, 8)
    x = IMAGES(g.input_shape, 20)
    expected = ort.InferenceSession(str(path)).run(None, {"x": x.astype(np.float32)})[0]
    got = to_host(net.forward(info.normalize(x), training=False))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_symbolic_input_size_takes_input_option(tmp_path: Path) -> None:
    g = GraphBuilder(1, 12, 10, opset=17, seed=7)
    g.conv(3, 3).op("Relu").op("Flatten").gemm(4, trans_b=True)
    path = g.save(tmp_path / "model.onnx", dims=["N", 1, "H", "W"])
    out = tmp_path / "model.h5"
    line = _one_error(run("import", path, out), "symbolic", "? x 1 x ? x ?")
    assert "--input" in line and not out.exists()
    assert_ok(run("import", path, out, "--input", "10x12x1"))
    np.testing.assert_allclose(proba_of(out, g, 30), _ort_softmax(path, g, 30), atol=1e-4)
    assert "contradicts" in _one_error(run("import", g.save(tmp_path / "fixed.onnx"),
                                           tmp_path / "b.h5", "--input", "12x12x1"))


def test_metadata_class_names_are_used(tmp_path: Path) -> None:
    g = GraphBuilder(1, 5, 5, opset=17, seed=8)
    g.op("Flatten").gemm(3, trans_b=True).op("Softmax", axis=1)
    path = g.save(tmp_path / "m.onnx", metadata={"class_names": json.dumps(["a", "b", "c"])})
    assert_ok(run("import", path, tmp_path / "m.h5"))
    assert load_model(tmp_path / "m.h5", "cpu")[1].class_names == ["a", "b", "c"]


def _spec_of(summary: object, tmp_path: Path) -> str:
    return load_model(tmp_path / "model.h5", "cpu")[1].spec_text


def _one_error(result: object, *fragments: str) -> str:
    from helpers import assert_one_error

    return assert_one_error(result, *fragments)  # type: ignore[arg-type]


def _ort_softmax(path: Path, g: GraphBuilder, count: int) -> np.ndarray:
    logits = ort.InferenceSession(str(path)).run(None, {"x": IMAGES(g.input_shape, count)
                                                        .astype(np.float32)})[0]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
