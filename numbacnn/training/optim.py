"""Optimizers: SGD with momentum and L2 weight decay (the lecture's AlexNet recipe), Adam.

Every optimizer is an :class:`Optimizer`: it declares its name, its hyperparameters
with their defaults (``defaults``, the one place they are written), the names of its
per-parameter buffers (``slots``) and a default learning rate, and implements
``_update`` with its kernel. The base keeps the buffers on the network's device beside
the parameters, counts updates (``t``), and gives ``state()``/``load_state()`` for
saving; ``training/checkpoint.py`` saves any optimizer through them without knowing its class.
``OPTIMIZERS`` names every optimizer for the command line and the model files.
Update bodies: ``numbacnn/kernels/optim.py``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from numbacnn.device import backend, resolve_device, to_host
from numbacnn.errors import TrainingError

if TYPE_CHECKING:
    from numbacnn.network import Network

OPTIMIZERS: dict[str, type[Optimizer]] = {}


def register(cls: type[Optimizer]) -> type[Optimizer]:
    """Class decorator: make ``cls`` known by its ``name`` (``--optimizer NAME``)."""
    OPTIMIZERS[cls.name] = cls
    return cls


class Optimizer:
    """Base of the optimizers: hyperparameters, device buffers, the update loop."""

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, float]] = {}  # hyperparameter → default
    slots: ClassVar[tuple[str, ...]] = ()  # per-parameter buffers, e.g. ("v",)
    default_lr: ClassVar[float] = 0.01

    def __init__(self, **hyperparameters: float) -> None:
        """Keyword hyperparameters (those of ``defaults``; the rest keep their default)."""
        unknown = sorted(set(hyperparameters) - set(self.defaults))
        if unknown:
            raise TrainingError(f"optimizer {self.name} has no hyperparameter "
                                f"{', '.join(unknown)}; it takes {', '.join(self.defaults)}")
        for key, default in self.defaults.items():
            setattr(self, key, float(hyperparameters.get(key, default)))
        self.buffers: dict[str, dict[str, Any]] = {}
        self.t = 0
        self._flat: dict[str, tuple[Any, Any, tuple[Any, ...]]] = {}

    def hyperparameters(self) -> dict[str, float]:
        """{name: value} of every declared hyperparameter."""
        return {key: getattr(self, key) for key in self.defaults}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"

    def step(self, net: Network, lr: float) -> None:
        """Apply one update to every parameter of ``net`` with learning rate ``lr``."""
        self.t += 1
        B = net.backend()
        for key, w, g in net.parameters():
            self._update(B, w.size, lr, *self._flat_views(key, w, g, B))

    def _update(self, B: Any, n: int, lr: float, w: Any, g: Any, *slots: Any) -> None:
        """Launch this optimizer's kernel over n elements of flat w, g and the slots."""
        raise NotImplementedError

    def _flat_views(self, key: str, w: Any, g: Any, B: Any) -> tuple[Any, ...]:
        """(w, g, *slot buffers) as 1-D arrays, made once per parameter: a numba device
        array's reshape costs ~8 µs of Python, and this runs for every parameter every
        step."""
        hit = self._flat.get(key)
        if hit is None or hit[0] is not w or hit[1] is not g:
            views = (w.reshape(-1), g.reshape(-1),
                     *(self._slot(slot, key, w, B).reshape(-1) for slot in self.slots))
            hit = self._flat[key] = (w, g, views)
        return hit[2]

    def _slot(self, slot: str, key: str, like: Any, B: Any) -> Any:
        table = self.buffers.setdefault(slot, {})
        if key not in table:
            table[key] = B.zeros(like.shape)
        return table[key]

    def state(self) -> dict[str, dict[str, np.ndarray]]:
        """Host copies of every buffer, {slot: {param name: array}}."""
        return {slot: {k: to_host(v).copy() for k, v in table.items()}
                for slot, table in self.buffers.items()}

    def load_state(self, state: dict[str, dict[str, np.ndarray]], t: int,
                   device: str) -> None:
        """Buffers from host arrays, on ``device`` ("auto", "cpu" or "cuda": the device of
        the network it will update, ``net.device``)."""
        B = backend(resolve_device(device))
        self.buffers = {slot: {k: B.to_device(np.asarray(v, np.float32)) for k, v in table.items()}
                        for slot, table in state.items()}
        self._flat.clear()
        self.t = int(t)


@register
class SGD(Optimizer):
    """v ← μ·v − lr·(g + λ·w);  w ← w + v."""

    name = "sgd"
    defaults = {"momentum": 0.9, "weight_decay": 5e-4}
    slots = ("v",)
    default_lr = 0.02

    def _update(self, B: Any, n: int, lr: float, w: Any, g: Any, *slots: Any) -> None:
        (v,) = slots
        B.sgd_momentum(n, w, v, g, np.float32(lr), np.float32(self.momentum),
                       np.float32(self.weight_decay))


@register
class Adam(Optimizer):
    """Adam (β1 = 0.9, β2 = 0.999, ε = 1e-8) with L2 weight decay added to the gradient."""

    name = "adam"
    defaults = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    slots = ("m", "v")
    default_lr = 0.001

    def _update(self, B: Any, n: int, lr: float, w: Any, g: Any, *slots: Any) -> None:
        m, v = slots
        lr_t = lr * math.sqrt(1 - self.beta2 ** self.t) / (1 - self.beta1 ** self.t)
        B.adam(n, w, m, v, g, np.float32(lr_t), np.float32(self.beta1),
               np.float32(self.beta2), np.float32(self.eps), np.float32(self.weight_decay))
