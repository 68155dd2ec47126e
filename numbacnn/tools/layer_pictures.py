"""Pictures of what a network's layers hold: a conv layer's filters (one diverging colour
scale centred at 0) and the activation maps of one image (one colour scale per layer),
with its class probabilities. ``numbacnn plot filters|features`` draws them.

Like :mod:`numbacnn.tools.plots`, each ``*_figure`` returns a matplotlib Figure made
without pyplot; :func:`numbacnn.tools.plots.save_figure` writes it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from numbacnn.tools.plots import PlotError, drawn_text, new_figure, overflowed

SEPARATOR = (0.78, 0.86, 0.95)  # pale blue lines between filter tiles, RGB 0…1
WEIGHT_GAP = (0.7, 0.7, 0.7)  # grey between weight tiles: not a colour of RdBu_r
FILTER_GAP = 2  # pixels between filters drawn as rows of slices (1 between slices)
PROBABILITY_BARS = 20  # classes drawn in plot features; the most likely when more


# ----------------------------------------------------------------------------- images


def _scaled(values: np.ndarray) -> np.ndarray:
    """``values`` scaled to 0…1 by their own minimum and maximum (constant → 0.5)."""
    values = np.asarray(values, np.float64)
    low, high = float(values.min()), float(values.max())
    if high - low <= 1e-12 * max(1.0, abs(high)):
        return np.full(values.shape, 0.5)
    return (values - low) / (high - low)


def mosaic(tiles: np.ndarray, columns: int | None = None, gap: int = 1,
           background: float | tuple[float, float, float] = 1.0) -> np.ndarray:
    """Tiles T×h×w (grey) or T×h×w×3 (RGB), each already in 0…1, laid out in a grid of
    ``columns`` (default ceil(√T)) with ``gap`` pixels of ``background`` between and
    around them: one (rows·(h+gap)+gap) × (columns·(w+gap)+gap) [×3] image
    (``background`` an RGB triple for RGB tiles)."""
    T, h, w = tiles.shape[:3]
    columns = columns or max(1, math.ceil(math.sqrt(T)))
    rows = max(1, math.ceil(T / columns))
    out = np.full((rows * (h + gap) + gap, columns * (w + gap) + gap, *tiles.shape[3:]),
                  background, np.float64)
    for t in range(T):
        r, c = divmod(t, columns)
        y, x = gap + r * (h + gap), gap + c * (w + gap)
        out[y:y + h, x:x + w] = tiles[t]
    return out


def filter_tiles(weights: np.ndarray) -> np.ndarray:
    """Conv weights K×C×F×F as K images in 0…1, each filter scaled to its own range:
    K×F×F×3 (RGB) for C = 3, K×F×F (grey) otherwise (the mean over the C channels
    when C is not 1)."""
    weights = np.asarray(weights, np.float64)
    if weights.ndim != 4:
        raise PlotError(f"filters must be K x C x F x F, got shape {weights.shape}")
    if weights.shape[1] == 3:
        return np.stack([_scaled(w).transpose(1, 2, 0) for w in weights])
    return np.stack([_scaled(w.mean(axis=0)) for w in weights])


def filter_slices(weights: np.ndarray, max_slices: int = 16) -> tuple[np.ndarray, int, int]:
    """Conv weights K×C×F×F as one image of the raw weights: filter k's first S =
    min(C, ``max_slices``) slices side by side (slice d weighs the layer's input map d),
    the K filter blocks in a grid of ``columns`` about twice as wide as high, NaN between
    slices (1 px) and between filters (2 px above each other, F + 2 beside each other; 1
    when C = 1). Returns (image, columns, S)."""
    weights = np.asarray(weights, np.float64)
    if weights.ndim != 4:
        raise PlotError(f"filters must be K x C x F x F, got shape {weights.shape}")
    K, C = weights.shape[:2]
    S = min(C, max_slices)
    blocks = np.stack([mosaic(w[:S], columns=S, background=np.nan)[1:-1, 1:-1]
                       for w in weights])  # a filter's slices, 1 px apart, no border
    block_h, block_w = blocks.shape[1:]
    columns = max(1, min(K, int(math.sqrt(2 * K * block_h / block_w))))
    if C == 1:
        return mosaic(blocks, columns, background=np.nan), columns, S
    # blocks side by side get F more columns between them, so rows of slices stay apart
    extra = 0 if columns == 1 else weights.shape[2]
    blocks = np.pad(blocks, ((0, 0), (0, 0), (0, extra)), constant_values=np.nan)
    image = mosaic(blocks, columns, gap=FILTER_GAP, background=np.nan)
    return image[:, :image.shape[1] - extra], columns, S


def filters_figure(weights: np.ndarray, title: str = "", max_slices: int = 16,
                   rgb: bool = False) -> Any:
    """The filters K×C×F×F of a conv layer on one diverging colour scale centred at 0
    (RdBu_r over ±max|w| of the layer, with a colour bar): a grid of K tiles for C = 1,
    else one row of slices per filter (see :func:`filter_slices`). ``rgb`` (C = 3 only)
    draws each filter as a colour image instead, each scaled to its own range, as in the
    lecture's picture of AlexNet's first layer."""
    weights = np.asarray(weights, np.float64)
    if weights.ndim != 4:
        raise PlotError(f"filters must be K x C x F x F, got shape {weights.shape}")
    if rgb:
        return _colour_filters_figure(weights, title)
    import matplotlib

    K, C, F = weights.shape[:3]
    image, columns, S = filter_slices(weights, max_slices)
    largest = float(np.abs(weights).max())
    bound = largest or 1.0  # all zero: any symmetric scale shows 0
    h, w = image.shape
    px = min(0.3, 8.0 / w, 7.0 / h)  # inches per weight
    figure = new_figure(max(5.0, w * px + 1.8), max(3.2, h * px + 1.4))
    axes = figure.subplots()
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad=WEIGHT_GAP)
    shown = axes.imshow(image, cmap=cmap, vmin=-bound, vmax=bound, interpolation="nearest")
    figure.colorbar(shown, ax=axes, label="weight", shrink=0.8)
    if columns == 1 and C > 1:  # one filter per row, one input map per column: label both
        step = max(1, math.ceil(K / 32))
        axes.set_yticks([FILTER_GAP + k * (F + FILTER_GAP) + (F - 1) / 2
                         for k in range(0, K, step)],
                        [str(k + 1) for k in range(0, K, step)], fontsize=7)
        axes.set_xticks([FILTER_GAP + d * (F + 1) + (F - 1) / 2 for d in range(S)],
                        [str(d + 1) for d in range(S)], fontsize=7)
        axes.tick_params(length=0)
        axes.set(xlabel="slice d: the weights on input map d", ylabel="filter k (makes map k)")
        for spine in axes.spines.values():
            spine.set_visible(False)
        layout = ""
    else:
        axes.set_axis_off()
        layout = ("\neach filter a row of its slices, " if C > 1 else ", ") + \
            "in reading order (filter k makes map k)"
    sliced = "" if C == 1 else (f", all {C} slices" if S == C else f", first {S} of {C} slices")
    axes.set_title((f"{title}\n" if title else "") + f"{K} filters of {F}x{F}x{C}{sliced}"
                   f"{layout}\nred > 0 > blue, one scale for the layer "
                   f"({f'±{largest:.3g}' if largest else 'all weights 0'})",
                   fontsize=9)
    return figure


def _colour_filters_figure(weights: np.ndarray, title: str) -> Any:
    """Filters K×3×F×F as K colour images (see :func:`filter_tiles`) separated by pale blue
    lines, about twice as wide as high."""
    if weights.shape[1] != 3:
        raise PlotError(f"colour filters need 3 input channels (RGB); these filters have "
                        f"{weights.shape[1]}: draw them on the diverging scale instead",
                        field="rgb")
    tiles = filter_tiles(weights)
    K = len(tiles)
    columns = max(1, math.ceil(math.sqrt(2 * K)))
    rows = math.ceil(K / columns)
    image = mosaic(tiles, columns, background=SEPARATOR)
    cell = 0.75 if K > 16 else 1.0
    figure = new_figure(max(5.0, columns * cell + 0.4), max(2.5, rows * cell + 1.0))
    axes = figure.subplots()
    axes.imshow(image, interpolation="nearest")
    axes.set_axis_off()
    F = weights.shape[2]
    axes.set_title((f"{title}\n" if title else "") + f"{K} filters of {F}x{F}x3 (RGB, "
                   "each scaled to its own range: no common scale, no sign)", fontsize=9)
    return figure


def conv_filters(net: Any, layer: int | None = None,
                 where: str = "the network") -> tuple[int, Any, np.ndarray]:
    """(number, layer, weights K×C×F×F on the host) of conv layer ``layer`` of ``net``,
    numbered from 1 as in the shapes table (default: the first conv layer): what
    :func:`filters_figure` draws. PlotError (``field`` "layer") naming the conv layers'
    numbers when ``layer`` is not one, or when the network has none."""
    from numbacnn.device import to_host
    from numbacnn.layers import Conv2D

    convs = [i + 1 for i, la in enumerate(net.layers) if isinstance(la, Conv2D)]
    if not convs:
        raise PlotError(f"{where}: has no conv layer, so no filters to draw; use a model whose "
                        "spec has a conv layer")
    number = convs[0] if layer is None else layer
    if number not in convs:
        listed = ", ".join(str(n) for n in convs)
        what = (f"layer {number} of {where} is {net.layers[number - 1].describe()}, not a "
                "conv layer" if number <= len(net.layers) else f"{where} has no layer {number}")
        raise PlotError(f"{what}; its conv layers are {listed} (numbered as in the shapes "
                        "table)", field="layer")
    conv = net.layers[number - 1]
    return number, conv, to_host(conv.params["W"])


def activation_maps(net: Any, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(label, C×H×W host array) of one normalized image x (1×C×H×W float32) after every
    conv and pooling layer of ``net``, in order (a conv's map includes its fused ReLU)."""
    from numbacnn.device import to_host

    maps = []
    for index, layer in enumerate(net.layers):
        x = layer.forward(x, training=False)
        overflowed(to_host(x), index, layer, "this image")
        if layer.feature_map:
            fused = " + relu" if getattr(layer, "fused_relu", False) else ""
            maps.append((f"layer {index + 1}: {layer.describe()}{fused}",
                         np.array(to_host(x)[0], np.float32)))
    return maps


def layer_scale(volume: np.ndarray) -> tuple[float, float, str]:
    """(vmin, vmax, colour map) shared by all maps C×H×W of one layer: viridis over 0…max
    when no value is negative (0 darkest; all 0: 0…1), else RdBu_r over ±max|v| (0 white).
    The scale spans 0 and every value, so a constant map is drawn as its value: a dead
    ReLU map at the bottom of the scale, never mid-scale."""
    low, high = float(np.min(volume)), float(np.max(volume))
    if low < 0:
        bound = max(-low, high)
        return -bound, bound, "RdBu_r"
    return 0.0, high if high > 0 else 1.0, "viridis"


def features_figure(image: np.ndarray, maps: Sequence[tuple[str, np.ndarray]],
                    max_maps: int = 16, title: str = "",
                    probabilities: np.ndarray | None = None,
                    class_names: Sequence[str] = ()) -> Any:
    """The input image (uint8 C×H×W, RGB for C = 3, grey otherwise, 0…255 unscaled) and,
    beside it, the class probabilities (K,) as bars named by ``class_names``; below, one
    row per layer showing its first ``max_maps`` activation maps on one colour scale per
    layer (:func:`layer_scale`) with its colour bar."""
    if not maps:
        raise PlotError("the network has no conv or pooling layer, so there are no "
                        "activation maps to show")
    from matplotlib.colors import Normalize

    columns = max(min(max_maps, len(volume)) for _, volume in maps)
    K = 0 if probabilities is None else len(probabilities)
    top_height = max(1.6, 0.2 * min(K, PROBABILITY_BARS) + 0.8)
    figure = new_figure(11, 0.6 + top_height + 1.35 * len(maps))
    top, *rows = figure.subfigures(1 + len(maps), 1,
                                   height_ratios=[top_height] + [1.35] * len(maps))
    if K:
        image_axes, bar_axes = top.subplots(1, 2, width_ratios=[1, 3])
        _probability_bars(bar_axes, np.asarray(probabilities, np.float64), class_names)
    else:
        image_axes = top.subplots()
    C = image.shape[0]
    shown = image.transpose(1, 2, 0) if C == 3 else image.mean(axis=0)
    image_axes.imshow(shown, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    image_axes.set_title(f"input {image.shape[2]}x{image.shape[1]}x{C}", fontsize=9)
    image_axes.set_axis_off()
    for row, (label, volume) in zip(rows, maps, strict=True):
        vmin, vmax, cmap = layer_scale(volume)
        norm = Normalize(vmin, vmax)
        axes_row = row.subplots(1, columns, squeeze=False)[0]
        count = min(max_maps, len(volume))
        for c, axes in enumerate(axes_row):
            if c < count:
                shown_map = axes.imshow(volume[c], cmap=cmap, norm=norm, interpolation="nearest")
                axes.set_xticks([])
                axes.set_yticks([])
                axes.set_title(str(c + 1), fontsize=7, pad=2)  # a conv's map c+1: filter c+1's
            else:
                axes.set_axis_off()
        bar = row.colorbar(shown_map, ax=list(axes_row), fraction=0.02, pad=0.01, aspect=8)
        bar.ax.tick_params(labelsize=7)
        K_maps, H, W = volume.shape
        dead = int(np.sum(np.all(volume[:count] == 0, axis=(1, 2))))
        note = f"; {dead} shown all 0" if dead else ""
        row.suptitle(f"{label} → {W}x{H}x{K_maps} (first {count} of {K_maps} maps{note}); "
                     f"one colour scale for the layer", fontsize=9)
    if title:
        figure.suptitle(title)
    return figure


def _probability_bars(axes: Any, probabilities: np.ndarray, class_names: Sequence[str]) -> None:
    """Horizontal bars of the class probabilities (the PROBABILITY_BARS most likely when
    there are more), the predicted class darker, each labelled with its %."""
    K = len(probabilities)
    names = list(class_names) or [str(k) for k in range(K)]
    order = np.argsort(-probabilities, kind="stable")[:PROBABILITY_BARS]
    shown = np.arange(K) if K <= PROBABILITY_BARS else order
    y = np.arange(len(shown))
    colours = ["#1f77b4" if k == order[0] else "#9ecae1" for k in shown]
    axes.barh(y, probabilities[shown], color=colours)
    for i, k in enumerate(shown):
        axes.text(probabilities[k] + 0.01, i, f"{100 * probabilities[k]:.1f}%",
                  va="center", fontsize=7)
    axes.set_yticks(y, [drawn_text(names[k]) for k in shown], fontsize=7)
    axes.invert_yaxis()
    axes.set_xlim(0, 1.15)
    axes.set_xticks([0, 0.25, 0.5, 0.75, 1])
    axes.tick_params(axis="x", labelsize=7)
    which = "" if K <= PROBABILITY_BARS else f" (top {len(shown)} of {K})"
    axes.set_title(f"class probabilities{which}", fontsize=9)
