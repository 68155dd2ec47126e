"""Inverted dropout with a counter-based random number generator.

The uniform number for element i is a SplitMix64 hash of (seed, i): the same on
every device, needs no per-thread RNG state, and makes runs repeatable. A unit is
kept when u ≥ p and then scaled by 1/(1 − p), so inference needs no rescaling.
"""

import numpy as np
from numba import njit


@njit(inline="always")
def uniform_at(seed, i):
    """A float32 in [0, 1) from 64-bit (seed, i) with SplitMix64's finalizer."""
    z = np.uint64(seed) + (np.uint64(i) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.float32(z >> np.uint64(40)) * np.float32(1.0 / 16777216.0)


@njit(inline="always")
def dropout_forward_at(i, y, mask, x, p, scale, seed):
    """mask[i] = scale (kept) or 0 (dropped); y[i] = x[i]·mask[i]."""
    m = scale if uniform_at(seed, i) >= p else np.float32(0.0)
    mask[i] = m
    y[i] = x[i] * m
