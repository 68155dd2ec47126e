"""``numbacnn plot``: every picture is rendered into a temporary PNG, SVG or PDF file and
checked to be an image of the requested size that is not blank; the figures' contents
(learning-rate marks, test accuracy, per-class accuracy, bar lengths, filter tiles)
are checked against values computed here; bad input gets one ``error:`` line."""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_ok, assert_one_error, run

from numbacnn.io.dataset_files import load_dataset
from numbacnn.io.model_file import ModelInfo, load_model, save_model
from numbacnn.layers import Conv2D, Dense, MaxPool2D, ReLU
from numbacnn.network import Network
from numbacnn.tools.inference import predict_images
from numbacnn.training.profiler import layer_table

pytest.importorskip("matplotlib", reason="needs matplotlib: pip install -e '.[test]'")

from matplotlib.image import imread  # noqa: E402

from numbacnn.tools import layer_pictures, plots  # noqa: E402

SPEC = "input 28x28x1; conv 6 3 pad=1 activation=relu; maxpool 2; conv 4 3; avgpool 2; fc 10"


def png_pixels(path: Path) -> np.ndarray:
    """H×W×4 floats of a PNG, checked not to be blank (many colours, real contrast)."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    rgb = image[..., :3]
    assert rgb.std() > 0.05, "blank picture"
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 20, "blank picture"
    return image


def svg_size_pt(path: Path) -> tuple[float, float]:
    """(width, height) of an SVG in points, checked to hold drawn elements."""
    root = ET.parse(path).getroot()
    drawn = [e for e in root.iter() if e.tag.rsplit("}", 1)[-1] in ("path", "image", "use")]
    assert len(drawn) > 10, "blank picture"
    return float(root.get("width").removesuffix("pt")), float(root.get("height").removesuffix("pt"))


def pdf_size_pt(path: Path) -> tuple[float, float]:
    """(width, height) of a one-page PDF in points, checked to have drawing content."""
    data = path.read_bytes()
    assert data.startswith(b"%PDF")
    box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    assert box is not None
    assert len(data) > 3000, "blank picture"
    return float(box.group(1)), float(box.group(2))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.h5: SPEC trained by the CLI for 2 epochs on 300 Fashion-MNIST images with a
    step lr schedule (so the lr changes once); bench.json from numbacnn bench."""
    work = tmp_path_factory.mktemp("plots")
    assert_ok(run("train", SPEC, "--data", "fashion-mnist-mini", "--limit", 300, "--epochs", 2,
                  "--batch-size", 32, "--lr-policy", "step", "--lr-step", 1, "--gamma", 0.5,
                  "--out", work / "model.h5", "--device", "cpu"))
    assert_ok(run("bench", "input 8x8x1; conv 4 3 pad=1 activation=relu; maxpool 2; fc 4",
                  "--batch", 8, "--iterations", 2, "--warmup", 1, "--json", "--device", "cpu",
                  "--output", work / "bench.json"))
    return work


# ----------------------------------------------------------------------------- the CLI


