"""Datasets: load, import, save, subset, normalize, batch and augment images.

A :class:`Dataset` holds ``uint8`` images in (N, C, H, W) order with pixel values
0-255 and ``int64`` labels in [0, num_classes). On disk a dataset is one HDF5
file (layout in ``docs/hdf5.md``, "Dataset files"), readable with h5py alone.

:func:`load_dataset` accepts:

* ``"fashion-mnist-mini"``: the bundled 6000/1000-image subset of Fashion-MNIST;
* ``"fashion-mnist"``: the full set, read from the IDX files that Debian's
  ``dataset-fashion-mnist`` package installs in ``/usr/share/datasets/fashion-mnist``;
* ``"fashion-mnist:DIR"``: the full set from the IDX files in DIR;
* a directory holding IDX files (``train-images-idx3-ubyte[.gz]`` ...);
* a ``.h5`` dataset file or a ``.npz`` file (keys x_train, y_train, x_test, y_test).

Every problem a user can cause raises :class:`numbacnn.errors.DataError` with a
one-line message saying what is wrong, where, and how to fix it.

Normalization: images are scaled to [0, 1] (divided by 255), then standardized
per channel with the mean and standard deviation of the [0, 1]-scaled training
images (:func:`normalization`, :func:`normalize`).
"""

from __future__ import annotations

import gzip
import math
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from numbacnn.errors import DataError, shown_path
from numbacnn.geometry import VOLUME_AXES, volume
from numbacnn.io.atomic_file import hdf5_bytes, replace_atomically
from numbacnn.io.images import SPLITS
from numbacnn.limits import SEEDS, Bounds, array_bytes, check_memory, check_regular_file, exists

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
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK"
_CHUNK_BYTES = 1 << 20  # about 1 MiB of images per HDF5 chunk


@dataclass
class Dataset:
    """Images and labels of a train and a test split.

    ``x_train``: uint8 (N, C, H, W), pixel values 0-255; ``y_train``: int64 (N,);
    ``x_test``: uint8 (M, C, H, W); ``y_test``: int64 (M,); labels index
    ``class_names``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    name: str = "dataset"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        _, c, h, w = self.x_train.shape
        return (int(c), int(h), int(w))

    @property
    def num_classes(self) -> int:
        """Number of classes (length of ``class_names``)."""
        return len(self.class_names)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 images N×C×H×W, int64 labels (N,)) of the split ``name``, one of SPLITS;
        DataError (``field`` "split") for another name."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}: choose one of {', '.join(SPLITS)}",
                            field="split")
        return (self.x_train, self.y_train) if name == "train" else (self.x_test, self.y_test)

    def counts(self, split: str) -> np.ndarray:
        """Images per class in ``split`` ("train" or "test"): int64 (num_classes,)."""
        return np.bincount(self.split(split)[1], minlength=self.num_classes)


def validate(ds: Dataset, where: str) -> Dataset:
    """Check dtypes, shapes and label range; return ``ds`` with int64 labels.

    ``where`` names the source in error messages (a file path, for example).
    """
    if not ds.class_names or not all(isinstance(n, str) for n in ds.class_names):
        raise DataError(f"{where}: class names must be a non-empty list of strings")
    for split in ("train", "test"):
        x = getattr(ds, f"x_{split}")
        y = getattr(ds, f"y_{split}")
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise DataError(
                f"{where}: {split} images are {got}, expected uint8 N x C x H x W "
                "(pixel values 0-255); convert them with np.uint8 before importing"
            )
        if not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype.kind not in "iu":
            got = f"{y.dtype} {y.shape}" if isinstance(y, np.ndarray) else type(y).__name__
            raise DataError(
                f"{where}: {split} labels are {got}, expected integer class indices of shape (N,)"
            )
        if len(y) != len(x):
            raise DataError(
                f"{where}: {split} has {len(x)} images but {len(y)} labels; "
                "give exactly one label per image"
            )
        if len(y) and (y.min() < 0 or y.max() >= ds.num_classes):
            bad = int(y.min()) if y.min() < 0 else int(y.max())
            raise DataError(
                f"{where}: {split} label {bad} is outside [0, {ds.num_classes}) for "
                f"{ds.num_classes} classes; fix the labels or the class names"
            )
        setattr(ds, f"y_{split}", y.astype(np.int64, copy=False))
    if len(ds.x_train) == 0:
        raise DataError(f"{where}: the train split has no images; a dataset needs at least one")
    if ds.x_test.shape[1:] != ds.x_train.shape[1:]:
        raise DataError(
            f"{where}: test images are {volume(ds.x_test.shape[1:])} but train images are "
            f"{volume(ds.x_train.shape[1:])} ({VOLUME_AXES}); both splits need the same image shape"
        )
    return ds


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
        raise DataError(f"{path}: {what} ({_first_line(exc)}); download the file again") \
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
    check_memory(expected, f"{path}: the IDX header's dims {dims}", DataError,
                 "the file is damaged or not an IDX file: download it again")
    if array_bytes((d for d in dims if d), dtype.itemsize) >= 2**62:
        raise DataError(f"{path}: IDX header's dims {dims} describe no array numpy can hold; "
                        "the file is damaged: download it again")
    data = fh.read(expected + 1)
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        found = f"{len(data)}" if len(data) < expected else f"more than {expected}"
        raise DataError(
            f"{path}: IDX file is {what}: dims {dims} need {expected} data bytes, "
            f"found {found}; download the file again"
        )
    array = np.frombuffer(data, dtype=dtype, count=math.prod(dims))
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


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
            top = max(_max_label(arrays["y_train"]), _max_label(arrays["y_test"]))
            class_names = [str(i) for i in range(top + 1)]
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
        raise DataError(f"{path}: no such file; pass an existing .npz file")
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
        class_names = [str(n) for n in np.asarray(arrays["class_names"]).reshape(-1)]
    else:
        top = max(_max_label(ys["y_train"]), _max_label(ys["y_test"]))
        class_names = [str(i) for i in range(top + 1)]
    ds = Dataset(
        x_train=_to_nchw(arrays["x_train"], f"{path} x_train"),
        y_train=ys["y_train"],
        x_test=_to_nchw(arrays["x_test"], f"{path} x_test"),
        y_test=ys["y_test"],
        class_names=class_names,
        name=name or path.stem,
    )
    return validate(ds, str(path))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of a ``.npz``, each header checked (no pickle, a size the member and
    the memory can hold) before its data is read."""
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                with archive.open(info) as fh:
                    arrays[key] = _read_npy_stream(fh, f"{path} member {key}", info.file_size)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(
            f"{path}: not a readable .npz file ({_first_line(exc)}); write it with np.savez "
            "and plain (not object) arrays"
        ) from None
    return arrays


