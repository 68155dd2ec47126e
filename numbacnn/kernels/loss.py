"""Softmax cross-entropy, with label smoothing ε. logits and probs are N × K, labels
int64 (N,).

The forward body handles one row (sample) n: probabilities by the max-shifted
softmax and losses[n] = log Σ exp(z − max) − (z[label] − max). The backward body
gives dlogits[n, k] = (probs[n, k] − t[k]) / N for the targets t[k] = (1 − ε)·[k =
label] + ε/K (ε = 0: the one-hot label, bit for bit). With ε > 0 the smoothing body
turns the forward's losses into the smoothed ones, −Σ t[k] log p[k]: a separate pass,
so that ε = 0 runs the forward exactly as before.
"""

import math

import numpy as np
from numba import njit

from numbacnn.kernels.index import split


@njit(inline="always")
def softmax_cross_entropy_forward_at(n, probs, losses, logits, labels):
    K = logits.shape[1]
    m = logits[n, 0]
    for k in range(1, K):
        m = max(m, logits[n, k])
    total = np.float32(0.0)
    for k in range(K):
        e = math.exp(logits[n, k] - m)
        probs[n, k] = e
        total += e
    inv = np.float32(1.0) / total
    for k in range(K):
        probs[n, k] *= inv
    losses[n] = math.log(total) - (logits[n, labels[n]] - m)


@njit(inline="always")
def label_smoothing_at(n, losses, logits, labels, smoothing):
    """losses[n] += ε·(z[label] − mean_k z[k]): −Σ t[k] log p[k] = −log p[label] +
    ε·(log p[label] − mean_k log p[k]), and log p[label] − log p[k] = z[label] − z[k]."""
    K = logits.shape[1]
    total = np.float32(0.0)
    for k in range(K):
        total += logits[n, k]
    losses[n] += smoothing * (logits[n, labels[n]] - total / np.float32(K))


@njit(inline="always")
def softmax_cross_entropy_backward_at(i, dlogits, probs, labels, inv_n, smoothing):
    K = probs.shape[1]
    n, k = split(i, K)
    hit = np.float32(1.0) if labels[n] == k else np.float32(0.0)
    target = (np.float32(1.0) - smoothing) * hit + smoothing / np.float32(K)
    dlogits[n, k] = (probs[n, k] - target) * inv_n


@njit(inline="always")
def batch_stats_span(lo, hi, step, losses, logits, labels):
    """(Σ losses[n], number of rows whose largest logit is the label) for n = lo, lo +
    step, … < hi: the training loss and accuracy, summed where the logits are."""
    K = logits.shape[1]
    total = np.float32(0.0)
    correct = np.float32(0.0)
    for n in range(lo, hi, step):
        total += losses[n]
        best = 0
        for k in range(1, K):
            if logits[n, k] > logits[n, best]:
                best = k
        if best == labels[n]:
            correct += np.float32(1.0)
    return total, correct


# --- the GPU's forward: one block per row --------------------------------------------
# The body above walks a row alone; the GPU runs a block of threads per row instead,
# thread tid on columns tid, tid + step, … (neighbouring threads on neighbouring
# addresses), the block combining the max and the sum between the three spans.


@njit(inline="always")
def row_max_span(n, lo, step, logits):
    """max of logits[n, k] over k = lo, lo + step, … < K; −inf where there is none."""
    m = np.float32(-np.inf)
    for k in range(lo, logits.shape[1], step):
        m = max(m, logits[n, k])
    return m


@njit(inline="always")
def softmax_exp_span(n, lo, step, probs, logits, m):
    """probs[n, k] = exp(logits[n, k] − m) over the span; returns their sum."""
    total = np.float32(0.0)
    for k in range(lo, logits.shape[1], step):
        e = math.exp(logits[n, k] - m)
        probs[n, k] = e
        total += e
    return total


@njit(inline="always")
def softmax_finish_span(n, lo, step, probs, losses, logits, labels, m, total):
    """probs[n, k] /= total over the span (the row's max m and Σ exp given); the span
    starting at 0 also writes losses[n]."""
    inv = np.float32(1.0) / total
    for k in range(lo, logits.shape[1], step):
        probs[n, k] *= inv
    if lo == 0:
        losses[n] = math.log(total) - (logits[n, labels[n]] - m)
