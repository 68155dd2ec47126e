"""``numbacnn plot conv``: the lecture's convolution figure. The numbers (every output cell,
its window and its written-out arithmetic) are checked against a float64 convolution
computed here, without matplotlib; the CLI's GIF is read back with Pillow (one frame per
output cell) and its still PNG checked to be a picture; impossible sizes get the message
``numbacnn shapes`` gives, one line, exit 2, and leave no file."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_ok as ok
from helpers import assert_one_error as one_error
from helpers import run

from numbacnn.errors import ShapeError
from numbacnn.geometry import output_size
from numbacnn.tools.conv_figure import (
    MAX_FRAMES,
    arithmetic_lines,
    conv_frames,
    frames_shown,
)
from numbacnn.tools.plots import PlotError

# (W, F, S, P, D): the lecture's 7x7 examples, CS231n's 5x5x3 demo, an 11x11 filter
GEOMETRIES = [(7, 3, 1, 0, 1), (7, 3, 2, 0, 1), (7, 3, 2, 1, 1), (5, 3, 2, 1, 3),
              (6, 2, 2, 0, 2), (1, 1, 1, 0, 1), (13, 11, 2, 2, 1)]


def reference(padded: np.ndarray, weights: np.ndarray, bias: int, S: int) -> np.ndarray:
    """(OH, OW) float64 cross-correlation of a (D, Hp, Wp) input with a (D, F, F) filter."""
    F = weights.shape[-1]
    windows = np.lib.stride_tricks.sliding_window_view(padded.astype(np.float64), (F, F),
                                                       axis=(1, 2))[:, ::S, ::S]
    return np.einsum("dijkl,dkl->ij", windows, weights.astype(np.float64)) + bias


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(("W", "F", "S", "P", "D"), GEOMETRIES)
def test_every_cell_is_the_reference_convolution(W: int, F: int, S: int, P: int,
                                                 D: int) -> None:
    data = conv_frames(W, F, S, P, depth=D, seed=3, bias=1)
    side = (W - F + 2 * P) // S + 1
    assert data.padded.shape == (D, W + 2 * P, W + 2 * P)
    inner = np.zeros(data.padded.shape, bool)
    inner[:, P:P + W, P:P + W] = True
    assert not data.padded[~inner].any(), "padding must be zeros"
    assert set(np.unique(data.padded[inner])) <= {0, 1, 2}
    assert set(np.unique(data.weights)) <= {-1, 0, 1} and data.weights.shape == (D, F, F)
    expected = reference(data.padded, data.weights, 1, S)
    assert data.output.shape == (side, side)
    np.testing.assert_array_equal(data.output, expected)
    assert len(data.frames) == side * side
    for n, frame in enumerate(data.frames):
        assert (frame.row, frame.column) == divmod(n, side)  # row by row
        assert (frame.top, frame.left) == (frame.row * S, frame.column * S)
        np.testing.assert_array_equal(
            frame.window, data.padded[:, frame.top:frame.top + F, frame.left:frame.left + F])
        np.testing.assert_array_equal(frame.products, frame.window * data.weights)
        assert frame.value == expected[frame.row, frame.column]


def _evaluate(lines: list[str]) -> tuple[str, int, int]:
    """(cell, value written after '=', value of the written sum) of a cell's arithmetic."""
    text = " ".join(lines).replace("−", "-").replace("·", "*")
    match = re.fullmatch(r"out\[(\d+,\d+)\] = (.*) = (-?\d+)", " ".join(text.split()))
    assert match, lines
    terms = match.group(2).replace(" (bias b)", "")
    terms = re.sub(r" \(Σ of the \d+ products x\*w of slice \d+\)", "", terms)
    assert re.fullmatch(r"[-+*() \d]+", terms), terms
    return match.group(1), int(match.group(3)), eval(terms)  # digits and + * ( ) only


@pytest.mark.parametrize(("W", "F", "S", "P", "D"), GEOMETRIES)
def test_arithmetic_text_sums_to_the_cell(W: int, F: int, S: int, P: int, D: int) -> None:
    data = conv_frames(W, F, S, P, depth=D, seed=5, bias=-2)
    for frame in data.frames:
        lines = arithmetic_lines(data, frame, width=44)
        cell, written, total = _evaluate(lines)
        assert cell == f"{frame.row},{frame.column}"
        assert written == total == frame.value
        if frame.products.size <= 54:  # written out: one product per window cell
            assert " ".join(lines).count("·") == frame.products.size
        assert len(lines) >= D  # each depth slice starts a line