def read_npy(path: str | Path) -> np.ndarray:
    """The array of a ``.npy`` file, its header checked before the data is read: the
    NumPy magic, no pickled objects, and a shape the file and the memory can hold."""
    path = Path(path)
    check_regular_file(path, ".npy file", DataError, "check the path")
    try:
        with open(path, "rb") as fh:
            return _read_npy_stream(fh, str(path), path.stat().st_size)
    except (OSError, EOFError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: not a readable .npy file ({_first_line(exc)}); write it "
                        "with np.save and a uint8 array") from None


_NPY_MAGIC = b"\x93NUMPY"


def _read_npy_stream(fh: Any, where: str, size: int) -> np.ndarray:
    fmt = np.lib.format
    if fh.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
        raise DataError(f"{where}: not a .npy array (it does not start with the NumPy magic "
                        "bytes); write it with np.save")
    version = tuple(fh.read(2))
    readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
    if version not in readers:
        raise DataError(f"{where}: .npy format version {version} is not supported; write it "
                        "with np.save")
    shape, fortran, dtype = readers[version](fh, max_header_size=10_000)
    if dtype.hasobject:
        raise DataError(f"{where}: holds Python objects (pickled data), which numbacnn never "
                        "loads; save plain numeric arrays")
    if any(d < 0 for d in shape) or array_bytes((d for d in shape if d), dtype.itemsize) >= 2**62:
        raise DataError(f"{where}: its header declares shape {_shown(shape)}, which no "
                        "array can have; the file is damaged: write it again")
    nbytes = array_bytes(shape, dtype.itemsize)
    header = fh.tell()
    if header + nbytes > size:
        raise DataError(f"{where}: its header declares shape {shape} of {dtype} "
                        f"({nbytes:,} bytes) but only {max(size - header, 0):,} follow; the "
                        "file is truncated or damaged: write it again")
    check_memory(nbytes, f"{where}: shape {shape}", DataError, "use a smaller array")
    data = bytearray(nbytes)  # read in place: one copy of the array in memory, not two
    view, got = memoryview(data), 0
    while got < nbytes:
        n = fh.readinto(view[got:])
        if not n:
            raise DataError(f"{where}: truncated: {got:,} of {nbytes:,} data bytes; write it "
                            "again")
        got += n
    array = np.frombuffer(data, dtype=dtype)
    if fortran:
        return np.ascontiguousarray(array.reshape(shape[::-1]).transpose())
    return array.reshape(shape)


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
        raise DataError(
            f"{path}: not a readable HDF5 file ({_first_line(exc)}); the file is truncated, "
            "corrupt or not HDF5: write it again with numbacnn data"
        ) from None
    with f:
        fmt = _text(f.attrs.get("format", ""))
        if fmt != FORMAT:
            raise DataError(
                f"{path}: format attribute is {_shown(fmt)}, expected {FORMAT!r}; this is not "
                "a numbacnn dataset file: create one with numbacnn data import-idx/import-npz"
            )
        version = f.attrs.get("format_version", 0)
        if not isinstance(version, int | np.integer) or int(version) != FORMAT_VERSION:
            raise DataError(
                f"{path}: dataset format_version {_shown(version)} is not supported (this "
                f"numbacnn reads version {FORMAT_VERSION}); upgrade numbacnn or re-create the "
                "file"
            )
        names = f.attrs.get("class_names")
        if names is None:
            raise DataError(f"{path}: class_names attribute is missing; re-create the file")
        names = np.asarray(names).reshape(-1)
        if names.dtype.kind not in "OSU" or not all(isinstance(n, str | bytes) for n in names):
            raise DataError(f"{path}: class_names is {_shown(names)}, not strings; re-create "
                            "the file")
        name = f.attrs.get("name", path.stem)
        if not isinstance(name, str | bytes):
            raise DataError(f"{path}: name attribute is {_shown(name)}, not a string; re-create "
                            "the file")
        arrays = {}
        for split in ("train", "test"):
            for member, key in (("images", "x"), ("labels", "y")):
                arrays[f"{key}_{split}"] = _read_member(f, f"{split}/{member}", path)
        class_names = [_text(n) for n in names]
        for text in (*class_names, _text(name)):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # h5py decodes invalid UTF-8 into surrogates
                raise DataError(f"{path}: class_names or name is not valid UTF-8 text; "
                                "re-create the file") from None
        ds = Dataset(class_names=class_names, name=_text(name), **arrays)
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
            f"{path}: cannot read {member} ({_first_line(exc)}); the file is truncated "
            "or corrupt: write it again"
        ) from None


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _shown(value: object, limit: int = 60) -> str:
    """A value for a message: one line, at most ``limit`` characters."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist() if value.size <= 8 else f"<{value.dtype} array {value.shape}>"
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


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
            raise DataError(
                f"bundled {BUNDLED_MINI}.h5 is missing from numbacnn_data; reinstall numbacnn "
                f"or run: numbacnn data make-mini fashion-mnist data/{BUNDLED_MINI}.h5"
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
    if path.suffix in (".h5", ".hdf5") or head == _HDF5_MAGIC:
        return read_h5(path)
    raise DataError(f"{path}: not a dataset file (neither HDF5 nor .npz); {SOURCES_HELP}")


# ----------------------------------------------------------------------------- subsets


TRAIN_PER_CLASS = Bounds(1)  # images of each class in a subset's train split (make_mini)
TEST_PER_CLASS = Bounds(0)  # and in its test split


def make_mini(
    ds: Dataset, train_per_class: int = 600, test_per_class: int = 100, seed: int = 0
) -> Dataset:
    """A stratified random subset: ``train_per_class`` / ``test_per_class`` images of
    each class, drawn without replacement with ``np.random.default_rng(seed)``,
    kept in their original order. Named ``<name>-mini``.
    """
    for name, value, bounds in (("train_per_class", train_per_class, TRAIN_PER_CLASS),
                                ("test_per_class", test_per_class, TEST_PER_CLASS),
                                ("seed", seed, SEEDS)):
        bounds.check(name, value, DataError)
    rng = np.random.default_rng(seed)
    picked = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        y = getattr(ds, f"y_{split}")
        chosen = []
        for c in range(ds.num_classes):
            members = np.flatnonzero(y == c)
            if len(members) < per_class:
                raise DataError(
                    f"{ds.name}: {split} split has {len(members)} images of class {c} "
                    f"({ds.class_names[c]}), fewer than {per_class}; lower {split}_per_class",
                    field=f"{split}_per_class")
            chosen.append(rng.choice(members, per_class, replace=False))
        idx = np.sort(np.concatenate(chosen))
        picked[f"x_{split}"] = np.ascontiguousarray(getattr(ds, f"x_{split}")[idx])
        picked[f"y_{split}"] = y[idx].astype(np.int64)
    return Dataset(class_names=list(ds.class_names), name=f"{ds.name}-mini", **picked)


# ----------------------------------------------------------------------------- arrays


def normalization(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of the [0, 1]-scaled training images.

    ``x_train``: uint8 (N, C, H, W), pixel values 0-255. Returns two float32 (C,)
    arrays in units of pixel value / 255. A constant channel gets std 1.
    Computed exactly from a 256-bin histogram per channel (no float copy).
    """
    _check_images(x_train, "x_train")
    values = np.arange(256, dtype=np.float64) / 255.0
    mean = np.empty(x_train.shape[1], dtype=np.float64)
    std = np.empty_like(mean)
    for c in range(x_train.shape[1]):
        hist = np.bincount(x_train[:, c].ravel(), minlength=256).astype(np.float64)
        total = hist.sum()
        mean[c] = hist @ values / total
        std[c] = np.sqrt(hist @ (values - mean[c]) ** 2 / total)
    std[std == 0] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def normalize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x / 255 - mean) / std`` per channel: uint8 (N, C, H, W) -> contiguous float32."""
    _check_images(x, "images")
    mean = np.asarray(mean, dtype=np.float32).reshape(-1)
    std = np.asarray(std, dtype=np.float32).reshape(-1)
    if len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise DataError(
            f"images have {x.shape[1]} channels but the normalization has {len(mean)}; "
            "use a dataset with the image shape the network was trained on"
        )
    scale = (1.0 / (255.0 * std)).reshape(1, -1, 1, 1)
    shift = (mean / std).reshape(1, -1, 1, 1)
    out = x.astype(np.float32, order="C")
    out *= scale
    out -= shift
    return out


def _check_images(x: np.ndarray, what: str) -> None:
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(f"{what} are {got}, expected uint8 N x C x H x W")


def iterate_minibatches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    rng: np.random.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(xb, yb)`` batches of ``batch_size`` samples along axis 0.

    Without ``rng`` the batches are views in order; with ``rng`` the samples are
    shuffled and each batch is a copy of just that batch. ``drop_last`` skips a
    final batch smaller than ``batch_size``.
    """
    if batch_size < 1:
        raise DataError(f"batch size is {batch_size}; it must be 1 or more")
    if len(x) != len(y):
        raise DataError(f"{len(x)} images but {len(y)} labels; give one label per image")
    n = len(x)
    stop = n - n % batch_size if drop_last else n
    order = rng.permutation(n) if rng is not None else None
    for start in range(0, stop, batch_size):
        if order is None:
            yield x[start : start + batch_size], y[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]


