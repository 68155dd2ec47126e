"""conv's window options (issue 25): groups, dilation, rectangular windows, per-axis
strides, unequal padding and rounding, as spec text and constructor arguments, in the
shape table, the model files and the alexnet-groups preset. The arithmetic itself is
tests/test_geometry.py's; the kernels are checked against tests/reference_conv.py by
the layer, gradient, chunk and simulator tests (tests/layer_cases.py's conv case uses
every option)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import run as run_cli

from numbacnn.errors import ShapeError, SpecError
from numbacnn.io.model_file import ModelInfo, load_model, save_model
from numbacnn.layers import Conv2D
from numbacnn.network import Network
from numbacnn.shapes import shape_table
from numbacnn.spec import parse_spec


def conv(text: str) -> Conv2D:
    (layer,) = parse_spec(text).make_layers()
    return layer  # type: ignore[return-value]


def test_spec_text_per_axis_and_per_side() -> None:
    layer = conv("conv 6 3x5 stride=1x2 pad=1,2,0,1 groups=2 dilation=2x1 round=floor")
    assert (layer.size, layer.stride, layer.pad) == ((3, 5), (1, 2), (1, 2, 0, 1))
    assert (layer.groups, layer.dilation, layer.round) == (2, (2, 1), "floor")
    assert layer.geometry == (3, 5, 1, 2, 1, 2, 2, 1)
    assert layer.describe() == ("conv 6 3x5 stride=1x2 pad=1,2,0,1 groups=2 dilation=2x1 "
                                "round=floor")
    # equal parts collapse, so each layer has one canonical text
    assert conv("conv 4 3x3 stride=2x2 pad=1,1,1,1").describe() == "conv 4 3 stride=2 pad=1"
    assert conv("conv 4 3 pad=1,2,1,2").pad == (1, 2)
    # options at their defaults stay out of the text: older specs keep theirs
    assert conv("conv 4 3 groups=1 dilation=1 round=exact").describe() == \
        "conv 4 3 stride=1 pad=0"


def test_pad_same_works_out_the_dilated_window() -> None:
    assert conv("conv 4 3 pad=same dilation=2").pad == 2
    assert conv("conv 4 3x5 pad=same").pad == (1, 2)
    with pytest.raises(SpecError, match=r"pad=same needs an odd size, got size 2"):
        parse_spec("conv 4 2x3 pad=same")


@pytest.mark.parametrize(("text", "message"), [
    ("conv 4 3x", r"size must be an integer ≥ 1 or HxW, got '3x'"),
    ("conv 4 3x3x3", r"size must be an integer ≥ 1 or HxW, got '3x3x3'"),
    ("conv 4 3 pad=1,2,3", r"pad must be .*top,left,bottom,right.*, got '1,2,3'"),
    ("conv 4 3 stride=1,2,1,2", r"stride must be an integer ≥ 1 or HxW, got '1,2,1,2'"),
    ("conv 4 3 groups=0", r"groups must be an integer ≥ 1, got 0"),
    ("conv 4 3 dilation=0x1", r"dilation must be an integer ≥ 1 or HxW, got '0x1'"),
    ("conv 4 3 round=up", r"round must be one of exact, floor, ceil, got 'up'"),
    ("conv 6 3 groups=4", r"groups=4 must divide the 6 filters"),
])
def test_bad_option_values_are_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(text)


def test_constructor_takes_pairs_and_sides() -> None:
    layer = Conv2D(8, (3, 5), stride=(1, 2), pad=(0, 1, 1, 2), groups=2, dilation=2,
                   round="floor")
    assert layer.describe() == "conv 8 3x5 stride=1x2 pad=0,1,1,2 groups=2 dilation=2 round=floor"
    assert Conv2D(8, [3, 3]).size == 3
    with pytest.raises(ShapeError, match="size must be"):
        Conv2D(8, (3, 5, 7))
    with pytest.raises(SpecError, match="groups=2 must divide the 3 input channels"):
        Network.from_spec("input 8x8x3; conv 4 3 groups=2")


def test_exact_rounding_refuses_and_names_round_floor() -> None:
    with pytest.raises(SpecError, match=r"not whole; .*round=floor gives "
                                        r"⌊\(224 − 3 \+ 2·0\)/2⌋ \+ 1 = 111"):
        Network.from_spec("input 224x224x3; conv 8 3 stride=2")
    assert Network.from_spec("input 224x224x3; conv 8 3 stride=2 round=floor") \
        .layers[0].output_shape == (8, 111, 111)
    assert Network.from_spec("input 224x224x3; conv 8 3 stride=2 round=ceil") \
        .layers[0].output_shape == (8, 112, 112)


def test_shape_table_shows_the_general_formula_and_grouped_parameters() -> None:
    report = shape_table("input 224x224x4; conv 8 3 stride=2 round=floor groups=2; "
                         "conv 6 3x5 pad=1,2,0,1 dilation=2")
    first, second = report.rows
    assert first.formula == "⌊(224 − 3 + 2·0)/2⌋ + 1 = 111"
    assert first.params_formula == "(3·3·4/2)·8 + 8 = 152"
    assert second.formula == ("height F' = 2·(3 − 1) + 1 = 5, width F' = 2·(5 − 1) + 1 = 9; "
                              "width (111 − 9 + 2 + 1)/1 + 1 = 106, "
                              "height (111 − 5 + 1 + 0)/1 + 1 = 108")
    assert second.params_formula == "(5·3·8)·6 + 6 = 726"
    out = run_cli("shapes", "input 224x224x3; conv 8 3 stride=2")
    assert out.exit_code == 2 and "round=floor gives" in out.output


def test_alexnet_groups_has_the_papers_parameter_count() -> None:
    """Krizhevsky et al.'s AlexNet, conv2, conv4 and conv5 in two groups: 60,965,224
    parameters (the paper's "60 million"), 1,413,120 fewer than the lecture's."""
    grouped, lecture = shape_table("alexnet-groups"), shape_table("alexnet")
    assert grouped.total_params == 60_965_224
    assert lecture.total_params - grouped.total_params == 1_413_120
    convs = [row for row in grouped.rows if row.type == "conv"]
    assert [row.params_formula for row in convs[1::2]] == [
        "(5·5·96/2)·256 + 256 = 307,456", "(3·3·384/2)·384 + 384 = 663,936"]
    assert convs[4].params_formula == "(3·3·384/2)·256 + 256 = 442,624"
    assert [row.output for row in grouped.rows] == [row.output for row in lecture.rows]


def save(net: Network, path: Path) -> None:
    C = net.input_shape[0]
    save_model(path, net, ModelInfo("", net.input_shape, ["a", "b", "c"],
                                    np.full(C, 0.5, np.float32), np.full(C, 0.25, np.float32)))


def test_model_files_store_the_options_as_spec_text(tmp_path: Path) -> None:
    net = Network.from_spec("input 9x8x4; conv 4 3x2 stride=2x1 pad=1,0,2,1 groups=2 "
                            "dilation=2x1 round=ceil; fc 3").initialize(3)
    save(net, tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5") as f:
        attrs = dict(f["layers/00_conv"].attrs)
        assert f["layers/00_conv/W"].shape == (4, 2, 3, 2)
    assert (attrs["size"], attrs["stride"], attrs["pad"]) == ("3x2", "2x1", "1,0,2,1")
    assert (attrs["groups"], attrs["dilation"], attrs["round"]) == (2, "2x1", "ceil")
    loaded, _ = load_model(tmp_path / "m.h5")
    assert loaded.layers[0].describe() == net.layers[0].describe()
    x = np.random.default_rng(0).standard_normal((2, 4, 8, 9)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict_proba(x), net.predict_proba(x))


def test_files_without_the_new_options_load_with_their_defaults(tmp_path: Path) -> None:
    """A plain conv writes no @groups, @dilation or @round (as every file before them),
    and such a file loads; a damaged per-axis value is refused."""
    net = Network.from_spec("input 8x8x2; conv 4 3 pad=1; fc 3").initialize(3)
    save(net, tmp_path / "old.h5")
    with h5py.File(tmp_path / "old.h5", "r+") as f:
        assert not {"groups", "dilation", "round"} & set(f["layers/00_conv"].attrs)
    loaded, _ = load_model(tmp_path / "old.h5")
    assert (loaded.layers[0].groups, loaded.layers[0].dilation, loaded.layers[0].round) == \
        (1, 1, "exact")
    with h5py.File(tmp_path / "old.h5", "r+") as f:
        f["layers/00_conv"].attrs["size"] = "3x"
    with pytest.raises(Exception, match=r"00_conv/@size: size must be an integer ≥ 1 or HxW"):
        load_model(tmp_path / "old.h5")
