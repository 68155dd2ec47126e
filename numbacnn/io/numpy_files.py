"""NumPy files read safely: ``.npy`` arrays and ``.npz`` archives, every header checked
(no pickled objects, a shape the file and the memory can hold) before data is read.

Used for dataset ``.npz`` files (:mod:`numbacnn.io.dataset_files`) and for images to
predict on (:mod:`numbacnn.io.images`). Problems raise DataError naming the file.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from numbacnn.errors import DataError
from numbacnn.io.hdf5 import first_line, shown
from numbacnn.limits import array_bytes, check_memory, check_regular_file


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
            f"{path}: not a readable .npz file ({first_line(exc)}); write it with np.savez "
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
        raise DataError(f"{path}: not a readable .npy file ({first_line(exc)}); write it "
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
        raise DataError(f"{where}: its header declares shape {shown(shape)}, which no "
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
