"""Tests of the shape calculator (numbacnn.shapes) and ``numbacnn shapes``.

Nothing here runs a kernel: the table comes from the layers' shape arithmetic.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run as run_cli

from numbacnn.errors import ShapeError, SpecError
from numbacnn.network import Network
from numbacnn.shapes import format_csv, format_json, format_table, human_bytes, shape_table
from numbacnn.spec import list_presets, load_spec

# The lecture's AlexNet walk: (row name, output, weights, biases) of every layer but the
# activations and dropout.
ALEXNET = [
    ("CONV1", "55x55x96", (11 * 11 * 3) * 96, 96),
    ("POOL1", "27x27x96", 0, 0),
    ("NORM1", "27x27x96", 0, 0),
    ("CONV2", "27x27x256", (5 * 5 * 96) * 256, 256),
    ("POOL2", "13x13x256", 0, 0),
    ("NORM2", "13x13x256", 0, 0),
    ("CONV3", "13x13x384", (3 * 3 * 256) * 384, 384),
    ("CONV4", "13x13x384", (3 * 3 * 384) * 384, 384),
    ("CONV5", "13x13x256", (3 * 3 * 384) * 256, 256),
    ("POOL3", "6x6x256", 0, 0),
    ("FC6", "4096", 6 * 6 * 256 * 4096, 4096),
    ("FC7", "4096", 4096 * 4096, 4096),
    ("FC8", "1000", 4096 * 1000, 1000),
]


def run(*args: str):
    """``numbacnn shapes ARGS`` as into a file (no terminal, no $COLUMNS): the wide table."""
    return run_cli("shapes", *args, env={"COLUMNS": None})


# --- the acceptance numbers -------------------------------------------------------------

def test_alexnet_report_matches_the_lecture() -> None:
    report = shape_table("alexnet")
    rows = [r for r in report.rows if r.type not in ("relu", "dropout", "softmax")]
    assert [(r.name, r.output_text, r.weights, r.biases) for r in rows] == ALEXNET
    assert rows[0].weights == 34_848 and rows[0].formula == "(227 − 11 + 2·0)/4 + 1 = 55"
    assert rows[10].formula == "6·6·256 = 9216 → 4096"
    assert report.total_params == sum(w + b for _, _, w, b in ALEXNET) == 62_378_344
    assert rows[0].flops == 2 * 55 * 55 * 96 * 11 * 11 * 3
    assert [r.receptive_field for r in rows[:10]] == [11, 19, 19, 51, 67, 67, 99, 131, 163, 195]
    assert rows[10].sees_whole_input and rows[10].receptive_field == 227
    assert report.rows[-1].type == "softmax" and report.rows[-1].output == (1, 1, 1000)


def test_alexnet_table_text() -> None:
    result = run("alexnet")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "input 227x227x3" in out and "batch 1" in out
    for name, output, weights, biases in ALEXNET:
        line = next(line for line in out.splitlines() if f" {name} " in line)
        assert f" {output} " in line and f"{weights:,}" in line and f"{biases:,}" in line
    conv1 = next(line for line in out.splitlines() if " CONV1 " in line)
    assert "conv 96 11 stride=4 pad=0" in conv1 and "(227 − 11 + 2·0)/4 + 1 = 55" in conv1
    assert "34,848" in conv1 and "34,944" in conv1 and "210.8M" in conv1 and "1.1 MiB" in conv1
    total = next(line for line in out.splitlines() if line.split()[:1] == ["total"])
    assert "62,378,344" in total


def test_lecture_example() -> None:
    report = shape_table("lecture-example")
    (row,) = report.rows
    assert row.output_text == "32x32x10" and row.params == report.total_params == 760
    assert (row.weights, row.biases) == (5 * 5 * 3 * 10, 10)
    result = run("lecture-example")
    assert result.exit_code == 0 and "32x32x10" in result.output and "760" in result.output


@pytest.mark.parametrize(("layer", "output", "formula"), [
    ("conv 1 3 stride=1", "5x5x1", "(7 − 3 + 2·0)/1 + 1 = 5"),
    ("conv 1 3 stride=2", "3x3x1", "(7 − 3 + 2·0)/2 + 1 = 3"),
    ("conv 1 3 stride=1 pad=1", "7x7x1", "(7 − 3 + 2·1)/1 + 1 = 7"),
])
def test_lecture_7x7_input_with_a_3x3_filter(layer: str, output: str, formula: str) -> None:
    (row,) = shape_table(f"input 7x7x1; {layer}").rows
    assert (row.output_text, row.formula) == (output, formula)


def test_lecture_7x7_stride_3_does_not_fit() -> None:
    result = run("input 7x7x1; conv 1 3 stride=3")
    assert result.exit_code == 2
    message = result.output.strip()
    assert len(message.splitlines()) == 1
    assert message.startswith("error: spec line 2 (`conv 1 3 stride=3`): ")
    assert "(7 − 3 + 2·0)/3 + 1 = 2.33 is not whole" in message
    assert "pad=1 gives (7 − 3 + 2·1)/3 + 1 = 3" in message
    assert "stride=2 gives (7 − 3 + 2·0)/2 + 1 = 3" in message


def test_every_conv_has_f_f_d_k_weights_and_k_biases() -> None:
    for name in list_presets():
        report = shape_table(name)
        depth = report.input_shape[0]
        for row, entry in zip(report.rows, load_spec(name).layers, strict=True):
            if row.type == "conv":
                F, K = entry.kwargs["size"], entry.kwargs["filters"]
                G = entry.kwargs.get("groups", 1)  # in G groups a filter sees D/G channels
                assert (row.weights, row.biases) == ((F * F * depth // G) * K, K), (name, row)
            depth = row.output[2]


@pytest.mark.parametrize(("name", "outputs"), [
    ("lenet", ["28x28x6", "28x28x6", "14x14x6", "10x10x16", "10x10x16", "5x5x16", "120", "120",
               "84", "84", "10", "10"]),
    ("fmnist", ["28x28x32", "28x28x32", "14x14x32", "14x14x64", "14x14x64", "7x7x64", "128",
                "128", "128", "10", "10"]),
    ("lecture-example", ["32x32x10"]),
    ("cifar10", ["32x32x32", "32x32x32", "16x16x32", "16x16x64", "16x16x64", "8x8x64", "128",
                 "128", "128", "10", "10"]),
])
def test_preset_shapes(name: str, outputs: list[str]) -> None:
    assert [row.output_text for row in shape_table(name).rows] == outputs


def test_network_from_spec_builds_what_the_table_describes() -> None:
    net = Network.from_spec("alexnet")
    from_spec, from_network = shape_table("alexnet"), shape_table(net)
    assert from_network.rows == from_spec.rows
    assert net.num_params() == from_spec.total_params
    assert net.input_shape == from_spec.input_shape
    shapes = [layer.output_shape for layer in net.layers]
    assert [(r.output[2], r.output[1], r.output[0]) for r in from_spec.rows[:-1]] == shapes


# --- options and formats ----------------------------------------------------------------

def test_input_and_batch_options() -> None:
    report = shape_table("input 8x8x1; conv 4 3", input_shape=(2, 10, 12), batch=3)
    (row,) = report.rows
    assert row.output == (10, 8, 4)
    assert row.formula == "width (12 − 3 + 2·0)/1 + 1 = 10, height (10 − 3 + 2·0)/1 + 1 = 8"
    assert row.activation_bytes == 4 * 10 * 8 * 4 * 3 and row.weights == 3 * 3 * 2 * 4
    result = run("lecture-example", "--input", "12x10x2", "--batch", "3", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["input"] == [12, 10, 2] and data["batch"] == 3
    assert data["layers"][0]["output"] == [12, 10, 10]
    assert data["layers"][0]["activation_bytes"] == 4 * 12 * 10 * 10 * 3


def test_json_format() -> None:
    result = run("alexnet", "--format", "json", "--batch", "2")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["input"] == [227, 227, 3] and data["batch"] == 2
    first = data["layers"][0]
    assert first == {"index": 1, "name": "CONV1", "type": "conv",
                     "spec": "conv 96 11 stride=4 pad=0", "output": [55, 55, 96],
                     "weights": 34848, "biases": 96, "params": 34944,
                     "flops": 2 * 55 * 55 * 96 * 363, "activation_bytes": 4 * 55 * 55 * 96 * 2,
                     "receptive_field": 11, "formula": "(227 − 11 + 2·0)/4 + 1 = 55",
                     "params_formula": "(11·11·3)·96 + 96 = 34,944"}
    assert data["total_params"] == 62_378_344
    assert data["total_flops"] == sum(layer["flops"] for layer in data["layers"])
    assert data["total_activation_bytes"] == sum(
        layer["activation_bytes"] for layer in data["layers"])


def test_csv_format() -> None:
    result = run("fmnist", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == len(shape_table("fmnist").rows)
    assert rows[0]["output"] == "28x28x32" and rows[0]["params"] == "320"
    assert rows[6]["formula"] == "7·7·64 = 3136 → 128" and rows[6]["weights"] == "401408"
    report = shape_table("fmnist")
    assert format_csv(report) == result.output
    assert json.loads(format_json(report))["total_params"] == 421_642
    assert format_table(report).splitlines()[0].startswith("fmnist.spec: input 28x28x1")


def test_spec_file_argument(tmp_path: Path) -> None:
    path = tmp_path / "net.spec"
    path.write_text("input 12x12x3\nconv 4 3 pad=same\nmaxout 2\nflatten\nfc 5\n",
                    encoding="utf-8")
    result = run(str(path))
    assert result.exit_code == 0, result.output
    report = shape_table(str(path))
    assert [r.output_text for r in report.rows] == ["12x12x4", "12x12x2", "288", "5"]
    assert [r.formula for r in report.rows[1:]] == ["4/2 = 2", "12·12·2 = 288", "288 → 5"]


def test_model_file_argument(tmp_path: Path) -> None:
    """A model file (recognised by content, whatever its name) prints its network's
    table: the same rows as its spec, titled with the path; --input is refused."""
    import numpy as np

    from numbacnn.io.model_file import ModelInfo, save_model

    spec = "input 12x12x3\nconv 4 3 pad=same\nmaxpool 2\nfc 5\nsoftmax\n"
    net = Network.from_spec(spec).initialize(seed=0)
    info = ModelInfo(spec_text=spec, input_shape=net.input_shape,
                     class_names=[str(k) for k in range(5)],
                     mean=np.zeros(3, np.float32), std=np.ones(3, np.float32))
    path = tmp_path / "trained.model"
    save_model(path, net, info)
    expected = run(spec)
    result = run(str(path))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith(f"{path}: input 12x12x3")
    assert result.output.splitlines()[1:] == expected.output.splitlines()[1:]
    data = json.loads(run(str(path), "--format", "json").output)
    assert [row["output"] for row in data["layers"]] == [[12, 12, 4], [6, 6, 4], [1, 1, 5],
                                                         [1, 1, 5]]
    refused = run(str(path), "--input", "8x8x3")
    assert refused.exit_code == 2 and "is a model file" in refused.output


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (40, 1024, 1161600, 3 * 2**30)] == [
        "40 B", "1.0 KiB", "1.1 MiB", "3.0 GiB"]


def test_library_errors() -> None:
    with pytest.raises(ShapeError, match="batch"):
        shape_table("alexnet", batch=0)
    with pytest.raises(ShapeError, match="input shape"):
        shape_table(Network([]))
    with pytest.raises(SpecError, match="no input size"):
        shape_table("conv 4 3")


# --- errors: one line, exit status 2 ----------------------------------------------------

@pytest.mark.parametrize(("args", "expected"), [
    (["input 7x7x1; conv 1 3 stride=3"], ["spec line 2 (`conv 1 3 stride=3`)", "2.33"]),
    (["input 8x8x1; conv 4 3; convv 2 3"], ["spec line 3", "unknown layer 'convv'",
                                             "did you mean 'conv'"]),
    (["input 8x8x1; maxpol 2"], ["spec line 2", "did you mean 'maxpool'"]),
    (["input 8x8x1; conv 4 3 stried=2"], ["spec line 2", "did you mean 'stride'"]),
    (["input 8x8x1; conv 4"], ["spec line 2", "conv needs size"]),
    (["input 8x8x1; fc"], ["spec line 2", "fc needs units"]),
    (["input 8x8x1; conv four 3"], ["spec line 2", "filters must be an integer ≥ 1",
                                     "'four'"]),
    (["input 8x8x1; conv 4 3 stride=-2"], ["spec line 2", "stride must be an integer ≥ 1",
                                            "-2"]),
    (["input 8x8x1; conv 4 3 pad=-1"], ["pad must be an integer ≥ 0"]),
    (["input 8x8x1; dropout -0.5"], ["spec line 2", "p must be a number in [0, 1)"]),
    (["input 8x8x1; leaky abc"], ["alpha must be a number ≥ 0", "'abc'"]),
    (["input 8x8x1; conv 4 9"], ["spec line 2 (`conv 4 9`)", "9x9 window is larger than its "
                                 "padded input 8"]),
    (["input 8x8x1; conv 4 4 pad=same"], ["pad=same needs an odd size"]),
    (["input 8x8x1; maxpool 3"], ["spec line 2", "(8 − 3 + 2·0)/3 + 1 = 2.67", "stride="]),
    (["input 8x8x3; maxout 2"], ["spec line 2", "3 input channels are not divisible by 2"]),
    (["input 8x8x1; fc 10; softmax; relu"], ["spec line 3", "softmax must be the last"]),
    (["input 8x8x1; conv 4 3; softmax"], ["spec line 3", "softmax", "1x1xK", "got 6x6x4"]),
    (["input 8x8x1; relu 2"], ["spec line 2", "relu takes no arguments"]),
    (["input 8x8x1; conv 4 3 init=glorot"], ["init must be one of"]),
    (["input 8x8x1"], ["no layers"]),
    (["# just a comment"], ["no layers"]),
    ([""], ["empty"]),
    (["conv 4 3; relu"], ["no input size", "--input"]),
    (["input 8x8; relu"], ["spec line 1", "not WxHxD"]),
    (["alexnet", "--input", "227x227"], ["--input", "not WxHxD"]),
    (["alexnet", "--input", "100x100x3"], ["alexnet.spec line", "conv 96 11 stride=4 pad=0",
                                           "(100 − 11 + 2·0)/4 + 1 = 23.25"]),
    (["nets/nope.spec"], ["spec file nets/nope.spec not found"]),
    (["alexnot"], ["not a preset", "did you mean 'alexnet'"]),
])
def test_malformed_specs_exit_2_with_one_message(args: list[str], expected: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert message.startswith("error: ") and len(message.splitlines()) == 1, message
    for piece in expected:
        assert piece in message, (piece, message)
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_bad_batch_is_a_usage_error() -> None:
    result = run("alexnet", "--batch", "0")
    assert result.exit_code == 2 and "--batch" in result.output


# --- a real process ---------------------------------------------------------------------

def test_real_process_prints_one_line_and_no_traceback() -> None:
    result = subprocess.run([sys.executable, "-m", "numbacnn_cli.main", "shapes",
                             "input 7x7x1\nconv 1 3 stride=3"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.startswith("error: spec line 2 (`conv 1 3 stride=3`): ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_shapes_alexnet_imports_no_numba() -> None:
    code = ("import sys\n"
            "from click.testing import CliRunner\n"
            "from numbacnn_cli.main import cli\n"
            "result = CliRunner().invoke(cli, ['shapes', 'alexnet'])\n"
            "assert result.exit_code == 0, result.output\n"
            "assert '55x55x96' in result.output\n"
            "print([m for m in sys.modules if m == 'numba' or m.startswith(('numba.', "
            "'numbacnn.kernels', 'numbacnn.backends.'))])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]", result.stdout
