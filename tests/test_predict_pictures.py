"""Pictures of any size wherever a model takes images: ``numbacnn predict MODEL
PICTURE...`` (models told apart by content, one line per picture with its name, each
fitted as import-folder fits it) and ``plot features --image``; and the hostile picture
paths: decompression bombs, FIFOs, --image values that are neither an index nor a file."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_ok, assert_one_error, run
from test_image_folder import COLOURS, colour_folder, picture, png_header

from numbacnn.io.images import load_picture
from numbacnn.tools.inference import predict_images
from numbacnn.training.checkpoint import load_checkpoint

pytest.importorskip("PIL.Image")

SPEC = "input 12x12x3; conv 4 3 pad=1 activation=relu; maxpool 2; fc 3; softmax"
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="matplotlib is not installed")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """colours.h5 imported from a folder of mixed-size PNG/JPEG/... pictures, model.h5
    trained on it by the CLI, and three new pictures of other sizes."""
    work = tmp_path_factory.mktemp("pictures")
    root = colour_folder(work / "colours", per_class=12)
    assert_ok(run("data", "import-folder", root, work / "colours.h5", "--size", "12x12"))
    assert_ok(run("train", SPEC, "--data", work / "colours.h5", "--out", work / "model.h5",
                  "--epochs", 4, "--batch-size", 8, "--lr", 0.05, "--seed", 1,
                  "--device", "cpu"))
    for name, size, suffix in (("red", (50, 30), ".jpg"), ("green", (12, 12), ".png"),
                               ("blue", (20, 64), ".webp")):
        picture(work / f"new-{name}{suffix}", size, COLOURS[name], seed=99)
    return work


def test_several_pictures_one_line_each_with_its_name(work: Path) -> None:
    pictures = [work / "new-red.jpg", work / "new-green.png", work / "new-blue.webp"]
    result = run("predict", work / "model.h5", *pictures, "--top-k", 1)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split("  ")[0] for line in lines] == [str(p) for p in pictures]
    assert [line.split("  ")[1].split()[0] for line in lines] == ["red", "green", "blue"]
    notes = result.stderr.splitlines()  # the 12x12 picture needs no fitting
    assert notes == [
        f"note: {work / 'new-red.jpg'}: 50x30 pixels, scaled to cover and centre-cropped to "
        "12x12 (the model's input; --fit)",
        f"note: {work / 'new-blue.webp'}: 20x64 pixels, scaled to cover and centre-cropped "
        "to 12x12 (the model's input; --fit)"]
    net, info = load_checkpoint(work / "model.h5")
    batch = np.concatenate([load_picture(p, info.input_shape)[0] for p in pictures])
    expected = predict_images(net, info, batch)
    shown = [float(line.split()[-1].rstrip("%")) for line in lines]
    np.testing.assert_allclose(shown, 100 * expected.max(axis=1), atol=0.051)


def test_models_are_told_from_pictures_by_content(work: Path, tmp_path: Path) -> None:
    twin = tmp_path / "twin.h5"
    shutil.copy(work / "model.h5", twin)
    one, both = tmp_path / "one.npy", tmp_path / "both.npy"
    assert_ok(run("predict", work / "model.h5", work / "new-red.jpg", work / "new-blue.webp",
                  "--save-proba", one))
    result = run("predict", work / "model.h5", work / "new-red.jpg", twin,
                 work / "new-blue.webp", "--save-proba", both)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2
    np.testing.assert_allclose(np.load(both), np.load(one), rtol=1e-6)  # the same model twice


def test_fit_pad_and_crop_differ(work: Path, tmp_path: Path) -> None:
    crop, pad = tmp_path / "crop.npy", tmp_path / "pad.npy"
    assert_ok(run("predict", work / "model.h5", work / "new-blue.webp", "--save-proba", crop))
    result = run("predict", work / "model.h5", work / "new-blue.webp", "--save-proba", pad,
                 "--fit", "pad")
    assert result.exit_code == 0 and "scaled to fit and padded with black" in result.stderr
    assert not np.array_equal(np.load(crop), np.load(pad))  # other pixels, other scores


def test_several_inputs_must_be_pictures(work: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 12, 12, 3), np.uint8))
    assert_one_error(run("predict", work / "model.h5", work / "new-red.jpg", tmp_path / "x.npy"),
                     "x.npy: with several INPUTs each is a picture")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")  # meant as a second model
    assert_one_error(run("predict", work / "model.h5", tmp_path / "junk.h5",
                         work / "new-red.jpg"), "junk.h5: not an HDF5 file")
    assert_one_error(run("predict", work / "model.h5", work / "colours.h5",
                         work / "new-red.jpg"), "this is a dataset file")


@pytest.mark.parametrize("size", [(100000, 100000), (10000, 10000)])
def test_bomb_pictures_are_one_line_without_warnings(work: Path, tmp_path: Path,
                                                     size: tuple[int, int]) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(*size))
    for args in (["predict", work / "model.h5", bomb],
                 ["predict", work / "model.h5", work / "new-red.jpg", bomb]):
        result = run(*args)
        line = assert_one_error(result, "bomb.png: declares more than 89,478,485 pixels")
        assert "Warning" not in result.stderr and "DecompressionBomb" not in line


def test_fifo_picture_is_refused_unopened(work: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "f.png"
    os.mkfifo(fifo)  # opening it for reading would block forever
    for args in (["predict", work / "model.h5", fifo],
                 ["predict", work / "model.h5", work / "new-red.jpg", fifo]):
        assert_one_error(run(*args), "f.png: is not a regular file (a FIFO, socket or device), "
                         "not a picture file")


@needs_matplotlib
def test_features_of_a_picture_of_any_size(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "features.png"
    result = run("plot", "features", work / "model.h5", "-o", out, "--image",
                 work / "new-red.jpg")
    assert result.exit_code == 0, result.output
    assert out.exists() and "50x30 pixels, scaled to cover and centre-cropped" in result.stderr


@needs_matplotlib
@pytest.mark.parametrize("image", ["²", "①", "-1", "1.5", "abc"])
def test_features_image_neither_index_nor_file(work: Path, tmp_path: Path, image: str) -> None:
    line = assert_one_error(run("plot", "features", work / "model.h5", "-o",
                                tmp_path / "f.png", "--image", image),
                            f"--image {image}: neither an image index (0, 1, 2, ...) nor an "
                            "existing file")
    assert "no such dataset file" not in line and "invalid literal" not in line


@needs_matplotlib
def test_features_fifo_and_bomb(work: Path, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "f.png")
    assert_one_error(run("plot", "features", work / "model.h5", "-o", tmp_path / "o.png",
                         "--image", tmp_path / "f.png"), "not a regular file")
    (tmp_path / "bomb.png").write_bytes(png_header(10000, 10000))
    result = run("plot", "features", work / "model.h5", "-o", tmp_path / "o.png", "--image",
                 tmp_path / "bomb.png")
    assert_one_error(result, "declares more than")
    assert "Warning" not in result.stderr and not (tmp_path / "o.png").exists()


def test_predict_picture_without_pillow_says_how_to_install(
        work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    for name in [m for m in sys.modules if m == "PIL" or m.startswith("PIL.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "PIL", None)
    assert_one_error(run("predict", work / "model.h5", work / "new-red.jpg"),
                     "new-red.jpg: reading a picture needs Pillow: pip install "
                     "'numbacnn[images]' (or pip install pillow)")
