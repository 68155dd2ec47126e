"""Optimizer updates on flat parameter arrays (one element per index).

SGD with momentum and L2 weight decay, the lecture's AlexNet recipe:
  v ← μ·v − lr·(g + λ·w);   w ← w + v
Adam (Kingma & Ba) with L2 weight decay added to the gradient; ``lr_t`` already
carries the bias correction lr·√(1 − β2ᵗ)/(1 − β1ᵗ).
"""

import math

import numpy as np
from numba import njit


@njit(inline="always")
def sgd_momentum_at(i, w, v, g, lr, momentum, weight_decay):
    vi = momentum * v[i] - lr * (g[i] + weight_decay * w[i])
    v[i] = vi
    w[i] += vi


@njit(inline="always")
def adam_at(i, w, m, v, g, lr_t, beta1, beta2, eps, weight_decay):
    gi = g[i] + weight_decay * w[i]
    mi = beta1 * m[i] + (np.float32(1.0) - beta1) * gi
    vi = beta2 * v[i] + (np.float32(1.0) - beta2) * gi * gi
    m[i] = mi
    v[i] = vi
    w[i] -= lr_t * mi / (math.sqrt(vi) + eps)
