"""``numbacnn evaluate``, ``predict`` and ``inspect``: use and look into model files.

``evaluate MODEL [MODEL ...]`` scores models on a labelled split (accuracy, per-class
accuracy, confusion matrix), each on its own; with ``--ensemble`` several models are
scored as an ensemble (the mean of their probabilities). ``predict MODEL [MODEL ...]
INPUT`` prints the top-k classes of each image (several models: always their ensemble).
``inspect MODEL`` shows the architecture, settings and history. Models
apply the normalization stored with them to raw uint8 pixels. numbacnn modules are
imported inside the commands so that other commands start fast.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click
import numpy as np
from numbacnn_cli.options import (
    batch_option,
    device_option,
    echo_replaced,
    fit_option,
    force_option,
    split_option,
)

from numbacnn.errors import printable, shown_path

_PATH = click.Path(path_type=Path)


def _load_models(paths: tuple[Path, ...] | list[Path], device: str) -> list[tuple[Any, Any]]:
    from numbacnn.device import resolve_device
    from numbacnn.io.model_file import load_model

    device = resolve_device(device)  # once, before the first file is read
    return [load_model(path, device) for path in paths]


# ----------------------------------------------------------------------------- evaluate


@click.command("evaluate")
@click.argument("models", nargs=-1, required=True, type=_PATH)
@click.option("--data", help="Dataset (default: the one the first model was trained on).")
@split_option("--split", "Which split to score.")
@click.option("--ensemble", is_flag=True, help="Score several MODELS as one ensemble (the "
              "mean of their probabilities) instead of each on its own.")
@batch_option
@device_option()
def evaluate(models: tuple[Path, ...], data: str | None, split: str, ensemble: bool,
             batch_size: int, device: str) -> None:
    """Accuracy, per-class accuracy and confusion matrix of MODELS on a labelled split.

    Several models are scored each on its own, one after the other (numbacnn compare
    puts runs side by side). With --ensemble, each one's accuracy, their mean, and the
    accuracy of their ensemble (the mean of their probabilities) are shown; the
    per-class table and the confusion matrix are then the ensemble's.
    """
    from numbacnn_cli.spec_models import refuse_spec_as_model

    from numbacnn.io.dataset_files import load_dataset
    from numbacnn.tools.scoring import score_dataset, trained_on

    for model in models:  # a spec given for a model: its one line, before any data loads
        refuse_spec_as_model(model)
    loaded = _load_models(models, device)
    for net, _ in loaded:  # a model file whose network ends in a volume: no class scores
        net.require_scores()
    source = data or trained_on(loaded[0][1])
    dataset = load_dataset(source)
    if len(loaded) > 1 and not ensemble:
        for i, (path, model) in enumerate(zip(models, loaded, strict=True)):
            score = score_dataset([model], dataset, split, batch_size, where=source)
            if i == 0:
                click.echo(f"{source} ({split} split): {len(score.labels)} images")
            click.echo(f"\n{path}: accuracy {100 * score.accuracy:.2f}% "
                       f"({score.correct}/{len(score.labels)})")
            click.echo(_per_class_table(score, model[1].class_names))
            click.echo(_confusion_table(score.matrix))
        return
    score = score_dataset(loaded, dataset, split, batch_size, where=source)
    click.echo(f"{source} ({split} split): {len(score.labels)} images")
    if len(loaded) > 1:
        for path, accuracy in zip(models, score.model_accuracies, strict=True):
            click.echo(f"  {path}: accuracy {100 * accuracy:.2f}%")
        click.echo(f"mean of the {len(loaded)} models: "
                   f"{100 * np.mean(score.model_accuracies):.2f}%")
    name = "ensemble accuracy" if len(loaded) > 1 else "accuracy"
    click.echo(f"{name}: {100 * score.accuracy:.2f}% ({score.correct}/{len(score.labels)})")
    click.echo(_per_class_table(score, loaded[0][1].class_names))
    click.echo(_confusion_table(score.matrix))


def _per_class_table(score: Any, class_names: list[str]) -> str:
    class_names = [printable(name) for name in class_names]  # a file's text, escaped
    width = max(len("class"), *(len(n) for n in class_names))
    totals = score.matrix.sum(axis=1)
    lines = [f"  {'#':>3}  {'class':<{width}}  {'images':>6}  {'accuracy':>8}"]
    for k, (name, accuracy) in enumerate(zip(class_names, score.per_class, strict=True)):
        shown = "       —" if math.isnan(accuracy) else f"{100 * accuracy:7.2f}%"
        lines.append(f"  {k:>3}  {name:<{width}}  {int(totals[k]):>6}  {shown}")
    return "\n".join(lines)


def _confusion_table(matrix: np.ndarray) -> str:
    K = len(matrix)
    width = max(4, len(str(int(matrix.max(initial=0)))) + 1)
    header = "true\\pred".ljust(10) + "".join(f"{k:>{width}}" for k in range(K))
    rows = [f"{k:<10}" + "".join(f"{int(v):>{width}}" for v in matrix[k]) for k in range(K)]
    return "confusion matrix (rows: true class, columns: predicted class)\n" + "\n".join(
        [header, *rows])


# ----------------------------------------------------------------------------- predict


@click.command("predict")
@click.argument("paths", nargs=-1, required=True, metavar="MODEL [MODEL ...] INPUT [PICTURE ...]")
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="Classes shown per image.")
@split_option("--data-split", "Split of a dataset INPUT.")
@fit_option("a picture")
@click.option("--limit", type=click.IntRange(min=1), help="Predict only the first N images.")
@click.option("--save-proba", type=_PATH, help="Also write the N x K probabilities (.npy).")
@force_option("--save-proba file")
@batch_option
@device_option()
def predict(paths: tuple[str, ...], top_k: int, data_split: str, fit: str, limit: int | None,
            save_proba: Path | None, force: bool, batch_size: int, device: str) -> None:
    """Top-k classes of each image of INPUT; several MODELs average their probabilities.

    INPUT: a .npy of uint8 images (N x H x W, N x C x H x W or a single image), a .npz
    (its only array, or a dataset's split), a .h5 dataset file or a dataset name (its
    --data-split), or one or more pictures (PNG, JPEG, BMP, GIF, WebP; needs Pillow) of
    any size, each fitted to the model's input (--fit) and shown by its name. Models are
    told from inputs by their content. When INPUT has labels the true class is shown and
    the accuracy printed at the end.
    """
    from numbacnn.errors import DataError
    from numbacnn.io.images import load_images
    from numbacnn.io.model_file import is_model_file
    from numbacnn.tools.inference import ensemble_proba
    from numbacnn.tools.scoring import accuracy, check_labels

    # the first path is a model; any other is one when its content says so
    is_model = [True, *(is_model_file(p) for p in paths[1:])]
    models = [p for p, model in zip(paths, is_model, strict=True) if model]
    inputs = [p for p, model in zip(paths, is_model, strict=True) if not model]
    if not inputs:
        raise click.UsageError("give at least one MODEL and an INPUT")
    target = None if save_proba is None else _check_npy_path(save_proba, paths, force)
    loaded = _load_models([Path(p) for p in models], device)
    info = loaded[0][1]
    names: list[str] | None = None
    if len(inputs) == 1 and not _is_picture(inputs[0]):
        images, labels = load_images(inputs[0], info.input_shape, data_split, fit)
    else:
        images, labels, names = _pictures(inputs, info.input_shape, fit), None, inputs
    where = inputs[0] if len(inputs) == 1 else f"{len(inputs)} pictures"
    if limit is not None:
        images = images[:limit]
        labels = None if labels is None else labels[:limit]
    if len(images) == 0:
        raise DataError(f"{where}: holds no images to predict; give at least one")
    proba = ensemble_proba(loaded, images, batch_size, where)
    if target is not None:
        _save_npy(target.path, proba)
        echo_replaced(target)
    classes = [printable(name) for name in info.class_names]  # a file's text, escaped
    if labels is not None:
        check_labels(labels, len(classes), where)
    k = min(top_k, len(classes))
    width = len(str(max(len(proba) - 1, 0)))
    for i, row in enumerate(proba):
        best = np.argsort(-row, kind="stable")[:k]
        shown = "  ".join(f"{classes[c]} {100 * row[c]:.1f}%" for c in best)
        truth = "" if labels is None else f"  (true: {_label_name(labels[i], classes)})"
        click.echo(f"{i:>{width}}  {shown}{truth}" if names is None
                   else f"{printable(names[i])}  {shown}")
    if labels is not None and len(labels):
        kind = f"ensemble of {len(loaded)} models" if len(loaded) > 1 else "model"
        click.echo(f"accuracy ({kind}): {100 * accuracy(proba, labels):.2f}% on "
                   f"{len(labels)} images")


def _is_picture(source: str) -> bool:
    from numbacnn.io.images import is_picture

    return is_picture(source)


def _pictures(paths: list[str], input_shape: tuple[int, int, int], fit: str) -> np.ndarray:
    """The pictures at ``paths`` as one uint8 N×C×H×W batch, each fitted to the model's
    input; once all are read, a note on stderr for each one of another size."""
    from numbacnn.errors import DataError
    from numbacnn.io.images import load_picture

    for path in paths:
        if not _is_picture(path):
            if Path(path).suffix.lower() in (".h5", ".hdf5"):  # meant as a model: say why not
                _load_models([Path(path)], "cpu")
            raise DataError(f"{path}: with several INPUTs each is a picture (.png, .jpg, .bmp, "
                            ".gif, .webp); give a .npy, .npz or dataset as the only INPUT")
    read = [load_picture(path, input_shape, fit) for path in paths]
    return np.concatenate([picture_note(path, pixels, size, fit)
                           for path, (pixels, size) in zip(paths, read, strict=True)])


def picture_note(path: str, pixels: np.ndarray, size: tuple[int, int], fit: str) -> np.ndarray:
    """``pixels`` again, after a note on stderr when the picture had another size."""
    from numbacnn.io.image_files import describe_fit

    H, W = pixels.shape[-2:]
    if size != (W, H):
        click.echo(f"note: {path}: {size[0]}x{size[1]} pixels, {describe_fit(fit)} to "
                   f"{W}x{H} (the model's input; --fit)", err=True)
    return pixels


def _label_name(label: int, names: list[str]) -> str:
    return names[label] if 0 <= label < len(names) else str(label)


def _check_npy_path(path: Path, inputs: tuple[str, ...], force: bool) -> Any:
    """--save-proba writes NumPy's .npy format: refuse another name (np.save would add
    .npy silently), an unwritable place and what the writing policy refuses (the models
    or images read, numbacnn.io.output_policy), before any work is done."""
    from numbacnn.errors import DataError
    from numbacnn.io.output_policy import REPLACE, plan_output

    if path.suffix.lower() != ".npy":
        example = path.with_suffix(".npy").name if path.name else "proba.npy"  # "" has none
        raise DataError(f"{shown_path(path)}: --save-proba writes a .npy file; give a name "
                        f"ending in .npy, e.g. {shown_path(example)}")
    return plan_output(path, inputs=inputs, existing=REPLACE, force=force,
                       what="probabilities", field="save_proba", example="proba.npy")


def _save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` atomically: a full disk leaves no truncated file."""
    from numbacnn.errors import DataError
    from numbacnn.io.atomic_file import replace_atomically

    replace_atomically(path, lambda fh: np.save(fh, array, allow_pickle=False), DataError,
                       "probabilities")


