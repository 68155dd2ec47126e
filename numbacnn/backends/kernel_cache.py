"""Where numba caches the compiled CPU drivers, keyed by the kernels' source.

numba's ``cache=True`` re-validates a cached function against its own source file
only; a change to an inlined body in ``numbacnn/kernels`` would silently reuse a
stale binary. So the CPU backend is compiled into a cache folder named after a hash
of every kernel source file and the backend files of cached drivers:
``$NUMBACNN_CACHE_DIR`` (default ``~/.cache/numbacnn``) ``/<hash>/``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from numba.core import config

_PACKAGE = Path(__file__).resolve().parent.parent
# Every backend file with a cached (``cache=True``) njit function: a new one belongs here, or an
# edited body of it could be served stale from the cache
CACHED_DRIVER_FILES = ("cpu.py", "cpu_conv.py", "cpu_direct.py", "cpu_pool.py",
                       "cpu_space_to_depth.py", "cpu_winograd.py", "cpu_winograd5.py",
                       "cpu_winograd43.py", "cpu_winograd43_pool.py",
                       "cpu_winograd35.py")
# Files outside kernels/ whose functions are compiled into the kernel bodies
# (kernels/pool.py jits geometry.windows_inside)
COMPILED_IN_FILES = ("geometry.py",)


def source_hash() -> str:
    """SHA-1 (first 16 hex digits) of numbacnn/kernels/*.py, the CPU backend's files of
    ``cache=True`` drivers (:data:`CACHED_DRIVER_FILES`) and the files compiled into
    the bodies (:data:`COMPILED_IN_FILES`)."""
    digest = hashlib.sha1()
    for path in (sorted((_PACKAGE / "kernels").glob("*.py"))
                 + [_PACKAGE / "backends" / name for name in CACHED_DRIVER_FILES]
                 + [_PACKAGE / name for name in COMPILED_IN_FILES]):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("NUMBACNN_CACHE_DIR") or Path.home() / ".cache" / "numbacnn")


def use_versioned_cache_dir() -> str:
    """Point numba's cache at this source version's folder; returns the previous setting.

    Call before the ``@njit(cache=True)`` decorators run (numba picks the folder at
    decoration time) and hand the result to :func:`restore` after them.
    """
    previous = config.CACHE_DIR
    folder = cache_root() / source_hash()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        config.CACHE_DIR = str(folder)
    except OSError:  # read-only home: numba falls back to its own locations
        pass
    return previous


def restore(previous: str) -> None:
    config.CACHE_DIR = previous


def writable() -> bool:
    """Whether numba can write this source version's cache folder (processes that
    compile for each other share it)."""
    folder = cache_root() / source_hash()
    return folder.is_dir() and os.access(folder, os.W_OK)


def holds(dispatcher: Any) -> bool:
    """Whether the numba function ``dispatcher`` (``cache=True``) is compiled in this
    process or can be loaded from its on-disk cache: its index file exists and belongs
    to the current source file (numba ignores one whose source timestamp differs)."""
    if dispatcher.signatures:
        return True
    try:
        return bool(dispatcher._cache._cache_file._load_index())
    except Exception:  # another numba's internals, an unreadable index: count it as missing
        return False
