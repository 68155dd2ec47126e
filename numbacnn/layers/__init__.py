"""Layers: float32, activations N×C×H×W, conv weights K×C×F×F, fc weights units×inputs.

One class per concept: ``conv.py`` (Conv2D), ``pool.py`` (MaxPool2D, AvgPool2D),
``lrn.py`` (LRN), ``batchnorm.py`` (BatchNorm), ``dense.py`` (Dense, Flatten),
``dropout.py`` (Dropout), ``activation.py`` (ReLU, LeakyReLU, Sigmoid, Tanh, ELU,
Maxout), ``loss.py`` (SoftmaxCrossEntropy). Each class declares its spec syntax and registers itself
(``@register``); ``LAYERS`` maps each spec name to its class.
"""

from numbacnn.layers.activation import ELU, LeakyReLU, Maxout, ReLU, Sigmoid, Tanh
from numbacnn.layers.base import LAYERS, Layer
from numbacnn.layers.batchnorm import BatchNorm
from numbacnn.layers.conv import Conv2D
from numbacnn.layers.dense import Dense, Flatten
from numbacnn.layers.dropout import Dropout
from numbacnn.layers.loss import SoftmaxCrossEntropy
from numbacnn.layers.lrn import LRN
from numbacnn.layers.pool import AvgPool2D, MaxPool2D

# Importing the layer modules above registered every class in LAYERS (by spec name).

__all__ = ["ELU", "LAYERS", "LRN", "AvgPool2D", "BatchNorm", "Conv2D", "Dense", "Dropout",
           "Flatten", "Layer", "LeakyReLU", "MaxPool2D", "Maxout", "ReLU", "Sigmoid",
           "SoftmaxCrossEntropy", "Tanh"]