# ----------------------------------------------------------------------------- inspect


@click.command("inspect")
@click.argument("model", type=_PATH)
def inspect(model: Path) -> None:
    """Architecture (shapes table), normalization, training settings and history of MODEL."""
    from numbacnn.geometry import VOLUME_AXES, volume
    from numbacnn.shapes import format_table, shape_table
    from numbacnn.training.checkpoint import load_checkpoint

    net, info = load_checkpoint(model, "cpu")  # reading the weights needs no GPU
    click.echo(f"{shown_path(model)}: numbacnn model (format 1), written by numbacnn "
               f"{info.numbacnn_version or '?'}")
    click.echo(f"input: {volume(info.input_shape)} ({VOLUME_AXES}), uint8 pixels normalized "
               f"per channel with mean {_numbers(info.mean)} and std {_numbers(info.std)} "
               "(pixel / 255)")
    click.echo(f"classes ({len(info.class_names)}): "
               f"{', '.join(printable(name) for name in info.class_names)}")
    click.echo("")
    click.echo(format_table(shape_table(net)).rstrip("\n"))
    if info.spec_text:
        click.echo("")
        click.echo("spec:")
        for line in info.spec_text.strip().splitlines():
            click.echo(f"  {printable(line)}")
    if info.training is not None:
        click.echo("")
        click.echo(_training_text(info))
    if len(info.history.get("train_loss", ())):
        click.echo("")
        click.echo(_history_table(info.history))


