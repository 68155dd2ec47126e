"""ONNX external data for ``numbacnn import``: the bytes of a tensor kept in a file
beside the ``.onnx`` (what PyTorch's exporter writes, ``model.onnx.data``).

The file is named by the model, so it is read only where that is safe: the location
must be a relative path inside the model's own folder (no absolute path, no ``..``,
no symbolic link that leads out of the folder), a regular file (a FIFO or device is
refused before it is opened, and opening never blocks), and the tensor's offset and
length must be whole byte counts that lie inside the file and match the bytes its
dimensions claim. The tensors' bytes together are held to what one ``.onnx`` file can
hold (:data:`MAX_EXTERNAL_BYTES`), each to the memory available. Any problem raises
:class:`~numbacnn.io.onnx_graph.OnnxImportError` in one line naming the tensor.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from numbacnn.errors import NumbacnnError, excerpt, shown_path
from numbacnn.limits import check_memory, human_bytes

MAX_EXTERNAL_BYTES = 2**31  # all tensors together: what a single .onnx file holds
_KEYS = ("location", "offset", "length", "checksum")  # ONNX's external_data keys
_NOT_REGULAR = ("is not a regular file (a directory, FIFO, socket or device); give the "
                ".data file the exporter wrote")
_COUNT = re.compile(r"[0-9]{1,19}")  # a byte count: digits only, no sign, < 2**63


@dataclass
class ExternalData:
    """Reads external tensor data for the model file at ``model`` (its folder bounds
    every location); ``error`` is the exception class, ``total`` the bytes read so far,
    ``files`` the real paths read (inputs a command must not write)."""

    model: Path
    error: type[NumbacnnError]
    total: int = 0
    files: set[str] = field(default_factory=set)

    def read(self, tensor: Any, what: str, nbytes: int) -> bytes:
        """The ``nbytes`` bytes of ``tensor`` (a TensorProto whose data is external)."""
        where = f"{shown_path(self.model)}: {what}"
        entries = {e.key: e.value for e in tensor.external_data}
        unknown = sorted(set(entries) - set(_KEYS))
        if unknown or "location" not in entries:
            reason = (f"an unknown external_data key {excerpt(unknown[0])}" if unknown
                      else "no location")
            raise self.error(f"{where} keeps its data in an external file but names "
                             f"{reason}; the file is damaged")
        location = entries["location"]
        path = self._inside(where, location)
        offset = self._count(where, entries, "offset", 0)
        fd = self._open(where, location, path)
        try:
            size = os.fstat(fd).st_size
            length = self._count(where, entries, "length", max(size - offset, 0))
            if offset + length > size:
                raise self.error(f"{where}: bytes {offset:,}…{offset + length:,} of the "
                                 f"external file {excerpt(location)} lie past its end "
                                 f"({size:,} bytes); the data file is damaged or truncated")
            if length != nbytes:
                raise self.error(f"{where}: its external data is {length:,} bytes but its "
                                 f"dimensions claim {nbytes:,}; the file is damaged")
            if self.total + nbytes > MAX_EXTERNAL_BYTES:
                raise self.error(f"{where}: the external data passes "
                                 f"{human_bytes(MAX_EXTERNAL_BYTES)} in all, more than "
                                 "numbacnn imports")
            check_memory(2 * nbytes, f"reading {what}", self.error,
                         "use a machine with more memory")
            data = _read_exactly(fd, offset, length)
        except OSError as exc:
            raise self.error(f"{where}: cannot read its external file {excerpt(location)} "
                             f"({exc.strerror}); check its permissions") from None
        finally:
            os.close(fd)
        if len(data) != length:
            raise self.error(f"{where}: the external file {excerpt(location)} ended early; "
                             "it changed while being read")
        self.total += nbytes
        self.files.add(path)
        return data

    def _inside(self, where: str, location: str) -> str:
        """The real path of ``location`` when it names a file in the model's folder."""
        shown = excerpt(location)
        folder = "numbacnn reads external data only from files in the model's own folder"
        if not location or "\0" in location:
            raise self.error(f"{where} keeps its data in an external file named {shown}, "
                             "which is no file name; the file is damaged")
        if (PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute()
                or location.startswith(("/", "\\")) or PureWindowsPath(location).drive):
            raise self.error(f"{where} keeps its data in the external file {shown}, an "
                             f"absolute path; {folder}")
        if ".." in PureWindowsPath(location).parts:  # both separators split it
            raise self.error(f"{where} keeps its data in the external file {shown}, which "
                             f"leaves the model's folder (..); {folder}")
        base = os.path.realpath(self.model.parent)
        real = os.path.realpath(os.path.join(base, location))
        if os.path.commonpath([base, real]) != base:
            raise self.error(f"{where} keeps its data in the external file {shown}, a "
                             f"symbolic link that leads out of the model's folder; {folder}")
        return real

    def _count(self, where: str, entries: dict[str, str], key: str, default: int) -> int:
        value = entries.get(key)
        if value is None:
            return default
        if not _COUNT.fullmatch(value.strip()):
            raise self.error(f"{where}: its external data's {key} {excerpt(value)} is not a "
                             "byte count (a whole number ≥ 0); the file is damaged")
        return int(value)

    def _open(self, where: str, location: str, path: str) -> int:
        """A descriptor of ``path`` when it is a regular file (checked before opening,
        and again on the open file, which O_NONBLOCK keeps from waiting on a FIFO)."""
        shown = f"{where}: its external file {excerpt(location)}"
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                raise self.error(f"{shown} {_NOT_REGULAR}")
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                         | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            raise self.error(f"{shown} does not exist; keep the .data file the exporter "
                             "wrote beside the .onnx file") from None
        except OSError as exc:
            raise self.error(f"{shown} cannot be opened ({exc.strerror}); check its "
                             "permissions") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise self.error(f"{shown} {_NOT_REGULAR}")
        return fd


def _read_exactly(fd: int, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` (fewer only when the file shrank meanwhile)."""
    os.lseek(fd, offset, os.SEEK_SET)
    parts, left = [], length
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 26))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)
