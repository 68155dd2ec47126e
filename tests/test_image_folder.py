"""``numbacnn data import-folder``: a class-per-folder tree of pictures of mixed sizes and
formats, fitted, split, streamed into a dataset file, trained on; unreadable pictures
and decompression bombs skipped with one line each, or refused with --strict."""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import assert_ok, assert_one_error, run

from numbacnn.errors import DataError
from numbacnn.io.dataset_files import load_dataset
from numbacnn.io.image_files import read_picture
from numbacnn.io.image_folder import find_pictures, import_folder

Image = pytest.importorskip("PIL.Image")

COLOURS = {"blue": (20, 40, 230), "green": (30, 220, 40), "red": (230, 30, 20)}
SIZES = [(16, 16), (40, 24), (12, 30), (64, 64), (9, 17)]


def picture(path: Path, size: tuple[int, int], colour: tuple[int, int, int],
            seed: int = 0) -> Path:
    """A noisy picture of ``colour`` (W×H ``size``), saved in the format of its suffix."""
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = np.clip(np.array(colour) + rng.integers(-20, 21, (h, w, 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(path)
    return path


def colour_folder(root: Path, per_class: int = 5) -> Path:
    """root/<colour>/NN.png|jpg|bmp|gif|webp, mixed sizes; one in a nested folder."""
    suffixes = [".png", ".jpg", ".bmp", ".gif", ".webp"]
    for k, (name, colour) in enumerate(COLOURS.items()):
        for i in range(per_class):
            sub = "nested/" if i == 0 else ""
            picture(root / name / f"{sub}{i:02}{suffixes[(i + k) % 5]}", SIZES[i % 5], colour,
                    seed=10 * k + i)
    (root / "red" / "notes.txt").write_text("not a picture: ignored")
    (root / ".hidden").mkdir()
    return root


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width×height pixels and holds none (a decompression bomb's
    header: Pillow decides on the declared size when it opens the file)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_mixed_folder_imports_with_a_seeded_split(tmp_path: Path) -> None:
    root = colour_folder(tmp_path / "colours", per_class=10)
    out = tmp_path / "colours.h5"
    result = run("data", "import-folder", root, out, "--size", "12x10", "--seed", 3)
    assert_ok(result)
    assert ("wrote " + str(out) + ": 24 train + 6 test images of 12x10x3 (W x H x D), 3 classes; "
            "test split: seeded 20 % of each class (seed 3); pictures scaled to cover and "
            "centre-cropped to 12x10") in result.output
    ds = load_dataset(out)
    assert ds.class_names == ["blue", "green", "red"] and ds.name == "colours"
    assert ds.input_shape == (3, 10, 12)
    assert list(ds.counts("train")) == [8, 8, 8] and list(ds.counts("test")) == [2, 2, 2]
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):  # each its class colour
        means = x.mean(axis=(2, 3))
        assert np.array_equal(means.argmax(axis=1), np.array([2, 1, 0])[y])
    again = tmp_path / "again.h5"
    assert_ok(run("data", "import-folder", root, again, "--size", "12x10", "--seed", 3))
    np.testing.assert_array_equal(load_dataset(again).x_test, ds.x_test)  # same seed, same split
    other = load_dataset(_import(root, tmp_path / "other.h5", seed=4))
    assert not np.array_equal(other.y_test, ds.y_test) or \
        not np.array_equal(other.x_test, ds.x_test)


def _import(root: Path, out: Path, **options) -> Path:
    options.setdefault("size", (12, 10))
    import_folder(root, out, **options)
    return out


def test_train_and_test_folders_are_the_split(tmp_path: Path) -> None:
    root = tmp_path / "split"
    colour_folder(root / "train", per_class=4)
    colour_folder(root / "test", per_class=2)
    out = tmp_path / "s.h5"
    result = run("data", "import-folder", root, out, "--size", "8x8", "--channels", "1")
    assert_ok(result)
    assert "8 train" not in result.output and "test split: folder test/" in result.output
    ds = load_dataset(out)
    assert (len(ds.x_train), len(ds.x_test), ds.input_shape) == (12, 6, (1, 8, 8))
    grey = read_picture(root / "test" / "green" / "01.bmp", (1, 8, 8))[0]
    assert any(np.array_equal(grey, x) for x in ds.x_test)
    (root / "test" / "violet").mkdir()
    assert_one_error(run("data", "import-folder", root, tmp_path / "v.h5", "--size", "8x8"),
                     "class folder 'violet' is not in train/")


def test_same_size_pictures_keep_their_pixels_and_fits_differ(tmp_path: Path) -> None:
    exact = picture(tmp_path / "exact.png", (12, 10), (90, 100, 110), seed=1)
    pixels = np.asarray(Image.open(exact)).transpose(2, 0, 1)
    np.testing.assert_array_equal(read_picture(exact, (3, 10, 12))[0], pixels)
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, :10] = 255  # white left third, black centre and right
    Image.fromarray(wide).save(tmp_path / "wide.png")
    crop, size = read_picture(tmp_path / "wide.png", (1, 10, 10), "crop")
    pad, _ = read_picture(tmp_path / "wide.png", (1, 10, 10), "pad")
    assert size == (30, 10)
    assert crop.max() < 40  # the centre of a black-centred picture
    assert pad[0, :3].max() == 0 and pad[0, 4:6, 0].min() > 200  # black bars, white left


def test_unreadable_pictures_are_listed_and_skipped(tmp_path: Path) -> None:
    root = colour_folder(tmp_path / "c", per_class=3)
    good = (root / "blue" / "nested" / "00.png").read_bytes()
    (root / "red" / "cut.png").write_bytes(good[: len(good) // 2])
    (root / "blue" / "junk.jpg").write_bytes(b"this is no picture")
    (root / "green" / "bomb.png").write_bytes(png_header(10000, 10000))
    out = tmp_path / "c.h5"
    result = run("data", "import-folder", root, out, "--size", "8x8", "--test-split", 0)
    assert result.exit_code == 0, result.output
    skipped = result.stderr.splitlines()
    assert len(skipped) == 3 and all(line.startswith("skipped ") for line in skipped)
    assert any("cut.png: cannot read the picture" in line and "truncated" in line
               for line in skipped)
    assert any("junk.jpg: not a picture Pillow can read" in line for line in skipped)
    assert any("bomb.png: declares more than 89,478,485 pixels" in line for line in skipped)
    assert "DecompressionBomb" not in result.stderr and "Warning" not in result.stderr
    assert "skipped 3 of 12 pictures that could not be read (listed above)" in result.stdout
    assert len(load_dataset(out).x_train) == 9
    strict = run("data", "import-folder", root, tmp_path / "s.h5", "--size", "8x8", "--strict")
    assert_one_error(strict, "strict import: nothing was written")
    assert not (tmp_path / "s.h5").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "c.h5"]  # no temporaries


def test_huge_declared_picture_is_one_line(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(100000, 100000))
    with pytest.raises(DataError, match="bomb.png: declares more than 89,478,485 pixels"):
        read_picture(bomb, (3, 8, 8))


def test_streams_in_chunks(tmp_path: Path) -> None:
    root = colour_folder(tmp_path / "c", per_class=4)
    out = tmp_path / "big.h5"
    calls = []
    result = import_folder(root, out, (256, 256), test_split=0.25,
                           progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 12) for i in range(1, 13)]
    assert (result.train, result.test, result.skipped) == (9, 3, [])
    with h5py.File(out, "r") as f:  # 5 images of 256x256x3 make about 1 MiB
        assert f["train/images"].chunks == (5, 3, 256, 256)
        assert f["train/images"].shape == (9, 3, 256, 256)
    assert load_dataset(out).input_shape == (3, 256, 256)


def test_alexnet_recipe_gives_its_input(tmp_path: Path) -> None:
    from numbacnn.spec import load_spec

    root = tmp_path / "photos"
    picture(root / "a" / "1.jpg", (300, 200), (10, 200, 10))
    picture(root / "b" / "1.png", (100, 400), (200, 10, 10))
    out = tmp_path / "photos.h5"
    assert_ok(run("data", "import-folder", root, out, "--size", "227x227", "--test-split", 0))
    assert load_dataset(out).input_shape == load_spec("alexnet").input_shape


@pytest.mark.parametrize(("args", "message"), [
    (["{tmp}/absent", "{tmp}/o.h5", "--size", "8x8"], "absent: no such folder"),
    (["{tmp}/flat", "{tmp}/o.h5", "--size", "8x8"], "has no class subfolders"),
    (["{tmp}/empty", "{tmp}/o.h5", "--size", "8x8"], "the class folders hold no pictures"),
    (["{tmp}/empty", "{tmp}/o.h5", "--size", "8"], "'8' is not WxH"),
    (["{tmp}/empty", "{tmp}/o.h5", "--size", "0x8"], "each side must be in [1, 4096]"),
    (["{tmp}/empty", "{tmp}/o.npz", "--size", "8x8"], "must be named .h5"),
    (["{tmp}/empty", "{tmp}/o.h5", "--size", "8x8", "--test-split", "1"], "--test-split"),
])
def test_folder_errors(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "flat").mkdir()
    picture(tmp_path / "flat" / "a.png", (4, 4), (1, 2, 3))
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    assert_one_error(run("data", "import-folder", *(a.format(tmp=tmp_path) for a in args)),
                     message)
    assert not (tmp_path / "o.h5").exists()


def test_without_pillow_says_how_to_install(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root = colour_folder(tmp_path / "c", per_class=1)
    for name in [m for m in sys.modules if m == "PIL" or m.startswith("PIL.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "PIL", None)
    assert_one_error(run("data", "import-folder", root, tmp_path / "o.h5", "--size", "8x8"),
                     "needs Pillow: pip install 'numbacnn[images]' (or pip install pillow)")


def test_find_pictures_orders_classes_and_files(tmp_path: Path) -> None:
    root = colour_folder(tmp_path / "c", per_class=2)
    names, splits, where = find_pictures(root, test_split=0)
    assert names == ["blue", "green", "red"] and splits["test"] == []
    assert [(p.relative_to(root).as_posix(), k) for p, k in splits["train"]] == [
        ("blue/01.jpg", 0), ("blue/nested/00.png", 0), ("green/01.bmp", 1),
        ("green/nested/00.jpg", 1), ("red/01.gif", 2), ("red/nested/00.bmp", 2)]


def test_interrupted_import_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from numbacnn.io import image_folder

    root = colour_folder(tmp_path / "c", per_class=3)
    out = tmp_path / "c.h5"
    out.write_bytes(b"the old file")
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 5:
            raise KeyboardInterrupt
        return read_picture(*args, **kwargs)

    monkeypatch.setattr(image_folder, "read_picture", interrupted)
    with pytest.raises(KeyboardInterrupt):
        import_folder(root, out, (8, 8))
    assert out.read_bytes() == b"the old file" and len(calls) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "c.h5"]  # no temporary left


def test_an_existing_dataset_is_replaced_only_with_force(tmp_path: Path) -> None:
    """The writing policy of the other importers (docs/reliability.md §3)."""
    root = colour_folder(tmp_path / "pictures", per_class=2)
    out = tmp_path / "colours.h5"
    out.write_bytes(b"an older dataset")
    args = ["data", "import-folder", root, out, "--size", "8x8"]
    assert_one_error(run(*args), "exists already", "--force")
    assert out.read_bytes() == b"an older dataset"
    result = run(*args, "--force")
    assert_ok(result)
    assert f"replaced {out}" in result.stderr.splitlines()
    assert load_dataset(out).num_classes == 3
