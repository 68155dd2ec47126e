"""Dropout(p): inverted dropout. In training each unit is zeroed with probability p and
the survivors scaled by 1/(1 − p); at test time the layer passes x through unchanged.

The random numbers come from a counter-based hash of (seed, element index)
(``numbacnn/kernels/dropout.py``): the network sets ``seed`` for every training step,
so runs repeat exactly and need no RNG state on the device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numbacnn.layers.base import Layer, register
from numbacnn.layers.syntax import LayerSyntax, float_option


@register
class Dropout(Layer):

    syntax = LayerSyntax("dropout", (float_option("p", 0.5, high=1.0),), 1, "dropout 0.5")
    table_name = "DROP"
    drivers = ("dropout_forward", "multiply")

    draws_random = True

    def torch_module(self) -> Any:
        from torch import nn

        return nn.Dropout(self.p)

    def _setup(self) -> None:
        self.seed = 0  # set by the network before each training forward pass

    def forward(self, x: Any, training: bool = True) -> Any:
        x = self._check_input(x)
        self._training = training and self.p > 0.0
        if not self._training:
            return x
        y = self._buffer("y", x.shape)
        mask = self._buffer("mask", x.shape)
        self._backend().dropout_forward(y.size, self._flat(y), self._flat(mask), self._flat(x),
                                        np.float32(self.p), np.float32(1.0 / (1.0 - self.p)),
                                        np.uint64(self.seed % 2**64))
        return y

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        dy = self._check_gradient(dy)
        if not need_dx:
            return None
        if not self._training:
            return dy
        dx = self._buffer("dx", dy.shape)
        self._backend().multiply(dx.size, self._flat(dx), self._flat(dy),
                                 self._flat(self._buffers["mask"]))
        return dx

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: nothing, dropout is the identity at inference."""
        return input_name
