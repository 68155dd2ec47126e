"""Pictures of a model: training curves, a conv layer's filters, activation maps, confusion
matrix, per-layer benchmark times. ``numbacnn plot`` (``cli/plot.py``) draws them; the
messages here speak of models, checkpoints and results, and the CLI adds its commands.

Each ``*_figure`` function returns a ``matplotlib.figure.Figure`` made without pyplot
(no global state, never a window: PNG is rendered by Agg, SVG and PDF by matplotlib's
vector backends, all headless); :func:`save_figure` writes it
atomically as PNG, SVG or PDF, chosen by the file's suffix, at an exact pixel size
(``size`` in pixels at ``dpi``; an inch is ``dpi`` pixels, a point 1/72 inch).
matplotlib is an optional extra (``pip install 'numbacnn[plot]'``) imported inside the
functions, so ``import numbacnn`` stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from numbacnn.errors import NumbacnnError
from numbacnn.io.atomic_file import replace_atomically
from numbacnn.limits import Bounds

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
DEFAULT_DPI = 100
DPI_BOUNDS = Bounds(10, 1000)  # dots per inch
SIZE_BOUNDS = Bounds(100, 10000)  # pixels of a picture's width and height
KINDS = ("curves", "filters", "features", "confusion", "bench")


class PlotError(NumbacnnError):
    """A picture cannot be drawn (matplotlib missing, bad input, unwritable file)."""


def require_matplotlib() -> Any:
    """``matplotlib.figure`` (Agg-rendered Figures), or PlotError with the install command."""
    try:
        import matplotlib.figure
    except ImportError:
        raise PlotError("plotting needs matplotlib: pip install 'numbacnn[plot]' (or pip "
                        "install matplotlib)") from None
    return matplotlib.figure


def picture_format(path: str | Path, formats: dict[str, str] = FORMATS) -> str:
    """'png', 'svg' or 'pdf' (a value of ``formats``) from the suffix of ``path``;
    PlotError for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in formats:
        *most, last = formats
        raise PlotError(f"{path}: unknown picture type {suffix or '(no suffix)'!r}; end the "
                        f"file name in {', '.join(most)} or {last}")
    return formats[suffix]


def check_output(path: str | Path, formats: dict[str, str] = FORMATS) -> Path:
    """``path`` if a picture can be written there (a suffix of ``formats``, existing
    directory); PlotError (``field`` "output") if not."""
    path = Path(path)
    try:
        picture_format(path, formats)
    except PlotError as exc:
        raise PlotError(str(exc), field="output") from None
    if path.is_dir():
        raise PlotError(f"{path}: is a directory; give the picture file to write",
                        field="output")
    if not path.parent.is_dir():
        raise PlotError(f"{path}: directory {path.parent} does not exist; create it "
                        f"(mkdir -p {path.parent}) or choose another path", field="output")
    return path


def parse_size(text: str) -> tuple[int, int]:
    """'800x600' → (800, 600) pixels (width, height), each within SIZE_BOUNDS; PlotError
    (``field`` "size") otherwise."""
    parts = text.lower().split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise PlotError(f"size {text!r}: give width x height in pixels, e.g. 800x600",
                        field="size") from None
    if width not in SIZE_BOUNDS or height not in SIZE_BOUNDS:
        raise PlotError(f"size {text!r}: width and height must be {SIZE_BOUNDS.text()} pixels",
                        field="size")
    return width, height


def save_figure(figure: Any, path: str | Path, size: tuple[int, int] | None = None,
                dpi: int = DEFAULT_DPI) -> tuple[int, int]:
    """Write ``figure`` to ``path`` (PNG, SVG or PDF by suffix) atomically; returns the
    size in pixels (width, height). ``size`` (pixels) replaces the figure's own size."""
    path = check_output(path)
    fmt = picture_format(path)
    DPI_BOUNDS.check("dpi", dpi, PlotError)
    if size is not None:
        figure.set_size_inches(size[0] / dpi, size[1] / dpi)
    width, height = (int(round(v * dpi)) for v in figure.get_size_inches())
    _printable_texts(figure)
    # savefig takes the temporary file as a path or as an open binary file alike
    replace_atomically(path, lambda target: _render(figure, target, fmt, dpi, (width, height)),
                       PlotError, "picture")
    return width, height


