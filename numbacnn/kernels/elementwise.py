"""Elementwise bodies on flat arrays: activations, their gradients, bias, products.

Forward bodies write y[i] from x[i]; backward bodies write dx[i] from dy[i] and
whichever of x[i] or y[i] gives the derivative most cheaply.
"""

import math

import numpy as np
from numba import njit

from numbacnn.kernels.index import split


@njit(inline="always")
def relu_forward_at(i, y, x):
    y[i] = max(x[i], np.float32(0.0))


@njit(inline="always")
def relu_backward_at(i, dx, dy, x):
    dx[i] = dy[i] if x[i] > np.float32(0.0) else np.float32(0.0)


@njit(inline="always")
def leaky_relu_forward_at(i, y, x, alpha):
    v = x[i]
    y[i] = v if v > np.float32(0.0) else alpha * v


@njit(inline="always")
def leaky_relu_backward_at(i, dx, dy, x, alpha):
    dx[i] = dy[i] if x[i] > np.float32(0.0) else alpha * dy[i]


@njit(inline="always")
def sigmoid_forward_at(i, y, x):
    v = x[i]
    if v >= np.float32(0.0):
        y[i] = np.float32(1.0) / (np.float32(1.0) + math.exp(-v))
    else:
        e = math.exp(v)
        y[i] = e / (np.float32(1.0) + e)


@njit(inline="always")
def sigmoid_backward_at(i, dx, dy, y):
    dx[i] = dy[i] * y[i] * (np.float32(1.0) - y[i])


@njit(inline="always")
def tanh_forward_at(i, y, x):
    y[i] = math.tanh(x[i])


@njit(inline="always")
def tanh_backward_at(i, dx, dy, y):
    dx[i] = dy[i] * (np.float32(1.0) - y[i] * y[i])


@njit(inline="always")
def elu_forward_at(i, y, x, alpha):
    v = x[i]
    y[i] = v if v > np.float32(0.0) else alpha * (math.exp(v) - np.float32(1.0))


@njit(inline="always")
def elu_backward_at(i, dx, dy, x, y, alpha):
    dx[i] = dy[i] if x[i] > np.float32(0.0) else dy[i] * (y[i] + alpha)


@njit(inline="always")
def gelu_forward_at(i, y, x):
    """GELU, exact: x·Φ(x) = x/2 · (1 + erf(x/√2))."""
    v = x[i]
    y[i] = np.float32(0.5) * v * (np.float32(1.0) + math.erf(v * np.float32(0.70710678)))


@njit(inline="always")
def gelu_backward_at(i, dx, dy, x):
    """dGELU/dx = Φ(x) + x·φ(x), φ(x) = exp(−x²/2)/√(2π)."""
    v = x[i]
    cdf = np.float32(0.5) * (np.float32(1.0) + math.erf(v * np.float32(0.70710678)))
    pdf = np.float32(0.39894228) * math.exp(np.float32(-0.5) * v * v)
    dx[i] = dy[i] * (cdf + v * pdf)


@njit(inline="always")
def multiply_at(i, out, a, b):
    """out[i] = a[i]·b[i] (dropout's backward: dy times the kept-and-scaled mask)."""
    out[i] = a[i] * b[i]


@njit(inline="always")
def add_bias_rows_at(i, y, b):
    """y[n, o] += b[o] for a 2-D y of N × units (dense layer bias)."""
    units = y.shape[1]
    n, o = split(i, units)
    y[n, o] += b[o]


@njit(inline="always")
def fill_at(i, out, value):
    out[i] = value
