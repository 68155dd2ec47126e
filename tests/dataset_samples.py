"""Small datasets and IDX files written on the fly for the dataset tests."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from numbacnn.io.datasets import Dataset

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
