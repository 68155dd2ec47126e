"""Atomic file replacement: a save that fails midway never damages an existing file.

The content is written to a temporary file in the target's directory, flushed and
fsynced, then renamed over the target (``os.replace``, atomic on POSIX). On every
exit path (an error, a full disk, Ctrl-C, SIGTERM) the temporary file is removed; an
OSError becomes one clear NumbacnnError line. Ctrl-C and SIGTERM that arrive during a
save are held back until the save is finished or undone, so they cannot strand a
half-written temporary file. Only SIGKILL or a power cut can leave one behind;
temporaries are named ``.NAME.tmp-PID-XXXXXXXX`` and the next save into the same
directory removes those whose process is gone (:func:`sweep_stale`).

HDF5 content is built in memory first (:func:`hdf5_bytes`): the HDF5 library then
never sees a disk error (on a full disk it used to print pages of errors and crash),
and the file is written by plain Python I/O. Used for dataset files
(``dataset_files.py``), model files (``model_file.py``), plots, ONNX graphs, saved
probabilities and benchmark results. :func:`check_writable` tells up front, before any
work, whether a file can be written at a path.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from numbacnn.errors import NumbacnnError, shown_path


class WriteError(NumbacnnError):
    """A file cannot be written at the path asked for (no such directory, a directory,
    no permission)."""


# Temporaries of an older numbacnn had no pid (".NAME.tmpXXXXXXXX"): removed once
# they are this old, as no save takes that long to write its file.
_LEGACY_STALE_SECONDS = 3600


def temp_prefix(path: Path) -> str:
    """The name prefix of this process's temporaries for ``path``."""
    return f".{path.name}.tmp-{os.getpid()}-"


def replace_atomically(path: Path, write: Callable[[BinaryIO], object],
                       error: type[NumbacnnError], what: str) -> None:
    """Run ``write(binary file)`` on a temporary file, then rename it over ``path``.

    ``what`` names the content in the error message ("model", "dataset").
    """
    path = Path(path)
    sweep_stale(path)
    with _signals_deferred():
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path), dir=path.parent)
        except OSError as exc:
            raise error(f"{path}: cannot write there ({exc.strerror or exc}); choose another "
                        "path") from None
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fchmod(fh.fileno(), 0o666 & ~_umask())
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(exc, OSError):
                kept = ("the existing file is unchanged" if _exists(path)
                        else "nothing was written")
                raise error(f"{path}: cannot write the {what} ({exc.strerror or exc}); "
                            f"{kept}: free disk space or choose another path") from None
            raise
    _fsync_directory(path.parent)


def check_writable(path: str | Path, field: str = "out",
                   error: type[NumbacnnError] = WriteError, example: str = "out") -> Path:
    """Raise ``error`` unless a file can be written at ``path`` (checked up front by
    creating and removing a probe file in its directory). ``field`` names the value that
    gave the path (the error's ``field``); a caller writing a file of its own kind passes
    its error and an ``example`` file name (model files: ModelFileError, "model.h5")."""
    path = Path(path)
    directory = path.parent
    try:
        os.stat(path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, a loop ...
        reason = getattr(exc, "strerror", None) or str(exc)
        raise error(f"{shown_path(path)}: cannot write there ({reason}); choose "
                    "another path", field=field) from None
    if path.is_dir():
        raise error(f"{path}: is a directory; give a file name such as {path / example}",
                    field=field)
    if not directory.is_dir():
        raise error(f"{path}: directory {directory} does not exist; create it "
                    f"(mkdir -p {directory}) or choose another path", field=field)
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.probe", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise error(f"{path}: cannot write in {directory} ({exc.strerror}); "
                    "choose another path", field=field) from None
    return path


def hdf5_bytes(fill: Callable[[Any], object]) -> memoryview:
    """The bytes of an HDF5 file built in memory by ``fill(h5py.File)``."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        fill(f)
    return buffer.getbuffer()


def sweep_stale(path: Path) -> list[Path]:
    """Remove temporaries of ``path`` left by killed numbacnn processes; returns them.

    A temporary ``.NAME.tmp-PID-…`` is stale when process PID no longer exists; one of
    the older pid-less form ``.NAME.tmpXXXXXXXX`` when it is over an hour old.
    """
    pattern = re.compile(rf"\.{re.escape(path.name)}\.tmp(?:-(\d+)-)?[A-Za-z0-9_]{{6,}}")
    removed = []
    try:
        candidates = list(path.parent.iterdir())
    except OSError:
        return removed
    now = time.time()
    for candidate in candidates:
        match = pattern.fullmatch(candidate.name)
        if match is None:
            continue
        pid = match.group(1)
        try:
            if pid is not None:
                if int(pid) == os.getpid() or _alive(int(pid)):
                    continue
            elif now - candidate.lstat().st_mtime < _LEGACY_STALE_SECONDS:
                continue
            candidate.unlink()
            removed.append(candidate)
        except OSError:
            continue
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process: leave its files alone
    return True


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold back SIGINT and SIGTERM until the block ends, then deliver the first one
    to the handler that was in place (only the main thread can install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        received.append(signum)

    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, hold)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        if received:
            signal.raise_signal(received[0])


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; best effort (some file systems refuse it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
