"""A folder of pictures, one subfolder per class, streamed into an HDF5 dataset file.

The layout of torchvision's ``ImageFolder`` and Keras's ``image_dataset_from_directory``
(docs/data.md)::

    DIR/cat/001.png   DIR/cat/more/002.jpg   DIR/dog/003.webp ...

or, split already, ``DIR/train/<class>/...`` and ``DIR/test/<class>/...`` (``val/``,
``valid/`` or ``validation/`` stand for ``test/``). Classes are the subfolder names,
sorted, labels 0, 1, ...; pictures are found in a class folder and below it (hidden
names skipped, links to folders not followed), by suffix (PNG, JPEG, BMP, GIF, WebP).
Without ``test/`` a stratified seeded share of each class becomes the test split.

Each picture is read and fitted to W×H exactly as ``numbacnn predict`` fits a picture
(:mod:`numbacnn.io.image_files`: grey or RGB, ``crop`` or ``pad``), and written a chunk
at a time into the dataset file (layout in docs/hdf5.md), so memory holds one chunk of
images (about 1 MiB) and the labels, never the whole set. The file is written under a
temporary name and renamed when complete: an error or Ctrl-C leaves nothing behind.
Pictures that cannot be read (truncated, corrupt, a decompression bomb, not a regular
file) are skipped and listed in the result, or refused with ``strict``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from numbacnn.errors import DataError, shown_path
from numbacnn.io.atomic_file import replace_atomically
from numbacnn.io.dataset_files import FORMAT, FORMAT_VERSION
from numbacnn.io.image_files import DEFAULT_FIT, PICTURE_SUFFIXES, check_fit, read_picture
from numbacnn.limits import SEEDS, Bounds, check_memory

TEST_SPLITS = ("test", "val", "valid", "validation")  # a test split's folder, first found
IMAGE_SIDE = Bounds(1, 4096)  # pixels of W and H
TEST_SPLIT = Bounds(0.0, 0.9)  # share of each class held out when there is no test/ folder
_CHUNK_BYTES = 1 << 20  # about 1 MiB of images per HDF5 chunk, as dataset_files writes


@dataclass
class FolderImport:
    """What :func:`import_folder` wrote: ``train`` and ``test`` images per split,
    ``skipped`` (path, reason) of each picture left out, and where the test split came
    from ("folder test/" or "seeded 20 % of each class")."""

    class_names: list[str]
    train: int
    test: int
    shape: tuple[int, int, int]
    test_from: str
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def find_pictures(directory: str | Path, test_split: float = 0.2, seed: int = 0
                  ) -> tuple[list[str], dict[str, list[tuple[Path, int]]], str]:
    """(class names, {"train": [(path, label)...], "test": [...]}, where the test split
    comes from) of the picture folder ``directory`` (module doc)."""
    root = Path(directory)
    TEST_SPLIT.check("test_split", test_split, DataError)
    SEEDS.check("seed", seed, DataError)
    if not root.is_dir():
        raise DataError(f"{shown_path(root)}: no such folder; give a folder with one subfolder "
                        "of pictures per class")
    test_dir = next((root / n for n in TEST_SPLITS if (root / n).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        class_names = _class_folders(root / "train")
        splits = {"train": _labelled(root / "train", class_names),
                  "test": _labelled(test_dir, class_names, known=class_names)}
        return class_names, splits, f"folder {test_dir.name}/"
    base = root / "train" if (root / "train").is_dir() else root
    class_names = _class_folders(base)
    pictures = _labelled(base, class_names)
    rng = np.random.default_rng(seed)
    held_out = np.zeros(len(pictures), dtype=bool)
    labels = np.array([label for _, label in pictures], dtype=np.int64)
    for k in range(len(class_names)):
        members = np.flatnonzero(labels == k)
        count = int(round(test_split * len(members)))
        held_out[rng.choice(members, count, replace=False)] = True
    splits = {"train": [p for p, out in zip(pictures, held_out, strict=True) if not out],
              "test": [p for p, out in zip(pictures, held_out, strict=True) if out]}
    return class_names, splits, f"seeded {100 * test_split:g} % of each class (seed {seed})"


def _class_folders(base: Path) -> list[str]:
    names = sorted(entry.name for entry in base.iterdir()
                   if entry.is_dir() and not entry.name.startswith("."))
    if not names:
        raise DataError(f"{shown_path(base)}: has no class subfolders; put the pictures of "
                        "each class in a subfolder named after it (DIR/cat/1.png, DIR/dog/2.png)")
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"{shown_path(base / name)}: the folder name is not UTF-8 text; "
                            "rename it (it becomes the class name)") from None
    return names


def _labelled(base: Path, class_names: list[str],
              known: list[str] | None = None) -> list[tuple[Path, int]]:
    """(path, label) of every picture under ``base/<class>``, sorted within a class."""
    if known is not None:
        extra = [n for n in _class_folders(base) if n not in known]
        if extra:
            raise DataError(f"{shown_path(base)}: class folder {extra[0]!r} is not in train/; "
                            "both splits need the same class folders")
    found = []
    for label, name in enumerate(class_names):
        folder = base / name
        if not folder.is_dir():
            continue
        for top, dirs, files in os.walk(folder):  # links to folders are not followed
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend((Path(top) / f, label) for f in sorted(files)
                         if not f.startswith(".") and Path(f).suffix.lower() in PICTURE_SUFFIXES)
    return found


def import_folder(directory: str | Path, out: str | Path, size: tuple[int, int],
                  channels: int = 3, test_split: float = 0.2, seed: int = 0,
                  fit: str = DEFAULT_FIT, strict: bool = False, name: str | None = None,
                  compression: int = 4,
                  progress: Callable[[int, int], object] | None = None) -> FolderImport:
    """Write the pictures of ``directory`` (module doc), fitted to ``size`` (W, H) with
    ``channels`` (1 grey, 3 RGB) by ``fit``, to the dataset file ``out``.

    ``progress(done, total)`` is called after each picture with the number done so far. Unreadable
    pictures are skipped and returned in ``skipped``; with ``strict`` the first one is a
    DataError and nothing is written. DataError too when no train picture is readable.
    """
    W, H = size
    for key, value in (("width", W), ("height", H)):
        IMAGE_SIDE.check(key, value, DataError)
    if channels not in (1, 3):
        raise DataError(f"pictures are imported with 1 (grey) or 3 (RGB) channels, not "
                        f"{channels}", field="channels")
    check_fit(fit)
    if not 0 <= compression <= 9:
        raise DataError(f"gzip level {compression} is outside 0-9", field="compression")
    out = Path(out)
    class_names, splits, test_from = find_pictures(directory, test_split, seed)
    total = sum(len(files) for files in splits.values())
    if total == 0:
        raise DataError(f"{shown_path(directory)}: the class folders hold no pictures "
                        f"({', '.join(PICTURE_SUFFIXES)}); add some")
    shape = (channels, H, W)
    rows = max(1, min(_CHUNK_BYTES // (channels * H * W), total))
    check_memory(2 * rows * channels * H * W + 16 * total, f"importing {total} pictures",
                 DataError, "use smaller images (--size)")
    result = FolderImport(class_names, 0, 0, (channels, H, W), test_from)
    done = [0]

    def fill(f: h5py.File) -> None:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = np.int64(FORMAT_VERSION)
        f.attrs["name"] = name or Path(directory).resolve().name or "pictures"
        f.attrs.create("class_names", np.array(class_names, dtype=object),
                       dtype=h5py.string_dtype())
        for split, files in splits.items():
            written = _write_split(f.create_group(split), files, shape, fit, rows, compression,
                                   strict, result.skipped, done, total, progress)
            setattr(result, split, written)
        if result.train == 0:
            raise DataError(f"{shown_path(directory)}: no train picture could be read "
                            f"({len(result.skipped)} skipped); nothing was written")

    def write(fh: object) -> None:
        # h5py writes straight into the temporary file (read/write on the same descriptor):
        # a chunk at a time, unlike save_dataset, which builds the whole file in memory.
        descriptor = fh.fileno()  # type: ignore[attr-defined]
        with open(descriptor, "r+b", closefd=False) as raw, h5py.File(raw, "w") as f:
            fill(f)

    replace_atomically(out, write, DataError, "dataset")
    return result


def _write_split(group: h5py.Group, files: list[tuple[Path, int]], shape: tuple[int, int, int],
                 fit: str, rows: int, compression: int, strict: bool,
                 skipped: list[tuple[Path, str]], done: list[int], total: int,
                 progress: Callable[[int, int], object] | None) -> int:
    """Stream ``files`` into ``group``'s images (chunks of ``rows``) and labels; returns
    how many were written."""
    if not files:  # an empty split is stored unchunked, as save_dataset stores it
        group.create_dataset("images", shape=(0, *shape), dtype=np.uint8)
        group.create_dataset("labels", shape=(0,), dtype=np.int64)
        return 0
    images = group.create_dataset("images", shape=(0, *shape), maxshape=(None, *shape),
                                  dtype=np.uint8, chunks=(rows, *shape), compression="gzip",
                                  compression_opts=compression)
    labels = []
    block = np.empty((rows, *shape), dtype=np.uint8)
    filled = 0
    for path, label in files:
        try:
            block[filled] = read_picture(path, shape, fit)[0]
        except DataError as exc:
            if strict:
                raise DataError(f"{exc}; strict import: nothing was written") from None
            skipped.append((path, str(exc)))
        else:
            labels.append(label)
            filled += 1
        if filled == rows:
            _append(images, block, filled)
            filled = 0
        done[0] += 1
        if progress is not None:
            progress(done[0], total)
    _append(images, block, filled)
    group.create_dataset("labels", data=np.array(labels, dtype=np.int64))
    return len(labels)


def _append(images: h5py.Dataset, block: np.ndarray, count: int) -> None:
    if count:
        start = images.shape[0]
        images.resize(start + count, axis=0)
        images[start:] = block[:count]
