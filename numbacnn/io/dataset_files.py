"""Dataset files: read, import and save datasets (IDX, .npz, HDF5, the bundled subset).

On disk a dataset is one HDF5 file (layout in ``docs/hdf5.md``, "Dataset files"),
readable with h5py alone; the in-memory :class:`~numbacnn.io.datasets.Dataset` is
:mod:`numbacnn.io.datasets`.

:func:`load_dataset` accepts:

* ``"fashion-mnist-mini"``: the bundled 6000/1000-image subset of Fashion-MNIST;
* ``"fashion-mnist"``: the full set, read from the IDX files that Debian's
  ``dataset-fashion-mnist`` package installs in ``/usr/share/datasets/fashion-mnist``;
* ``"fashion-mnist:DIR"``: the full set from the IDX files in DIR;
* a directory holding IDX files (``train-images-idx3-ubyte[.gz]`` ...);
* a ``.h5`` dataset file or a ``.npz`` file (keys x_train, y_train, x_test, y_test).

Every problem a user can cause raises :class:`numbacnn.errors.DataError` with a
one-line message saying what is wrong, where, and how to fix it.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from importlib import resources
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from numbacnn.errors import DataError, MissingBundledDataError, NotADatasetError, shown_path
from numbacnn.io.atomic_file import hdf5_bytes, replace_atomically
from numbacnn.io.datasets import Dataset, validate
from numbacnn.io.hdf5 import SIGNATURE, first_line, shown, text
from numbacnn.io.numpy_files import read_npz
from numbacnn.limits import (
    MAX_CLASSES,
    array_bytes,
    check_memory,
    check_regular_file,
    exists,
)

FORMAT = "numbacnn-dataset"
FORMAT_VERSION = 1
BUNDLED_MINI = "fashion-mnist-mini"
FASHION_MNIST = "fashion-mnist"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
SOURCES_HELP = (
    "use fashion-mnist-mini, fashion-mnist, fashion-mnist:DIR, a directory of IDX files, "
    "a .h5 dataset file or a .npz file"
)

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK"
_CHUNK_BYTES = 1 << 20  # about 1 MiB of images per HDF5 chunk


# ----------------------------------------------------------------------------- IDX


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed, detected by content) into an array.

    Returns the array with the dims stored in the file, in native byte order
    (uint8, int8, int16, int32, float32 or float64 by the IDX type code). The header's
    dimensions are checked against the file (and the memory free) before the data is
    read, so a gzip file cannot expand beyond what its header declares.
    """
    path = Path(path)
    check_regular_file(path, "IDX file", DataError)
    try:
        with open(path, "rb") as raw_fh:
            compressed = raw_fh.read(2) == _GZIP_MAGIC
            raw_fh.seek(0)
            fh = gzip.GzipFile(fileobj=raw_fh) if compressed else raw_fh
            return _read_idx_stream(fh, path)
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, DataError):
            raise
        what = "truncated or corrupt gzip data" if compressed else "cannot read it"
        raise DataError(f"{path}: {what} ({first_line(exc)}); download the file again") \
            from None


def _read_idx_stream(fh: Any, path: Path) -> np.ndarray:
    magic = fh.read(4)
    if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in _IDX_TYPES:
        raise DataError(
            f"{path}: not an IDX file (bad magic number {magic[:4].hex() or 'none'}); "
            "expected 00 00 <type 08/09/0b/0c/0d/0e> <ndim>"
        )
    dtype = np.dtype(_IDX_TYPES[magic[2]])
    ndim = magic[3]
    dims_raw = fh.read(4 * ndim)
    if ndim == 0 or len(dims_raw) < 4 * ndim:
        raise DataError(f"{path}: IDX header is truncated or has no dimensions; get a good copy")
    dims = struct.unpack(f">{ndim}I", dims_raw)
    expected = array_bytes(dims, dtype.itemsize)  # exact: no int64 overflow
    check_memory(expected, f"{path}: the IDX header's dims {_dims_text(dims)}", DataError,
                 "the file is damaged or not an IDX file: download it again")
    if array_bytes((d for d in dims if d), dtype.itemsize) >= 2**62:
        raise DataError(f"{path}: IDX header's dims {_dims_text(dims)} describe no array numpy "
                        "can hold; "
                        "the file is damaged: download it again")
    data = fh.read(expected + 1)
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        found = f"{len(data)}" if len(data) < expected else f"more than {expected}"
        raise DataError(
            f"{path}: IDX file is {what}: dims {_dims_text(dims)} need {expected} data bytes, "
            f"found {found}; download the file again"
        )
    array = np.frombuffer(data, dtype=dtype, count=math.prod(dims))
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def _dims_text(dims: tuple[int, ...]) -> str:
    """An IDX header's dims for a message: all of a few, the ends of many (a damaged
    header may declare 255)."""
    if len(dims) <= 6:
        return str(tuple(dims))
    return f"({', '.join(map(str, dims[:3]))}, …, {', '.join(map(str, dims[-2:]))}: " \
           f"{len(dims)} dims)"


