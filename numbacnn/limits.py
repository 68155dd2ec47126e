"""Limits checked before anything is allocated or opened, so hostile input fails early.

Sizes come from users (spec text, option values) and from file headers (HDF5 dataset
shapes, ``.npy`` headers, IDX dimensions) that may claim far more than the file holds.
Every such size is checked here against a fixed bound or the memory the machine has
free, and the error says how much memory it would need. Paths are checked to be
regular files before they are opened: opening a FIFO or a device would block.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from numbacnn.errors import NumbacnnError, shown_path

# Largest integer a spec value or input dimension may have: more than any array a
# machine can hold, and small enough that products of a few of them stay exact.
MAX_INT = 2**31 - 1


def human_bytes(n: float) -> str:
    """1161600 → '1.1 MiB' (binary prefixes, up to EiB)."""
    for unit, scale in (("EiB", 2**60), ("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30),
                        ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable on Linux)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):  # pragma: no cover - non-POSIX
        return 2**63 - 1


def array_bytes(shape: Iterable[int], itemsize: int) -> int:
    """Exact bytes of an array (Python integers: no int64 overflow)."""
    return math.prod(int(d) for d in shape) * int(itemsize)


def check_memory(nbytes: int, what: str, error: type[NumbacnnError], hint: str) -> None:
    """Raise ``error`` when ``nbytes`` exceed the memory available now.

    ``what`` says what needs it ("the network's weights"), ``hint`` how to fix it.
    """
    free = available_memory()
    if nbytes > free:
        raise error(f"{what} would need {human_bytes(nbytes)} of memory but only "
                    f"{human_bytes(free)} is available; {hint}")


def exists(path: Path) -> bool:
    """Path.exists() that answers False instead of raising for a name the OS refuses
    (too long, an embedded NUL)."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def check_regular_file(path: Path, what: str, error: type[NumbacnnError],
                       hint: str = "check the path") -> None:
    """Raise ``error`` unless ``path`` is an existing regular file (not a directory, a
    FIFO or a device, whose open or read would block or never end)."""
    shown = shown_path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error(f"{shown}: no such {what}; {hint}") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise error(f"{shown}: cannot use it as a {what} ({reason}); {hint}") from None
    if stat.S_ISDIR(mode):
        raise error(f"{shown}: is a directory, not a {what}; {hint}")
    if not stat.S_ISREG(mode):
        raise error(f"{shown}: is not a regular file (a FIFO, socket or device), not a "
                    f"{what}; {hint}")
