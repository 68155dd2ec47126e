"""Batch normalization (Ioffe & Szegedy 2015) per channel, over the batch and the plane.

Arrays are N×C×P (P = H·W; a fully connected layer's N×units×1×1 has P = 1). For
channel c the M = N·P values x[n, c, p] have the batch mean μ and biased variance σ²:

  x̂ = (x − μ) / √(σ² + ε),   y = γ·x̂ + β,
  dx = γ/√(σ² + ε) · (dy − Σdy/M − x̂·Σ(dy·x̂)/M),   dγ = Σ dy·x̂,   dβ = Σ dy.

In inference the running statistics replace μ and σ², which are then constants: dx
keeps only its first term (``m_inv`` = 0 below instead of 1/M).

A ReLU after the layer can be fused into it (``relu`` = 1): y = max(γ·x̂ + β, 0), and
backward takes dy·[y > 0] for dy in every formula above, as the ReLU's own backward
would have handed it on; the ReLU's passes over memory are saved.

The per-channel sums are strided spans over the flat position j = n·P + p, so each
device splits them its own way: the CPU sums a whole channel in one call (step 1), the
GPU gives each of a block's threads every T-th position and adds the partial sums in
shared memory (``backends/cuda.py``). Sums are two-pass (mean first, then squared
deviations from it), which keeps float32 variances accurate when |μ| ≫ σ.
"""

import math

import numpy as np
from numba import njit

from numbacnn.kernels.index import split


@njit(inline="always")
def channel_sums_span(c, lo, hi, step, a, shift_a, b, shift_b, mask, masked):
    """(Σ u, Σ u·(b − shift_b)) with u = a − shift_a, over channel c of the N×C×P arrays
    a and b at the flat positions j = n·P + p = lo, lo + step, … < hi (hi ≤ N·P); when
    ``masked``, u is 0 wherever the N×C×P array ``mask`` is not above 0 (a fused ReLU's
    output)."""
    zero = np.float32(0.0)
    P = a.shape[2]
    s1 = np.float32(0.0)
    s2 = np.float32(0.0)
    n, p = split(lo, P)
    j = lo
    if step == 1:  # whole rows of P contiguous values (the CPU)
        while j < hi:
            stop = min(P, p + hi - j)
            row_a = a[n, c]
            row_b = b[n, c]
            row_mask = mask[n, c]
            for q in range(p, stop):
                u = row_a[q] - shift_a
                if masked and not row_mask[q] > zero:
                    u = zero
                s1 += u
                s2 += u * (row_b[q] - shift_b)
            j += stop - p
            n += 1
            p = 0
    else:
        while j < hi:
            u = a[n, c, p] - shift_a
            if masked and not mask[n, c, p] > zero:
                u = zero
            s1 += u
            s2 += u * (b[n, c, p] - shift_b)
            j += step
            p += step
            if p >= P:
                q, p = split(p, P)
                n += q
    return s1, s2


@njit(inline="always")
def batch_statistics_at(c, mean, inv_std, running_mean, running_var, first_mean, d1, d2,
                        count, momentum, eps):
    """Channel c's batch statistics from its M = ``count`` values: ``first_mean`` = Σx/M,
    d1 = Σ(x − first_mean), d2 = Σ(x − first_mean)². Writes μ and 1/√(σ² + ε), and moves
    the running mean and unbiased running variance: r ← momentum·r + (1 − momentum)·batch
    (PyTorch's momentum is 1 − this one). Needs count ≥ 2."""
    m = np.float32(count)
    shift = d1 / m  # the first pass's rounding error, taken out of μ and σ²
    var = d2 / m - shift * shift
    if var < np.float32(0.0):
        var = np.float32(0.0)
    mu = first_mean + shift
    mean[c] = mu
    inv_std[c] = np.float32(1.0) / math.sqrt(var + eps)
    keep = np.float32(1.0) - momentum
    running_mean[c] = momentum * running_mean[c] + keep * mu
    running_var[c] = momentum * running_var[c] + keep * (var * m / (m - np.float32(1.0)))


@njit(inline="always")
def inverse_std_at(c, inv_std, var, eps):
    """inv_std[c] = 1/√(var[c] + ε) (inference: from the running variance)."""
    inv_std[c] = np.float32(1.0) / math.sqrt(var[c] + eps)


@njit(inline="always")
def batchnorm_forward_at(t, lo, hi, y, x, mean, inv_std, gamma, beta, relu):
    """Elements lo … hi − 1 of row t = (n, c): y = γ·(x − μ)/√(σ² + ε) + β, then
    max(y, 0) when ``relu``."""
    C = x.shape[1]
    n, c = split(t, C)
    mu = mean[c]
    scale = gamma[c] * inv_std[c]
    shift = beta[c]
    zero = np.float32(0.0)
    for p in range(lo, hi):
        v = (x[n, c, p] - mu) * scale + shift
        y[n, c, p] = max(v, zero) if relu else v


@njit(inline="always")
def parameter_grads_at(c, dgamma, dbeta, inv_std, sum_dy, sum_dy_centered):
    """dβ[c] = Σ dy and dγ[c] = Σ dy·x̂ = Σ dy·(x − μ) / √(σ² + ε)."""
    dbeta[c] = sum_dy
    dgamma[c] = sum_dy_centered * inv_std[c]


@njit(inline="always")
def batchnorm_backward_at(t, lo, hi, dx, dy, x, y, mean, inv_std, gamma, dgamma, dbeta,
                          m_inv, relu):
    """Elements lo … hi − 1 of row t = (n, c) of dx, from the channel's dγ and dβ:
    dx = γ/√(σ² + ε) · (dy − dβ·m_inv − x̂·dγ·m_inv), m_inv = 1/M in training, 0 when the
    forward pass used the running statistics; with ``relu``, dy·[y > 0] for dy (y: the
    forward pass's output)."""
    C = x.shape[1]
    n, c = split(t, C)
    mu = mean[c]
    s = inv_std[c]
    scale = gamma[c] * s
    mean_dy = dbeta[c] * m_inv
    slope = dgamma[c] * m_inv * s  # per unit of (x − μ)
    zero = np.float32(0.0)
    for p in range(lo, hi):
        g = dy[n, c, p]
        if relu and not y[n, c, p] > zero:
            g = zero
        dx[n, c, p] = scale * (g - mean_dy - (x[n, c, p] - mu) * slope)
