"""CIFAR-10 and CIFAR-100 in their official distributions, read into a :class:`Dataset`.

A source is the archive as downloaded (``cifar-10-binary.tar.gz``,
``cifar-10-python.tar.gz``, ``cifar-100-binary.tar.gz``, ``cifar-100-python.tar.gz``;
any tar compression) or its extracted folder (the folder itself or the one holding it).
Which of the four it is comes from the member names (docs/data.md):

==================  ==============================================  =====================
distribution        batches                                         class names
==================  ==============================================  =====================
CIFAR-10 binary     data_batch_1.bin … data_batch_5.bin,            batches.meta.txt
                    test_batch.bin
CIFAR-10 python     data_batch_1 … data_batch_5, test_batch         batches.meta
CIFAR-100 binary    train.bin, test.bin                             fine_label_names.txt,
                                                                    coarse_label_names.txt
CIFAR-100 python    train, test                                     meta
==================  ==============================================  =====================

A binary record is 1 label byte (CIFAR-100: coarse, then fine) and 3,072 pixel bytes:
the R, G and B planes of a 32×32 image, rows top to bottom, which is already the
(C, H, W) order of a numbacnn dataset. A python batch is a pickled dict with ``data``
(uint8 N×3072, the same bytes per row) and ``labels`` (CIFAR-100: ``fine_labels``,
``coarse_labels``). Pickles are read by :mod:`numbacnn.io.safe_pickle`, which builds
only plain data and numpy arrays and never calls anything else.

Tar members are read in memory, never extracted, only those a distribution names (their
total checked against the free memory); a link, device or FIFO member is
refused, and so is any member over :data:`MAX_MEMBER_BYTES`. Every fault (a missing
batch, a record cut short, a label out of range, a pickle that is not plain data) is one
:class:`~numbacnn.errors.DataError` line, raised before anything is written.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from numbacnn.errors import DataError, shown_path
from numbacnn.io.datasets import Dataset, validate
from numbacnn.io.safe_pickle import UnsafePickleError, safe_loads
from numbacnn.limits import check_memory, check_regular_file, exists

PIXELS = 3 * 32 * 32  # bytes of one image: R, G, B planes of 32×32
SHAPE = (3, 32, 32)
MAX_MEMBER_BYTES = 256 << 20  # the largest official file (CIFAR-100 train) is 155 MB
LABELS = ("fine", "coarse")  # CIFAR-100's two label sets
FOLDERS = ("cifar-10-batches-bin", "cifar-10-batches-py", "cifar-100-binary",
           "cifar-100-python")


class _Layout:
    """One distribution: its files, in what format, and how its labels are read."""

    def __init__(self, name: str, train: list[str], test: list[str], meta: list[str],
                 binary: bool, classes: int) -> None:
        self.name, self.train, self.test, self.meta = name, train, test, meta
        self.binary, self.classes = binary, classes

    @property
    def files(self) -> list[str]:
        return [*self.train, *self.test, *self.meta]


_LAYOUTS = (
    _Layout("CIFAR-10 binary", [f"data_batch_{i}.bin" for i in range(1, 6)],
            ["test_batch.bin"], ["batches.meta.txt"], True, 10),
    _Layout("CIFAR-10 python", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
            ["batches.meta"], False, 10),
    _Layout("CIFAR-100 binary", ["train.bin"], ["test.bin"],
            ["fine_label_names.txt", "coarse_label_names.txt"], True, 100),
    _Layout("CIFAR-100 python", ["train"], ["test"], ["meta"], False, 100),
)
_MARKERS = {"data_batch_1.bin": 0, "batches.meta.txt": 0, "test_batch.bin": 0,
            "data_batch_1": 1, "batches.meta": 1, "test_batch": 1,
            "train.bin": 2, "fine_label_names.txt": 2, "coarse_label_names.txt": 2,
            "meta": 3, "train": 3}  # a file that tells the distribution apart
_WANTED = {f for layout in _LAYOUTS for f in layout.files}  # all that is ever read


def import_cifar(source: str | Path, labels: str = "fine", name: str | None = None) -> Dataset:
    """The train (50,000) and test (10,000) images of a CIFAR-10 or CIFAR-100 archive or
    folder (module doc) as a Dataset of uint8 3×32×32 images; ``labels`` picks CIFAR-100's
    "fine" (100) or "coarse" (20) classes and is ignored for CIFAR-10."""
    if labels not in LABELS:
        raise DataError(f"unknown label set {labels!r}: choose one of {', '.join(LABELS)}",
                        field="labels")
    path = Path(source)
    if not exists(path):
        raise DataError(f"{shown_path(path)}: no such archive or folder; give the CIFAR "
                        ".tar.gz as downloaded or the folder it extracts to")
    files = dict(_folder_files(path) if path.is_dir() else _archive_files(path))
    layout = _layout(files, path)
    missing = [f for f in layout.files if f not in files]
    if missing:
        raise DataError(f"{shown_path(path)}: {layout.name} without {', '.join(missing)}; "
                        "download the archive again")
    data = {f: files[f]() for f in layout.files}  # read, each after its size check
    where = {f: f"{shown_path(path)}: {f}" for f in layout.files}
    if layout.binary:
        class_names = _text_names(data, layout, labels, where)
        read = _binary_batch
    else:
        class_names = _pickled_names(data, layout, labels, where)
        read = _python_batch
    splits = {}
    for split, members in (("train", layout.train), ("test", layout.test)):
        parts = [read(data.pop(f), layout, labels, len(class_names), where[f]) for f in members]
        splits[f"x_{split}"] = np.concatenate([x for x, _ in parts])
        splits[f"y_{split}"] = np.concatenate([y for _, y in parts])
    default = "cifar10" if layout.classes == 10 else f"cifar100-{labels}"
    ds = Dataset(class_names=class_names, name=name or default, **splits)
    return validate(ds, str(path))


# ----------------------------------------------------------------------------- sources


def _folder_files(path: Path) -> Iterator[tuple[str, Any]]:
    """(file name, reader) of the regular files of an extracted folder (or of its one
    CIFAR subfolder)."""
    inner = [path / f for f in FOLDERS if (path / f).is_dir()]
    if not any((path / marker).exists() for marker in _MARKERS) and len(inner) == 1:
        path = inner[0]
    for entry in sorted(path.iterdir()):
        if entry.name in _WANTED:
            yield entry.name, (lambda entry=entry: _read_file(entry))


def _read_file(path: Path) -> bytes:
    check_regular_file(path, "CIFAR file", DataError, "give the folder the archive extracts to")
    size = os.stat(path).st_size
    _check_size(size, shown_path(path))
    with open(path, "rb") as fh:
        return fh.read(MAX_MEMBER_BYTES + 1)


def _archive_files(path: Path) -> Iterator[tuple[str, Any]]:
    """(member base name, its bytes as a reader) of the files a CIFAR tar archive holds,
    read in one pass in memory."""
    check_regular_file(path, "CIFAR archive", DataError,
                       "give the .tar.gz as downloaded or its extracted folder")
    found: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(path, mode="r:*") as tar:  # members read in order: no seek back
            for member in tar:
                base = member.name.rstrip("/").rsplit("/", 1)[-1]
                if member.isdir():
                    continue
                if not member.isfile():
                    kind = ("link" if member.issym() or member.islnk() else
                            "device or FIFO")
                    raise DataError(f"{shown_path(path)}: member {shown_path(member.name)} is a "
                                    f"{kind}; a CIFAR archive holds only plain files: download "
                                    "it again")
                if base not in _WANTED:
                    continue
                if base in found:
                    raise DataError(f"{shown_path(path)}: holds {base} twice; give one "
                                    "CIFAR archive")
                _check_size(member.size, f"{shown_path(path)}: {shown_path(member.name)}")
                total += member.size
                check_memory(2 * total, f"{shown_path(path)}: its CIFAR files", DataError,
                             "use a machine with more memory")
                fh = tar.extractfile(member)
                data = fh.read(member.size) if fh is not None else b""
                if len(data) != member.size:
                    raise EOFError(f"{member.name} is cut short")
                found[base] = data
    except DataError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise DataError(f"{shown_path(path)}: not a readable tar archive ({reason}); give the "
                        "CIFAR .tar.gz as downloaded (download it again if it is cut short)") \
            from None
    for base, data in found.items():
        yield base, (lambda data=data: data)


def _check_size(size: int, where: str) -> None:
    if size > MAX_MEMBER_BYTES:
        raise DataError(f"{where}: is {size:,} bytes, more than any CIFAR file "
                        f"({MAX_MEMBER_BYTES:,}); this is not a CIFAR distribution")


def _layout(files: dict[str, Any], path: Path) -> _Layout:
    kinds = {_MARKERS[f] for f in files if f in _MARKERS}
    if len(kinds) != 1:
        what = "files of several CIFAR distributions" if kinds else "no CIFAR batches"
        raise DataError(f"{shown_path(path)}: holds {what}; give one official CIFAR-10 or "
                        "CIFAR-100 archive (binary or python version) or its extracted folder")
    return _LAYOUTS[kinds.pop()]


# ----------------------------------------------------------------------------- contents


def _text_names(data: dict[str, bytes], layout: _Layout, labels: str,
                where: dict[str, str]) -> list[str]:
    meta = layout.meta[0] if layout.classes == 10 or labels == "fine" else layout.meta[1]
    try:
        names = [line.strip() for line in data[meta].decode("utf-8").splitlines()]
    except UnicodeDecodeError:
        raise DataError(f"{where[meta]}: class names are not UTF-8 text; download the archive "
                        "again") from None
    return _checked_names([n for n in names if n], layout, labels, where[meta])


def _pickled_names(data: dict[str, bytes], layout: _Layout, labels: str,
                   where: dict[str, str]) -> list[str]:
    meta = layout.meta[0]
    key = "label_names" if layout.classes == 10 else f"{labels}_label_names"
    names = _field(_unpickle(data[meta], where[meta]), key, where[meta])
    if not isinstance(names, list) or not all(isinstance(n, str | bytes) for n in names):
        raise DataError(f"{where[meta]}: {key} is not a list of names; download the archive "
                        "again")
    return _checked_names([n.decode("utf-8", "replace") if isinstance(n, bytes) else n
                           for n in names], layout, labels, where[meta])


def _checked_names(names: list[str], layout: _Layout, labels: str, where: str) -> list[str]:
    expected = 20 if layout.classes == 100 and labels == "coarse" else layout.classes
    if len(names) != expected:
        raise DataError(f"{where}: names {len(names)} classes, {layout.name} has {expected}; "
                        "download the archive again")
    return names


def _binary_batch(raw: bytes, layout: _Layout, labels: str, classes: int,
                  where: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 N×3×32×32, int64 N) of a binary batch: records of label byte(s) + pixels."""
    label_bytes = 1 if layout.classes == 10 else 2
    record = label_bytes + PIXELS
    if not raw or len(raw) % record:
        raise DataError(f"{where}: {len(raw):,} bytes are not a whole number of {record:,}-byte "
                        f"records ({label_bytes} label byte{'s' if label_bytes > 1 else ''} + "
                        f"{PIXELS:,} pixel bytes); the file is truncated or not a "
                        f"{layout.name} batch: download the archive again")
    rows = np.frombuffer(raw, np.uint8).reshape(-1, record)
    column = 0 if layout.classes == 10 or labels == "coarse" else 1
    y = rows[:, column].astype(np.int64)
    return _checked(rows[:, label_bytes:].reshape(-1, *SHAPE), y, classes, where)


