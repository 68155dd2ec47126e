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
from dataclasses import dataclass
from pathlib import Path

from numbacnn.errors import NumbacnnError, shown_path

# Largest integer a spec value or input dimension may have: more than any array a
# machine can hold, and small enough that products of a few of them stay exact.
MAX_INT = 2**31 - 1


@dataclass(frozen=True)
class Bounds:
    """The valid values of a number x: ``low ≤ x ≤ high``, ``<`` at an end that is open,
    no limit at an end that is None; NaN is never valid.

    Declared once beside the value it bounds (a setting, a parameter) and read by its
    checks and by the CLI, which builds its option types from it.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, x: float) -> bool:
        if x != x:  # NaN (math.isnan would overflow on a huge int)
            return False
        if self.low is not None and (x < self.low or (self.low_open and x == self.low)):
            return False
        return self.high is None or x < self.high or (not self.high_open and x == self.high)

    def text(self) -> str:
        """The bounds in words for a message: "≥ 1", "in [0, 1)", "> 0 and finite"."""
        low = (None if self.low is None
               else (">" if self.low_open else "≥") + f" {_number(self.low)}")
        if self.high is None:
            return low or "a number"
        if self.high == math.inf and self.high_open:
            return f"{low} and finite" if low else "finite"
        if self.low is None:
            return ("<" if self.high_open else "≤") + f" {_number(self.high)}"
        return (f"in {'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}"
                f"{')' if self.high_open else ']'}")

    def check(self, name: str, x: float, error: type[NumbacnnError]) -> None:
        """Raise ``error`` (its ``field`` is ``name``) unless x lies within the bounds."""
        if x not in self:
            raise error(f"{name} must be {self.text()}, got {x}", field=name)


def _number(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


# Seeds of every random choice (weights, splits, subsets): numpy takes any integer ≥ 0;
# this one fits the signed 64-bit integers of the files that record it.
SEEDS = Bounds(0, 2**63 - 1)


def human_bytes(n: float) -> str:
    """1161600 → '1.1 MiB' (binary prefixes, up to EiB; a damaged header's 2**8000
    is 'more than 1024 EiB')."""
    if n >= 2**70:
        return "more than 1024 EiB"
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


def check_memory(nbytes: int, what: str, error: type[NumbacnnError], hint: str,
                 field: str | None = None) -> None:
    """Raise ``error`` when ``nbytes`` exceed the memory available now.

    ``what`` says what needs it ("the network's weights"), ``hint`` how to fix it,
    ``field`` which value to change (the error's ``field``), if one.
    """
    free = available_memory()
    if nbytes > free:
        raise error(f"{what} would need {human_bytes(nbytes)} of memory but only "
                    f"{human_bytes(free)} is available; {hint}", field=field)


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


# ----------------------------------------------------------------------------- user files
# Bounds of what a file may claim, checked by its reader before anything is allocated.

# Classes of a dataset: its labels index them, and tables, counts and class-name
# lists grow with them (a label of 2**40 would ask for 2**40 names). Ten times
# ImageNet-1k's 1000; the datasets numbacnn trains on have 10 to 1000.
MAX_CLASSES = 10_000

# A benchmark result file (numbacnn bench --output, bench/suite.py --json): a result of
# a few networks is tens of KiB; numbacnn plot bench draws at most MAX_BENCH_NETWORKS
# networks and MAX_BENCH_ROWS per-layer bars in all (each bar is about 32 pixels of
# the picture's height, whose limit is 10,000 pixels).
MAX_BENCH_RESULT_BYTES = 4 * 2**20
MAX_BENCH_NETWORKS = 16
MAX_BENCH_ROWS = 256
# Milliseconds, counts and sizes in a benchmark result: finite, ≥ 0 and at most this
# (a week in ms; far beyond any real step, small enough that sums stay exact in float64)
MAX_BENCH_NUMBER = 1e12

# The normalization a model file stores (units of pixel value / 255): datasets give a
# mean in [0, 1] and a std in (0, 0.5] (1 for a constant channel). Wider bounds take any
# hand-made model; within them (x / 255 − mean) / std of a uint8 image stays finite in
# float32 (its largest value is about 1e13).
NORMALIZATION_MEAN = Bounds(-1e3, 1e3)
NORMALIZATION_STD = Bounds(1e-10, 1e3)

# Largest |weight| (and running statistic) an exported model may hold: trained weights
# stay below 100; at 3e38 a runtime's first product already overflows float32 into inf
# and NaN.
MAX_ABS_EXPORTED_VALUE = 1e8


def float32_value(x: float) -> float:
    """``x`` as the float32 kernels compute with: 0 for 1e-300 and for subnormals such
    as 1e-45 (GPUs flush those to zero), inf for 1e300; without numpy's warning."""
    import numpy as np

    with np.errstate(over="ignore", under="ignore"):
        value = float(np.float32(x))
    return 0.0 if abs(value) < float(np.finfo(np.float32).tiny) else value
