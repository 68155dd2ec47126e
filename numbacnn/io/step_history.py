"""The training loss logged within epochs: one point every ``every`` steps (an SGD step
is one batch), kept in a model file beside the per-epoch history (``history/steps``,
docs/hdf5.md).

Each point is the mean training loss (cross-entropy) of the images since the previous
point, the number of steps trained so far at its end and the fractional epoch there
(``epoch + batch / batches``). A point ends every ``every`` steps within an epoch and at
the end of every epoch, so the last point of epoch e sits at exactly e. On a GPU the
loss sums are read back only at progress updates, so a point there ends at the first
update after ``every`` steps: it is the mean of at least ``every`` steps.

    steps = StepHistory(every=1)
    steps.add(loss_sum, images, steps=1)            # after each read of the loss sums
    steps.end_point(step=12, epoch=0.5)             # when ``due`` (or at an epoch's end)

``pending_*`` hold the sums of a point not yet ended; a checkpoint saved inside an epoch
(Ctrl-C) keeps them, so a resumed run logs the same points as an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import h5py
import numpy as np

from numbacnn.io.hdf5 import Damaged, float_attr, group, int_attr, read_floats, shown

GROUP = "steps"  # history/steps in a model file
MAX_POINTS = 2000  # a run logs at most about this many points


def points_every(total_steps: int, max_points: int = MAX_POINTS) -> int:
    """Steps per point so that ``total_steps`` give at most ``max_points`` points (every
    step for a short run)."""
    return max(1, math.ceil(total_steps / max_points))


@dataclass
class StepHistory:
    """Per-step training loss: ``step`` (steps trained, int), ``epoch`` (fractional) and
    ``loss`` (mean cross-entropy), one entry per point; ``every``: steps per point (0: none
    recorded, as in a file written before numbacnn logged per step)."""

    every: int = 0
    step: list[int] = field(default_factory=list)
    epoch: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    pending_loss: float = 0.0  # Σ loss of the images since the last point
    pending_images: float = 0.0
    pending_steps: int = 0

    def __len__(self) -> int:
        return len(self.step)

    def add(self, loss_sum: float, images: float, steps: int) -> None:
        """Count ``steps`` steps over ``images`` images whose losses sum to ``loss_sum``."""
        self.pending_loss += loss_sum
        self.pending_images += images
        self.pending_steps += steps

    @property
    def due(self) -> bool:
        """Whether the pending steps make a point."""
        return self.pending_steps >= max(self.every, 1)

    def end_point(self, step: int, epoch: float) -> None:
        """End the pending point at ``step`` (steps trained) and ``epoch`` (fractional);
        nothing when no image is pending."""
        if self.pending_images > 0:
            self.step.append(int(step))
            self.epoch.append(float(epoch))
            self.loss.append(self.pending_loss / self.pending_images)
        self.pending_loss, self.pending_images, self.pending_steps = 0.0, 0.0, 0


def write_step_history(history: h5py.Group, steps: StepHistory) -> None:
    """``history/steps`` with @every, the pending sums, and step (int64), epoch and loss
    (float64), each (points,); nothing when ``steps.every`` is 0."""
    if steps.every <= 0:
        return
    g = history.create_group(GROUP)
    g.attrs["every"] = np.int64(steps.every)
    g.attrs["pending_loss"] = np.float64(steps.pending_loss)
    g.attrs["pending_images"] = np.float64(steps.pending_images)
    g.attrs["pending_steps"] = np.int64(steps.pending_steps)
    g.create_dataset("step", data=np.asarray(steps.step, np.int64))
    g.create_dataset("epoch", data=np.asarray(steps.epoch, np.float64))
    g.create_dataset("loss", data=np.asarray(steps.loss, np.float64))


def read_step_history(history: h5py.Group) -> StepHistory:
    """The StepHistory in ``history/steps``; an empty one (``every`` 0) when the file has
    none. Damaged for a malformed group."""
    if GROUP not in history:
        return StepHistory()
    g = group(history, GROUP)
    where = g.name
    every = int_attr(g.attrs, "every", where)
    pending_steps = int_attr(g.attrs, "pending_steps", where)
    pending = [float_attr(g.attrs, key, where) for key in ("pending_loss", "pending_images")]
    if every < 1 or pending_steps < 0 or min(pending) < 0:
        raise Damaged(f"{where} has every={shown(every)}, pending steps {pending_steps}, "
                      f"sums {pending}: expected every ≥ 1 and no negative sum")
    step = g.get("step")
    if not isinstance(step, h5py.Dataset) or step.dtype.kind not in "iu" or step.ndim != 1:
        raise Damaged(f"{where}/step is not a 1-D integer array")
    epoch = read_floats(g.get("epoch"), (len(step),), "the steps", ndim=1)
    loss = read_floats(g.get("loss"), (len(step),), "the steps", ndim=1)
    steps = [int(s) for s in step[()]]
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)) or (steps and steps[0] < 1):
        raise Damaged(f"{where}/step is not increasing from 1")
    return StepHistory(every, steps, [float(e) for e in epoch], [float(v) for v in loss],
                       pending[0], pending[1], pending_steps)
