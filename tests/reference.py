"""Naive float64 numpy references for every layer and the loss (the optimizers':
tests/reference_optim.py).

Written from the textbook definitions, independently of numbacnn's kernels: no im2col,
no gather-form backward passes. Convolution is a direct sum over the F×F filter taps
(one einsum per tap), pooling and LRN loop over windows and scatter their gradients,
and everything is computed in float64 so the float32 layers can be checked against it.

Every ``*_backward`` takes the gradient ``dy`` of a scalar loss with respect to the
output and returns the gradients with respect to the inputs (and parameters).

The end of the module holds the test glue: :func:`reference_forward` and
:func:`reference_backward` map a numbacnn layer object to these functions through
:data:`REFERENCES` (one entry per layer kind, called with the layer's options; every
case of tests/layer_cases.py but the loss needs one, tests/test_layer_cases.py checks).
Central differences and the closeness assertion are in tests/numeric_checks.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from layer_cases import LAYER_CASES
from pool_reference import (
    PoolGeometry,
    avg_pool_backward,
    avg_pool_forward,
    max_pool_backward,
    max_pool_forward,
)
from reference_conv import conv2d_backward, conv2d_forward

# --- convolution: tests/reference_conv.py ----------------------------------------------


def _out_size(size: int, window: int, stride: int, pad: int) -> int:
    span = size + 2 * pad - window
    assert span >= 0 and span % stride == 0, "reference: the window does not tile the input"
    return span // stride + 1


def _pad(x: np.ndarray, pad: int) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


# --- pooling ----------------------------------------------------------------------------


# float64 pooling over padded, rounded and rectangular windows: tests/pool_reference.py


# --- local response normalization -------------------------------------------------------


def _lrn_window(c: int, C: int, size: int) -> slice:
    """Channels c − size//2 … c + (size − 1)//2, clipped to the C channels (Caffe/PyTorch)."""
    return slice(max(0, c - size // 2), min(C - 1, c + (size - 1) // 2) + 1)


def _lrn_scale(x: np.ndarray, size: int, alpha: float, k: float) -> np.ndarray:
    C = x.shape[1]
    scale = np.empty_like(x)
    for c in range(C):
        scale[:, c] = k + alpha / size * (x[:, _lrn_window(c, C, size)] ** 2).sum(axis=1)
    return scale


def lrn_forward(x: np.ndarray, size: int, alpha: float, beta: float, k: float) -> np.ndarray:
    """y[c] = x[c] · (k + alpha/size · Σ_window x²)^(−beta)."""
    x = np.asarray(x, np.float64)
    return x * _lrn_scale(x, size, alpha, k) ** -beta


def lrn_backward(x: np.ndarray, dy: np.ndarray, size: int, alpha: float, beta: float,
                 k: float) -> np.ndarray:
    """Chain rule through y[c] = x[c]·scale[c]^−β: the direct term plus, for every channel c,
    dy[c]·x[c]·(−β)·scale[c]^(−β−1)·(2·alpha/size)·x[j] scattered to each j of c's window."""
    x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    C = x.shape[1]
    scale = _lrn_scale(x, size, alpha, k)
    dx = dy * scale ** -beta
    for c in range(C):
        coef = dy[:, c] * x[:, c] * -beta * scale[:, c] ** (-beta - 1) * (2 * alpha / size)
        window = _lrn_window(c, C, size)
        dx[:, window] += coef[:, None] * x[:, window]
    return dx


# --- dense and flatten -----------------------------------------------------------------


def dense_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """y[n, o] = Σ_i w[o, i]·x[n, i] + b[o], x flattened per sample; output N×units×1×1."""
    x2 = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.einsum("ni,oi->no", x2, np.asarray(w, np.float64)) + np.asarray(b, np.float64)
    return y[:, :, None, None]


def dense_backward(x: np.ndarray, w: np.ndarray,
                   dy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx shaped like x, dw, db)."""
    x = np.asarray(x, np.float64)
    x2 = x.reshape(len(x), -1)
    dy2 = np.asarray(dy, np.float64).reshape(len(x), -1)
    w = np.asarray(w, np.float64)
    dx = np.einsum("no,oi->ni", dy2, w).reshape(x.shape)
    return dx, np.einsum("no,ni->oi", dy2, x2), dy2.sum(axis=0)


def flatten_forward(x: np.ndarray) -> np.ndarray:
    """N×C×H×W → N×(C·H·W)×1×1, in C order."""
    x = np.asarray(x, np.float64)
    return x.reshape(len(x), -1, 1, 1)


def flatten_backward(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return np.asarray(dy, np.float64).reshape(np.shape(x))


# --- activations ------------------------------------------------------------------------


def relu_forward(x: np.ndarray) -> np.ndarray:
    """max(x, 0)."""
    x = np.asarray(x, np.float64)
    return np.where(x > 0, x, 0.0)


def relu_backward(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dy where x > 0, else 0."""
    return np.where(np.asarray(x) > 0, np.asarray(dy, np.float64), 0.0)


def leaky_relu_forward(x: np.ndarray, alpha: float) -> np.ndarray:
    """x for x > 0, alpha·x otherwise."""
    x = np.asarray(x, np.float64)
    return np.where(x > 0, x, alpha * x)


def leaky_relu_backward(x: np.ndarray, dy: np.ndarray, alpha: float) -> np.ndarray:
    dy = np.asarray(dy, np.float64)
    return np.where(np.asarray(x) > 0, dy, alpha * dy)


def sigmoid_forward(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^−x)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def sigmoid_backward(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dy·σ(x)·(1 − σ(x))."""
    s = sigmoid_forward(x)
    return np.asarray(dy, np.float64) * s * (1.0 - s)


def tanh_forward(x: np.ndarray) -> np.ndarray:
    return np.tanh(np.asarray(x, np.float64))


def tanh_backward(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dy / cosh²(x)."""
    return np.asarray(dy, np.float64) / np.cosh(np.asarray(x, np.float64)) ** 2


def elu_forward(x: np.ndarray, alpha: float) -> np.ndarray:
    """x for x > 0, alpha·(e^x − 1) otherwise."""
    x = np.asarray(x, np.float64)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def elu_backward(x: np.ndarray, dy: np.ndarray, alpha: float) -> np.ndarray:
    """dy for x > 0, dy·alpha·e^x otherwise."""
    x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    return np.where(x > 0, dy, dy * alpha * np.exp(np.minimum(x, 0.0)))


def maxout_forward(x: np.ndarray, pieces: int) -> np.ndarray:
    """y[n, o] = max over input channels o·pieces … o·pieces + pieces − 1."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    return x.reshape(N, C // pieces, pieces, H, W).max(axis=2)


def maxout_backward(x: np.ndarray, dy: np.ndarray, pieces: int) -> np.ndarray:
    """dy goes to the winning channel of each group (inputs without ties)."""
    x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    N, C, H, W = x.shape
    groups = x.reshape(N, C // pieces, pieces, H, W)
    winner = groups.argmax(axis=2)
    dx = np.zeros_like(groups)
    for g in range(pieces):
        dx[:, :, g] = np.where(winner == g, dy, 0.0)
    return dx.reshape(x.shape)


# --- dropout ------------------------------------------------------------------------------


def dropout_forward(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Inverted dropout with a given mask (entries 0 or 1/(1 − p))."""
    return np.asarray(x, np.float64) * np.asarray(mask, np.float64)


def dropout_backward(dy: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.asarray(dy, np.float64) * np.asarray(mask, np.float64)


def dropout_mask(shape: tuple[int, ...], p: float, seed: int) -> np.ndarray:
    """The documented mask: element i (flat) is kept when u_i ≥ p, u_i the SplitMix64 hash
    of (seed, i) turned into a float32 in [0, 1) from its top 24 bits; kept = 1/(1 − p)."""
    i = np.arange(int(np.prod(shape)), dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (i + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float64) / 2.0**24
    keep = u >= np.float32(p)
    return np.where(keep, np.float32(1.0 / (1.0 - p)), np.float32(0.0)).reshape(shape)


# --- loss ---------------------------------------------------------------------------------


def smoothed_targets(labels: np.ndarray, K: int, smoothing: float) -> np.ndarray:
    """N×K targets (1 − ε)·onehot + ε/K (ε = 0: the one-hot labels)."""
    t = np.full((len(labels), K), smoothing / K)
    t[np.arange(len(labels)), labels] += 1.0 - smoothing
    return t


def softmax_cross_entropy_forward(logits: np.ndarray, labels: np.ndarray,
                                  smoothing: float = 0.0) -> float:
    """Mean over the batch of −Σ_k t[k] log softmax(logits)[k], t the smoothed targets
    (ε = 0: −log softmax(logits)[label])."""
    z = np.asarray(logits, np.float64).reshape(len(labels), -1)
    m = z.max(axis=1, keepdims=True)
    log_p = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    t = smoothed_targets(labels, z.shape[1], smoothing)
    return float(np.mean(-(t * log_p).sum(axis=1)))


def softmax_cross_entropy_backward(logits: np.ndarray, labels: np.ndarray,
                                   smoothing: float = 0.0) -> np.ndarray:
    """d(mean loss)/dlogits = (softmax − targets)/N, shaped N×K."""
    z = np.asarray(logits, np.float64).reshape(len(labels), -1)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    return (probs - smoothed_targets(labels, z.shape[1], smoothing)) / len(labels)


# --- batch normalization -----------------------------------------------------------------


def batchnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float,
                      mean: np.ndarray | None = None, var: np.ndarray | None = None,
                      ) -> np.ndarray:
    """y = γ·(x − μ)/√(σ² + ε) + β per channel (axis 1). Training (``mean``/``var`` None):
    μ and the biased σ² of the batch over axes (0, 2, 3); inference: the given ones."""
    x, gamma, beta = (np.asarray(a, np.float64) for a in (x, gamma, beta))
    if mean is None:
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    mean, var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
    shape = (1, -1, 1, 1)
    x_hat = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape)


def batchnorm_backward(x: np.ndarray, dy: np.ndarray, gamma: np.ndarray, eps: float,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dγ, dβ) in training mode, by the chain rule through μ and σ² as Ioffe & Szegedy
    write it (Algorithm 1's backward: dx̂, dσ², dμ, then dx)."""
    x, dy, gamma = (np.asarray(a, np.float64) for a in (x, dy, gamma))
    axes, shape = (0, 2, 3), (1, -1, 1, 1)
    M = x.size // x.shape[1]
    mu = x.mean(axis=axes).reshape(shape)
    var = x.var(axis=axes).reshape(shape)
    std_inv = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mu) * std_inv
    dx_hat = dy * gamma.reshape(shape)
    dvar = np.sum(dx_hat * (x - mu) * -0.5 * std_inv**3, axis=axes, keepdims=True)
    dmu = (np.sum(-dx_hat * std_inv, axis=axes, keepdims=True)
           + dvar * np.sum(-2.0 * (x - mu), axis=axes, keepdims=True) / M)
    dx = dx_hat * std_inv + dvar * 2.0 * (x - mu) / M + dmu / M
    return dx, np.sum(dy * x_hat, axis=axes), np.sum(dy, axis=axes)


def batchnorm_running(mean: np.ndarray, var: np.ndarray, x: np.ndarray, momentum: float,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The running statistics after one training batch x: momentum·r + (1 − momentum)·batch,
    with the unbiased batch variance (PyTorch's update with its momentum = 1 − this one)."""
    x = np.asarray(x, np.float64)
    batch_var = x.var(axis=(0, 2, 3), ddof=1)
    return (momentum * np.asarray(mean, np.float64) + (1 - momentum) * x.mean(axis=(0, 2, 3)),
            momentum * np.asarray(var, np.float64) + (1 - momentum) * batch_var)


# --- glue for the tests: a numbacnn layer object → its reference ---------------------------


@dataclass(frozen=True)
class Reference:
    """How the reference of one layer kind is called with a layer object's options:
    ``forward(layer, x, params, mask)`` → y and ``backward(layer, x, dy, params, mask)`` →
    (dx, parameter gradients); ``mask(layer, shape)`` draws what the layer draws per step
    (dropout's mask), None when it draws nothing. Training mode throughout."""

    forward: Callable[..., np.ndarray]
    backward: Callable[..., tuple[np.ndarray, dict[str, np.ndarray]]]
    mask: Callable[[Any, tuple[int, ...]], np.ndarray] | None = None


# Every layer kind's reference by its spec keyword (tests/test_layer_cases.py checks that
# each case of tests/layer_cases.py but the loss has one). A new layer adds its entry here.
REFERENCES: dict[str, Reference] = {
    "conv": Reference(
        lambda L, x, p, m: conv2d_forward(x, p["W"], p["b"], L.stride, L.pad, L.groups,
                                          L.dilation, L.round),
        lambda L, x, dy, p, m: _named(conv2d_backward(x, p["W"], dy, L.stride, L.pad,
                                                      L.groups, L.dilation, L.round), "W", "b")),
    "fc": Reference(
        lambda L, x, p, m: dense_forward(x, p["W"], p["b"]),
        lambda L, x, dy, p, m: _named(dense_backward(x, p["W"], dy), "W", "b")),
    "maxpool": Reference(
        lambda L, x, p, m: max_pool_forward(x, PoolGeometry.of(L)),
        lambda L, x, dy, p, m: (max_pool_backward(x, dy, PoolGeometry.of(L)), {})),
    "avgpool": Reference(
        lambda L, x, p, m: avg_pool_forward(x, PoolGeometry.of(L)),
        lambda L, x, dy, p, m: (avg_pool_backward(np.shape(x), dy, PoolGeometry.of(L)), {})),
    "lrn": Reference(
        lambda L, x, p, m: lrn_forward(x, L.size, L.alpha, L.beta, L.k),
        lambda L, x, dy, p, m: (lrn_backward(x, dy, L.size, L.alpha, L.beta, L.k), {})),
    "batchnorm": Reference(
        lambda L, x, p, m: batchnorm_forward(x, p["gamma"], p["beta"], L.eps),
        lambda L, x, dy, p, m: _named(batchnorm_backward(x, dy, p["gamma"], L.eps),
                                      "gamma", "beta")),
    "flatten": Reference(
        lambda L, x, p, m: flatten_forward(x),
        lambda L, x, dy, p, m: (flatten_backward(x, dy), {})),
    "dropout": Reference(
        lambda L, x, p, m: dropout_forward(x, m),
        lambda L, x, dy, p, m: (dropout_backward(dy, m), {}),
        mask=lambda L, shape: dropout_mask(shape, L.p, L.seed)),
    "maxout": Reference(
        lambda L, x, p, m: maxout_forward(x, L.pieces),
        lambda L, x, dy, p, m: (maxout_backward(x, dy, L.pieces), {})),
    "relu": Reference(lambda L, x, p, m: relu_forward(x),
                      lambda L, x, dy, p, m: (relu_backward(x, dy), {})),
    "sigmoid": Reference(lambda L, x, p, m: sigmoid_forward(x),
                         lambda L, x, dy, p, m: (sigmoid_backward(x, dy), {})),
    "tanh": Reference(lambda L, x, p, m: tanh_forward(x),
                      lambda L, x, dy, p, m: (tanh_backward(x, dy), {})),
    "leaky": Reference(lambda L, x, p, m: leaky_relu_forward(x, L.alpha),
                       lambda L, x, dy, p, m: (leaky_relu_backward(x, dy, L.alpha), {})),
    "elu": Reference(lambda L, x, p, m: elu_forward(x, L.alpha),
                     lambda L, x, dy, p, m: (elu_backward(x, dy, L.alpha), {})),
}


def _elementwise(f: Callable[[np.ndarray], np.ndarray],
                 df: Callable[[np.ndarray], np.ndarray]) -> Reference:
    """The reference of y = f(x): forward f(x), backward dy·f′(x), in float64."""
    return Reference(lambda L, x, p, m: f(np.asarray(x, np.float64)),
                     lambda L, x, dy, p, m: (np.asarray(dy, np.float64)
                                             * df(np.asarray(x, np.float64)), {}))


# ... and the elementwise activations whose case gives its (f, f′).
REFERENCES.update({kind: _elementwise(*case.elementwise) for kind, case in LAYER_CASES.items()
                   if case.elementwise is not None})


def _named(arrays: tuple[np.ndarray, ...], *keys: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(dx, dA, dB, …) → (dx, {key: dA, …})."""
    return arrays[0], dict(zip(keys, arrays[1:], strict=True))


def reference_forward(layer: Any, x: np.ndarray, params: dict[str, np.ndarray] | None = None,
                      mask: np.ndarray | None = None) -> np.ndarray:
    """The reference output of ``layer`` (its kind's entry in REFERENCES, called with the
    layer's options) for x."""
    return REFERENCES[layer.kind].forward(layer, x, params or {}, mask)


def reference_backward(layer: Any, x: np.ndarray, dy: np.ndarray,
                       params: dict[str, np.ndarray] | None = None,
                       mask: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(dx, parameter gradients) of the reference of ``layer`` at x for output gradient dy."""
    return REFERENCES[layer.kind].backward(layer, x, dy, params or {}, mask)


def reference_network_step(layers: list[Any], params: list[dict[str, np.ndarray]],
                           x: np.ndarray, labels: np.ndarray,
                           ) -> tuple[float, list[dict[str, np.ndarray]]]:
    """Mean softmax cross-entropy and each layer's parameter gradients of the reference
    layers chained by hand (a dropout layer's mask from its current ``seed``)."""
    inputs, masks = [], []
    a = np.asarray(x, np.float64)
    for layer, p in zip(layers, params, strict=True):
        draw = REFERENCES[layer.kind].mask
        mask = draw(layer, a.shape) if draw is not None else None
        inputs.append(a)
        masks.append(mask)
        a = reference_forward(layer, a, p, mask)
    loss = softmax_cross_entropy_forward(a, labels)
    dy = softmax_cross_entropy_backward(a, labels).reshape(a.shape)
    grads: list[dict[str, np.ndarray]] = [{} for _ in layers]
    for index in range(len(layers) - 1, -1, -1):
        dy, grads[index] = reference_backward(layers[index], inputs[index], dy, params[index],
                                              masks[index])
    return loss, grads
