"""Numeric checks shared by the tests against the float64 references: central differences,
a magnitude-scaled closeness assertion, and inputs drawn away from ties and kinks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def numerical_gradient(f: Callable[[np.ndarray], float], a: np.ndarray,
                       h: float = 1e-5) -> np.ndarray:
    """Central differences (f(a + h·e_i) − f(a − h·e_i)) / 2h of a scalar f, in float64.

    ``a`` is perturbed in place (one element at a time) and restored; f must read it.
    """
    assert a.dtype == np.float64
    grad = np.zeros_like(a)
    for index in np.ndindex(a.shape):
        keep = a[index]
        a[index] = keep + h
        up = f(a)
        a[index] = keep - h
        down = f(a)
        a[index] = keep
        grad[index] = (up - down) / (2 * h)
    return grad


def assert_close(actual: Any, expected: Any, rtol: float = 1e-4, atol_scale: float = 1e-5,
                 what: str = "") -> None:
    """allclose with atol = atol_scale · max|expected| (1 when expected is all zero).

    A float32 result summing many terms carries an absolute error proportional to the
    magnitude of those terms, so near-zero entries need an atol of that scale.
    """
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol_scale * (scale or 1.0),
                               err_msg=what)


def distinct_values(rng: np.random.Generator, shape: tuple[int, ...], gap: float = 0.01,
                    ) -> np.ndarray:
    """float32 values in random order, any two at least ``gap`` apart (no max ties)."""
    n = int(np.prod(shape))
    values = (np.arange(n) - n / 2) * gap + rng.uniform(0, gap / 4, n)
    return rng.permutation(values).reshape(shape).astype(np.float32)


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...], low: float = 0.05,
                   high: float = 2.0) -> np.ndarray:
    """float32 values with low ≤ |x| ≤ high and random signs (no kink of relu/elu at 0)."""
    magnitude = rng.uniform(low, high, shape)
    return (magnitude * rng.choice([-1.0, 1.0], shape)).astype(np.float32)
