"""Learning-rate policies: how the learning rate changes from one epoch to the next.

- ``constant``: the base rate throughout.
- ``step``: multiply by ``gamma`` every ``step`` epochs: lr = base · gamma^⌊epoch / step⌋.
- ``cosine``: half a cosine from the base rate down towards 0 over the run's ``epochs``:
  lr = base · ½ (1 + cos(π · epoch / epochs)) for epoch 0, 1, …, epochs − 1 (the last
  epoch at base · ½ (1 − cos(π / epochs)), e.g. 1.1% of it for 15 epochs, and after it).
- ``plateau``: divide by 10 when the monitored accuracy (validation accuracy, or training
  accuracy when there is no validation split) has not improved for ``patience`` epochs,
  the lecture's AlexNet recipe.

A schedule is asked for the rate of the coming epoch (:attr:`LRSchedule.lr`) and told
the accuracy at the end of each epoch (:meth:`LRSchedule.end_epoch`). Its state is a
small dict saved in checkpoints, so a resumed run continues with the same rates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from numbacnn.errors import TrainingError
from numbacnn.limits import Bounds

LR_POLICIES = ("constant", "step", "plateau", "cosine")
PLATEAU_FACTOR = 0.1
# Valid values of the options (TrainSettings and the CLI take theirs from here)
LR_BOUNDS = Bounds(0, math.inf, low_open=True, high_open=True)
STEP_BOUNDS = Bounds(1)  # epochs
GAMMA_BOUNDS = Bounds(0, 1, low_open=True)
PATIENCE_BOUNDS = Bounds(1)  # epochs
EPOCH_BOUNDS = Bounds(1)


@dataclass
class LRSchedule:
    """The learning rate of each epoch under ``policy``.

    ``base_lr``: rate of the first epoch; ``step``: epochs between reductions (policy
    ``step``); ``gamma``: factor of each step reduction; ``patience``: epochs without
    improvement before a plateau reduction; ``epochs``: the run's length, over which
    ``cosine`` anneals (a resumed run with more epochs stretches the rest). ``lr``,
    ``best`` and ``stale_epochs`` are the running state (the coming epoch's rate, the best
    accuracy seen, epochs since it).
    """

    policy: str = "constant"
    base_lr: float = 0.01
    step: int = 10
    gamma: float = 0.1
    patience: int = 2
    epochs: int = 1
    lr: float = -1.0
    best: float = -1.0
    stale_epochs: int = 0

    def __post_init__(self) -> None:
        if self.policy not in LR_POLICIES:
            raise TrainingError(f"unknown lr policy {self.policy!r}: choose one of "
                                f"{', '.join(LR_POLICIES)}", field="policy")
        for name, bounds in (("base_lr", LR_BOUNDS), ("step", STEP_BOUNDS),
                             ("gamma", GAMMA_BOUNDS), ("patience", PATIENCE_BOUNDS),
                             ("epochs", EPOCH_BOUNDS)):
            bounds.check(name, getattr(self, name), TrainingError)
        if self.lr < 0:
            self.lr = float(self.base_lr)

    def end_epoch(self, epochs_done: int, accuracy: float) -> float:
        """Record the accuracy (0…1) of the epoch just finished; return the next epoch's lr.

        ``epochs_done`` counts the finished epochs, this one included.
        """
        improved = accuracy > self.best
        if improved:
            self.best = float(accuracy)
            self.stale_epochs = 0
        else:
            self.stale_epochs += 1
        if self.policy == "step":
            self.lr = self.base_lr * self.gamma ** (epochs_done // self.step)
        elif self.policy == "cosine":
            self.lr = self._cosine(epochs_done)
        elif self.policy == "plateau" and self.stale_epochs >= self.patience:
            self.lr *= PLATEAU_FACTOR
            self.stale_epochs = 0
        return self.lr

    def set_epochs(self, epochs: int, epochs_done: int) -> None:
        """A resumed run's new total of ``epochs``, ``epochs_done`` of them finished:
        ``cosine`` anneals the rest over the new length (the same rate if it is unchanged)."""
        EPOCH_BOUNDS.check("epochs", epochs, TrainingError)
        self.epochs = epochs
        if self.policy == "cosine":
            self.lr = self._cosine(epochs_done)

    def _cosine(self, epochs_done: int) -> float:
        # past the end the last epoch's rate stays (> 0: a checkpoint's next lr must be)
        done = min(epochs_done, self.epochs - 1)
        return self.base_lr * 0.5 * (1.0 + math.cos(math.pi * done / self.epochs))

    def state(self) -> dict[str, Any]:
        """Every field as plain JSON-able values."""
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LRSchedule:
        return cls(**state)