def _python_batch(raw: bytes, layout: _Layout, labels: str, classes: int,
                  where: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(raw, where)
    x = _field(batch, "data", where)
    key = "labels" if layout.classes == 10 else f"{labels}_labels"
    y = _field(batch, key, where)
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or \
            x.shape[1] != PIXELS:
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(f"{where}: data is {got}, expected uint8 N x {PIXELS}; download the "
                        "archive again")
    if isinstance(y, np.ndarray):
        y = y.tolist()
    if not isinstance(y, list) or not all(type(v) is int for v in y) or len(y) != len(x):
        raise DataError(f"{where}: {key} are not {len(x)} integer labels, one per image; "
                        "download the archive again")
    labels_array = np.array(y, dtype=np.int64) if y else np.zeros(0, np.int64)
    return _checked(x.reshape(-1, *SHAPE), labels_array, classes, where)


def _checked(x: np.ndarray, y: np.ndarray, classes: int,
             where: str) -> tuple[np.ndarray, np.ndarray]:
    if len(y) == 0:
        raise DataError(f"{where}: holds no images; download the archive again")
    bad = np.flatnonzero((y < 0) | (y >= classes))
    if len(bad):
        raise DataError(f"{where}: image {int(bad[0])} has label {int(y[bad[0]])}, outside "
                        f"0-{classes - 1}; the file is damaged: download the archive again")
    return x, y


def _unpickle(raw: bytes, where: str) -> Any:
    check_memory(2 * len(raw), f"{where}: a pickle of {len(raw):,} bytes", DataError,
                 "use a machine with more memory")
    try:
        return safe_loads(raw)
    except UnsafePickleError as exc:
        raise DataError(f"{where}: refused: {exc}; an official CIFAR pickle holds only "
                        "plain data and numpy arrays: download the archive again") from None


def _field(batch: Any, key: str, where: str) -> Any:
    if not isinstance(batch, dict):
        raise DataError(f"{where}: holds a {type(batch).__name__}, not a CIFAR batch (a dict); "
                        "download the archive again")
    for candidate in (key, key.encode()):
        if candidate in batch:
            return batch[candidate]
    raise DataError(f"{where}: has no {key!r} entry; download the archive again")

