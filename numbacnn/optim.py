"""Optimizers: SGD with momentum and L2 weight decay (the lecture's AlexNet recipe), Adam.

State (momentum buffers, Adam moments, step count) lives on the device beside the
parameters; ``state()``/``load_state()`` move it to and from host arrays for saving.
Update bodies: ``numbacnn/kernels/optim.py``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from numbacnn.device import backend, to_host
from numbacnn.network import Network


class SGD:
    """v ← μ·v − lr·(g + λ·w);  w ← w + v."""

    name = "sgd"

    def __init__(self, momentum: float = 0.9, weight_decay: float = 5e-4) -> None:
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.buffers: dict[str, dict[str, Any]] = {}
        self.t = 0
        self._flat: dict[str, tuple[Any, Any, tuple[Any, ...]]] = {}

    def _flat_views(self, key: str, w: Any, g: Any, slots: tuple[str, ...],
                    B: Any) -> tuple[Any, ...]:
        """(w, g, *slot buffers) as 1-D arrays, made once per parameter: a numba device
        array's reshape costs ~8 µs of Python, and this runs for every parameter every
        step."""
        hit = self._flat.get(key)
        if hit is None or hit[0] is not w or hit[1] is not g:
            views = (w.reshape(-1), g.reshape(-1),
                     *(self._slot(slot, key, w, B).reshape(-1) for slot in slots))
            hit = self._flat[key] = (w, g, views)
        return hit[2]

    def _slot(self, slot: str, key: str, like: Any, B: Any) -> Any:
        table = self.buffers.setdefault(slot, {})
        if key not in table:
            table[key] = B.zeros(like.shape)
        return table[key]

    def step(self, net: Network, lr: float) -> None:
        """Apply one update to every parameter of ``net`` with learning rate ``lr``."""
        self.t += 1
        B = net.backend()
        lr32, momentum, decay = (np.float32(lr), np.float32(self.momentum),
                                 np.float32(self.weight_decay))
        for key, w, g in net.parameters():
            w1, g1, v1 = self._flat_views(key, w, g, ("v",), B)
            B.sgd_momentum(w.size, w1, v1, g1, lr32, momentum, decay)

    def state(self) -> dict[str, dict[str, np.ndarray]]:
        """Host copies of every buffer, {slot: {param name: array}}."""
        return {slot: {k: to_host(v).copy() for k, v in table.items()}
                for slot, table in self.buffers.items()}

    def load_state(self, state: dict[str, dict[str, np.ndarray]], t: int,
                   device: str | None = None) -> None:
        """Buffers from host arrays, on ``device`` (default: the current one)."""
        B = backend(device)
        self.buffers = {slot: {k: B.to_device(np.asarray(v, np.float32)) for k, v in table.items()}
                        for slot, table in state.items()}
        self._flat.clear()
        self.t = int(t)


class Adam(SGD):
    """Adam (β1 = 0.9, β2 = 0.999, ε = 1e-8) with L2 weight decay added to the gradient."""

    name = "adam"

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(momentum=0.0, weight_decay=weight_decay)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def step(self, net: Network, lr: float) -> None:
        self.t += 1
        lr_t = lr * math.sqrt(1 - self.beta2 ** self.t) / (1 - self.beta1 ** self.t)
        B = net.backend()
        for key, w, g in net.parameters():
            w1, g1, m1, v1 = self._flat_views(key, w, g, ("m", "v"), B)
            B.adam(w.size, w1, m1, v1, g1, np.float32(lr_t), np.float32(self.beta1),
                   np.float32(self.beta2), np.float32(self.eps), np.float32(self.weight_decay))
