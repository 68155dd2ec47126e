"""Scoring models on labelled images: accuracy, per-class accuracy, confusion matrix,
and ensembles (the mean of several models' class probabilities).

Shapes and units: images are raw uint8 pixels N×C×H×W (each model applies the
normalization stored with it); labels are int class indices (N,); probabilities are
float32 N×K; accuracies are fractions 0…1; a confusion matrix is int64 K×K counts
(row: true class, column: predicted class).

    score = score_dataset(models, load_dataset("fashion-mnist"), "test")
    score.accuracy, score.model_accuracies, score.matrix, score.per_class
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from numbacnn.errors import DataError
from numbacnn.io.datasets import Dataset
from numbacnn.io.model_file import ModelInfo
from numbacnn.network import Network
from numbacnn.tools.inference import ensemble_proba

EVAL_BATCH = 256  # images per forward pass


def accuracy(proba: np.ndarray, labels: np.ndarray) -> float:
    """Fraction 0…1 of the rows of ``proba`` (N×K scores) whose largest entry is at the
    label (N,); NaN for N = 0."""
    if len(labels) == 0:
        return math.nan
    return float(np.mean(np.asarray(proba).argmax(axis=1) == labels))


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 K×K counts: row = true class, column = predicted class (labels and predicted
    are class indices 0…K−1, shape (N,))."""
    flat = np.asarray(labels, np.int64) * num_classes + np.asarray(predicted, np.int64)
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """float64 (K,): the fraction of each true class predicted right (the diagonal of a
    K×K confusion matrix over its row sums); NaN for a class without images."""
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / np.maximum(totals, 1), math.nan)


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    """DataError unless every label is a class index 0…num_classes−1 of the model."""
    if len(labels) and int(labels.max()) >= num_classes:
        raise DataError(f"{where}: labels go up to {int(labels.max())} but the model has "
                        f"{num_classes} classes (0…{num_classes - 1}); use data labelled for "
                        "this model")


def trained_on(info: ModelInfo) -> str:
    """The dataset source a model was trained on (saved in its training settings);
    DataError (``field`` "data") when the file does not say."""
    if info.settings.get("data"):
        return str(info.settings["data"])
    raise DataError(f"{info.path}: does not say what data it was trained on; name the dataset "
                    "to use", field="data")


@dataclass
class Score:
    """Scores of one model, or of an ensemble, on labelled images.

    ``proba``: float32 N×K class probabilities (an ensemble's: the mean of its
    models'); ``labels``: int64 (N,); ``model_accuracies``: each model's own accuracy
    (0…1), in the order given.
    """

    proba: np.ndarray
    labels: np.ndarray
    model_accuracies: list[float] = field(default_factory=list)

    @property
    def predicted(self) -> np.ndarray:
        """int64 (N,): the class of the largest probability of each image."""
        return self.proba.argmax(axis=1)

    @property
    def correct(self) -> int:
        """Images whose predicted class is their label."""
        return int(np.sum(self.predicted == self.labels))

    @property
    def accuracy(self) -> float:
        """Fraction 0…1 of the images predicted right."""
        return accuracy(self.proba, self.labels)

    @property
    def matrix(self) -> np.ndarray:
        """int64 K×K confusion matrix (row: true class, column: predicted class)."""
        return confusion_matrix(self.labels, self.predicted, self.proba.shape[1])

    @property
    def per_class(self) -> np.ndarray:
        """float64 (K,): accuracy of each true class, NaN for a class without images."""
        return per_class_accuracy(self.matrix)


def score_models(models: Sequence[tuple[Network, ModelInfo]], images: np.ndarray,
                 labels: np.ndarray, batch_size: int = EVAL_BATCH,
                 where: str = "images") -> Score:
    """Score models (several: each alone and as an ensemble) on uint8 images N×C×H×W
    with labels (N,). DataError when there is no image or a label is not a class of the
    models; ModelFileError when the models are not of one task."""
    labels = np.asarray(labels, np.int64)
    if len(labels) == 0:
        raise DataError(f"{where}: has no images to score; use a split or dataset with images")
    if models:
        check_labels(labels, len(models[0][1].class_names), where)
    each: list[float] = []
    proba = ensemble_proba(models, images, batch_size, where,
                           each=lambda p: each.append(accuracy(p, labels)))
    return Score(proba, labels, each)


def score_dataset(models: Sequence[tuple[Network, ModelInfo]], dataset: Dataset,
                  split: str = "test", batch_size: int = EVAL_BATCH,
                  where: str | None = None) -> Score:
    """:func:`score_models` on ``split`` ("train" or "test") of ``dataset``; DataError
    when the dataset has another number of classes than the models. ``where`` names the
    dataset in messages (default: its name), followed by the split."""
    named = f"{where or dataset.name} ({split} split)"
    images, labels = dataset.split(split)
    if models:
        classes = len(models[0][1].class_names)
        if dataset.num_classes != classes:
            raise DataError(f"{where or dataset.name}: has {dataset.num_classes} class"
                            f"{'' if dataset.num_classes == 1 else 'es'} but the model has "
                            f"{classes}; score on data labelled for this model")
    return score_models(models, images, labels, batch_size, named)
