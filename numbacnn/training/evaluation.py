"""Scoring a network during training: the mean cross-entropy loss and the accuracy of
normalized images (the trainer's validation and test scores)."""

from __future__ import annotations

import math

import numpy as np

from numbacnn.network import Network
from numbacnn.tools.scoring import EVAL_BATCH, accuracy


def evaluate(net: Network, x: np.ndarray, labels: np.ndarray,
             batch_size: int = EVAL_BATCH) -> tuple[float, float, np.ndarray]:
    """(mean cross-entropy loss, accuracy 0…1, probabilities N×K) of normalized float32
    images x N×C×H×W with int labels (N,); NaN loss and accuracy for N = 0."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflow shows as a NaN loss
        proba = net.predict_proba(x, batch_size)
    if len(labels) == 0:
        return math.nan, math.nan, proba
    picked = proba[np.arange(len(labels)), labels].astype(np.float64)
    loss = float(-np.log(np.maximum(picked, np.finfo(np.float32).tiny)).mean())
    return loss, accuracy(proba, labels), proba