def _render(figure: Any, target: Any, fmt: str, dpi: int, size: tuple[int, int]) -> None:
    """``figure.savefig``; PlotError (``field`` "size") when the picture is too small for
    what it shows (matplotlib would only warn, and draw its panels on top of each other)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure.savefig(target, format=fmt, dpi=dpi)
    for warning in caught:
        if "constrained_layout not applied" in str(warning.message):
            raise PlotError(f"a picture of {size[0]}x{size[1]} pixels is too small for what it "
                            "shows; give a larger size, or leave the size out", field="size")
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno)  # any other: seen, so that tests catch it


def _printable_texts(figure: Any) -> None:
    """Leave unprintable characters out of every text of ``figure`` (a file or class name
    with a control character would make matplotlib warn of a missing glyph)."""
    from matplotlib.text import Text

    for artist in figure.findobj(Text):
        text = artist.get_text()
        if not text.isprintable():
            artist.set_text("".join(c for c in text if c.isprintable() or c == "\n"))


def drawn_text(text: object, limit: int = 60) -> str:
    """``text`` as a picture shows it: control and other unprintable characters left out
    (no font has a glyph for them: matplotlib would warn), at most ``limit`` characters,
    elided in the middle."""
    line = "".join(c if c.isprintable() else " " for c in str(text))
    line = " ".join(line.split())
    if len(line) <= limit:
        return line
    return line[:limit - 1 - limit // 3] + "…" + line[len(line) - limit // 3:]


def overflowed(values: np.ndarray, index: int, layer: Any, what: str) -> None:
    """PlotError when a layer's outputs (or gradients) ``values`` hold NaN or inf: weights
    beyond float32's range make them, and matplotlib would only warn and draw nothing."""
    if not np.all(np.isfinite(values)):
        raise PlotError(f"layer {index + 1} ({layer.describe()}) computes NaN or infinite "
                        f"values on {what} (the model's weights overflow float32); train "
                        "it again with a lower learning rate")


def new_figure(width_in: float, height_in: float) -> Any:
    figure_module = require_matplotlib()
    return figure_module.Figure(figsize=(width_in, height_in), layout="constrained")


# ----------------------------------------------------------------------------- curves


def curves_figure(history: dict[str, np.ndarray], test_accuracy: float | None = None,
                  title: str = "", where: str = "the model", steps: Any = None) -> Any:
    """Loss (left) and accuracy in % (right) per epoch, training and validation, from a
    model's history (float64 (epochs,) arrays: train_loss, train_acc, val_loss, val_acc,
    lr; accuracies 0…1). Learning-rate changes are dashed vertical lines; the test
    accuracy (0…1), when given, a dotted horizontal line. ``steps``: a
    :class:`numbacnn.io.step_history.StepHistory` whose training loss is drawn as a thin
    line at fractional epochs (``plot curves --per-step``)."""

    train_loss = np.asarray(history.get("train_loss", []), np.float64)
    if len(train_loss) == 0:
        raise PlotError(f"{where}: has no training history (no finished epoch); plot a "
                        "checkpoint saved after at least one epoch of training")
    epochs = np.arange(1, len(train_loss) + 1)
    figure = new_figure(10, 4.2)
    loss_axes, acc_axes = figure.subplots(1, 2)
    series = [(loss_axes, "train_loss", "training", 1.0),
              (loss_axes, "val_loss", "validation", 1.0),
              (acc_axes, "train_acc", "training", 100.0),
              (acc_axes, "val_acc", "validation", 100.0)]
    for axes, key, label, scale in series:
        values = np.asarray(history.get(key, np.full(len(epochs), np.nan)), np.float64) * scale
        if np.all(np.isnan(values)):
            continue
        axes.plot(epochs, values, marker="o", markersize=3, label=label)
    if steps is not None and len(steps):
        loss_axes.plot(steps.epoch, steps.loss, color="C0", linewidth=0.8, alpha=0.6,
                       label="training, each step" if steps.every == 1 else
                       f"training, mean of every {steps.every} steps")
    lr = np.asarray(history.get("lr", []), np.float64)
    for i in range(1, len(lr)):
        if lr[i] != lr[i - 1]:
            for axes in (loss_axes, acc_axes):
                axes.axvline(epochs[i] - 0.5, color="grey", linestyle="--", linewidth=1)
            acc_axes.annotate(f"lr {lr[i - 1]:.3g}→{lr[i]:.3g}", (epochs[i] - 0.5, 0.02),
                              xycoords=("data", "axes fraction"), rotation=90, fontsize=8,
                              color="grey", ha="right", va="bottom")
    if test_accuracy is not None:
        acc_axes.axhline(100 * test_accuracy, color="black", linestyle=":", linewidth=1.5,
                         label=f"test {100 * test_accuracy:.2f}%")
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    acc_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for axes in (loss_axes, acc_axes):
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize=8)
        axes.set_xlim(0 if steps is not None and len(steps) else 0.5, len(epochs) + 0.5)
        axes.xaxis.get_major_locator().set_params(integer=True)
    if title:
        figure.suptitle(title)
    return figure