def test_numbers_are_seeded_and_need_no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    first, again, other = (conv_frames(7, 3, 2, 1, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(first.padded, again.padded)
    np.testing.assert_array_equal(first.weights, again.weights)
    assert not np.array_equal(first.padded, other.padded)
    assert "(7 − 3 + 2·1)/2 + 1 = 4, so 4x4" in first.title()


@pytest.mark.parametrize(("W", "F", "S", "P"), [(7, 3, 3, 0), (7, 12, 2, 1), (5, 2, 2, 0)])
def test_impossible_geometry_is_the_geometrys_error(W: int, F: int, S: int, P: int) -> None:
    with pytest.raises(ShapeError) as caught:
        conv_frames(W, F, S, P)
    with pytest.raises(ShapeError) as geometry:
        output_size(W, F, S, P, f"conv 1 {F} stride={S} pad={P}")
    assert str(caught.value) == str(geometry.value)


def test_sizes_are_bounded() -> None:
    for kwargs, field in (({"input_size": 33}, "input_size"), ({"pad": 9}, "pad"),
                          ({"depth": 4}, "depth"), ({"stride": 0}, "stride"),
                          ({"seed": -1}, "seed")):
        with pytest.raises(PlotError) as caught:
            conv_frames(**{"input_size": 7, "filter_size": 3, **kwargs})
        assert caught.value.field == field
    with pytest.raises(PlotError, match=f"1024 output cells.*at most {MAX_FRAMES} frames"):
        conv_frames(32, 1, 1, 0)
    assert len(conv_frames(31, 1, 2, 0).frames) == MAX_FRAMES  # 16x16: the most allowed


def test_still_images_show_at_most_16_frames_with_first_and_last() -> None:
    assert frames_shown(9) == list(range(9))
    shown = frames_shown(49)
    assert len(shown) == 16 and shown[0] == 0 and shown[-1] == 48
    assert shown == sorted(set(shown))


# ----------------------------------------------------------------------------- pictures


@pytest.fixture
def matplotlib() -> None:
    pytest.importorskip("matplotlib", reason="needs matplotlib: pip install -e '.[test]'")


def test_cli_writes_a_gif_with_one_frame_per_output_cell(matplotlib: None,
                                                         tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "conv.gif"
    said = ok(run("plot", "conv", "--input", 7, "--filter", 3, "--stride", 2, "--pad", 1,
                  "-o", out))
    width, height = (int(v) for v in re.search(r"(\d+)x(\d+) pixels", said).groups())
    assert "16 frames" in said and "→ 4x4" in said
    with Image.open(out) as gif:
        assert gif.format == "GIF" and gif.n_frames == 16 and gif.size == (width, height)
        frames = []
        for k in range(gif.n_frames):
            gif.seek(k)
            frames.append(np.asarray(gif.convert("RGB"), np.float64))
    assert frames[0].std() > 20, "blank frame"
    assert all(np.abs(a - b).sum() > 0 for a, b in zip(frames, frames[1:], strict=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv.gif"]  # no temporaries


def test_cli_writes_a_depth_3_gif(matplotlib: None, tmp_path: Path) -> None:
    from PIL import Image

    ok(run("plot", "conv", "--input", 5, "--depth", 3, "--seed", 4, "-o", tmp_path / "d.gif"))
    with Image.open(tmp_path / "d.gif") as gif:
        assert gif.n_frames == 9


def test_cli_writes_a_still_png_of_frames(matplotlib: None, tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "conv.png"
    said = ok(run("plot", "conv", "--input", 7, "--filter", 3, "--stride", 2, "--pad", 1,
                  "-o", out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = (int(v) for v in re.search(r"(\d+)x(\d+) pixels", said).groups())
    with Image.open(out) as png:
        assert png.size == (width, height)
        pixels = np.asarray(png.convert("RGB"), np.float64)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20


def test_still_figure_holds_the_frames_shown(matplotlib: None) -> None:
    from numbacnn.tools.conv_drawing import still_figure

    data = conv_frames(7, 1, 1, 0)  # 49 cells
    assert len(still_figure(data, frames_shown(len(data.frames))).axes) == 16


def test_gif_too_big_for_memory_is_refused(matplotlib: None) -> None:
    from numbacnn.tools.conv_drawing import animation_frames

    with pytest.raises(PlotError, match="lower dpi"):
        animation_frames(conv_frames(31, 1, 2, 0), dpi=1000)


@pytest.mark.parametrize(("args", "shapes_layer"), [
    (("--stride", 3, "--pad", 0), "conv 1 3 stride=3"),
    (("--filter", 12), "conv 1 12 stride=2 pad=1"),
])
def test_cli_refuses_impossible_sizes_as_shapes_does(tmp_path: Path, args: tuple[object, ...],
                                                     shapes_layer: str) -> None:
    plotted = one_error(run("plot", "conv", "--input", 7, *args, "-o", tmp_path / "c.gif"))
    shapes = one_error(run("shapes", f"input 7x7x1; {shapes_layer}"))
    layer, _, message = plotted.removeprefix("error: ").partition(": ")
    assert shapes.endswith(f"{layer} (height): {message}"), (plotted, shapes)
    assert not any(tmp_path.iterdir())


def test_cli_bounds_and_output_errors(tmp_path: Path) -> None:
    out = tmp_path / "c.gif"
    one_error(run("plot", "conv", "--input", 33, "-o", out), "--input", "1<=x<=32")
    one_error(run("plot", "conv", "--input", 32, "--stride", 1, "-o", out),
              "1024 output cells", "at most 256 frames")
    one_error(run("plot", "conv", "-o", tmp_path / "c.jpg"), ".gif, .png, .svg or .pdf")
    one_error(run("plot", "conv", "-o", tmp_path / "no" / "c.gif"), "does not exist")
    assert not any(tmp_path.iterdir())


def test_existing_picture_replaced_or_kept(matplotlib: None, tmp_path: Path) -> None:
    """Like the other plots: a finished figure replaces the file, a refused one leaves it."""
    out = tmp_path / "c.gif"
    out.write_bytes(b"old picture")
    one_error(run("plot", "conv", "--stride", 3, "--pad", 0, "-o", out), "not whole")
    assert out.read_bytes() == b"old picture"
    ok(run("plot", "conv", "--input", 3, "--pad", 0, "--stride", 1, "-o", out))
    assert out.read_bytes()[:6] == b"GIF89a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.gif"]


def test_missing_matplotlib_gets_one_line(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    one_error(run("plot", "conv", "-o", tmp_path / "c.gif"), "needs matplotlib",
              "numbacnn[plot]")
    assert not any(tmp_path.iterdir())


def test_help_names_the_conv_figure() -> None:
    assert "numbacnn plot conv" in ok(run("plot", "--help"))
    helped = ok(run("plot", "conv", "--help"))
    assert "plot conv [OPTIONS]" in helped and "--stride" in helped
