"""Tests of numbacnn.io.dataset_files: IDX, .npz and HDF5 dataset files, and the named
sources (the bundled subset, Fashion-MNIST) (no numba, no GPU)."""

from __future__ import annotations

import gzip
from pathlib import Path

import h5py
import numpy as np
import pytest
from dataset_samples import IDX_CODES, assert_same, small_dataset, write_idx, write_idx_dir

from numbacnn.errors import DataError, NotADatasetError
from numbacnn.io import dataset_files as files
from numbacnn.io import datasets

# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("kind", sorted(IDX_CODES))
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_types(tmp_path: Path, kind: str, gz: bool) -> None:
    array = (np.arange(2 * 3 * 4).reshape(2, 3, 4) - 5).astype(kind)
    if kind == "u1":
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4) * 10
    path = write_idx(tmp_path / "a.idx", array, gz)  # no .gz suffix: detected by content
    got = files.read_idx(path)
    np.testing.assert_array_equal(got, array)
    assert got.dtype == np.dtype(kind) and got.dtype.isnative and got.shape == (2, 3, 4)


def test_read_idx_gzip_by_content_not_name(tmp_path: Path) -> None:
    array = np.arange(10, dtype=np.uint8)
    plain = write_idx(tmp_path / "plain.gz", array)
    np.testing.assert_array_equal(files.read_idx(plain), array)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated(tmp_path: Path, gz: bool) -> None:
    path = write_idx(tmp_path / "x.idx", np.arange(100, dtype=np.int32), gz=False)
    raw = path.read_bytes()[:-7]
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataError, match="truncated") as err:
        files.read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_truncated_gzip_stream(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x.idx.gz", np.arange(1000, dtype=np.int32), gz=True)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match="truncated or corrupt gzip"):
        files.read_idx(path)


def test_read_idx_extra_bytes(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x.idx", np.arange(4, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match="longer than its header"):
        files.read_idx(path)


@pytest.mark.parametrize(
    "raw",
    [b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", b"\x00\x00\x07\x01\x00\x00\x00\x00", b"", b"PK"],
)
def test_read_idx_bad_magic(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(raw)
    with pytest.raises(DataError, match="not an IDX file"):
        files.read_idx(path)


def test_read_idx_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such IDX file"):
        files.read_idx(tmp_path / "nope")


@pytest.mark.parametrize("gz", [False, True])
def test_import_idx_fashion_dir(tmp_path: Path, gz: bool) -> None:
    expected = write_idx_dir(tmp_path / "my-fashion-set", gz)
    ds = files.import_idx(tmp_path / "my-fashion-set")
    assert ds.class_names == files.FASHION_MNIST_CLASSES and ds.name == "fashion-mnist"
    np.testing.assert_array_equal(ds.x_train, expected.x_train)
    np.testing.assert_array_equal(ds.y_test, expected.y_test)
    assert ds.x_train.shape == (40, 1, 8, 6) and ds.y_train.dtype == np.int64


def test_import_idx_digits_dir(tmp_path: Path) -> None:
    write_idx_dir(tmp_path / "digits")
    ds = files.import_idx(tmp_path / "digits")
    assert ds.class_names == [str(i) for i in range(10)] and ds.name == "digits"
    ds = files.load_dataset(f"fashion-mnist:{tmp_path / 'digits'}")
    assert ds.class_names == files.FASHION_MNIST_CLASSES and ds.name == "fashion-mnist"


def test_import_idx_missing_files(tmp_path: Path) -> None:
    write_idx_dir(tmp_path / "d")
    (tmp_path / "d" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing IDX files t10k-labels-idx1-ubyte"):
        files.import_idx(tmp_path / "d")
    with pytest.raises(DataError, match="no such directory"):
        files.import_idx(tmp_path / "absent")


def test_import_idx_label_count_mismatch(tmp_path: Path) -> None:
    write_idx_dir(tmp_path / "d", gz=False)
    write_idx(tmp_path / "d" / "train-labels-idx1-ubyte", np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataError, match="40 images but 3 labels"):
        files.import_idx(tmp_path / "d")


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
    got = files.import_npz(path, name="small")
    assert_same(got, ds)
    assert got.x_train.flags.c_contiguous and got.input_shape == (c, 8, 6)


def test_import_npz_default_class_names(tmp_path: Path) -> None:
    ds = small_dataset(classes=3)
    np.savez(tmp_path / "s.npz", x_train=ds.x_train, y_train=ds.y_train,
             x_test=ds.x_test, y_test=ds.y_test)  # fmt: skip
    got = files.load_dataset(tmp_path / "s.npz")
    assert got.class_names == ["0", "1", "2"] and got.name == "s"


def test_import_npz_errors(tmp_path: Path) -> None:
    ds = small_dataset()
    np.savez(tmp_path / "missing.npz", x_train=ds.x_train, y_train=ds.y_train)
    with pytest.raises(DataError, match="missing arrays x_test, y_test"):
        files.import_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "float.npz", x_train=ds.x_train / 255.0, y_train=ds.y_train,
             x_test=ds.x_test, y_test=ds.y_test)  # fmt: skip
    with pytest.raises(DataError, match="x_train: images are float64, expected uint8"):
        files.import_npz(tmp_path / "float.npz")
    np.savez(tmp_path / "range.npz", x_train=ds.x_train, y_train=ds.y_train,
             x_test=ds.x_test, y_test=ds.y_test, class_names=np.array(["a", "b"]))  # fmt: skip
    with pytest.raises(DataError, match=r"label 3 is outside \[0, 2\)"):
        files.import_npz(tmp_path / "range.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"not a readable .npz"):
        files.load_dataset(tmp_path / "junk.npz")


# ----------------------------------------------------------------------------- HDF5


def test_h5_round_trip(tmp_path: Path) -> None:
    ds = small_dataset(c=3)
    ds.class_names = ["T-shirt/top", "Ünïcode", "c", "d"]
    files.save_dataset(ds, tmp_path / "s.h5")
    assert_same(files.load_dataset(tmp_path / "s.h5"), ds)
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
    files.save_dataset(ds, tmp_path / "s.h5")
    assert files.load_dataset(tmp_path / "s.h5").x_test.shape == (0, 1, 8, 6)


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = small_dataset()
    target = tmp_path / "s.h5"
    files.save_dataset(old, target)
    before = target.read_bytes()
    real = h5py.Group.create_dataset

    def failing(self, name, *args, **kwargs):
        if name == "labels" and self.name == "/test":
            raise OSError(28, "No space left on device")
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(DataError, match=r"cannot write the dataset.*No space left"):
        files.save_dataset(small_dataset(n_train=80), target)
    monkeypatch.setattr(h5py.Group, "create_dataset", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        files.save_dataset(small_dataset(n_train=80), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]  # no temp file left
    assert target.read_bytes() == before
    monkeypatch.undo()
    assert_same(files.load_dataset(target), old)


def test_save_unwritable(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist; create it first"):
        files.save_dataset(small_dataset(), tmp_path / "no" / "s.h5")
    with pytest.raises(DataError, match="is a directory"):
        files.save_dataset(small_dataset(), tmp_path)


def test_save_rejects_invalid(tmp_path: Path) -> None:
    ds = small_dataset()
    ds.x_train = ds.x_train.astype(np.float32)
    with pytest.raises(DataError, match="train images are float32"):
        files.save_dataset(ds, tmp_path / "s.h5")
    assert not list(tmp_path.iterdir())


@pytest.fixture
def good_h5(tmp_path: Path) -> Path:
    path = tmp_path / "good.h5"
    files.save_dataset(small_dataset(n_train=400), path)
    return path


def test_h5_missing_and_not_hdf5(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such dataset file or directory"):
        files.load_dataset(tmp_path / "absent.h5")
    (tmp_path / "text.h5").write_text("hello\n")
    with pytest.raises(NotADatasetError, match=r"text.h5: not a readable HDF5 file") as bad:
        files.load_dataset(tmp_path / "text.h5")
    assert "numbacnn data" not in str(bad.value)  # the CLI adds the command that fixes it
    (tmp_path / "text.txt").write_text("hello\n")
    with pytest.raises(DataError, match=r"neither HDF5 nor .npz"):
        files.load_dataset(tmp_path / "text.txt")


def test_h5_truncated(good_h5: Path) -> None:
    raw = good_h5.read_bytes()
    good_h5.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="truncated") as err:
        files.load_dataset(good_h5)
    assert str(good_h5) in str(err.value) and "\n" not in str(err.value)


def test_h5_wrong_format(good_h5: Path) -> None:
    with h5py.File(good_h5, "r+") as f:
        f.attrs["format"] = "numbacnn-model"
    with pytest.raises(DataError, match=r"format attribute is 'numbacnn-model'.*not a numbacnn"):
        files.load_dataset(good_h5)


def test_h5_newer_version(good_h5: Path) -> None:
    with h5py.File(good_h5, "r+") as f:
        f.attrs["format_version"] = 2
    with pytest.raises(DataError, match="format_version 2 is not supported"):
        files.load_dataset(good_h5)


def test_h5_label_out_of_range(good_h5: Path) -> None:
    with h5py.File(good_h5, "r+") as f:
        f["train/labels"][5] = 4
    with pytest.raises(DataError, match=r"good.h5: train label 4 is outside \[0, 4\)"):
        files.load_dataset(good_h5)


def test_h5_wrong_image_dtype(good_h5: Path) -> None:
    with h5py.File(good_h5, "r+") as f:
        x = f["test/images"][()]
        del f["test/images"]
        f["test/images"] = x.astype(np.float32)
    with pytest.raises(DataError, match=r"test images are float32 .*expected uint8"):
        files.load_dataset(good_h5)


def test_h5_missing_member_and_mismatch(good_h5: Path) -> None:
    with h5py.File(good_h5, "r+") as f:
        f["test/labels2"] = f["test/labels"][:3]
        del f["test/labels"]
    with pytest.raises(DataError, match="dataset test/labels is missing"):
        files.load_dataset(good_h5)
    with h5py.File(good_h5, "r+") as f:
        f.move("test/labels2", "test/labels")
    with pytest.raises(DataError, match="test has 20 images but 3 labels"):
        files.load_dataset(good_h5)


# ----------------------------------------------------------------------------- sources


def test_bundled_mini() -> None:
    ds = files.load_dataset("fashion-mnist-mini")
    assert ds.name == "fashion-mnist-mini" and ds.class_names == files.FASHION_MNIST_CLASSES
    assert ds.x_train.shape == (6000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert (ds.counts("train") == 600).all() and (ds.counts("test") == 100).all()
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64


def test_full_fashion_mnist_rebuilds_bundled_mini() -> None:
    if not (files.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"{files.FASHION_MNIST_DIR} absent (apt-get install dataset-fashion-mnist)")
    full = files.load_dataset("fashion-mnist")
    assert full.x_train.shape == (60000, 1, 28, 28) and full.x_test.shape == (10000, 1, 28, 28)
    assert (full.counts("train") == 6000).all()
    mini = files.load_dataset("fashion-mnist-mini")
    assert_same(datasets.make_mini(full, 600, 100, seed=0), mini)


def test_fashion_mnist_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        files.load_dataset("fashion-mnist")
