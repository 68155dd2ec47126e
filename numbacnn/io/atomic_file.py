"""Atomic file replacement: a save that fails midway never damages an existing file.

The content is written to a temporary file in the target's directory, flushed and
fsynced, then renamed over the target (``os.replace``, atomic on POSIX). On every
exit path (an error, a full disk, Ctrl-C, SIGTERM) the temporary file is removed; an
OSError becomes one clear NumbacnnError line. Ctrl-C and SIGTERM that arrive during a
save are held back until the save is finished or undone, so they cannot strand a
half-written temporary file; one that arrives while a save is finishing is delivered
after the rename, and the exception it raises names the file written in full
(:func:`written_before`). Only SIGKILL or a power cut can leave a temporary behind:
temporaries are named ``.NAME.tmp-PID-HOST-XXXXXXXX`` (HOST: a tag of the machine and
its process namespace) and every save removes the temporaries in its directory, of any
target, whose writer is gone (:func:`sweep_stale`).

A symlink as the target is followed: its target file is replaced and the link stays. A
target that exists but is not a regular file (a device, FIFO or socket) is refused
(:func:`resolved_target`); which existing files a command may replace at all is
:mod:`numbacnn.io.output_policy`'s.

HDF5 content is built in memory first (:func:`hdf5_bytes`): the HDF5 library then
never sees a disk error (on a full disk it used to print pages of errors and crash),
and the file is written by plain Python I/O. Used for dataset files
(``dataset_files.py``), model files (``model_file.py``), plots, ONNX graphs, saved
probabilities and benchmark results. :func:`check_writable` tells up front, before any
work, whether a file can be written at a path.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import re
import signal
import socket
import stat
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


# The random part of a temporary's name: tempfile.mkstemp's 8 characters
_RANDOM = "[a-z0-9_]{8}"
# .NAME.tmp-PID-HOST-XXXXXXXX (HOST: 8 hex digits, see _writer_host), .NAME.tmp-PID-XXXXXXXX
# of numbacnn before the host tag, .NAME.tmpXXXXXXXX before the pid
_TEMP_NAME = re.compile(
    rf"\.(?P<name>.+)\.tmp(?:-(?P<pid>\d+)-(?:(?P<host>[0-9a-f]{{8}})-)?)?{_RANDOM}")


def temp_prefix(path: Path) -> str:
    """The name prefix of this process's temporaries for ``path``."""
    return f".{path.name}.tmp-{os.getpid()}-{_writer_host()}-"


def resolved_target(path: str | Path, error: type[NumbacnnError] = NumbacnnError,
                    field: str | None = None) -> Path:
    """The file a write to ``path`` replaces: ``path`` with its symlinks followed. Raises
    ``error`` when that exists and is not a regular file (a directory, a device, a FIFO,
    a socket: renaming a file over it would replace it) or cannot be looked at."""
    given = Path(path)
    try:
        target = Path(os.path.realpath(given))
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, a symlink loop ...
        reason = getattr(exc, "strerror", None) or str(exc)
        raise error(f"{shown_path(given)}: cannot write there ({reason}); choose another "
                    "path", field=field) from None
    if stat.S_ISDIR(mode):
        raise error(f"{shown_path(given)}: is a directory; give a file name in it",
                    field=field)
    if not stat.S_ISREG(mode):
        link = f" (a link to {shown_path(target)})" if target != given.absolute() else ""
        raise error(f"{shown_path(given)}{link}: is {_file_kind(mode)}, not a regular file; "
                    "numbacnn writes only regular files: choose another path", field=field)
    return target


def replace_atomically(path: Path, write: Callable[[BinaryIO], object],
                       error: type[NumbacnnError], what: str) -> None:
    """Run ``write(binary file)`` on a temporary file, then rename it over ``path``
    (over its target when ``path`` is a symlink; a device, FIFO or socket is refused).

    ``what`` names the content in the error message ("model", "dataset"). A Ctrl-C or
    SIGTERM held back until the rename is raised after it, marked with the file that
    was written in full (:func:`written_before`).
    """
    given, path = Path(path), resolved_target(path, error)
    sweep_stale(path)
    renamed = False
    try:
        with _signals_deferred():
            try:
                fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path), dir=path.parent)
            except OSError as exc:
                raise error(f"{path}: cannot write there ({exc.strerror or exc}); choose "
                            "another path") from None
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as fh:
                    write(fh)
                    fh.flush()
                    os.fchmod(fh.fileno(), 0o666 & ~_umask())
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
                renamed = True
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
    except BaseException as exc:
        if renamed and not isinstance(exc, Exception):  # a held Ctrl-C or SIGTERM
            exc.numbacnn_written = [*written_before(exc), given]  # type: ignore[attr-defined]
        raise


def written_before(interrupt: BaseException) -> list[Path]:
    """The files written in full before ``interrupt`` (a Ctrl-C or SIGTERM that arrived
    during their save and was held back until it was done)."""
    return list(getattr(interrupt, "numbacnn_written", []))


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
    """Remove the temporaries that killed numbacnn processes left in ``path``'s directory,
    whatever file they were to replace; returns them.

    Only regular files named as numbacnn names its temporaries are looked at:
    ``.NAME.tmp-PID-HOST-XXXXXXXX`` of any NAME, and (for ``path``'s own NAME only,
    as their names are less distinctive) ``.NAME.tmp-PID-XXXXXXXX`` and
    ``.NAME.tmpXXXXXXXX`` of older numbacnn versions. One of this machine is stale when
    process PID no longer exists (this process's own and those of living processes are
    kept). One of another machine (a shared file system), whose process cannot be
    asked, and one of the pid-less form are stale once unchanged for an hour: a save
    writes its temporary without pause, so an hour untouched means its writer is gone.
    """
    removed = []
    try:
        candidates = list(path.parent.iterdir())
    except OSError:
        return removed
    now, host = time.time(), _writer_host()
    for candidate in candidates:
        match = _TEMP_NAME.fullmatch(candidate.name)
        if match is None:
            continue
        pid, writer_host = match.group("pid"), match.group("host")
        if writer_host is None and match.group("name") != path.name:
            continue
        try:
            info = candidate.lstat()
            if not stat.S_ISREG(info.st_mode):
                continue
            if pid is not None and writer_host in (None, host):  # a process here
                if int(pid) == os.getpid() or _alive(int(pid)):
                    continue
            elif now - info.st_mtime < _LEGACY_STALE_SECONDS:
                continue
            candidate.unlink()
            removed.append(candidate)
        except OSError:
            continue
    return removed


@functools.cache
def _writer_host() -> str:
    """8 hex digits naming this machine and its process-id namespace: a pid in a
    temporary's name means the process of that pid only where this tag is the same
    (not on another machine sharing the directory, nor in another container)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return hashlib.sha1(f"{socket.gethostname()}|{namespace}".encode()).hexdigest()[:8]


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "a special file"


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
