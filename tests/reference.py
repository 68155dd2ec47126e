"""Naive float64 numpy references for every layer, the loss and the optimizers.

Written from the textbook definitions, independently of numbacnn's kernels: no im2col,
no gather-form backward passes. Convolution is a direct sum over the F×F filter taps
(one einsum per tap), pooling and LRN loop over windows and scatter their gradients,
and everything is computed in float64 so the float32 layers can be checked against it.

Every ``*_backward`` takes the gradient ``dy`` of a scalar loss with respect to the
output and returns the gradients with respect to the inputs (and parameters).

The end of the module holds the test glue: :func:`reference_forward` and
:func:`reference_backward` map a numbacnn layer object (by ``kind`` and its
hyperparameters) to these functions, :func:`numerical_gradient` takes central
differences, and :func:`assert_close` compares with a magnitude-scaled tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

# --- convolution ----------------------------------------------------------------------


def _out_size(size: int, window: int, stride: int, pad: int) -> int:
    span = size + 2 * pad - window
    assert span >= 0 and span % stride == 0, "reference: the window does not tile the input"
    return span // stride + 1


def _pad(x: np.ndarray, pad: int) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1,
                   pad: int = 0) -> np.ndarray:
    """y[n, k, oy, ox] = b[k] + Σ_{c, fy, fx} w[k, c, fy, fx] · xpad[n, c, oy·S + fy, ox·S + fx]."""
    x, w, b = (np.asarray(a, np.float64) for a in (x, w, b))
    N, C, H, W = x.shape
    K, C2, F, F2 = w.shape
    assert C == C2 and F == F2
    OH, OW = _out_size(H, F, stride, pad), _out_size(W, F, stride, pad)
    xp = _pad(x, pad)
    y = np.zeros((N, K, OH, OW))
    for fy in range(F):
        for fx in range(F):
            taps = xp[:, :, fy:fy + stride * OH:stride, fx:fx + stride * OW:stride]
            y += np.einsum("nchw,kc->nkhw", taps, w[:, :, fy, fx])
    return y + b[None, :, None, None]


def conv2d_backward(x: np.ndarray, w: np.ndarray, dy: np.ndarray, stride: int = 1,
                    pad: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dw, db): each filter tap scatters its share of dy back to the padded input."""
    x, w, dy = (np.asarray(a, np.float64) for a in (x, w, dy))
    N, C, H, W = x.shape
    F = w.shape[2]
    OH, OW = dy.shape[2:]
    xp = _pad(x, pad)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for fy in range(F):
        for fx in range(F):
            rows = slice(fy, fy + stride * OH, stride)
            cols = slice(fx, fx + stride * OW, stride)
            dw[:, :, fy, fx] = np.einsum("nkhw,nchw->kc", dy, xp[:, :, rows, cols])
            dxp[:, :, rows, cols] += np.einsum("nkhw,kc->nchw", dy, w[:, :, fy, fx])
    dx = dxp[:, :, pad:pad + H, pad:pad + W]
    return dx, dw, dy.sum(axis=(0, 2, 3))


# --- pooling ----------------------------------------------------------------------------


def _windows(H: int, W: int, size: int, stride: int):
    """(oy, ox, rows, cols) of every pooling window (no padding)."""
    for oy in range(_out_size(H, size, stride, 0)):
        for ox in range(_out_size(W, size, stride, 0)):
            yield (oy, ox, slice(oy * stride, oy * stride + size),
                   slice(ox * stride, ox * stride + size))


