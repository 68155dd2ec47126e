"""The notebook API: ``numbacnn.Network`` with ``fit`` and ``evaluate``, and
``numbacnn.load_model``.

    net = numbacnn.Network.from_spec("fmnist")
    history = net.fit("fashion-mnist-mini", epochs=2, seed=0)   # a History, shown as a table
    net.evaluate("fashion-mnist-mini")                           # accuracy and loss, test split

``data`` is a dataset name (``fashion-mnist-mini``, the bundled set), a dataset file
path, a :class:`~numbacnn.io.datasets.Dataset`, or arrays ``(x, y)`` /
``(x_train, y_train, x_test, y_test)``: images N×C×H×W (or N×H×W for one channel),
uint8 pixels 0–255 or floats 0…1 (stored as 8-bit pixels, as every numbacnn dataset
is); labels integer class indices (N,).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

import numbacnn.network
from numbacnn.errors import DataError, TrainingError
from numbacnn.io.dataset_files import load_dataset
from numbacnn.io.datasets import Dataset, validate
from numbacnn.io.model_file import HISTORY_KEYS, ModelInfo, save_model
from numbacnn.io.model_file import load_model as load_core_model
from numbacnn.tools.scoring import EVAL_BATCH, Score, score_models
from numbacnn.training.fine_tune import check_data
from numbacnn.training.progress import BatchProgress, EpochRecord
from numbacnn.training.settings import TrainSettings
from numbacnn.training.trainer import Trainer

ARRAYS = "arrays"  # how data given as numpy arrays is named in messages and checkpoints
_RENAMED = {"val_split": "validation_split"}  # TrainSettings fields → fit's Keras-style names


@dataclass
class History:
    """What :meth:`Network.fit` reports: one entry per epoch of each list.

    Losses are mean cross-entropy, accuracies fractions 0…1 (NaN validation scores when
    there was no validation split), ``lr`` the learning rate of the epoch, ``seconds``
    its wall time. ``history`` is the same as a dict (as Keras's ``History.history``).
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    @property
    def history(self) -> dict[str, list[float]]:
        return {f.name: list(getattr(self, f.name)) for f in fields(self)}

    def plot(self, title: str = "") -> Any:
        """Loss and accuracy curves per epoch: a matplotlib Figure (needs matplotlib)."""
        from numbacnn.tools.plots import curves_figure

        return curves_figure({k: np.asarray(v) for k, v in self.history.items()}, title=title)

    def _rows(self) -> list[list[str]]:
        def percent(value: float) -> str:
            return "—" if math.isnan(value) else f"{100 * value:.2f}%"

        def number(value: float) -> str:
            return "—" if math.isnan(value) else f"{value:.4f}"

        return [[str(e + 1), number(self.train_loss[e]), percent(self.train_acc[e]),
                 number(self.val_loss[e]), percent(self.val_acc[e]), f"{self.lr[e]:.4g}",
                 f"{self.seconds[e]:.1f}"] for e in range(self.epochs)]

    _HEAD = ("epoch", "train loss", "train acc", "val loss", "val acc", "lr", "seconds")

    def __repr__(self) -> str:
        rows = [list(self._HEAD), *self._rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self._HEAD))]
        lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True))
                 for row in rows]
        return f"History of {self.epochs} epoch{'' if self.epochs == 1 else 's'}\n" + \
            "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{name}</th>" for name in self._HEAD)
        body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                       for row in self._rows())
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass
class Evaluation:
    """A network's scores on labelled images: ``accuracy`` (0…1), ``loss`` (mean
    cross-entropy), ``images`` scored; ``score`` has the probabilities, the confusion
    matrix and per-class accuracy (:class:`numbacnn.tools.scoring.Score`)."""

    accuracy: float
    loss: float
    images: int
    where: str = ""
    score: Score | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        correct = round(self.accuracy * self.images)
        return (f"{self.where + ': ' if self.where else ''}accuracy {100 * self.accuracy:.2f}% "
                f"({correct}/{self.images} images right), loss {self.loss:.4f}")


