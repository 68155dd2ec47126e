"""Float64 references of the optimizers' updates (SGD with momentum, Adam), written from
the papers' definitions, for tests/test_layers.py and the CUDA simulator's tests."""

from __future__ import annotations

import numpy as np


def sgd_momentum_update(w: np.ndarray, v: np.ndarray, g: np.ndarray, lr: float,
                        momentum: float, weight_decay: float) -> tuple[np.ndarray, np.ndarray]:
    """One step of SGD with momentum and L2 decay: v ← μv − lr(g + λw); w ← w + v."""
    w, v, g = (np.asarray(a, np.float64) for a in (w, v, g))
    v = momentum * v - lr * (g + weight_decay * w)
    return w + v, v


def adam_update(w: np.ndarray, m: np.ndarray, v: np.ndarray, g: np.ndarray, lr: float, t: int,
                beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                weight_decay: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step t (1, 2, …) of Adam, Algorithm 1 of Kingma & Ba, with λw added to the gradient.

    numbacnn (like the paper's §2 "efficient" form and TensorFlow) adds ε to the
    uncorrected √v: lr_t·m/(√v + ε) with lr_t = lr·√(1 − β2ᵗ)/(1 − β1ᵗ). That is
    Algorithm 1 with ε̂ = ε/√(1 − β2ᵗ) in place of ε, which is what is used here.
    """
    w, m, v, g = (np.asarray(a, np.float64) for a in (w, m, v, g))
    g = g + weight_decay * w
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
    eps_hat = eps / np.sqrt(1 - beta2**t)
    return w - lr * m_hat / (np.sqrt(v_hat) + eps_hat), m, v
