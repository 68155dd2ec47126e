"""The options of a training run, their types, choices and valid ranges, declared once.

:class:`TrainSettings` is what :class:`numbacnn.training.trainer.Trainer` takes and what every
checkpoint saves (as JSON). ``CHOICES`` and ``BOUNDS`` say which values each option
may take; :meth:`TrainSettings.checked` enforces them (errors name the field, e.g.
``batch_size must be ≥ 1, got 0``, with the error's ``field`` set), and the CLI builds
its option types from the same tables. Imports no kernel and no h5py, so the CLI can
read it at start-up.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, fields
from typing import Any

from numbacnn.errors import TrainingError
from numbacnn.geometry import CONV_ALGORITHMS
from numbacnn.init import INITIALIZERS
from numbacnn.limits import SEEDS, Bounds
from numbacnn.training.optim import OPTIMIZERS, Optimizer
from numbacnn.training.schedules import (
    GAMMA_BOUNDS,
    LR_BOUNDS,
    LR_POLICIES,
    PATIENCE_BOUNDS,
    STEP_BOUNDS,
    LRSchedule,
)


@dataclass
class TrainSettings:
    """The options of a training run (saved as JSON in every checkpoint).

    ``spec``/``data``: what was asked for (preset name, path or text; dataset source).
    ``epochs``: total epochs; ``batch_size``: images per step. ``lr``: learning rate of
    the first epoch, None picks the optimizer's ``default_lr``. ``momentum``,
    ``weight_decay``: the optimizer's μ and L2 λ (an optimizer without momentum ignores
    it). ``lr_policy``, ``lr_step`` (epochs), ``gamma``, ``patience`` (epochs): the
    schedule (:mod:`numbacnn.training.schedules`; ``cosine`` anneals over ``epochs``).
    ``label_smoothing``: ε of the training loss's targets, (1 − ε)·onehot + ε/K (0: plain
    cross-entropy; validation and test losses are always plain). ``init``: initializer
    of layers whose spec names none. ``augment``: random crop with ``trainer.CROP_PAD``
    pixels of padding and horizontal flip. ``val_split``: fraction (0 ≤ f < 1) of the
    training split held out for validation. ``seed``: of every random choice. ``limit``:
    use only the first ``limit`` training images (None: all). ``conv_algo``: how the
    convolutions without their own ``algo=`` compute (``im2col``, ``winograd`` where a
    convolution can, ``auto``: ``numbacnn/layers/conv.py``).
    """

    spec: str = "fmnist"
    data: str = "fashion-mnist-mini"
    epochs: int = 6
    batch_size: int = 64
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "sgd"
    lr_policy: str = "constant"
    lr_step: int = 5
    gamma: float = 0.1
    patience: int = 2
    label_smoothing: float = 0.0
    init: str = "he"
    augment: bool = False
    val_split: float = 0.1
    seed: int = 0
    limit: int | None = None
    conv_algo: str = "im2col"

    def checked(self) -> TrainSettings:
        """Validate every field (TrainingError naming the field, ``field`` set) and fill
        in ``lr``."""
        self._check_types()
        for name, names in CHOICES.items():
            value = getattr(self, name)
            if value not in names:
                raise TrainingError(f"unknown {name} {value!r}: choose one of "
                                    f"{', '.join(names)}", field=name)
        if self.lr is None:
            self.lr = OPTIMIZERS[self.optimizer].default_lr
        for name, bounds in BOUNDS.items():
            value = getattr(self, name)
            if value is not None:
                bounds.check(name, value, TrainingError)
        return self

    def _check_types(self) -> None:
        """Each field has its declared type (settings also come from checkpoint files,
        where a tampered value could be anything JSON holds)."""
        for f in fields(self):
            value = getattr(self, f.name)
            kind = TYPES[f.name]
            if value is None and f.default is None:
                continue
            if kind is bool:
                good = isinstance(value, bool)
            elif kind is int:
                good = isinstance(value, int) and not isinstance(value, bool)
            elif kind is float:
                good = isinstance(value, int | float) and not isinstance(value, bool)
            else:
                good = isinstance(value, str)
            if not good:
                raise TrainingError(f"{f.name} must be {_TYPE_NAMES[kind]}, got {value!r}"[:200],
                                    field=f.name)

    def schedule(self) -> LRSchedule:
        """A fresh learning-rate schedule for these settings."""
        lr = OPTIMIZERS[self.optimizer].default_lr if self.lr is None else self.lr
        return LRSchedule(self.lr_policy, float(lr), self.lr_step, self.gamma, self.patience,
                          self.epochs)

    def make_optimizer(self) -> Optimizer:
        """The optimizer named by ``optimizer``, with the settings it declares (an
        optimizer without momentum ignores ``momentum``)."""
        kind = OPTIMIZERS[self.optimizer]
        given = {"momentum": self.momentum, "weight_decay": self.weight_decay}
        return kind(**{k: v for k, v in given.items() if k in kind.defaults})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainSettings:
        """Settings from a checkpoint's JSON; unknown keys are ignored, types checked."""
        if not isinstance(values, dict):
            raise TrainingError(f"settings must be a JSON object, got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        settings = cls(**{k: v for k, v in values.items() if k in known})
        settings._check_types()
        return settings


# The names a text setting may take: the library's own registry and tuples
CHOICES: dict[str, Collection[str]] = {
    "optimizer": OPTIMIZERS, "lr_policy": LR_POLICIES, "init": INITIALIZERS,
    "conv_algo": CONV_ALGORITHMS,
}
# The valid range of each number setting
BOUNDS: dict[str, Bounds] = {
    "epochs": Bounds(1), "batch_size": Bounds(1), "lr": LR_BOUNDS,
    "momentum": Bounds(0, 1, high_open=True), "weight_decay": Bounds(0, math.inf, high_open=True),
    "lr_step": STEP_BOUNDS, "gamma": GAMMA_BOUNDS, "patience": PATIENCE_BOUNDS,
    "label_smoothing": Bounds(0, 1, high_open=True),
    "val_split": Bounds(0, 1, high_open=True), "seed": SEEDS, "limit": Bounds(1),
}
# The type of each setting (int settings hold no bool; float ones take ints too)
TYPES: dict[str, type] = {
    "spec": str, "data": str, "epochs": int, "batch_size": int, "lr": float,
    "momentum": float, "weight_decay": float, "optimizer": str, "lr_policy": str,
    "lr_step": int, "gamma": float, "patience": int, "label_smoothing": float, "init": str,
    "augment": bool, "val_split": float, "seed": int, "limit": int, "conv_algo": str,
}
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