class _ProgressBar:
    """A tqdm bar over each epoch's batches (a widget in Jupyter with ipywidgets, text
    elsewhere) and the epoch's summary line after it; nothing when ``verbose`` is 0,
    just the summary lines when it is 2."""

    def __init__(self, verbose: int) -> None:
        self.verbose = verbose
        self.bar: Any = None

    def batch(self, p: BatchProgress) -> None:
        if self.verbose != 1:
            return
        if self.bar is None:
            with warnings.catch_warnings():  # Jupyter without ipywidgets: a text bar, no warning
                warnings.simplefilter("ignore")
                from tqdm.auto import tqdm
            self.bar = tqdm(total=p.batches, desc=f"epoch {p.epoch}/{p.epochs}", unit="batch",
                            leave=False, mininterval=0.2)
        self.bar.set_postfix_str(f"loss {p.loss:.4f}, acc {100 * p.accuracy:.1f}%",
                                 refresh=False)
        self.bar.update(p.batch - self.bar.n)

    def epoch(self, record: EpochRecord) -> None:
        self.close()
        if self.verbose:
            print(record.line(), flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Network(numbacnn.network.Network):
    """A network you can ``fit`` and ``evaluate``: :class:`numbacnn.network.Network`
    (layers, passes, shapes, ``summary()``) plus the training loop of a notebook.

    Why a subclass: the core network sits below the trainer in the library's layers (the
    trainer imports the network, so the network cannot import the trainer); like
    Keras's Model above its training loop, the learner's methods live here, on the
    package root's floor. ``numbacnn.Network`` and :func:`load_model` give this class.

    ``info`` (None until :meth:`fit` or :func:`load_model`): what the model knows besides
    its weights, above all the normalization of its inputs (:class:`ModelInfo`).
    """

    info: ModelInfo | None = None  # a class default: the subclass adds no __init__
    loaded: bool = False  # from load_model: fit() starts from the weights it holds

    def fit(self, data: Any = "fashion-mnist-mini", epochs: int = 6, batch_size: int = 64,
            lr: float | None = None, validation_split: float = 0.1, seed: int = 0,
            verbose: int = 1, **settings: Any) -> History:
        """Train this network on ``data`` (see the module docstring; default: the bundled
        Fashion-MNIST subset) and return its :class:`History`.

        Every call is a new run, as ``numbacnn train`` is: the weights are drawn afresh
        from ``seed`` (with ``init``), and the same seed gives the same result on the CPU;
        a network from :func:`load_model` instead starts from its weights, as ``numbacnn
        train --weights`` does (fine-tuning: its normalization and class names kept, the
        data must have its input size and classes; optimizer and schedule start afresh).
        ``validation_split``: fraction of the training images held out to validate on.
        Other keywords are :class:`~numbacnn.training.settings.TrainSettings` fields
        (``optimizer``, ``momentum``, ``weight_decay``, ``init``, ``lr_policy`` (e.g.
        "cosine"), ``label_smoothing``, ``augment``, ``limit`` = train on the first
        ``limit`` images, ...). ``verbose``: 0 silent, 1 a progress bar and a line per
        epoch, 2 just the lines.
        A network built without an input shape takes the data's.
        """
        if verbose not in (0, 1, 2):
            raise TrainingError(f"verbose must be 0, 1 or 2, got {verbose!r}", field="verbose")
        known = {f.name for f in fields(TrainSettings)} - {"spec", "data", *_RENAMED}
        for name in settings:
            if name not in known:
                hint = f"; use {_RENAMED[name]}" if name in _RENAMED else ""
                raise TrainingError(f"fit() has no setting {name!r}{hint}: use epochs, "
                                    f"batch_size, lr, validation_split, seed, verbose or one "
                                    f"of {', '.join(sorted(known))}", field=name)
        dataset, source = as_dataset(data, self.num_classes if self.input_shape else None)
        if self.input_shape is None:
            self.build(dataset.input_shape)
        run = TrainSettings(spec=self.spec_text or self.to_spec_text(), data=source,
                            epochs=epochs, batch_size=batch_size, lr=lr,
                            val_split=validation_split, seed=seed, **settings).checked()
        weights = self.info if self.loaded else None  # fine-tuning a loaded model
        if weights is not None:
            check_data(self, weights, dataset, source, "the loaded model")
            self.seed = seed  # what initialize would set: dropout's streams
        self.info = None  # the weights are drawn again: the last run's info is no more theirs
        self.step = 0  # a new run: dropout's streams start as in a freshly built network
        progress = _ProgressBar(verbose)
        try:
            trainer = Trainer(self, dataset, run, on_batch=progress.batch,
                              on_epoch=progress.epoch, weights=weights)
            trainer.run()
        finally:
            progress.close()
        self.info = trainer.model_info()
        return History(**{key: list(trainer.history[key]) for key in HISTORY_KEYS})

    def to_spec_text(self) -> str:
        """The network as spec text (docs/spec.md): its input line and one line per layer,
        what a checkpoint of a network built in Python records."""
        from numbacnn.spec import format_input

        lines = [] if self.input_shape is None else [f"input {format_input(self.input_shape)}"]
        return "\n".join([*lines, *(layer.describe() for layer in self.layers)]) + "\n"

    def evaluate(self, data: Any, split: str = "test", batch_size: int = EVAL_BATCH) -> Evaluation:
        """Accuracy and loss on ``split`` ("test" or "train") of ``data`` (as :meth:`fit`
        takes it; arrays ``(x, y)`` are scored as they are). The images are normalized as
        in training, so the network must have been fitted or loaded."""
        if self.info is None:
            raise TrainingError("the network has not been trained, so it has no input "
                                "normalization: call fit(data) first, or numbacnn.load_model "
                                "a trained model")
        dataset, source = as_dataset(data, len(self.info.class_names))
        if isinstance(data, tuple | list) and len(data) == 2:
            split = "train"  # (x, y): the arrays themselves
        images, labels = dataset.split(split)
        arrays = isinstance(data, tuple | list)
        where = source if arrays else f"{source} ({split} split)"
        score = score_models([(self, self.info)], images, labels, batch_size, where)
        picked = score.proba[np.arange(len(labels)), score.labels].astype(np.float64)
        loss = float(-np.log(np.maximum(picked, np.finfo(np.float32).tiny)).mean())
        shown = source if arrays and len(data) == 2 else f"{source}, {split} split"
        return Evaluation(score.accuracy, loss, len(labels), shown, score)

    def predict(self, images: Any, batch_size: int = EVAL_BATCH) -> np.ndarray:
        """Class probabilities float32 N×K of images (uint8 or 0…1 float, N×C×H×W or
        N×H×W), normalized as in training."""
        if self.info is None:
            raise TrainingError("the network has not been trained: call fit(data) first")
        from numbacnn.tools.inference import predict_images

        return predict_images(self, self.info, pixels(images, "images"), batch_size)

    def save(self, path: str | Path) -> None:
        """Write the fitted model (weights, normalization, history) to an HDF5 file that
        ``numbacnn.load_model`` and the command line read."""
        if self.info is None:
            raise TrainingError("the network has not been trained: call fit(data) first, "
                                "then save it")
        save_model(path, self, self.info)


def load_model(path: str | Path, device: str = "auto") -> Network:
    """A model file (``numbacnn train``'s or :meth:`Network.save`'s) as a
    :class:`Network` on ``device`` ("auto", "cpu" or "cuda") you can evaluate and fit,
    its ModelInfo as ``info``.

    The file's reader builds the core class; the instance becomes this subclass by its
    ``__class__``: it holds the same state (the subclass only adds methods and the
    ``info`` slot), so nothing is rebuilt, re-fused or copied.
    """
    net, info = load_core_model(path, device=device)
    net.__class__ = Network
    net.info = info  # type: ignore[attr-defined]
    net.loaded = True  # type: ignore[attr-defined]
    return net  # type: ignore[return-value]


# ----------------------------------------------------------------------------- data


def as_dataset(data: Any, num_classes: int | None) -> tuple[Dataset, str]:
    """``data`` (a dataset name or path, a Dataset, or arrays) as a Dataset, and the
    name messages use for it. Arrays get class names "0"…"K−1" (K: ``num_classes``,
    else the largest label + 1) and, as ``(x, y)``, an empty test split."""
    if isinstance(data, Dataset):
        return data, data.name
    if isinstance(data, str | Path):
        return load_dataset(data), str(data)
    if not isinstance(data, tuple | list) or len(data) not in (2, 4):
        raise DataError(f"data is {_kind(data)}: give a dataset name (fashion-mnist-mini), a "
                        "dataset file path, or arrays (x, y) or (x_train, y_train, x_test, "
                        "y_test)", field="data")
    x_train = pixels(data[0], "x" if len(data) == 2 else "x_train")
    y_train = labels_of(data[1], "y" if len(data) == 2 else "y_train")
    if len(data) == 4:
        x_test, y_test = pixels(data[2], "x_test"), labels_of(data[3], "y_test")
    else:
        x_test, y_test = x_train[:0], y_train[:0]
    top = max(int(y_train.max(initial=0)), int(y_test.max(initial=0)))
    classes = num_classes if num_classes is not None and top < num_classes else top + 1
    dataset = Dataset(x_train, y_train, x_test, y_test, [str(c) for c in range(classes)],
                      name=ARRAYS)
    return validate(dataset, ARRAYS), ARRAYS


def pixels(x: Any, name: str) -> np.ndarray:
    """Images as contiguous uint8 N×C×H×W: uint8 as they are, floats 0…1 scaled by 255
    and rounded, N×H×W given one channel; DataError for anything else."""
    if not isinstance(x, np.ndarray):
        raise DataError(f"{name} is {_kind(x)}: give a numpy array of images N x C x H x W",
                        field="data")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise DataError(f"{name} has shape {x.shape}: images must be N x C x H x W (or "
                        "N x H x W for one channel)", field="data")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype.kind != "f":
        raise DataError(f"{name} is {x.dtype}: give uint8 pixels 0-255 or floats 0…1",
                        field="data")
    if x.size and not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
        raise DataError(f"{name} holds floats from {np.nanmin(x):g} to {np.nanmax(x):g}: float "
                        "images must be pixel values 0…1 (divide 0-255 pixels by 255, or give "
                        "them as uint8)", field="data")
    return np.ascontiguousarray(np.rint(x * 255), dtype=np.uint8)


def labels_of(y: Any, name: str) -> np.ndarray:
    """Labels as int64 (N,): integer class indices 0, 1, …; DataError otherwise."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"{name} is {y.dtype} {y.shape}: labels must be integer class "
                        "indices of shape (N,)", field="data")
    if len(y) and y.min() < 0:
        raise DataError(f"{name} holds the label {int(y.min())}: labels are class indices "
                        "0, 1, …", field="data")
    return y.astype(np.int64)


def _kind(value: Any) -> str:
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


__all__: Sequence[str] = ("Evaluation", "History", "Network", "load_model")
