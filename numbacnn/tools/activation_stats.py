"""Activation and gradient statistics per layer on one batch: the lecture's pictures of
activations that shrink towards zero or explode with depth, and of dead ReLUs.

:func:`layer_statistics` runs one forward pass (inference mode: dropout off, batchnorm
with its running statistics) and one backward pass from the cross-entropy of the
batch's labels, and keeps each layer's output N×C×H×W and the gradient of the loss
with respect to it, on the host, with their mean and std. For a ReLU (its own layer,
or fused into the conv or batchnorm before it, whose output it then is) it also counts
the dead units: outputs (one channel at one position, C·H·W of them) that are exactly
0 for every image of the batch, so no gradient flows through them. A fused ReLU layer
is not listed on its own: its output is the layer before it's.

:func:`activations_figure` draws them (matplotlib, as :mod:`numbacnn.tools.plots`): a
summary of the std per layer (log scale: shrinking or exploding shows as a slope), then
per layer the histogram of its outputs beside that of their gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from numbacnn.device import to_host
from numbacnn.tools.plots import PlotError, overflowed, require_matplotlib

KIND = "activations"  # numbacnn plot activations MODEL
HISTOGRAM_BINS = 60


@dataclass(frozen=True)
class LayerStatistics:
    """One layer's output on a batch and the loss gradient with respect to it.

    ``index``: 0-based layer index; ``label``: e.g. 'layer 1: conv 32 3 stride=1 pad=1
    + relu', ``short``: e.g. '1 conv+relu'; ``shape``: (C, H, W) of one image's output;
    ``values``/``gradients``: the N×C×H×W outputs and gradients (float32, host);
    ``dead``: the share (0…1) of the C·H·W outputs that are exactly 0 on every image, for
    a ReLU output, else None.
    """

    index: int
    label: str
    short: str
    shape: tuple[int, int, int]
    values: np.ndarray
    gradients: np.ndarray
    dead: float | None

    @property
    def mean(self) -> float:
        return float(self.values.mean(dtype=np.float64))

    @property
    def std(self) -> float:
        return float(self.values.std(dtype=np.float64))

    @property
    def gradient_mean(self) -> float:
        return float(self.gradients.mean(dtype=np.float64))

    @property
    def gradient_std(self) -> float:
        return float(self.gradients.std(dtype=np.float64))


def dead_share(outputs: np.ndarray) -> float:
    """The share (0…1) of the per-image outputs of ``outputs`` N×… that are exactly 0 for
    all N images (a dead ReLU unit); 0 for an empty batch."""
    if outputs.shape[0] == 0 or outputs[0].size == 0:
        return 0.0
    return float(np.all(outputs == 0, axis=0).mean())


def _ends_in_relu(layer: Any) -> bool:
    from numbacnn.layers import ReLU

    return isinstance(layer, ReLU) or bool(getattr(layer, "fused_relu", False))


def layer_statistics(net: Any, x: np.ndarray, labels: np.ndarray) -> list[LayerStatistics]:
    """Per layer of ``net`` (fused ReLUs shown with the layer before them): its outputs on
    the normalized float32 images ``x`` N×C×H×W (inference mode) and the gradients of the
    mean cross-entropy of the int ``labels`` (N,) with respect to them. Leaves the
    network's weights and running statistics as they were (its gradients are
    overwritten)."""
    net.require_scores()  # the gradients are the cross-entropy's: a network that classifies
    labels = np.asarray(labels)
    if len(x) == 0 or len(labels) != len(x):
        raise PlotError(f"activation statistics need a batch of images with one label each, "
                        f"got {len(x)} images and {len(labels)} labels")
    outputs = []
    h = x
    for index, layer in enumerate(net.layers):
        h = layer.forward(h, training=False)
        outputs.append(np.array(to_host(h), np.float32))  # a copy: buffers are reused
        overflowed(outputs[-1], index, layer, "these images")
    net.loss.forward(h, labels)
    dy = net.loss.backward()
    gradients: list[np.ndarray] = [np.empty(0, np.float32)] * len(net.layers)
    for index in range(len(net.layers) - 1, -1, -1):
        gradients[index] = np.array(to_host(dy), np.float32).reshape(outputs[index].shape)
        overflowed(gradients[index], index, net.layers[index], "these images' gradients")
        dy = net.layers[index].backward(dy, need_dx=index > 0)
    stats = []
    for index, layer in enumerate(net.layers):
        if getattr(layer, "fused", False) and _ends_in_relu(layer):
            continue  # a fused ReLU: its output is the previous layer's, shown there (a
            # fused max pooling is fused in training passes only: shown as it is)
        fused = " + relu" if getattr(layer, "fused_relu", False) else ""
        off = " (off: inference)" if layer.draws_random else ""  # dropout passes x on
        values = outputs[index]
        stats.append(LayerStatistics(
            index, f"layer {index + 1}: {layer.describe()}{fused}{off}",
            f"{index + 1} {layer.kind}{fused.replace(' ', '')}", tuple(values.shape[1:]),
            values, gradients[index], dead_share(values) if _ends_in_relu(layer) else None))
    return stats


def summary_lines(stats: Sequence[LayerStatistics]) -> list[str]:
    """One line per layer: its output's mean and std (and dead share), its gradient's std."""
    lines = []
    for s in stats:
        dead = "" if s.dead is None else f", dead {100 * s.dead:.1f}%"
        lines.append(f"{s.label}: outputs mean {s.mean:.3g} std {s.std:.3g}{dead}; "
                     f"gradients std {s.gradient_std:.3g}")
    return lines


def _histogram(axes: Any, values: np.ndarray, colour: str) -> None:
    flat = values.ravel().astype(np.float64)
    low, high = float(flat.min()), float(flat.max())
    if high - low <= 1e-12 * max(1.0, abs(high)):  # constant (e.g. all zero): one bar
        low, high = low - 0.5, high + 0.5
    axes.hist(flat, bins=HISTOGRAM_BINS, range=(low, high), color=colour, log=True)
    axes.set_ylabel("count (log)", fontsize=7)
    axes.tick_params(labelsize=7)
    axes.grid(alpha=0.3)


def activations_figure(stats: Sequence[LayerStatistics], title: str = "") -> Any:
    """The std of each layer's outputs and gradients (log scale) on top, then one row per
    layer: the histogram of its outputs (left) and of the loss gradients with respect to
    them (right, log counts), with mean, std and for ReLU outputs the dead share."""
    if not stats:
        raise PlotError("the network has no layers, so there are no activations to show")
    rows = len(stats)
    figure = require_matplotlib().Figure(figsize=(11, 2.6 + 1.7 * rows), layout="constrained")
    grid = figure.add_gridspec(rows + 1, 2, height_ratios=[1.5] + [1] * rows)
    summary = figure.add_subplot(grid[0, :])
    positions = np.arange(1, rows + 1)
    for key, name, marker in (("std", "outputs", "o"), ("gradient_std", "gradients", "s")):
        series = np.array([getattr(s, key) for s in stats])
        shown = np.where(series > 0, series, np.nan)  # a zero std has no place on a log axis
        summary.plot(positions, shown, marker=marker, label=f"std of the {name}")
    summary.set_yscale("log")
    summary.set_xticks(positions, [s.short for s in stats], fontsize=8)
    summary.set_ylabel("std (log scale)", fontsize=8)
    summary.set_title("spread per layer: a steady fall or rise over the layers means the "
                      "activations or gradients shrink or explode with depth", fontsize=9)
    summary.grid(alpha=0.3)
    summary.legend(fontsize=8)
    for row, s in enumerate(stats, start=1):
        left, right = figure.add_subplot(grid[row, 0]), figure.add_subplot(grid[row, 1])
        _histogram(left, s.values, "#1f77b4")
        _histogram(right, s.gradients, "#ff7f0e")
        C, H, W = s.shape
        N = len(s.values)
        dead = ("" if s.dead is None
                else f", dead {100 * s.dead:.1f}% (0 on all {N} images)")
        left.set_title(f"{s.label} → {W}x{H}x{C}\noutputs: mean {s.mean:.3g}, std "
                       f"{s.std:.3g}{dead}", fontsize=8)
        right.set_title(f"gradient of the batch's mean loss w.r.t. these outputs\n"
                        f"mean {s.gradient_mean:.3g}, std {s.gradient_std:.3g}", fontsize=8)
    N = len(stats[0].values)
    figure.suptitle((f"{title}\n" if title else "") + "inference mode (dropout off, batchnorm "
                    f"with its running statistics); gradients are of the mean over {N} "
                    f"images, so 1/{N} of one image's", fontsize=9)
    return figure