def augment(
    xb: np.ndarray, rng: np.random.Generator, crop_pad: int = 0, flip: bool = False
) -> np.ndarray:
    """Random crop and horizontal flip of a float32 (N, C, H, W) batch; returns a new array.

    Crop: pad each image with ``crop_pad`` zero pixels on every side (zero is the
    training mean after :func:`normalize`) and cut an H x W window at a random
    offset. Flip: mirror each image left-right with probability 1/2.
    """
    if xb.ndim != 4:
        raise DataError(f"augment needs an N x C x H x W batch, got shape {xb.shape}")
    if crop_pad < 0:
        raise DataError(f"crop padding is {crop_pad}; it must be 0 or more")
    n, c, h, w = xb.shape
    if crop_pad == 0:
        out = np.array(xb, dtype=np.float32, order="C", copy=True)
    else:
        p = crop_pad
        padded = np.zeros((n, c, h + 2 * p, w + 2 * p), dtype=np.float32)
        padded[:, :, p : p + h, p : p + w] = xb
        windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))
        dy = rng.integers(0, 2 * p + 1, size=n)
        dx = rng.integers(0, 2 * p + 1, size=n)
        out = windows[np.arange(n), :, dy, dx]  # (N, C, H, W), a copy
    if flip:
        mirror = rng.random(n) < 0.5
        out[mirror] = out[mirror, :, :, ::-1]
    return out
