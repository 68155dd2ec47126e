"""Weight initializers from the lecture, on the host (numpy), float32.

- ``zeros``: all zero (fine for biases; for weights it leaves every unit the same).
- ``normal``: small random numbers, Gaussian with std 0.01.
- ``he``: Gaussian with std sqrt(2/n), n = fan-in (He et al. 2015; for ReLU nets).
- ``xavier``: uniform on ±sqrt(6/(fan_in + fan_out)) (Glorot & Bengio 2010).
- ``lecun``: Gaussian with std sqrt(1/n), n = fan-in (LeCun et al. 1998): keeps the
  variance of a layer whose activation does not halve it (a Maxout).

The network's initializer (``he`` unless chosen) assumes a ReLU after each layer, which
zeroes half of its inputs (hence He's factor 2). Two neighbours want other weights
before them, unless a layer's own ``init=`` says otherwise (``Layer.init_of_input``):

- the softmax: the layer feeding it gets ``normal`` (OUTPUT_INIT), so the logits start
  near zero, every class near 1/K and the initial loss near ln K, as with Keras' and
  PyTorch's defaults; He there (no ReLU follows) gives logits of several units and an
  initial loss twice ln K on the ``fmnist`` preset;
- a Maxout: the layer feeding it gets ``lecun`` (MAXOUT_INIT); the max of k pieces keeps
  the second moment of its inputs (for k = 2 exactly), so He's factor 2 compounds.
"""

from __future__ import annotations

import numpy as np

from numbacnn.errors import SpecError

INITIALIZERS = ("zeros", "normal", "he", "xavier", "lecun")
# network initializer → the one of the layer feeding the softmax / a Maxout (see above)
OUTPUT_INIT = {"he": "normal", "xavier": "normal", "lecun": "normal"}
MAXOUT_INIT = {"he": "lecun"}


def initialize(shape: tuple[int, ...], fan_in: int, fan_out: int, method: str,
               rng: np.random.Generator) -> np.ndarray:
    """A float32 array of ``shape`` drawn by ``method`` (one of INITIALIZERS)."""
    if method == "zeros":
        return np.zeros(shape, np.float32)
    if method == "normal":
        return (rng.standard_normal(shape) * 0.01).astype(np.float32)
    if method == "he":
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    if method == "lecun":
        return (rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)).astype(np.float32)
    if method == "xavier":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, shape).astype(np.float32)
    raise SpecError(f"unknown initializer {method!r}: choose one of {', '.join(INITIALIZERS)}")
