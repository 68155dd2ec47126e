"""Layers: float32, activations N×C×H×W, conv weights K×C×F×F, fc weights units×inputs.

One class per concept: ``conv.py`` (Conv2D), ``pool.py`` (MaxPool2D, AvgPool2D),
``lrn.py`` (LRN), ``batchnorm.py`` (BatchNorm), ``dense.py`` (Dense, Flatten),
``dropout.py`` (Dropout), ``activation.py`` (ReLU, LeakyReLU, Sigmoid, Tanh, ELU,
Maxout), ``loss.py`` (SoftmaxCrossEntropy). Each class declares its spec syntax
(``syntax.py`` has the vocabulary) and registers itself (``@register``); ``LAYERS`` maps
each spec name to its class.

Every module of this package is imported here, in file-name order, so a new layer file
registers its classes with no edit to this file; each registered class is also a name
of this package (``numbacnn.layers.Conv2D``).
"""

import importlib
import pkgutil

from numbacnn.layers.base import LAYERS, Layer

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

globals().update({cls.__name__: cls for cls in LAYERS.values()})

__all__ = ["LAYERS", "Layer", *sorted(cls.__name__ for cls in LAYERS.values())]
