"""Pictures that tell the truth: ``plot features`` draws every map of a layer on one
colour scale that spans its values (a constant map is drawn as its value, never
mid-scale), with the class probabilities as named bars; ``plot filters --layer N`` draws
conv layer N (numbered as in ``numbacnn shapes``) on a diverging scale centred at 0.
Colour limits and pixel values are read back from the Figures the library returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from numbacnn_cli.main import cli

from numbacnn.io.model_file import ModelInfo, save_model
from numbacnn.network import Network
from numbacnn.shapes import shape_table

pytest.importorskip("matplotlib", reason="needs matplotlib: pip install -e '.[test]'")

from numbacnn.tools import layer_pictures, plots  # noqa: E402

SPEC = "input 8x8x1; conv 3 3 pad=1 activation=relu; maxpool 2; conv 5 3 pad=1; fc 4"
NAMES = ["ant", "bee", "cat", "dog"]


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_error(result: Result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """SPEC with seeded random weights, saved untrained, and one image beside it."""
    net = Network.from_spec(SPEC).initialize(seed=3)
    info = ModelInfo(spec_text=SPEC, input_shape=(1, 8, 8), class_names=NAMES,
                     mean=np.zeros(1, np.float32), std=np.full(1, 255, np.float32))
    save_model(tmp_path / "m.h5", net, info)
    np.save(tmp_path / "one.npy", np.random.default_rng(0).integers(0, 256, (8, 8), np.uint8))
    return tmp_path / "m.h5"


def map_images(figure: Any) -> list[list[Any]]:
    """Per layer row (the figure's subfigures after the top one), its maps' AxesImages."""
    return [[im for axes in row.axes for im in axes.images] for row in figure.subfigs[1:]]


def spy(monkeypatch: pytest.MonkeyPatch, name: str) -> dict[str, Any]:
    """Record the Figure that layer_pictures.NAME returns to the CLI."""
    seen: dict[str, Any] = {}
    original = getattr(layer_pictures, name)

    def record(*args: Any, **kwargs: Any) -> Any:
        seen["figure"] = original(*args, **kwargs)
        return seen["figure"]

    monkeypatch.setattr(layer_pictures, name, record)
    return seen


# ----------------------------------------------------------------------------- features


def test_constant_layers_are_drawn_as_their_value(rng: np.random.Generator) -> None:
    varied = np.maximum(rng.normal(size=(4, 6, 6)), 0).astype(np.float32)
    maps = [("dead relu", np.zeros((3, 6, 6), np.float32)), ("varied", varied),
            ("constant", np.full((2, 3, 3), 0.7, np.float32)),
            ("negative", np.full((2, 3, 3), -2.0, np.float32))]
    figure = layer_pictures.features_figure(np.zeros((1, 6, 6), np.uint8), maps)
    rows = map_images(figure)
    assert [len(r) for r in rows] == [3, 4, 2, 2]
    for images, (_, volume) in zip(rows, maps, strict=True):
        climits = {im.get_clim() for im in images}
        assert len(climits) == 1, "the maps of a layer share one colour scale"
        low, high = climits.pop()
        assert low <= volume.min() and volume.max() <= high and low < high
        bars = [im.colorbar for im in images if im.colorbar is not None]
        assert len(bars) == 1, "each layer row has its colour bar"
        assert all(im.norm is bars[0].norm for im in images)
        for c, im in enumerate(images):
            np.testing.assert_array_equal(im.get_array(), volume[c])
    for images, value, position in [(rows[0], 0.0, 0.0), (rows[2], 0.7, 1.0),
                                    (rows[3], -2.0, 0.0)]:
        for im in images:
            assert im.norm(value) == pytest.approx(position)  # an end of the scale, not 0.5
    assert rows[0][0].get_clim()[0] == 0 and rows[0][0].get_cmap().name == "viridis"
    assert rows[1][0].get_clim() == (0, pytest.approx(varied.max()))
    assert "3 shown all 0" in figure.subfigs[1]._suptitle.get_text()


def test_signed_layer_scale_is_centred_at_zero(rng: np.random.Generator) -> None:
    volume = rng.normal(size=(3, 4, 4)) + 0.5
    figure = layer_pictures.features_figure(np.zeros((1, 4, 4), np.uint8), [("signed", volume)])
    (images,) = map_images(figure)
    bound = np.abs(volume).max()
    assert images[0].get_clim() == (pytest.approx(-bound), pytest.approx(bound))
    assert images[0].get_cmap().name.startswith("RdBu_r")


def test_features_cli_input_first_and_named_probability_bars(
        model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = spy(monkeypatch, "features_figure")
    result = run("plot", "features", model, "--image", tmp_path / "one.npy", "-o",
                 tmp_path / "f.png")
    assert result.exit_code == 0, result.output
    image_axes, bar_axes = seen["figure"].subfigs[0].axes
    assert image_axes.get_title() == "input 8x8x1"
    np.testing.assert_array_equal(image_axes.images[0].get_array(),
                                  np.load(tmp_path / "one.npy"))
    heights = [bar.get_width() for bar in bar_axes.patches]
    assert len(heights) == len(NAMES) and sum(heights) == pytest.approx(1, abs=1e-5)
    assert [t.get_text() for t in bar_axes.get_yticklabels()] == NAMES
    assert [len(r) for r in map_images(seen["figure"])] == [3, 3, 5]  # conv, pool, conv


def test_many_classes_show_the_most_likely(rng: np.random.Generator) -> None:
    proba = rng.dirichlet(np.ones(50))
    names = [f"c{k}" for k in range(50)]
    figure = layer_pictures.features_figure(np.zeros((3, 4, 4), np.uint8),
                                            [("m", np.ones((1, 2, 2)))],
                                            probabilities=proba, class_names=names)
    bar_axes = figure.subfigs[0].axes[1]
    top = np.argsort(-proba)[:layer_pictures.PROBABILITY_BARS]
    assert [t.get_text() for t in bar_axes.get_yticklabels()] == [names[k] for k in top]
    assert f"top {layer_pictures.PROBABILITY_BARS} of 50" in bar_axes.get_title()


# ----------------------------------------------------------------------------- filters


def test_filters_on_a_symmetric_diverging_scale(rng: np.random.Generator) -> None:
    weights = rng.normal(size=(5, 4, 3, 3)) + 0.3
    figure = layer_pictures.filters_figure(weights, max_slices=2)
    (image,) = figure.axes[0].images
    bound = np.abs(weights).max()
    assert image.get_clim() == (pytest.approx(-bound), pytest.approx(bound))
    assert image.norm(0.0) == pytest.approx(0.5)
    assert image.get_cmap().name.startswith("RdBu_r") and image.colorbar is not None
    drawn = np.asarray(image.get_array(), np.float64)
    np.testing.assert_allclose(np.sort(drawn[np.isfinite(drawn)]),
                               np.sort(weights[:, :2].ravel()))
    assert "5 filters of 3x3x4, first 2 of 4 slices" in figure.axes[0].get_title()


def test_filter_slices_in_reading_order() -> None:
    """Filter k's slice d sits in block k (row by row), column d of that block."""
    K, C, F = 12, 3, 2
    weights = np.arange(K * C * F * F, dtype=np.float64).reshape(K, C, F, F)
    image, columns, S = layer_pictures.filter_slices(weights)
    assert S == C and columns > 1
    block_w = S * (F + 1) - 1
    for k in range(K):
        row, column = divmod(k, columns)
        y = layer_pictures.FILTER_GAP + row * (F + layer_pictures.FILTER_GAP)
        x = layer_pictures.FILTER_GAP + column * (block_w + F + layer_pictures.FILTER_GAP)
        for d in range(S):
            np.testing.assert_array_equal(image[y:y + F, x + d * (F + 1):x + d * (F + 1) + F],
                                          weights[k, d])
    assert np.isfinite(image).sum() == weights.size


def test_rgb_filters_as_colour_images_only_for_three_channels(rng: np.random.Generator) -> None:
    figure = layer_pictures.filters_figure(rng.normal(size=(4, 3, 3, 3)), rgb=True)
    assert figure.axes[0].images[0].get_array().shape[-1] == 3
    with pytest.raises(plots.PlotError, match="3 input channels"):
        layer_pictures.filters_figure(rng.normal(size=(4, 2, 3, 3)), rgb=True)


def test_filters_layer_is_numbered_as_in_shapes(model: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    convs = [row.index for row in shape_table(SPEC).rows if row.type == "conv"]
    assert convs == [1, 4]
    seen = spy(monkeypatch, "filters_figure")
    out = tmp_path / "f.png"
    result = run("plot", "filters", model, "--layer", 4, "-o", out)
    assert result.exit_code == 0, result.output
    axes = seen["figure"].axes[0]
    assert axes.get_title().startswith("m.h5: layer 4, conv 5 3")
    assert "5 filters of 3x3x3, all 3 slices" in axes.get_title()
    assert len(axes.get_yticklabels()) == 5  # one row per filter
    drawn = np.asarray(axes.images[0].get_array(), np.float64)
    assert np.isfinite(drawn).sum() == 5 * 3 * 3 * 3
    assert out.exists()
    result = run("plot", "filters", model, "-o", out)  # default: the first conv layer
    assert seen["figure"].axes[0].get_title().startswith("m.h5: layer 1, conv 3 3")


def test_bad_layer_gets_one_line_naming_the_conv_layers(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.png"
    one_error(run("plot", "filters", model, "--layer", 2, "-o", out), "--layer",
              "layer 2 of", "relu", "conv layers are 1, 4")
    one_error(run("plot", "filters", model, "--layer", 9, "-o", out), "no layer 9", "1, 4")
    one_error(run("plot", "filters", model, "--layer", 1, "--rgb", "-o", out), "--rgb",
              "3 input channels")
    assert not out.exists()
