"""Inference: class probabilities of trained models for raw images, one model or an
ensemble (the mean of several models' probabilities).

Images are raw uint8 pixels N×C×H×W; each model applies the normalization stored with
it (:meth:`numbacnn.io.model_file.ModelInfo.normalize`). Probabilities are float32 N×K.
Used by scoring (:mod:`numbacnn.tools.scoring`), ``predict``, plots and the ONNX
export's checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from numbacnn.errors import ModelFileError
from numbacnn.io.model_file import ModelInfo
from numbacnn.network import Network


def predict_images(net: Network, info: ModelInfo, images: np.ndarray, batch_size: int = 256,
                   where: str = "images") -> np.ndarray:
    """Class probabilities float32 N×K for raw uint8 images N×C×H×W (normalized with the
    model's stored mean and std). ModelFileError when the weights overflow to NaN."""
    x = info.normalize(images, where)
    with np.errstate(over="ignore", invalid="ignore"):  # checked below, not warned about
        proba = net.predict_proba(x, batch_size)
    if not np.all(np.isfinite(proba)):
        raise ModelFileError(f"{info.path or 'the model'}: its class probabilities for {where} "
                             "are NaN or infinite (its weights overflow on these images); "
                             "train it again with a lower learning rate")
    return proba


def ensemble_proba(models: Sequence[tuple[Network, ModelInfo]], images: np.ndarray,
                   batch_size: int = 256, where: str = "images",
                   each: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
    """The mean of the models' class probabilities (float32 N×K): an ensemble.

    The models must share input shape and class names. ``each`` is called with every
    model's own probabilities (float32 N×K), e.g. to score it alone.
    """
    if not models:
        raise ModelFileError("an ensemble needs at least one model")
    first = models[0][1]
    for _, info in models[1:]:
        if info.class_names != first.class_names or info.input_shape != first.input_shape:
            raise ModelFileError(f"{info.path}: its classes or input shape differ from "
                                 f"{first.path}'s; ensemble only models of the same task")
    total = np.zeros((len(images), len(first.class_names)), np.float64)
    for net, info in models:
        proba = predict_images(net, info, images, batch_size, where)
        if each is not None:
            each(proba)
        total += proba
    return (total / len(models)).astype(np.float32)
