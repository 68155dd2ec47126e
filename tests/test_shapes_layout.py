"""The shapes table as a learner meets it: fitted to the terminal, parameters with the
lecture's (F·F·D1)·K + K, a network that ends in a volume, the notebook views, and one
notation for volumes (W×H×D) in every message.

Nothing here runs a kernel.
"""

from __future__ import annotations

import ast
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from numbacnn_cli.main import cli

from numbacnn.errors import DataError
from numbacnn.geometry import volume
from numbacnn.network import Network
from numbacnn.shapes import (
    MIN_WIDTH,
    format_table,
    params_formula,
    shape_table,
    wide_table_width,
)

ROOT = Path(__file__).resolve().parent.parent
VOLUME_ENDING = "input 28x28x1; conv 10 5 pad=2"  # no fc, no softmax: ends in 28x28x10


def shapes(*args: str, columns: int | None = None):
    env = {"COLUMNS": None if columns is None else str(columns)}
    return CliRunner().invoke(cli, ["shapes", *args], env=env)


# --- fitting the width ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["alexnet", "fmnist", "lecture-example", VOLUME_ENDING])
@pytest.mark.parametrize("columns", [80, MIN_WIDTH, 100])
def test_every_line_fits_the_columns(name: str, columns: int) -> None:
    result = shapes(name, columns=columns)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= columns, "\n".join(
        line for line in lines if len(line) > columns)
    report = shape_table(name)
    # compact: no receptive-field column, and every layer still has its row
    assert "RF" not in lines[1].split()
    for row in report.rows:
        assert any(line.split()[:2] == [str(row.index), row.name] for line in lines), row.name


def test_compact_puts_the_arithmetic_under_its_row() -> None:
    lines = shapes("alexnet", columns=80).output.splitlines()
    conv1 = next(i for i, line in enumerate(lines) if line.split()[:2] == ["1", "CONV1"])
    assert "55x55x96" in lines[conv1] and "34,944" in lines[conv1]
    indent = lines[conv1].index("conv 96 11")
    assert lines[conv1 + 1] == " " * indent + "output: (227 − 11 + 2·0)/4 + 1 = 55"
    assert lines[conv1 + 2] == " " * indent + "params: (11·11·3)·96 + 96 = 34,944"
    fc6 = next(i for i, line in enumerate(lines) if line.split()[:2] == ["16", "FC6"])
    assert lines[fc6 + 2].strip() == "params: (6·6·256)·4096 + 4096 = 37,752,832"
    assert lines[-1] == "(--wide shows weights, biases, FLOPs and receptive fields)"


def test_long_arithmetic_breaks_after_a_comma() -> None:
    lines = shapes("input 12x10x2; conv 4 3", columns=60).output.splitlines()
    at = next(i for i, line in enumerate(lines) if "output: width" in line)
    assert lines[at].endswith("output: width (12 − 3 + 2·0)/1 + 1 = 10,")
    assert lines[at + 1].strip() == "height (10 − 3 + 2·0)/1 + 1 = 8"
    assert not any(line.rstrip().endswith(("=", " 1.2", " x")) for line in lines)


def test_docs_show_the_80_column_table_as_it_prints() -> None:
    doc = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    command = "$ COLUMNS=80 numbacnn shapes lecture-example\n"
    shown = doc[doc.index(command) + len(command):].split("```")[0]
    assert shown == shapes("lecture-example", columns=80).output


def test_wide_when_it_fits_or_when_asked() -> None:
    lecture = wide_table_width(shape_table("lecture-example"))
    roomy = shapes("lecture-example", columns=lecture).output.splitlines()
    assert roomy[1].split()[-1] == "RF" and max(map(len, roomy)) <= lecture
    narrow = shapes("lecture-example", columns=lecture - 1).output.splitlines()
    assert narrow[1].split()[-1] == "memory"
    forced = shapes("alexnet", "--wide", columns=80).output.splitlines()
    assert forced[1].split()[-1] == "RF" and max(map(len, forced)) > 80
    compact = shapes("alexnet", "--compact").output.splitlines()  # a file, narrow asked
    assert compact[1].split()[-1] == "memory"


