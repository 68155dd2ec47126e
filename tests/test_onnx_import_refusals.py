"""What ``numbacnn import`` refuses, and the attributes it takes once the layers have them.

A graph numbacnn cannot run gives one ``error:`` line naming the node and the operator
and what is missing, exit 2, and no file (an existing one is left as it was). The
ONNX attributes that the conv and pooling layers are gaining options for (group,
dilations, rectangular windows, pooling pads, ceil_mode, count_include_pad) are refused
today; their tests against onnxruntime are skipped until the layer's syntax declares
the option (numbacnn/io/onnx_ops.py maps them as soon as it does), and the refusal
tests are skipped from then on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_error, run
from onnx_graphs import GraphBuilder, import_and_compare

from numbacnn.io import onnx_graph
from numbacnn.spec import SYNTAX

onnx = pytest.importorskip("onnx", reason="needs onnx: pip install -e '.[test]'")
pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install -e '.[test]'")


def declares(kind: str, key: str, text: str | None = None) -> bool:
    """Whether layer ``kind`` has option ``key`` (taking the spec text ``text``)."""
    option = SYNTAX[kind].option(key)
    if option is None or text is None:
        return option is not None
    try:
        option.convert(text)
    except ValueError:
        return False
    return True


# capability → reason to skip while it is missing / once it exists
CAPABILITIES = {
    "groups": (lambda: declares("conv", "groups"), "conv has no groups= option yet"),
    "dilation": (lambda: declares("conv", "dilation"), "conv has no dilation= option yet"),
    "rectangular": (lambda: declares("conv", "size", "3x5") and declares("conv", "stride", "1x2")
                    and declares("conv", "pad", "1x2"),
                    "conv takes no rectangular size=FHxFW, stride=SHxSW, pad=PHxPW yet"),
    "pad-sides": (lambda: declares("conv", "pad", "0,0,1,1"),
                  "conv takes no pad=top,left,bottom,right yet"),
    "conv-round": (lambda: declares("conv", "round", "floor"), "conv has no round= option yet"),
    "pool-pad": (lambda: declares("maxpool", "pad") and declares("avgpool", "count_pad"),
                 "pooling has no pad= and count_pad= options yet"),
    "pool-round": (lambda: declares("maxpool", "round"), "pooling has no round= option yet"),
}


def needs(capability: str) -> pytest.MarkDecorator:
    present, reason = CAPABILITIES[capability]
    return pytest.mark.skipif(not present(), reason=reason)


def refused_while_missing(capability: str) -> pytest.MarkDecorator:
    present, _ = CAPABILITIES[capability]
    return pytest.mark.skipif(present(), reason=f"numbacnn has {capability} now; imported")


def _conv_graph(C: int = 4, size: int = 9, **attrs: object) -> GraphBuilder:
    g = GraphBuilder(C, size, size, opset=17, seed=11)
    g.normalize(mean=[127] * C, std=[70] * C)
    F = attrs.pop("F", 3)
    g.conv(6, F, **attrs).op("Relu").op("Flatten").gemm(5, trans_b=True)
    return g


def _pool_graph(op: str, image: int = 9, **attrs: object) -> GraphBuilder:
    """Normalization, conv, ``op`` with ``attrs`` (a pooling or LRN), then fc."""
    g = GraphBuilder(2, image, image, opset=17, seed=12)
    g.normalize(mean=[127] * 2, std=[70] * 2).conv(4, 3)
    g.op(op, **attrs).op("Flatten").gemm(5, trans_b=True)
    return g


# ----------------------------------------------------------------------------- refusals

REFUSALS: dict[str, tuple[Callable[[], GraphBuilder], tuple[str, ...], str | None]] = {
    "group": (lambda: _conv_graph(group=2), ("node 'conv_7' (Conv)", "group=2 is not supported",
                                             "no groups option"), "groups"),
    "dilations": (lambda: _conv_graph(dilations=[2, 2]),
                  ("(Conv)", "dilations=[2, 2] is not supported"), "dilation"),
    "rectangular-kernel": (lambda: _conv_graph(F=(3, 5)),
                           ("(Conv)", "kernel_shape=[3, 5] is not supported",
                            "size must be an integer"), "rectangular"),
    "asymmetric-pads": (lambda: _conv_graph(pads=[0, 0, 1, 1]),
                        ("(Conv)", "pads=[0, 0, 1, 1] is not supported"), "pad-sides"),
    "conv-not-whole": (lambda: _conv_graph(size=8, strides=[2, 2]),
                       ("(Conv)", "rounding=floor is not supported", "no round option"),
                       "conv-round"),
    "pool-pads": (lambda: _pool_graph("MaxPool", kernel_shape=[3, 3], strides=[2, 2],
                                      pads=[1, 1, 1, 1]),
                  ("(MaxPool)", "pads=[1, 1, 1, 1] is not supported"), "pool-pad"),
    "ceil-mode": (lambda: _pool_graph("AveragePool", kernel_shape=[2, 2], strides=[2, 2],
                                      ceil_mode=1),
                  ("(AveragePool)", "ceil_mode=1 is not supported", "no round option"),
                  "pool-round"),
    "pool-not-whole": (lambda: _pool_graph("MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
                       ("(MaxPool)", "ceil_mode=0 is not supported", "no round option"),
                       "pool-round"),
    "storage-order": (lambda: _pool_graph("MaxPool", kernel_shape=[3, 3], strides=[2, 2],
                                          storage_order=1),
                      ("(MaxPool)", "storage_order=1 is not supported"), None),
    "gemm-alpha": (lambda: _conv_graph().op("Gemm", np.eye(5, dtype=np.float32), alpha=2.0),
                   ("(Gemm)", "alpha=2.0 is not supported"), None),
    "lrn-even": (lambda: _pool_graph("LRN", size=4),
                 ("(LRN)", "size=4 is not supported"), None),
    "zero-stride": (lambda: GraphBuilder(1, 6, 6).conv(2, 3, strides=[0, 0], auto_pad="SAME_UPPER"),
                    ("(Conv)", "not a valid ONNX graph"), None),
    "unknown-op": (lambda: _conv_graph().op("Abs"),
                   ("(Abs)", "this operator is not supported"), None),
    "unknown-attribute": (lambda: _pool_graph("LRN", size=3, foo=1),
                          ("(LRN)", "attribute foo is not supported"), None),
    "after-the-layers": (lambda: _conv_graph().op("Mul", np.float32(2)),
                         ("(Mul)", "only before the first layer"), None),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_refused_with_one_line_and_nothing_written(name: str, tmp_path: Path) -> None:
    build, fragments, capability = REFUSALS[name]
    if capability is not None and CAPABILITIES[capability][0]():
        pytest.skip(f"numbacnn has {capability} now: imported (see the test below)")
    unchecked = ("unknown-attribute", "zero-stride")  # onnx.checker refuses these itself
    path = build().save(tmp_path / "model.onnx", check=name not in unchecked)
    out = tmp_path / "model.h5"
    assert_one_error(run("import", path, out), *fragments)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_an_existing_file_is_left_as_it_was(tmp_path: Path) -> None:
    path = _conv_graph().op("Abs").save(tmp_path / "model.onnx")
    out = tmp_path / "model.h5"
    out.write_bytes(b"previous")
    assert_one_error(run("import", path, out), "exists already", "--force")
    assert_one_error(run("import", path, out, "--force"), "(Abs)")
    assert out.read_bytes() == b"previous"


def test_residual_connection_is_refused(tmp_path: Path) -> None:
    g = GraphBuilder(2, 6, 6, opset=17)
    g.conv(2, 3, pads=[1, 1, 1, 1])
    skip = g.x
    g.op("Relu")
    g.x = g.node("Add", [g.x, skip])
    assert_one_error(run("import", g.save(tmp_path / "m.onnx"), tmp_path / "m.h5"),
                     "(Add)", "no residual")


def test_branch_is_refused(tmp_path: Path) -> None:
    g = GraphBuilder(2, 6, 6, opset=17)
    g.conv(2, 3)
    side = g.node("Sigmoid", [g.x])
    g.op("Relu")
    g.x = g.node("Mul", [g.x, side])
    assert_one_error(run("import", g.save(tmp_path / "m.onnx"), tmp_path / "m.h5"),
                     "(Relu)", "takes 'conv_3', which another node takes too", "branches")


def test_computed_weights_are_refused(tmp_path: Path) -> None:
    g = GraphBuilder(1, 6, 6, opset=17)
    weights = g.node("Identity", [g.const(np.ones((2, 1, 3, 3), np.float32))])
    g.x = g.node("Conv", ["x", weights], kernel_shape=[3, 3])
    assert_one_error(run("import", g.save(tmp_path / "m.onnx"), tmp_path / "m.h5"),
                     "(Identity)", "does not take the previous layer's output")


def test_huge_claimed_dimensions_are_refused(tmp_path: Path) -> None:
    model = _conv_graph().model()
    tensor = model.graph.initializer[0]
    del tensor.dims[:]
    tensor.dims.extend([2**20, 2**20])
    onnx.save(model, str(tmp_path / "m.onnx"))
    assert_one_error(run("import", tmp_path / "m.onnx", tmp_path / "m.h5"),
                     "claims dimensions [1048576, 1048576]")


def test_file_size_is_checked_before_parsing(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = _conv_graph().save(tmp_path / "m.onnx")
    monkeypatch.setattr(onnx_graph, "MAX_FILE_BYTES", 100)
    assert_one_error(run("import", path, tmp_path / "m.h5"), "more than an ONNX file can hold")


@pytest.mark.parametrize("data, fragment", [(b"not a model\xff\x00", "not an ONNX model"),
                                            (b"", "no ONNX graph")])
def test_not_an_onnx_file(data: bytes, fragment: str, tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(data)
    assert_one_error(run("import", tmp_path / "m.onnx", tmp_path / "m.h5"), fragment)


# ----------------------------------------------------------------------------- capabilities


@needs("groups")
def test_grouped_convolution(tmp_path: Path) -> None:
    import_and_compare(_conv_graph(group=2), tmp_path)


@needs("dilation")
def test_dilated_convolution(tmp_path: Path) -> None:
    import_and_compare(_conv_graph(dilations=[2, 2]), tmp_path)


@needs("rectangular")
def test_rectangular_convolution(tmp_path: Path) -> None:
    import_and_compare(_conv_graph(F=(3, 5), strides=[1, 2], pads=[1, 2, 1, 2]), tmp_path)


@needs("pad-sides")
def test_convolution_with_unequal_padding(tmp_path: Path) -> None:
    import_and_compare(_conv_graph(pads=[0, 0, 1, 1]), tmp_path)


@needs("conv-round")
def test_convolution_whose_size_onnx_floors(tmp_path: Path) -> None:
    import_and_compare(_conv_graph(size=8, strides=[2, 2]), tmp_path)


@needs("pool-round")
def test_pooling_whose_size_onnx_floors(tmp_path: Path) -> None:
    import_and_compare(_pool_graph("MaxPool", image=8, kernel_shape=[3, 3], strides=[2, 2]),
                       tmp_path)


@needs("pool-pad")
@pytest.mark.parametrize("op, count_include_pad", [("MaxPool", None), ("AveragePool", 0),
                                                   ("AveragePool", 1)])
def test_padded_pooling(op: str, count_include_pad: int | None, tmp_path: Path) -> None:
    attrs = {} if count_include_pad is None else {"count_include_pad": count_include_pad}
    import_and_compare(_pool_graph(op, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                   **attrs), tmp_path)


@needs("pool-round")
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_ceil_mode_pooling(op: str, tmp_path: Path) -> None:
    import_and_compare(_pool_graph(op, kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
                       tmp_path)


def test_ceil_mode_that_changes_nothing_is_taken(tmp_path: Path) -> None:
    """ceil_mode=1 where every window fits (PyTorch writes it so) is plain pooling."""
    import_and_compare(_pool_graph("MaxPool", image=10, kernel_shape=[2, 2], strides=[2, 2],
                                   ceil_mode=1), tmp_path)


def test_node_without_output_and_graph_output_elsewhere(tmp_path: Path) -> None:
    from onnx import helper

    g = GraphBuilder(1, 6, 6, opset=17)
    g.conv(2, 3)
    model = g.model()
    model.graph.node.append(helper.make_node("Relu", [g.x], [], name="silent"))
    onnx.save(model, str(tmp_path / "a.onnx"))
    assert_one_error(run("import", tmp_path / "a.onnx", tmp_path / "a.h5"),
                     "node 'silent' (Relu): has no output")
    g.op("Relu")
    model = g.model()
    model.graph.output[0].name = "conv_3"  # the graph's output is the conv's, not the relu's
    onnx.save(model, str(tmp_path / "b.onnx"))
    assert_one_error(run("import", tmp_path / "b.onnx", tmp_path / "b.h5"), "graph's output")
