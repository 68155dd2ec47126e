"""Tests of numbacnn.io.data and the ``numbacnn data`` commands (no numba, no GPU)."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from numbacnn.errors import DataError
from numbacnn.io import data as D
from numbacnn.io.data import Dataset

IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write ``array`` as an IDX file (big-endian), gzip-compressed when ``gz``."""
    kind = array.dtype.str[1:]
    header = bytes([0, 0, IDX_CODES[kind], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def small_dataset(n_train: int = 40, n_test: int = 20, classes: int = 4, c: int = 1) -> Dataset:
    rng = np.random.default_rng(1)
    return Dataset(
        x_train=rng.integers(0, 256, (n_train, c, 8, 6), dtype=np.uint8),
        y_train=np.arange(n_train, dtype=np.int64) % classes,
        x_test=rng.integers(0, 256, (n_test, c, 8, 6), dtype=np.uint8),
        y_test=np.arange(n_test, dtype=np.int64) % classes,
        class_names=[f"class {i}" for i in range(classes)],
        name="small",
    )


def assert_same(a: Dataset, b: Dataset) -> None:
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
        assert getattr(a, key).dtype == getattr(b, key).dtype
    assert a.class_names == b.class_names
    assert a.name == b.name


def write_idx_dir(directory: Path, gz: bool = True) -> Dataset:
    """Write a tiny MNIST-style IDX directory; return what it should load as."""
    directory.mkdir()
    ds = small_dataset(classes=10)
    suffix = ".gz" if gz else ""
    write_idx(directory / f"train-images-idx3-ubyte{suffix}", ds.x_train[:, 0], gz)
    write_idx(directory / f"train-labels-idx1-ubyte{suffix}", ds.y_train.astype(np.uint8), gz)
    write_idx(directory / f"t10k-images-idx3-ubyte{suffix}", ds.x_test[:, 0], gz)
    write_idx(directory / f"t10k-labels-idx1-ubyte{suffix}", ds.y_test.astype(np.uint8), gz)
    return ds


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("kind", sorted(IDX_CODES))
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_types(tmp_path: Path, kind: str, gz: bool) -> None:
    array = (np.arange(2 * 3 * 4).reshape(2, 3, 4) - 5).astype(kind)
    if kind == "u1":
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4) * 10
    path = write_idx(tmp_path / "a.idx", array, gz)  # no .gz suffix: detected by content
    got = D.read_idx(path)
    np.testing.assert_array_equal(got, array)
    assert got.dtype == np.dtype(kind) and got.dtype.isnative and got.shape == (2, 3, 4)


def test_read_idx_gzip_by_content_not_name(tmp_path: Path) -> None:
    array = np.arange(10, dtype=np.uint8)
    plain = write_idx(tmp_path / "plain.gz", array)
    np.testing.assert_array_equal(D.read_idx(plain), array)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated(tmp_path: Path, gz: bool) -> None:
    path = write_idx(tmp_path / "x.idx", np.arange(100, dtype=np.int32), gz=False)
    raw = path.read_bytes()[:-7]
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataError, match="truncated") as err:
        D.read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_truncated_gzip_stream(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x.idx.gz", np.arange(1000, dtype=np.int32), gz=True)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match="truncated or corrupt gzip"):
        D.read_idx(path)


def test_read_idx_extra_bytes(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x.idx", np.arange(4, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match="longer than its header"):
        D.read_idx(path)


@pytest.mark.parametrize(
    "raw",
    [b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", b"\x00\x00\x07\x01\x00\x00\x00\x00", b"", b"PK"],
)
def test_read_idx_bad_magic(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(raw)
    with pytest.raises(DataError, match="not an IDX file"):
        D.read_idx(path)


def test_read_idx_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such IDX file"):
        D.read_idx(tmp_path / "nope")


@pytest.mark.parametrize("gz", [False, True])
def test_import_idx_fashion_dir(tmp_path: Path, gz: bool) -> None:
    expected = write_idx_dir(tmp_path / "my-fashion-set", gz)
    ds = D.import_idx(tmp_path / "my-fashion-set")
    assert ds.class_names == D.FASHION_MNIST_CLASSES and ds.name == "fashion-mnist"
    np.testing.assert_array_equal(ds.x_train, expected.x_train)
    np.testing.assert_array_equal(ds.y_test, expected.y_test)
    assert ds.x_train.shape == (40, 1, 8, 6) and ds.y_train.dtype == np.int64


def test_import_idx_digits_dir(tmp_path: Path) -> None:
    write_idx_dir(tmp_path / "digits")
    ds = D.import_idx(tmp_path / "digits")
    assert ds.class_names == [str(i) for i in range(10)] and ds.name == "digits"
    ds = D.load_dataset(f"fashion-mnist:{tmp_path / 'digits'}")
    assert ds.class_names == D.FASHION_MNIST_CLASSES and ds.name == "fashion-mnist"


def test_import_idx_missing_files(tmp_path: Path) -> None:
    write_idx_dir(tmp_path / "d")
    (tmp_path / "d" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing IDX files t10k-labels-idx1-ubyte"):
        D.import_idx(tmp_path / "d")
    with pytest.raises(DataError, match="no such directory"):
        D.import_idx(tmp_path / "absent")


def test_import_idx_label_count_mismatch(tmp_path: Path) -> None:
    write_idx_dir(tmp_path / "d", gz=False)
    write_idx(tmp_path / "d" / "train-labels-idx1-ubyte", np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataError, match="40 images but 3 labels"):
        D.import_idx(tmp_path / "d")


# ----------------------------------------------------------------------------- NPZ


@pytest.mark.parametrize("layout", ["NHW", "NHWC", "NCHW"])
def test_import_npz_layouts(tmp_path: Path, layout: str) -> None:
    c = 1 if layout == "NHW" else 3
    ds = small_dataset(c=c)
    x_train, x_test = ds.x_train, ds.x_test
    if layout == "NHW":
        x_train, x_test = x_train[:, 0], x_test[:, 0]
    elif layout == "NHWC":
        x_train, x_test = x_train.transpose(0, 2, 3, 1), x_test.transpose(0, 2, 3, 1)
    path = tmp_path / "set.npz"
    np.savez(path, x_train=x_train, y_train=ds.y_train[:, None], x_test=x_test,
             y_test=ds.y_test.astype(np.uint8), class_names=np.array(ds.class_names))  # fmt: skip
    got = D.import_npz(path, name="small")
    assert_same(got, ds)
    assert got.x_train.flags.c_contiguous and got.input_shape == (c, 8, 6)


def test_import_npz_default_class_names(tmp_path: Path) -> None:
    ds = small_dataset(classes=3)
    np.savez(tmp_path / "s.npz", x_train=ds.x_train, y_train=ds.y_train,
             x_test=ds.x_test, y_test=ds.y_test)  # fmt: skip
    got = D.load_dataset(tmp_path / "s.npz")
    assert got.class_names == ["0", "1", "2"] and got.name == "s"


def test_import_npz_errors(tmp_path: Path) -> None:
    ds = small_dataset()
    np.savez(tmp_path / "missing.npz", x_train=ds.x_train, y_train=ds.y_train)
    with pytest.raises(DataError, match="missing arrays x_test, y_test"):
        D.import_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "float.npz", x_train=ds.x_train / 255.0, y_train=ds.y_train,
             x_test=ds.x_test, y_test=ds.y_test)  # fmt: skip
    with pytest.raises(DataError, match="x_train: images are float64, expected uint8"):
        D.import_npz(tmp_path / "float.npz")
    np.savez(tmp_path / "range.npz", x_train=ds.x_train, y_train=ds.y_train,
             x_test=ds.x_test, y_test=ds.y_test, class_names=np.array(["a", "b"]))  # fmt: skip
    with pytest.raises(DataError, match=r"label 3 is outside \[0, 2\)"):
        D.import_npz(tmp_path / "range.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"not a readable .npz"):
        D.load_dataset(tmp_path / "junk.npz")


# ----------------------------------------------------------------------------- HDF5


def test_h5_round_trip(tmp_path: Path) -> None:
    ds = small_dataset(c=3)
    ds.class_names = ["T-shirt/top", "Ünïcode", "c", "d"]
    D.save_dataset(ds, tmp_path / "s.h5")
    assert_same(D.load_dataset(tmp_path / "s.h5"), ds)
    with h5py.File(tmp_path / "s.h5", "r") as f:  # the documented layout, h5py alone
        assert f.attrs["format"] == "numbacnn-dataset"
        assert int(f.attrs["format_version"]) == 1 and f.attrs["name"] == "small"
        assert list(f.attrs["class_names"]) == ds.class_names
        images = f["train/images"]
        assert images.dtype == np.uint8 and images.shape == (40, 3, 8, 6)
        assert images.compression == "gzip" and images.chunks is not None
        assert f["test/labels"].dtype == np.int64 and f["test/labels"].shape == (20,)


def test_h5_empty_test_split(tmp_path: Path) -> None:
    ds = small_dataset(n_test=0)
    D.save_dataset(ds, tmp_path / "s.h5")
    assert D.load_dataset(tmp_path / "s.h5").x_test.shape == (0, 1, 8, 6)


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = small_dataset()
    target = tmp_path / "s.h5"
    D.save_dataset(old, target)
    before = target.read_bytes()
    real = h5py.Group.create_dataset

    def failing(self, name, *args, **kwargs):
        if name == "labels" and self.name == "/test":
            raise OSError(28, "No space left on device")
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(DataError, match=r"cannot write the dataset.*No space left"):
        D.save_dataset(small_dataset(n_train=80), target)
    monkeypatch.setattr(h5py.Group, "create_dataset", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        D.save_dataset(small_dataset(n_train=80), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]  # no temp file left
    assert target.read_bytes() == before
    monkeypatch.undo()
    assert_same(D.load_dataset(target), old)


def test_save_unwritable(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist; create it first"):
        D.save_dataset(small_dataset(), tmp_path / "no" / "s.h5")
    with pytest.raises(DataError, match="is a directory"):
        D.save_dataset(small_dataset(), tmp_path)


def test_save_rejects_invalid(tmp_path: Path) -> None:
    ds = small_dataset()
    ds.x_train = ds.x_train.astype(np.float32)
    with pytest.raises(DataError, match="train images are float32"):
        D.save_dataset(ds, tmp_path / "s.h5")
    assert not list(tmp_path.iterdir())


@pytest.fixture
def good_h5(tmp_path: Path) -> Path:
    path = tmp_path / "good.h5"
    D.save_dataset(small_dataset(n_train=400), path)
    return path


def test_h5_missing_and_not_hdf5(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such dataset file or directory"):
        D.load_dataset(tmp_path / "absent.h5")
    (tmp_path / "text.h5").write_text("hello\n")
    with pytest.raises(DataError, match=r"text.h5: not a readable HDF5 file"):
        D.load_dataset(tmp_path / "text.h5")
    (tmp_path / "text.txt").write_text("hello\n")
    with pytest.raises(DataError, match=r"neither HDF5 nor .npz"):
        D.load_dataset(tmp_path / "text.txt")


def test_h5_truncated(good_h5: Path) -> None:
    raw = good_h5.read_bytes()
    good_h5.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="truncated") as err:
        D.load_dataset(good_h5)
    assert str(good_h5) in str(err.value) and "\n" not in str(err.value)


def test_h5_wrong_format(good_h5: Path) -> None:
    with h5py.File(good_h5, "r+") as f:
        f.attrs["format"] = "numbacnn-model"
    with pytest.raises(DataError, match=r"format attribute is 'numbacnn-model'.*not a numbacnn"):
        D.load_dataset(good_h5)


def test_h5_newer_version(good_h5: Path) -> None:
    with h5py.File(good_h5, "r+") as f:
        f.attrs["format_version"] = 2
    with pytest.raises(DataError, match="format_version 2 is not supported"):
        D.load_dataset(good_h5)


def test_h5_label_out_of_range(good_h5: Path) -> None:
    with h5py.File(good_h5, "r+") as f:
        f["train/labels"][5] = 4
    with pytest.raises(DataError, match=r"good.h5: train label 4 is outside \[0, 4\)"):
        D.load_dataset(good_h5)


def test_h5_wrong_image_dtype(good_h5: Path) -> None:
    with h5py.File(good_h5, "r+") as f:
        x = f["test/images"][()]
        del f["test/images"]
        f["test/images"] = x.astype(np.float32)
    with pytest.raises(DataError, match=r"test images are float32 .*expected uint8"):
        D.load_dataset(good_h5)


def test_h5_missing_member_and_mismatch(good_h5: Path) -> None:
    with h5py.File(good_h5, "r+") as f:
        f["test/labels2"] = f["test/labels"][:3]
        del f["test/labels"]
    with pytest.raises(DataError, match="dataset test/labels is missing"):
        D.load_dataset(good_h5)
    with h5py.File(good_h5, "r+") as f:
        f.move("test/labels2", "test/labels")
    with pytest.raises(DataError, match="test has 20 images but 3 labels"):
        D.load_dataset(good_h5)


# ----------------------------------------------------------------------------- sources


def test_bundled_mini() -> None:
    ds = D.load_dataset("fashion-mnist-mini")
    assert ds.name == "fashion-mnist-mini" and ds.class_names == D.FASHION_MNIST_CLASSES
    assert ds.x_train.shape == (6000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert (ds.counts("train") == 600).all() and (ds.counts("test") == 100).all()
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64


def test_full_fashion_mnist_rebuilds_bundled_mini() -> None:
    if not (D.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"{D.FASHION_MNIST_DIR} absent (apt-get install dataset-fashion-mnist)")
    full = D.load_dataset("fashion-mnist")
    assert full.x_train.shape == (60000, 1, 28, 28) and full.x_test.shape == (10000, 1, 28, 28)
    assert (full.counts("train") == 6000).all()
    assert_same(D.make_mini(full, 600, 100, seed=0), D.load_dataset("fashion-mnist-mini"))


def test_fashion_mnist_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D, "FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        D.load_dataset("fashion-mnist")


def test_make_mini() -> None:
    ds = small_dataset(n_train=400, n_test=100)
    mini = D.make_mini(ds, train_per_class=7, test_per_class=3, seed=5)
    assert mini.name == "small-mini" and list(mini.counts("train")) == [7] * 4
    assert list(mini.counts("test")) == [3] * 4
    assert_same(mini, D.make_mini(ds, 7, 3, seed=5))
    assert not np.array_equal(mini.x_train, D.make_mini(ds, 7, 3, seed=6).x_train)
    with pytest.raises(DataError, match=r"has 25 images of class 0.*lower test_per_class$"):
        D.make_mini(ds, 7, 26)
    with pytest.raises(DataError, match="^train_per_class must be ≥ 1, got -1$") as bad:
        D.make_mini(ds, -1, 3)
    assert bad.value.field == "train_per_class"
    with pytest.raises(DataError, match="^test_per_class must be ≥ 0, got -2$"):
        D.make_mini(ds, 7, -2)


# ----------------------------------------------------------------------------- arrays


def test_normalization_and_normalize() -> None:
    x = np.zeros((2, 2, 2, 2), dtype=np.uint8)
    x[:, 0] = [[0, 255], [0, 255]]  # channel 0: half 0, half 1 -> mean 0.5, std 0.5
    x[:, 1] = 51  # constant channel: mean 0.2, std set to 1
    mean, std = D.normalization(x)
    assert mean.dtype == std.dtype == np.float32 and mean.shape == (2,)
    np.testing.assert_allclose(mean, [0.5, 0.2], rtol=1e-6)
    np.testing.assert_allclose(std, [0.5, 1.0], rtol=1e-6)
    out = D.normalize(x, mean, std)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == x.shape
    np.testing.assert_allclose(out[:, 0], np.where(x[:, 0] == 255, 1.0, -1.0), atol=1e-6)
    np.testing.assert_allclose(out[:, 1], 0.0, atol=1e-6)
    with pytest.raises(DataError, match="images have 2 channels but the normalization has 3"):
        D.normalize(x, np.zeros(3), np.ones(3))


def test_normalize_matches_reference() -> None:
    ds = small_dataset(c=3)
    mean, std = D.normalization(ds.x_train)
    ref = ds.x_train / 255.0
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3)), rtol=1e-5)
    out = D.normalize(ds.x_train, mean, std)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1.0, atol=1e-5)


def test_iterate_minibatches() -> None:
    x = np.arange(10)[:, None] * np.ones((1, 3))
    y = np.arange(10)
    batches = list(D.iterate_minibatches(x, y, 4))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert np.shares_memory(batches[0][0], x)  # in order: views, no copy
    batches = list(D.iterate_minibatches(x, y, 4, rng=np.random.default_rng(0), drop_last=True))
    assert [len(b[1]) for b in batches] == [4, 4]
    seen = np.concatenate([b[1] for b in batches])
    assert len(set(seen)) == 8 and not np.array_equal(seen, np.arange(8))
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0], yb)
    with pytest.raises(DataError, match="batch size is 0"):
        next(D.iterate_minibatches(x, y, 0))


def test_augment_crop_and_flip() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((64, 2, 5, 7)).astype(np.float32)
    keep = x.copy()
    same = D.augment(x, rng)
    assert same is not x and np.array_equal(same, x)
    pad = 2
    out = D.augment(x, rng, crop_pad=pad, flip=True)
    assert out.shape == x.shape and out.dtype == np.float32 and np.array_equal(x, keep)
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    offsets, flips = set(), set()
    for i in range(len(x)):
        crops = {
            (dy, dx): padded[i, :, dy : dy + 5, dx : dx + 7]
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
        }
        found = [
            (dy, dx, f)
            for (dy, dx), crop in crops.items()
            for f in (False, True)
            if np.array_equal(out[i], crop[..., ::-1] if f else crop)
        ]
        assert found, f"image {i} is not a padded crop of the input"
        offsets.add(found[0][:2])
        flips.add(found[0][2])
    assert len(offsets) > 5 and flips == {False, True}


# ----------------------------------------------------------------------------- CLI


def _root():
    """The ``numbacnn`` group; a stand-in with the same error handling while
    cli/main.py cannot be imported (another engineer's module is still missing)."""
    import click

    from numbacnn.errors import NumbacnnError

    try:
        from numbacnn_cli.main import cli

        return cli
    except ImportError:
        from numbacnn_cli.data import data

        class Group(click.Group):
            def invoke(self, ctx):
                try:
                    return super().invoke(ctx)
                except NumbacnnError as exc:
                    click.echo(f"error: {exc}", err=True)
                    ctx.exit(2)

        root = Group("numbacnn")
        root.add_command(data)
        return root


def run_cli(*args: str):
    return CliRunner().invoke(_root(), ["data", *map(str, args)])


def test_cli_info_bundled() -> None:
    result = run_cli("info", "fashion-mnist-mini")
    assert result.exit_code == 0, result.output
    assert "name:        fashion-mnist-mini" in result.stdout
    assert "input shape: 28x28x1 (W x H x D), uint8" in result.stdout
    assert "6000 images" in result.stdout
    assert "Ankle boot" in result.stdout and "   600     100" in result.stdout


def test_cli_import_and_make_mini(tmp_path: Path) -> None:
    write_idx_dir(tmp_path / "digits")
    result = run_cli("import-idx", tmp_path / "digits", tmp_path / "d.h5")
    assert result.exit_code == 0, result.output
    assert "40 train + 20 test images of 6x8x1 (W x H x D), 10 classes" in result.stdout
    ds = small_dataset(c=3)
    np.savez(tmp_path / "s.npz", x_train=ds.x_train.transpose(0, 2, 3, 1), y_train=ds.y_train,
             x_test=ds.x_test, y_test=ds.y_test, class_names=ds.class_names)  # fmt: skip
    result = run_cli("import-npz", tmp_path / "s.npz", tmp_path / "s.h5", "--name", "small")
    assert result.exit_code == 0, result.output
    assert_same(D.load_dataset(tmp_path / "s.h5"), ds)
    result = run_cli("make-mini", tmp_path / "s.h5", tmp_path / "m.h5",
                     "--train-per-class", "3", "--test-per-class", "2", "--seed", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    mini = D.load_dataset(tmp_path / "m.h5")
    assert len(mini.x_train) == 12 and len(mini.x_test) == 8 and mini.name == "small-mini"


@pytest.mark.parametrize(
    "args, message",
    [
        (["info", "{tmp}/absent.h5"], "no such dataset file or directory"),
        (["info", "{tmp}/bad.h5"], "not a readable HDF5 file"),
        (["import-idx", "{tmp}", "{tmp}/out.h5"], "missing IDX files"),
        (["import-npz", "{tmp}/absent.npz", "{tmp}/out.h5"], "no such file"),
        (["make-mini", "fashion-mnist-mini", "{tmp}/no/out.h5"], "does not exist"),
        (["make-mini", "fashion-mnist-mini", "{tmp}/o.h5", "--test-per-class", "101"], "fewer"),
    ],
)
def test_cli_errors(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    result = run_cli(*(a.format(tmp=tmp_path) for a in args))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.output


def test_cli_module_imports_no_numba_or_h5py() -> None:
    code = "import sys, numbacnn_cli.data; print('numba' in sys.modules, 'h5py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
