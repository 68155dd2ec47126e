"""Weight initializers from the lecture, on the host (numpy), float32.

- ``zeros``: all zero (fine for biases; for weights it leaves every unit the same).
- ``normal``: small random numbers, Gaussian with std 0.01.
- ``he``: Gaussian with std sqrt(2/n), n = fan-in (He et al. 2015; for ReLU nets).
- ``xavier``: uniform on ±sqrt(6/(fan_in + fan_out)) (Glorot & Bengio 2010).
"""

from __future__ import annotations

import numpy as np

from numbacnn.errors import SpecError

INITIALIZERS = ("zeros", "normal", "he", "xavier")


def initialize(shape: tuple[int, ...], fan_in: int, fan_out: int, method: str,
               rng: np.random.Generator) -> np.ndarray:
    """A float32 array of ``shape`` drawn by ``method`` (one of INITIALIZERS)."""
    if method == "zeros":
        return np.zeros(shape, np.float32)
    if method == "normal":
        return (rng.standard_normal(shape) * 0.01).astype(np.float32)
    if method == "he":
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    if method == "xavier":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, shape).astype(np.float32)
    raise SpecError(f"unknown initializer {method!r}: choose one of {', '.join(INITIALIZERS)}")