def _class_names(labels: list[np.ndarray], where: str) -> list[str]:
    """"0", "1", ... up to the largest label, checked against MAX_CLASSES before a name
    is made (a label of 2**40 would ask for 2**40 of them)."""
    top = max(_max_label(y) for y in labels)
    if top >= MAX_CLASSES:
        raise DataError(f"{where}: label {top} would make {top + 1} classes, more than the "
                        f"{MAX_CLASSES} numbacnn takes; fix the labels (class indices 0, 1, "
                        "...)")
    return [str(i) for i in range(top + 1)]


def _find_idx(directory: Path, prefix: str, kind: str, ndim: int) -> Path | None:
    for sep in ("-", "."):
        for suffix in ("", ".gz"):
            candidate = directory / f"{prefix}-{kind}{sep}idx{ndim}-ubyte{suffix}"
            if candidate.is_file():
                return candidate
    return None


def import_idx(
    directory: str | Path, name: str | None = None, class_names: list[str] | None = None
) -> Dataset:
    """Read a dataset from the four (M)NIST-style IDX files in ``directory``.

    Looks for ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each optionally
    ``.gz``; ``.idx`` instead of ``-idx`` also accepted). Images (N, H, W) become
    (N, 1, H, W). Class names default to Fashion-MNIST's when the directory name
    contains "fashion", else "0", "1", ... up to the largest label.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: no such directory; pass a directory holding IDX files")
    roles = {
        "x_train": ("train", "images", 3),
        "y_train": ("train", "labels", 1),
        "x_test": ("t10k", "images", 3),
        "y_test": ("t10k", "labels", 1),
    }
    files = {key: _find_idx(directory, *role) for key, role in roles.items()}
    missing = [f"{p}-{k}-idx{n}-ubyte[.gz]" for key, (p, k, n) in roles.items() if not files[key]]
    if missing:
        raise DataError(
            f"{directory}: missing IDX files {', '.join(missing)}; "
            "put all four (M)NIST-style files in that directory"
        )
    arrays = {key: read_idx(path) for key, path in files.items()}  # type: ignore[arg-type]
    for key in ("x_train", "x_test"):
        x = arrays[key]
        if x.ndim != 3 or x.dtype != np.uint8:
            raise DataError(
                f"{files[key]}: images are {x.dtype} {x.shape}, expected uint8 N x H x W; "
                "use an idx3-ubyte image file"
            )
        arrays[key] = x[:, None, :, :]
    fashion = "fashion" in directory.resolve().name.lower()
    if class_names is None:
        if fashion:
            class_names = list(FASHION_MNIST_CLASSES)
        else:
            class_names = _class_names([arrays["y_train"], arrays["y_test"]], str(directory))
    if name is None:
        name = FASHION_MNIST if fashion else directory.resolve().name
    ds = Dataset(class_names=class_names, name=name, **arrays)
    return validate(ds, str(directory))


def _max_label(y: np.ndarray) -> int:
    return int(y.max()) if y.size and y.dtype.kind in "iu" else 0


# ----------------------------------------------------------------------------- NPZ


def _to_nchw(x: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W), (N, H, W, C) or (N, C, H, W) uint8 -> contiguous (N, C, H, W).

    Channels-last is assumed when the last dim is 1 or 3 and dim 1 is not.
    """
    if x.dtype != np.uint8:
        raise DataError(
            f"{where}: images are {x.dtype}, expected uint8 pixel values 0-255; "
            "convert them with np.uint8 before saving the .npz"
        )
    if x.ndim == 3:
        return np.ascontiguousarray(x[:, None, :, :])
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if x.ndim == 4:
        return np.ascontiguousarray(x)
    raise DataError(
        f"{where}: images have shape {x.shape}, expected N x H x W, N x H x W x C or N x C x H x W"
    )