# ----------------------------------------------------------------------------- confusion


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str], title: str = "") -> Any:
    """Heatmap of a K×K confusion matrix (rows: true class, columns: predicted), each row
    coloured as fractions of its true class, counts written in the cells (K ≤ 30) and
    each class's accuracy (diagonal ÷ row total, %) beside its name."""
    matrix = np.asarray(matrix, np.int64)
    K = len(class_names)
    if matrix.shape != (K, K):
        raise PlotError(f"confusion matrix of shape {matrix.shape} for {K} class names")
    totals = matrix.sum(axis=1)
    fractions = matrix / np.maximum(totals, 1)[:, None]
    side = max(5.0, 0.55 * K + 3.0)
    figure = new_figure(side + 1.5, side)
    axes = figure.subplots()
    image = axes.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="fraction of the true class", shrink=0.8)
    if K <= 30:
        for i in range(K):
            for j in range(K):
                axes.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=8,
                          color="white" if fractions[i, j] > 0.5 else "black")
    accuracy = [f"{100 * matrix[k, k] / totals[k]:.1f}%" if totals[k] else "—"
                for k in range(K)]
    names = [drawn_text(n) for n in class_names]
    axes.set_xticks(range(K), names, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(K), [f"{n} ({a})" for n, a in zip(names, accuracy, strict=True)],
                    fontsize=8)
    axes.set(xlabel="predicted class", ylabel="true class (per-class accuracy)")
    overall = np.trace(matrix) / max(int(matrix.sum()), 1)
    axes.set_title(title or f"confusion matrix, accuracy {100 * overall:.2f}% "
                   f"({int(np.trace(matrix))}/{int(matrix.sum())})", fontsize=10)
    return figure


# ----------------------------------------------------------------------------- bench


def bench_figure(result: dict[str, Any], where: str = "the bench result") -> Any:
    """Per-layer forward and backward milliseconds per training step of each network in a
    benchmark result (numbacnn.training.bench_result; also ``bench/suite.py --json``'s) as
    horizontal bars, numbacnn beside PyTorch when the result holds a comparison (the
    suite's ``--compare torch``)."""
    networks = [n for n in result.get("networks", []) if isinstance(n, dict) and n.get("layers")]
    if not networks:
        raise PlotError(f"{where}: holds no per-layer times; give a result profiled layer "
                        "by layer (profile_training's layers=True)")
    rows_total = sum(len(n["layers"]) + 1 for n in networks)
    figure = new_figure(10, 1.2 + 0.32 * rows_total + 0.6 * len(networks))
    axes_list = figure.subplots(len(networks), 1, squeeze=False,
                                height_ratios=[len(n["layers"]) + 1 for n in networks])[:, 0]
    colours = {"numbacnn": ("#1f77b4", "#9ecae1"), "PyTorch": ("#ff7f0e", "#fdd0a2")}
    for axes, net in zip(axes_list, networks, strict=True):
        torch = net.get("torch") if isinstance(net.get("torch"), dict) else {}
        sides = [("numbacnn", net)]
        if torch.get("layers") and len(torch["layers"]) == len(net["layers"]):
            sides.append(("PyTorch", torch))
        labels = [f"{row['index']}: {drawn_text(row['layer'])}" for row in net["layers"]] + [
            drawn_text(net.get("loss_name", "softmax loss"))]
        y = np.arange(len(labels))
        height = 0.8 / len(sides)
        for s, (name, side) in enumerate(sides):
            forward = [r["forward_ms"] for r in side["layers"]] + [side["loss"]["forward_ms"]]
            backward = [r["backward_ms"] for r in side["layers"]] + [side["loss"]["backward_ms"]]
            offset = y - 0.4 + height * (s + 0.5)
            dark, light = colours[name]
            axes.barh(offset, forward, height, color=dark, label=f"{name} forward")
            axes.barh(offset, backward, height, left=forward, color=light,
                      label=f"{name} backward")
        axes.set_yticks(y, labels, fontsize=8)
        axes.invert_yaxis()
        axes.set_xlabel("ms per training step")
        axes.grid(axis="x", alpha=0.3)
        axes.legend(fontsize=8, loc="lower right")
        note = "" if len(sides) > 1 else (f" (PyTorch {drawn_text(torch['skipped'])})"
                                          if torch.get("skipped") else "")
        axes.set_title(f"{drawn_text(net.get('spec', '?'))}, batch {net.get('batch', '?')}"
                       f"{note}", fontsize=10)
    env = result.get("environment", {})
    device = drawn_text(result.get("config", {}).get("device", ""))
    figure.suptitle(f"per-layer times, {device} {drawn_text(env.get('cpu', ''))}".strip(),
                    fontsize=10)
    return figure