def max_pool_forward(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """y[n, c, oy, ox] = max of the size×size window at (oy·stride, ox·stride)."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    y = np.zeros((N, C, _out_size(H, size, stride, 0), _out_size(W, size, stride, 0)))
    for oy, ox, rows, cols in _windows(H, W, size, stride):
        y[:, :, oy, ox] = x[:, :, rows, cols].max(axis=(2, 3))
    return y


def max_pool_backward(x: np.ndarray, dy: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Each window sends its dy to the position of its maximum (inputs without ties)."""
    x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    N, C, H, W = x.shape
    dx = np.zeros_like(x)
    for oy, ox, rows, cols in _windows(H, W, size, stride):
        for n in range(N):
            for c in range(C):
                window = x[n, c, rows, cols]
                fy, fx = np.unravel_index(np.argmax(window), window.shape)
                dx[n, c, rows.start + fy, cols.start + fx] += dy[n, c, oy, ox]
    return dx


def avg_pool_forward(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """y[n, c, oy, ox] = mean of the size×size window at (oy·stride, ox·stride)."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    y = np.zeros((N, C, _out_size(H, size, stride, 0), _out_size(W, size, stride, 0)))
    for oy, ox, rows, cols in _windows(H, W, size, stride):
        y[:, :, oy, ox] = x[:, :, rows, cols].mean(axis=(2, 3))
    return y


def avg_pool_backward(x_shape: tuple[int, ...], dy: np.ndarray, size: int,
                      stride: int) -> np.ndarray:
    """Each window spreads dy / size² evenly over its inputs."""
    dy = np.asarray(dy, np.float64)
    dx = np.zeros(x_shape)
    for oy, ox, rows, cols in _windows(x_shape[2], x_shape[3], size, stride):
        dx[:, :, rows, cols] += dy[:, :, oy, ox][:, :, None, None] / (size * size)
    return dx


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


def softmax_cross_entropy_forward(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the batch of −log softmax(logits)[label]."""
    z = np.asarray(logits, np.float64).reshape(len(labels), -1)
    m = z.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]
    return float(np.mean(log_sum - z[np.arange(len(labels)), labels]))


def softmax_cross_entropy_backward(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """d(mean loss)/dlogits = (softmax − onehot)/N, shaped N×K."""
    z = np.asarray(logits, np.float64).reshape(len(labels), -1)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    probs[np.arange(len(labels)), labels] -= 1.0
    return probs / len(labels)


# --- optimizers ---------------------------------------------------------------------------


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


# --- glue for the tests: a numbacnn layer object → its reference ---------------------------


def reference_forward(layer: Any, x: np.ndarray, params: dict[str, np.ndarray] | None = None,
                      mask: np.ndarray | None = None) -> np.ndarray:
    """The reference output of ``layer`` (read by ``kind`` and hyperparameters) for x."""
    kind, p = layer.kind, params or {}
    if kind == "conv":
        return conv2d_forward(x, p["W"], p["b"], layer.stride, layer.pad)
    if kind == "maxpool":
        return max_pool_forward(x, layer.size, layer.stride)
    if kind == "avgpool":
        return avg_pool_forward(x, layer.size, layer.stride)
    if kind == "lrn":
        return lrn_forward(x, layer.size, layer.alpha, layer.beta, layer.k)
    if kind == "fc":
        return dense_forward(x, p["W"], p["b"])
    if kind == "flatten":
        return flatten_forward(x)
    if kind == "dropout":
        return dropout_forward(x, mask)
    if kind == "maxout":
        return maxout_forward(x, layer.pieces)
    unary = {"relu": relu_forward, "sigmoid": sigmoid_forward, "tanh": tanh_forward}
    if kind in unary:
        return unary[kind](x)
    with_alpha = {"leaky": leaky_relu_forward, "elu": elu_forward}
    return with_alpha[kind](x, layer.alpha)


def reference_backward(layer: Any, x: np.ndarray, dy: np.ndarray,
                       params: dict[str, np.ndarray] | None = None,
                       mask: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(dx, parameter gradients) of the reference of ``layer`` at x for output gradient dy."""
    kind, p = layer.kind, params or {}
    if kind == "conv":
        dx, dw, db = conv2d_backward(x, p["W"], dy, layer.stride, layer.pad)
        return dx, {"W": dw, "b": db}
    if kind == "fc":
        dx, dw, db = dense_backward(x, p["W"], dy)
        return dx, {"W": dw, "b": db}
    if kind == "maxpool":
        return max_pool_backward(x, dy, layer.size, layer.stride), {}
    if kind == "avgpool":
        return avg_pool_backward(np.shape(x), dy, layer.size, layer.stride), {}
    if kind == "lrn":
        return lrn_backward(x, dy, layer.size, layer.alpha, layer.beta, layer.k), {}
    if kind == "flatten":
        return flatten_backward(x, dy), {}
    if kind == "dropout":
        return dropout_backward(dy, mask), {}
    if kind == "maxout":
        return maxout_backward(x, dy, layer.pieces), {}
    unary = {"relu": relu_backward, "sigmoid": sigmoid_backward, "tanh": tanh_backward}
    if kind in unary:
        return unary[kind](x, dy), {}
    with_alpha = {"leaky": leaky_relu_backward, "elu": elu_backward}
    return with_alpha[kind](x, dy, layer.alpha), {}


def reference_network_step(layers: list[Any], params: list[dict[str, np.ndarray]],
                           x: np.ndarray, labels: np.ndarray,
                           ) -> tuple[float, list[dict[str, np.ndarray]]]:
    """Mean softmax cross-entropy and each layer's parameter gradients of the reference
    layers chained by hand (a dropout layer's mask from its current ``seed``)."""
    inputs, masks = [], []
    a = np.asarray(x, np.float64)
    for layer, p in zip(layers, params, strict=True):
        mask = dropout_mask(a.shape, layer.p, layer.seed) if layer.kind == "dropout" else None
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
