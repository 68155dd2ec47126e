"""Optimizers: SGD with momentum and L2 weight decay (the lecture's AlexNet recipe), Adam.

Every optimizer is an :class:`Optimizer`: it declares its name, its hyperparameters
with their defaults (``defaults``, the one place they are written), the names of its
per-parameter buffers (``slots``) and a default learning rate, and implements
``_update`` with its kernel. The base keeps the buffers on the network's device beside
the parameters, laid out like them (the parameters, gradients and each slot are views
of one flat buffer each, ``flat_buffers.py``, so a step is one kernel launch whatever
the number of parameters), counts updates (``t``), and gives ``state()``/``load_state()``
(per parameter name, as before the flat buffers) for saving; ``training/checkpoint.py``
saves any optimizer through them without knowing its class.
``OPTIMIZERS`` names every optimizer for the command line and the model files.
Update bodies: ``numbacnn/kernels/optim.py``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from numbacnn.device import backend, resolve_device, to_host
from numbacnn.errors import TrainingError
from numbacnn.training.flat_buffers import copy_into, flat_arrays, network_layout

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
        # (parameter names, flat slot buffers, their views) once packed
        self._flat: tuple[list[str], tuple[Any, ...], list[list[Any]]] | None = None

    def hyperparameters(self) -> dict[str, float]:
        """{name: value} of every declared hyperparameter."""
        return {key: getattr(self, key) for key in self.defaults}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"

    def step(self, net: Network, lr: float) -> None:
        """Apply one update to every parameter of ``net`` with learning rate ``lr``: one
        kernel launch over the flat buffers whose views are the parameters, their
        gradients and this optimizer's slots (``flat_buffers.py``)."""
        self.t += 1
        B = net.backend()
        w = flat_arrays(net, "params")
        g = flat_arrays(net, "grads")
        if w.size:
            self._update(B, w.size, lr, w, g, *self._flat_slots(net, B))

    def _update(self, B: Any, n: int, lr: float, w: Any, g: Any, *slots: Any) -> None:
        """Launch this optimizer's kernel over n elements of flat w, g and the slots."""
        raise NotImplementedError

    def _flat_slots(self, net: Network, B: Any) -> tuple[Any, ...]:
        """One flat buffer per slot, laid out as the parameters' (``buffers[slot][name]``
        are its views: ``state()`` keeps its per-parameter format); made on the first
        step and after ``load_state``, whose arrays are copied in (the rest start at 0)."""
        names = [name for name, _, _ in net.parameters()]
        packed = self._flat
        if packed is not None and packed[0] == names and all(
                self.buffers.get(slot, {}).get(name) is view
                for slot, views in zip(self.slots, packed[2], strict=True)
                for name, view in zip(names, views, strict=True)):
            return packed[1]
        layout = network_layout(net)
        flats, all_views = [], []
        for slot in self.slots:
            table = self.buffers.setdefault(slot, {})
            flat = B.zeros((layout.size,))
            views = layout.views(flat)
            for name, view in zip(names, views, strict=True):
                if name in table:
                    copy_into(view, table[name])
                table[name] = view
            flats.append(flat)
            all_views.append(views)
        self._flat = (names, tuple(flats), all_views)
        return self._flat[1]

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
        self._flat = None
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