def import_npz(path: str | Path, name: str | None = None) -> Dataset:
    """Read a dataset from a ``.npz`` with keys x_train, y_train, x_test, y_test.

    Images: uint8 (N, H, W), (N, H, W, C) or (N, C, H, W), converted to
    (N, C, H, W). Labels: integers (N,) or (N, 1). Optional key ``class_names``:
    an array of strings (default "0", "1", ... up to the largest label).
    """
    path = Path(path)
    if not exists(path):
        raise DataError(f"{shown_path(path)}: no such file; pass an existing .npz file")
    check_regular_file(path, ".npz file", DataError, "pass an existing .npz file")
    arrays = read_npz(path)
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise DataError(
            f"{path}: missing arrays {', '.join(missing)} (found {', '.join(arrays) or 'none'}); "
            "save x_train, y_train, x_test and y_test"
        )
    ys = {}
    for key in ("y_train", "y_test"):
        y = arrays[key]
        ys[key] = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if "class_names" in arrays:
        names = np.asarray(arrays["class_names"]).reshape(-1)
        if names.size > MAX_CLASSES:
            raise DataError(f"{path}: class_names holds {names.size} names, more than the "
                            f"{MAX_CLASSES} classes numbacnn takes; save one name per class")
        class_names = [str(n) for n in names]
    else:
        class_names = _class_names([ys["y_train"], ys["y_test"]], str(path))
    ds = Dataset(
        x_train=_to_nchw(arrays["x_train"], f"{path} x_train"),
        y_train=ys["y_train"],
        x_test=_to_nchw(arrays["x_test"], f"{path} x_test"),
        y_test=ys["y_test"],
        class_names=class_names,
        name=name or path.stem,
    )
    return validate(ds, str(path))


# ----------------------------------------------------------------------------- HDF5


def save_dataset(ds: Dataset, path: str | Path, compression: int = 4) -> None:
    """Write ``ds`` to the HDF5 dataset file ``path`` atomically.

    Writes a temporary file in the same directory, fsyncs it and renames it over
    ``path``; on any error the temporary file is removed and an existing ``path``
    is left untouched. ``compression`` is the gzip level (0-9) of the images.
    """
    path = Path(path)
    validate(ds, f"dataset {ds.name!r}")
    directory = path.parent
    if not directory.is_dir():
        raise DataError(f"{path}: directory {directory} does not exist; create it first")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; give a file name such as {path / 'data.h5'}")
    if not 0 <= compression <= 9:
        raise DataError(f"gzip level {compression} is outside 0-9; give a level from 0 (none) "
                        "to 9 (smallest)")
    replace_atomically(path, lambda fh: fh.write(hdf5_bytes(
        lambda f: _write_h5(ds, f, compression))), DataError, "dataset")


