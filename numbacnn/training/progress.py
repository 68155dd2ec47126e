"""What training reports as it goes: :class:`BatchProgress` after a batch (for a
progress bar) and :class:`EpochRecord` after an epoch (its summary line and the
history a checkpoint keeps). The trainer hands them to its ``on_batch`` and ``on_epoch``
callbacks; how they are shown is the caller's (the CLI draws click's progress bar).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class EpochRecord:
    """One epoch's summary: losses (mean cross-entropy), accuracies (0…1), lr, seconds.

    ``val_loss``/``val_acc`` are NaN when there is no validation split.
    """

    epoch: int
    epochs: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float

    def line(self) -> str:
        """The one-line summary printed after each epoch."""
        val = ("val loss —      acc —     " if math.isnan(self.val_loss) else
               f"val loss {self.val_loss:.4f} acc {100 * self.val_acc:6.2f}%")
        return (f"epoch {self.epoch:>{len(str(self.epochs))}}/{self.epochs}  "
                f"train loss {self.train_loss:.4f} acc {100 * self.train_acc:6.2f}%  {val}  "
                f"lr {self.lr:.4g}  {self.seconds:.1f} s")


@dataclass
class BatchProgress:
    """Where an epoch stands after a batch: for a progress bar. ``loss`` (mean
    cross-entropy) and ``accuracy`` (0…1) are over the epoch's images so far."""

    epoch: int
    epochs: int
    batch: int
    batches: int
    loss: float
    accuracy: float
    images_per_second: float
    eta_seconds: float
