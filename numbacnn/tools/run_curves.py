"""Training curves of several runs in one picture (``numbacnn plot curves A.h5 B.h5 ...``).

Loss (left) and accuracy (right) against epochs; one colour per run, training solid and
validation dashed; each run labelled by what sets it apart from the others
(:func:`numbacnn.tools.compare.run_labels`). With ``per_step`` the training loss is the
per-step log (:mod:`numbacnn.io.step_history`) at fractional epochs. Returns a
``matplotlib.figure.Figure`` made without pyplot, like :mod:`numbacnn.tools.plots`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from numbacnn.io.step_history import StepHistory
from numbacnn.tools.plots import PlotError, require_matplotlib


@dataclass
class RunCurves:
    """One run to draw: its ``label``, per-epoch ``history`` (float64 (epochs,) arrays as
    in a model file), per-step log ``steps`` and, when known, its ``test_accuracy``
    (0…1)."""

    label: str
    history: dict[str, np.ndarray]
    steps: StepHistory
    test_accuracy: float | None = None


def _values(history: dict[str, np.ndarray], key: str, length: int) -> np.ndarray:
    return np.asarray(history.get(key, np.full(length, np.nan)), np.float64)


def runs_figure(runs: Sequence[RunCurves], per_step: bool = False, title: str = "",
                where: Sequence[str] = ()) -> object:
    """Overlaid curves of ``runs``: per epoch (dots) or, with ``per_step``, the training
    loss per logged step (a line; runs without a per-step log keep their dots). PlotError
    when a run has no finished epoch (``where`` names the runs' files)."""
    for i, run in enumerate(runs):
        if len(run.history.get("train_loss", ())) == 0:
            name = where[i] if i < len(where) else run.label
            raise PlotError(f"{name}: has no training history (no finished epoch); plot "
                            "checkpoints saved after at least one epoch of training")
    figure = require_matplotlib().Figure(figsize=(11, 4.2 + 0.25 * len(runs)),
                                         layout="constrained")
    loss_axes, acc_axes = figure.subplots(1, 2)
    most = max(len(run.history["train_loss"]) for run in runs)
    every = set()  # steps per point of the per-step logs drawn
    for i, run in enumerate(runs):
        colour = f"C{i % 10}"
        epochs = np.arange(1, len(run.history["train_loss"]) + 1)
        dots = {"color": colour, "marker": "o", "markersize": 3}
        label = run.label + ("" if run.test_accuracy is None
                             else f" (test {100 * run.test_accuracy:.2f}%)")
        if per_step and len(run.steps):
            loss_axes.plot(run.steps.epoch, run.steps.loss, color=colour, linewidth=1,
                           label=label)
            every.add(run.steps.every)
        else:
            loss_axes.plot(epochs, run.history["train_loss"], **dots, label=label)
        loss_axes.plot(epochs, _values(run.history, "val_loss", len(epochs)), **dots,
                       linestyle="--")
        for key, style in (("train_acc", "-"), ("val_acc", "--")):
            acc_axes.plot(epochs, 100 * _values(run.history, key, len(epochs)), **dots,
                          linestyle=style)
    run_legend = loss_axes.get_legend_handles_labels()
    # what the line styles mean, in black, in each panel (the colours are the runs): the
    # training value of an epoch is its mean over the epoch, so it lags the validation
    # value measured with the weights at the epoch's end
    by_epoch = "training (mean over the epoch)"
    steps_text = ("training (each step)" if every == {1} else
                  f"training (mean of every {'/'.join(map(str, sorted(every)))} steps)")
    for axes, training in ((loss_axes, steps_text if every else by_epoch),
                           (acc_axes, by_epoch)):
        handles = [axes.plot([], [], color="black", linestyle=style, label=meaning)[0]
                   for style, meaning in (("-", training),
                                          ("--", "validation (at the epoch's end)"))]
        axes.legend(handles=handles, loc="best", fontsize=8, title="line style",
                    title_fontsize=8)
    figure.legend(*run_legend, loc="outside lower center", ncols=min(len(runs), 3),
                  fontsize=9, title="runs (what differs)", title_fontsize=9)
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    acc_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for axes in (loss_axes, acc_axes):
        axes.grid(alpha=0.3)
        axes.set_xlim(0 if per_step else 0.5, most + 0.5)
        axes.xaxis.get_major_locator().set_params(integer=True)
    if title:
        figure.suptitle(title)
    return figure