def _write_h5(ds: Dataset, f: h5py.File, compression: int) -> None:
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = np.int64(FORMAT_VERSION)
    f.attrs["name"] = ds.name
    f.attrs.create(
        "class_names", np.array(ds.class_names, dtype=object), dtype=h5py.string_dtype()
    )
    for split in ("train", "test"):
        x = np.ascontiguousarray(getattr(ds, f"x_{split}"))
        group = f.create_group(split)
        options = {}
        if len(x):
            rows = max(1, min(len(x), _CHUNK_BYTES // max(1, x[0].nbytes)))
            options = {"chunks": (rows, *x.shape[1:]), "compression": "gzip",
                       "compression_opts": compression}  # fmt: skip
        group.create_dataset("images", data=x, **options)
        group.create_dataset("labels", data=getattr(ds, f"y_{split}").astype(np.int64))


def read_h5(path: str | Path) -> Dataset:
    """Read an HDF5 dataset file written by :func:`save_dataset` (see docs/hdf5.md)."""
    path = Path(path)
    check_regular_file(path, "dataset file", DataError)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise NotADatasetError(
            f"{path}: not a readable HDF5 file ({first_line(exc)}); the file is truncated, "
            "corrupt or not HDF5: write it again"
        ) from None
    with f:
        fmt = text(f.attrs.get("format", ""))
        if fmt != FORMAT:
            raise NotADatasetError(
                f"{path}: format attribute is {shown(fmt)}, expected {FORMAT!r}; this is not "
                "a numbacnn dataset file: convert the data into one"
            )
        version = f.attrs.get("format_version", 0)
        if not isinstance(version, int | np.integer) or int(version) != FORMAT_VERSION:
            raise DataError(
                f"{path}: dataset format_version {shown(version)} is not supported (this "
                f"numbacnn reads version {FORMAT_VERSION}); upgrade numbacnn or re-create the "
                "file"
            )
        if "class_names" not in f.attrs:
            raise DataError(f"{path}: class_names attribute is missing; re-create the file")
        count = math.prod(f.attrs.get_id("class_names").shape or ())
        if count > MAX_CLASSES:  # checked before the names are read
            raise DataError(f"{path}: class_names holds {count} names, more than the "
                            f"{MAX_CLASSES} classes numbacnn takes; re-create the file")
        names = f.attrs.get("class_names")
        names = np.asarray(names).reshape(-1)
        if names.dtype.kind not in "OSU" or not all(isinstance(n, str | bytes) for n in names):
            raise DataError(f"{path}: class_names is {shown(names)}, not strings; re-create "
                            "the file")
        name = f.attrs.get("name", path.stem)
        if not isinstance(name, str | bytes):
            raise DataError(f"{path}: name attribute is {shown(name)}, not a string; re-create "
                            "the file")
        arrays = {}
        for split in ("train", "test"):
            for member, key in (("images", "x"), ("labels", "y")):
                arrays[f"{key}_{split}"] = _read_member(f, f"{split}/{member}", path)
        class_names = [text(n) for n in names]
        for value in (*class_names, text(name)):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # h5py decodes invalid UTF-8 into surrogates
                raise DataError(f"{path}: class_names or name is not valid UTF-8 text; "
                                "re-create the file") from None
        ds = Dataset(class_names=class_names, name=text(name), **arrays)
    return validate(ds, str(path))


def _read_member(f: h5py.File, member: str, path: Path) -> np.ndarray:
    if member not in f or not isinstance(f[member], h5py.Dataset):
        raise DataError(f"{path}: dataset {member} is missing; re-create the file")
    dataset = f[member]
    images = member.endswith("images")
    kinds, ndim = ("u", 4) if images else ("iu", 1)
    if dataset.dtype.kind not in kinds or len(dataset.shape) != ndim or (
            images and dataset.dtype != np.uint8):
        expected = "uint8 N x C x H x W" if images else "integers of shape (N,)"
        split, what = member.split("/")
        raise DataError(f"{path}: {split} {what} are {dataset.dtype} {tuple(dataset.shape)}, "
                        f"expected {expected}; re-create the file")
    check_memory(array_bytes(dataset.shape, dataset.dtype.itemsize),
                 f"{path}: {member} of shape {tuple(dataset.shape)}", DataError,
                 "the file is damaged, or use a machine with more memory")
    try:
        return dataset[()]
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise DataError(
            f"{path}: cannot read {member} ({first_line(exc)}); the file is truncated "
            "or corrupt: write it again"
        ) from None

def _read_bytes(path: Path, what: str, nbytes: int = -1) -> bytes:
    check_regular_file(path, what, DataError)
    try:
        with open(path, "rb") as fh:
            return fh.read(nbytes)
    except OSError as exc:
        raise DataError(
            f"{path}: cannot read the {what} ({exc.strerror}); check permissions"
        ) from None


# ----------------------------------------------------------------------------- load


def load_dataset(source: str | Path) -> Dataset:
    """Load a dataset by name or path (see the module docstring for ``source``)."""
    text = str(source)
    if text == BUNDLED_MINI:
        resource = resources.files("numbacnn_data") / f"{BUNDLED_MINI}.h5"
        if not resource.is_file():
            raise MissingBundledDataError(
                f"bundled {BUNDLED_MINI}.h5 is missing from numbacnn_data; reinstall numbacnn "
                f"or rebuild it as the make_mini subset of {FASHION_MNIST} saved to "
                f"data/{BUNDLED_MINI}.h5"
            )
        with resources.as_file(resource) as path:
            return read_h5(path)
    if text == FASHION_MNIST:
        if not FASHION_MNIST_DIR.is_dir():
            raise DataError(
                f"{FASHION_MNIST_DIR}: Fashion-MNIST is not installed; run "
                "apt-get install dataset-fashion-mnist, or pass fashion-mnist:DIR "
                "with a directory holding its IDX files"
            )
        return import_idx(FASHION_MNIST_DIR, FASHION_MNIST, list(FASHION_MNIST_CLASSES))
    if text.startswith(FASHION_MNIST + ":"):
        directory = text.split(":", 1)[1]
        return import_idx(directory, FASHION_MNIST, list(FASHION_MNIST_CLASSES))
    path = Path(source)
    if not exists(path):  # also a name too long for the OS
        raise DataError(f"{shown_path(path)}: no such dataset file or directory; "
                        f"{SOURCES_HELP}")
    if path.is_dir():
        return import_idx(path)
    head = _read_bytes(path, "dataset file", nbytes=8)
    if path.suffix == ".npz" or head.startswith(_ZIP_MAGIC):
        return import_npz(path)
    if path.suffix in (".h5", ".hdf5") or head == SIGNATURE:
        return read_h5(path)
    raise DataError(f"{path}: not a dataset file (neither HDF5 nor .npz); {SOURCES_HELP}")