def test_a_file_or_pipe_without_columns_gets_every_column() -> None:
    lines = shapes("alexnet").output.splitlines()
    assert lines[1].split()[-1] == "RF" and len(lines) == 1 + 2 + 23 + 3


def test_str_and_summary_fit_columns(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    report = shape_table("alexnet")
    text = str(report)
    assert text == format_table(report, width=80).rstrip("\n") == repr(report)
    assert max(map(len, text.splitlines())) <= 80
    Network.from_spec("fmnist").summary()
    printed = capsys.readouterr().out
    assert "params: (3·3·1)·32 + 32 = 320" in printed
    assert max(map(len, printed.splitlines())) <= 80


# --- the parameter formula --------------------------------------------------------------

def test_the_lectures_conv_shows_its_formula() -> None:
    (row,) = shape_table("lecture-example").rows
    assert row.params_formula == "(5·5·3)·10 + 10 = 760"
    wide = shapes("lecture-example", "--wide").output
    conv1 = next(line for line in wide.splitlines() if " CONV1 " in line)
    assert "(5·5·3)·10 + 10 = 760" in conv1
    assert "params: (5·5·3)·10 + 10 = 760" in shapes("lecture-example", columns=80).output


@pytest.mark.parametrize(("spec", "index", "formula"), [
    ("alexnet", 16, "(6·6·256)·4096 + 4096 = 37,752,832"),  # fc over a 6x6x256 volume
    ("alexnet", 19, "4096·4096 + 4096 = 16,781,312"),  # fc after fc
    ("input 12x10x2; conv 4 3", 1, "(3·3·2)·4 + 4 = 76"),
    ("input 8x8x3; conv 4 3; batchnorm", 2, "4 + 4 = 8"),
    ("input 8x8x3; relu", 1, ""),
])
def test_params_formula_from_the_array_shapes(spec: str, index: int, formula: str) -> None:
    row = shape_table(spec).rows[index - 1]
    assert row.params_formula == formula
    assert formula == "" or formula.endswith(f" = {row.params:,}")


def test_params_formula_reads_shapes_not_kinds() -> None:
    # any layer declaring a (K, D1, F, F) array and a (K,) vector gets the lecture's form
    assert params_formula({"W": (7, 2, 3, 5), "b": (7,)}, (2, 9, 9)) == "(5·3·2)·7 + 7 = 217"
    assert params_formula({"W": (3, 48)}, (3, 4, 4)) == "(4·4·3)·3 = 144"
    assert params_formula({"W": (3, 47)}, (3, 4, 4)) == "47·3 = 141"


# --- a network that ends in a volume ----------------------------------------------------

@pytest.mark.parametrize("spec", ["lecture-example", VOLUME_ENDING])
def test_a_volume_ending_network_has_a_table(spec: str) -> None:
    net = Network.from_spec(spec)
    from_network, from_spec = shape_table(net), shape_table(spec)
    assert from_network.rows == from_spec.rows and len(from_network.rows) == 1
    assert from_network.rows[0].output_text == volume(net.output_shape)
    result = shapes(spec, columns=80)
    assert result.exit_code == 0, result.output
    assert from_spec.rows[0].output_text in result.output


def test_shape_table_refuses_what_it_cannot_read() -> None:
    with pytest.raises(TypeError, match="Network"):
        shape_table(42)  # type: ignore[arg-type]


# --- notebooks --------------------------------------------------------------------------

class _Rows(HTMLParser):
    """Counts <tr> per table section and collects the cells of tbody's rows."""

    def __init__(self) -> None:
        super().__init__()
        self.section, self.tables, self.body, self.cell = "", 0, [], False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables += 1
        elif tag in ("thead", "tbody", "tfoot"):
            self.section = tag
        elif tag == "tr" and self.section == "tbody":
            self.body.append([])
        elif tag == "td" and self.section == "tbody":
            self.cell = True
            self.body[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        self.cell = self.cell and tag != "td"

    def handle_data(self, data: str) -> None:
        if self.cell:
            self.body[-1][-1] += data


@pytest.mark.parametrize("subject", ["fmnist", "network"])
def test_html_is_a_table_with_a_row_per_layer(subject: str) -> None:
    report = shape_table("fmnist")
    page = (Network.from_spec("fmnist")._repr_html_() if subject == "network"
            else report._repr_html_())
    parser = _Rows()
    parser.feed(page)
    assert page.startswith("<table>") and parser.tables == 1
    assert [cells[:4] for cells in parser.body] == [
        [str(r.index), r.name, r.spec, r.output_text] for r in report.rows]
    assert parser.body[0][7] == "(3·3·1)·32 + 32 = 320"


def test_notebook_views_of_an_unbuilt_network_and_a_report() -> None:
    assert Network([])._repr_html_() is None  # no input shape: the plain repr
    assert not repr(shape_table("lecture-example")).startswith("ShapeReport(")


# --- one notation for volumes -----------------------------------------------------------

def test_data_info_writes_volumes_w_h_d() -> None:
    result = CliRunner().invoke(cli, ["data", "info", "fashion-mnist-mini"])
    assert result.exit_code == 0, result.output
    assert "input shape: 28x28x1 (W x H x D), uint8" in result.output


def test_a_wrong_image_size_is_named_w_h_d() -> None:
    from numbacnn.io.images import _as_batch

    with pytest.raises(DataError, match=re.escape("the model takes 8x6x1 (W x H x D) images")):
        _as_batch(np.zeros((2, 5, 5), np.uint8), (1, 6, 8), "x.npy")


def test_softmax_after_a_volume_names_it_w_h_d() -> None:
    result = shapes("input 8x6x1; conv 4 3; softmax")
    assert result.exit_code == 2
    assert "expects class scores 1x1xK (W x H x D" in result.output
    assert "got 6x4x4" in result.output


# a volume written channels first; arrays (N x C x H x W) are written as they are stored
_CHANNELS_FIRST = re.compile(r"(?<!N x )(?<!N×)\b[CD] ?[x×] ?H ?[x×] ?W\b")


def _message_strings(path: Path) -> list[tuple[int, str]]:
    """String constants of a module that are not docstrings, with their line numbers."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                                | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def test_no_message_writes_a_volume_channels_first() -> None:
    found = [f"{path.relative_to(ROOT)}:{line}: {text!r}"
             for folder in ("numbacnn", "cli") for path in sorted((ROOT / folder).rglob("*.py"))
             for line, text in _message_strings(path) if _CHANNELS_FIRST.search(text)]
    assert found == []


# --- one numbering of layers ------------------------------------------------------------

def test_bench_numbers_layers_as_the_shapes_table_does() -> None:
    from numbacnn.tools import plots
    from numbacnn.training import profiler

    rows = shape_table("input 8x8x1; conv 2 3; relu; fc 2").rows
    table = profiler.layer_table([r.spec for r in rows], [r.output_text for r in rows],
                                 np.ones(4), np.ones(4), 1.0, 1)
    assert [r["index"] for r in table["layers"]] == [r.index for r in rows] == [1, 2, 3]
    profile = {"spec": "tiny", "batch": 1, "device": "cpu", "iterations": 1, "warmup": 1,
               "params": 1, "gflop_per_image": 0.0, **table}
    text = profiler.layer_table_lines(profile)
    assert [line.split()[0] for line in text[1:4]] == ["1", "2", "3"]
    figure = plots.bench_figure({"networks": [profile]})
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels[:3] == [f"{r.index}: {r.spec}" for r in rows]
