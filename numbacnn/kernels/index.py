"""Index arithmetic shared by the bodies: a flat index split into its two coordinates.

Bodies called once per element on the GPU pay their index divisions per element. A
signed 64-bit division with Python's floor semantics is a long instruction sequence on
a GPU; an unsigned 32-bit one is a few instructions. Every index split here is
non-negative and below 2³² (``backends/cuda.py`` refuses larger launches), so the
quotient and remainder are computed in unsigned 32-bit arithmetic and handed back as
ordinary integers (numba narrows the division; the CPU pays it once per plane anyway).
"""

import numpy as np
from numba import njit


@njit(inline="always")
def split(i, n):
    """(i // n, i % n) for 0 ≤ i < 2³² and 0 < n < 2³²."""
    q = np.uint32(i) // np.uint32(n)
    return np.int64(q), np.int64(np.uint32(np.uint32(i) - np.uint32(q * np.uint32(n))))


@njit(inline="always")
def u64(i):
    """i as an unsigned 64-bit index: the CPU's row loops over M's columns ran 2× slower
    with int64 indices (``winograd43_rows``)."""
    return np.uint64(i)