def _numbers(values: np.ndarray) -> str:
    return ", ".join(f"{v:.4f}" for v in values)


def _training_text(info: Any) -> str:
    state, s = info.training, info.settings
    lines = [f"training: {state.epoch} of {s.get('epochs', '?')} epochs done"
             + (f" and {state.batch} batches of the next" if state.batch else "")
             + f", step {state.step}, next lr {state.lr:g}"]
    if state.best_epoch > 0:
        what = "validation" if s.get("val_split", 0) > 0 else "training"
        lines.append(f"best {what} accuracy: {100 * state.best_accuracy:.2f}% "
                     f"(epoch {state.best_epoch})")
    if info.optimizer is not None:
        hyper = ", ".join(f"{k} {v:g}" for k, v in info.optimizer.hyperparameters.items())
        lines.append(f"optimizer: {info.optimizer.name} ({hyper}), {info.optimizer.t} updates")
    shown = printable(", ".join(f"{key} {value}" for key, value in s.items()))
    lines.append(f"settings: {shown}")
    return "\n".join(lines)


def _history_table(history: dict[str, np.ndarray]) -> str:
    """The per-epoch table a notebook's ``History`` shows, under a ``history:`` heading."""
    from numbacnn.api import History
    from numbacnn.io.model_file import HISTORY_KEYS

    table = History(**{key: [float(v) for v in history[key]] for key in HISTORY_KEYS})
    rows = repr(table).splitlines()[1:]  # after its "History of N epochs" line
    return "\n".join(["history:", *(f"  {row}" for row in rows)])


COMMANDS = [evaluate, predict, inspect]
