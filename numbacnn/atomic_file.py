"""Atomic file replacement: a save that fails midway never damages an existing file.

The content is written to a temporary file in the target's directory, flushed to disk
(fsync) and renamed over the target (``os.replace``, atomic on POSIX). On any error
the temporary file is removed; an OSError (full disk, permissions) becomes one clear
NumbacnnError line. Used for dataset files (``data.py``) and model files
(``model_io.py``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from numbacnn.errors import NumbacnnError


def replace_atomically(path: Path, write: Callable[[Path], object],
                       error: type[NumbacnnError], what: str) -> None:
    """Run ``write(temporary path)``, then rename the result over ``path``.

    ``what`` names the content in the error message ("model", "dataset").
    """
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp", dir=path.parent)
    except OSError as exc:
        raise error(f"{path}: cannot write there ({exc.strerror}); choose another path") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            kept = "the existing file is unchanged" if path.exists() else "nothing was written"
            raise error(f"{path}: cannot write the {what} ({exc.strerror or exc}); "
                        f"{kept}: free disk space or choose another path") from None
        raise
    _fsync(path.parent, best_effort=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path, best_effort: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        if not best_effort:
            raise