def test_curves_png_of_requested_size(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "curves.png"
    text = assert_ok(run("plot", "curves", work / "model.h5", "-o", out, "--size", "700x450"))
    assert "700x450 pixels" in text
    assert png_pixels(out).shape[:2] == (450, 700)


def test_filters_png_default_size_is_the_reported_one(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "filters.png"
    text = assert_ok(run("plot", "filters", work / "model.h5", "-o", out))
    width, height = (int(v) for v in re.search(r"(\d+)x(\d+) pixels", text).groups())
    assert png_pixels(out).shape[:2] == (height, width)


def test_features_svg_from_a_split_index(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "features.svg"
    assert_ok(run("plot", "features", work / "model.h5", "-o", out, "--image", 7, "--size",
                  "900x600", "--device", "cpu"))
    assert svg_size_pt(out) == pytest.approx((900 * 72 / 100, 600 * 72 / 100))


def test_features_png_from_an_image_file(work: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "one.npy", load_dataset("fashion-mnist-mini").x_test[3, 0])  # H×W
    out = tmp_path / "features.png"
    assert_ok(run("plot", "features", work / "model.h5", "-o", out, "--image", tmp_path / "one.npy",
                  "--dpi", 50, "--size", "400x300"))
    assert png_pixels(out).shape[:2] == (300, 400)


def test_confusion_pdf_shows_the_models_matrix(work: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}
    original = plots.confusion_figure

    def spy(matrix, class_names, **kwargs):  # noqa: ANN001, ANN202
        seen["matrix"], seen["names"] = matrix, class_names
        return original(matrix, class_names, **kwargs)

    monkeypatch.setattr(plots, "confusion_figure", spy)
    out = tmp_path / "confusion.pdf"
    assert_ok(run("plot", "confusion", work / "model.h5", "-o", out, "--size", "800x700",
                  "--device", "cpu"))
    assert pdf_size_pt(out) == pytest.approx((800 * 72 / 100, 700 * 72 / 100))
    net, info = load_model(work / "model.h5")
    ds = load_dataset("fashion-mnist-mini")
    predicted = predict_images(net, info, ds.x_test).argmax(1)
    expected = np.zeros((10, 10), np.int64)
    np.add.at(expected, (ds.y_test, predicted), 1)
    np.testing.assert_array_equal(seen["matrix"], expected)
    assert seen["names"] == info.class_names


def test_bench_png(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.png"
    assert_ok(run("plot", "bench", work / "bench.json", "-o", out, "--size", "900x400"))
    assert png_pixels(out).shape[:2] == (400, 900)


# ----------------------------------------------------------------------------- contents


def test_curves_mark_lr_changes_and_test_accuracy(work: Path) -> None:
    _, info = load_model(work / "model.h5")
    lr = info.history["lr"]
    changes = int(np.sum(lr[1:] != lr[:-1]))
    assert changes == 1  # the step schedule halved the rate after epoch 1
    figure = plots.curves_figure(info.history, test_accuracy=0.4321)
    loss_axes, acc_axes = figure.axes[:2]
    dashed = [line for line in loss_axes.lines if line.get_linestyle() == "--"]
    assert len(dashed) == changes
    assert dashed[0].get_xdata()[0] == pytest.approx(1.5)
    labels = [t.get_text() for t in acc_axes.get_legend().get_texts()]
    assert "test 43.21%" in labels
    train = [line for line in loss_axes.lines if line.get_label() == "training"][0]
    np.testing.assert_allclose(train.get_ydata(), info.history["train_loss"])
    no_test = plots.curves_figure(info.history)
    assert not any(t.get_text().startswith("test") for t in
                   no_test.axes[1].get_legend().get_texts())


def test_curves_test_accuracy_is_the_models(work: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, float | None] = {}
    original = plots.curves_figure

    def spy(history, test_accuracy=None, **kwargs):  # noqa: ANN001, ANN202
        seen["accuracy"] = test_accuracy
        return original(history, test_accuracy, **kwargs)

    monkeypatch.setattr(plots, "curves_figure", spy)
    assert_ok(run("plot", "curves", work / "model.h5", "-o", tmp_path / "c.png", "--device", "cpu"))
    net, info = load_model(work / "model.h5")
    ds = load_dataset("fashion-mnist-mini")
    expected = float(np.mean(predict_images(net, info, ds.x_test).argmax(1) == ds.y_test))
    assert seen["accuracy"] == pytest.approx(expected)
    assert_ok(run("plot", "curves", work / "model.h5", "-o", tmp_path / "c.png",
                  "--no-test-accuracy"))
    assert seen["accuracy"] is None


def test_filter_tiles_rgb_and_grey_each_scaled_to_its_range(rng: np.random.Generator) -> None:
    rgb = rng.normal(size=(5, 3, 4, 4)).astype(np.float32)
    tiles = layer_pictures.filter_tiles(rgb)
    assert tiles.shape == (5, 4, 4, 3)
    for k in range(5):
        w = rgb[k].transpose(1, 2, 0)
        np.testing.assert_allclose(tiles[k], (w - w.min()) / (w.max() - w.min()), atol=1e-6)
    grey = layer_pictures.filter_tiles(rng.normal(size=(7, 1, 3, 3)))
    assert grey.shape == (7, 3, 3)
    assert np.allclose(grey.min(axis=(1, 2)), 0) and np.allclose(grey.max(axis=(1, 2)), 1)
    image = layer_pictures.mosaic(tiles, columns=3, gap=1)
    assert image.shape == (2 * 5 + 1, 3 * 5 + 1, 3)
    np.testing.assert_array_equal(image[6:10, 6:10], tiles[4])  # row 1, column 1


def test_activation_maps_after_conv_and_pool_layers(rng: np.random.Generator) -> None:
    net = Network([Conv2D(3, 3, pad=1), ReLU(), MaxPool2D(2),
                   Dense(2)], input_shape=(1, 6, 6)).initialize(seed=1)
    x = rng.normal(size=(1, 1, 6, 6)).astype(np.float32)
    maps = layer_pictures.activation_maps(net, x)
    assert [label.split(":")[0] for label, _ in maps] == ["layer 1", "layer 3"]
    assert "+ relu" in maps[0][0]
    assert maps[0][1].shape == (3, 6, 6) and maps[1][1].shape == (3, 3, 3)
    assert maps[0][1].min() >= 0  # the fused ReLU is in the conv's map
    pooled = maps[0][1].reshape(3, 3, 2, 3, 2).max(axis=(2, 4))
    np.testing.assert_allclose(maps[1][1], pooled)


def test_confusion_per_class_accuracy_and_counts() -> None:
    matrix = np.array([[3, 1, 0], [0, 2, 0], [1, 1, 2]])
    figure = plots.confusion_figure(matrix, ["cat", "dog", "owl"])
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_yticklabels()] == [
        "cat (75.0%)", "dog (100.0%)", "owl (50.0%)"]
    assert sorted(int(t.get_text()) for t in axes.texts) == sorted(matrix.reshape(-1).tolist())
    assert "accuracy 70.00% (7/10)" in axes.get_title()


def test_bench_bars_are_the_measured_times(rng: np.random.Generator) -> None:
    shapes = ["4x4x2", "4x4x2", "2"]
    ours = layer_table(["conv 2 3", "relu", "fc 2"], shapes, rng.uniform(0.1, 1, 4),
                       rng.uniform(0.1, 1, 4), 0.01, 2)
    theirs = layer_table(["conv 2 3", "relu", "fc 2"], shapes, rng.uniform(0.1, 1, 4),
                         rng.uniform(0.1, 1, 4), 0.01, 2)
    result = {"networks": [{"spec": "tiny", "batch": 8, **ours, "torch": theirs}]}
    axes = plots.bench_figure(result).axes[0]
    bars = axes.patches
    assert len(bars) == 4 * 4  # (numbacnn, PyTorch) × (forward, backward) × (3 layers + loss)
    forward = [r["forward_ms"] for r in ours["layers"]] + [ours["loss"]["forward_ms"]]
    np.testing.assert_allclose([b.get_width() for b in bars[:4]], forward)
    backward = [r["backward_ms"] for r in theirs["layers"]] + [theirs["loss"]["backward_ms"]]
    np.testing.assert_allclose([b.get_width() for b in bars[12:]], backward)
    alone = {"networks": [{"spec": "tiny", "batch": 8, **ours, "torch": {"skipped": "no"}}]}
    assert len(plots.bench_figure(alone).axes[0].patches) == 2 * 4


# ----------------------------------------------------------------------------- errors


def test_bad_input_gets_one_error_line(work: Path, tmp_path: Path) -> None:
    model = work / "model.h5"
    assert_one_error(run("plot", "filters", model, "-o", tmp_path / "f.jpg"), ".jpg", ".png")
    assert_one_error(run("plot", "filters", model, "-o", tmp_path / "no" / "f.png"),
                     "does not exist")
    assert_one_error(run("plot", "filters", model, "-o", tmp_path / "f.png", "--size", "big"),
                     "--size", "800x600")
    assert_one_error(run("plot", "filters", tmp_path / "none.h5", "-o", tmp_path / "f.png"),
                     "no such model file")
    assert_one_error(run("plot", "features", model, "-o", tmp_path / "f.png", "--image", 99999),
                     "--image 99999", "1000 images")
    assert_one_error(run("plot", "bench", model, "-o", tmp_path / "b.png"), "not a numbacnn bench")
    (tmp_path / "empty.json").write_text('{"networks": []}')
    assert_one_error(run("plot", "bench", tmp_path / "empty.json", "-o", tmp_path / "b.png"),
                     "no per-layer times")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.json"]


def test_model_without_history_or_conv(tmp_path: Path) -> None:
    net = Network.from_spec("input 4x4x1; fc 3").initialize(seed=0)
    info = ModelInfo(spec_text="", input_shape=(1, 4, 4), class_names=["a", "b", "c"],
                     mean=np.zeros(1, np.float32), std=np.ones(1, np.float32))
    save_model(tmp_path / "m.h5", net, info)
    assert_one_error(run("plot", "curves", tmp_path / "m.h5", "-o", tmp_path / "c.png"),
                     "no training history")
    assert_one_error(run("plot", "filters", tmp_path / "m.h5", "-o", tmp_path / "f.png"),
                     "no conv layer")
    assert_one_error(run("plot", "features", tmp_path / "m.h5", "-o", tmp_path / "f.png"),
                     "does not say what data")


def test_failed_plot_leaves_an_existing_picture(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.png"
    out.write_bytes(b"old picture")
    assert_one_error(run("plot", "features", work / "model.h5", "-o", out, "--image", 99999))
    assert out.read_bytes() == b"old picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]


def test_missing_matplotlib_gets_one_line(work: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert_one_error(run("plot", "filters", work / "model.h5", "-o", tmp_path / "f.png"),
                     "needs matplotlib", "numbacnn[plot]")
    assert not (tmp_path / "f.png").exists()


def test_saves_through_either_form_of_the_atomic_writer(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """replace_atomically may hand its callback a temporary path or an open binary file."""

    def with_open_file(path, write, error, what):  # noqa: ANN001, ANN202
        with open(path, "wb") as fh:
            write(fh)

    figure = plots.confusion_figure(np.array([[2, 1], [0, 3]]), ["a", "b"])
    plots.save_figure(figure, tmp_path / "by_path.png", (300, 200))
    monkeypatch.setattr(plots, "replace_atomically", with_open_file)
    plots.save_figure(figure, tmp_path / "by_file.png", (300, 200))
    assert png_pixels(tmp_path / "by_file.png").shape[:2] == (200, 300)
    assert png_pixels(tmp_path / "by_path.png").shape[:2] == (200, 300)
