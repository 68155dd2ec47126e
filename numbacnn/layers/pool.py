"""MaxPool2D and AvgPool2D over F×F windows with stride S (no padding, no parameters).

Input N×C×H×W, output N×C×OH×OW with OH = (H − F)/S + 1. Max pooling remembers the
winning position of each window for its gather-form backward pass.
Bodies: ``numbacnn/kernels/pool.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numbacnn.geometry import output_size, window_arithmetic
from numbacnn.layers.base import Layer, Shape, register
from numbacnn.layers.syntax import LayerSyntax, int_option

# size F, and stride S: None until derive_options makes it F (windows side by side)
_WINDOW = (int_option("size"), int_option("stride", None))


class _Pool2D(Layer):
    """``drivers``: (forward, backward)."""

    table_name, numbered_with, spatial = "POOL", "maxpool", True
    feature_map = True

    def arithmetic(self) -> str:
        return window_arithmetic(self.input_shape, self.size, self.stride, 0)  # type: ignore[arg-type]

    def torch_module(self) -> Any:
        from torch import nn

        pool = nn.MaxPool2d if self.keeps_argmax else nn.AvgPool2d
        return pool(self.size, stride=self.stride)

    @classmethod
    def derive_options(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The stride defaults to the size (the lecture's default: windows side by side)."""
        return {**values, "stride": values["size"]} if values["stride"] is None else values

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        C, H, W = input_shape
        OH = output_size(H, self.size, self.stride, 0, f"{self.describe()} (height)")
        OW = output_size(W, self.size, self.stride, 0, f"{self.describe()} (width)")
        return (C, OH, OW)

    def window(self) -> tuple[int, int]:
        return (self.size, self.stride)


    # Max pooling keeps the argmax of each window for backward; average pooling nothing.
    keeps_argmax = False

    def forward(self, x: Any, training: bool = True) -> Any:
        x = self._check_input(x)
        N = x.shape[0]
        C, OH, OW = self.output_shape  # type: ignore[misc]
        y = self._buffer("y", (N, C, OH, OW))
        saved = (self._buffer("argmax", y.shape, np.int32),) if self.keeps_argmax else ()
        driver = getattr(self._backend(), self.drivers[0])
        driver(N * C, OH * OW, y, *saved, x, self.size, self.stride)
        return y

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        dy = self._check_gradient(dy)
        if not need_dx:
            return None
        N = dy.shape[0]
        dx = self._buffer("dx", (N, *self.input_shape))  # type: ignore[misc]
        saved = (self._buffers["argmax"],) if self.keeps_argmax else ()
        driver = getattr(self._backend(), self.drivers[1])
        C, H, W = self.input_shape  # type: ignore[misc]
        driver(N * C, H * W, dx, dy, *saved, self.size, self.stride)
        return dx


@register
class MaxPool2D(_Pool2D):
    syntax = LayerSyntax("maxpool", _WINDOW, 1, "maxpool 3 stride=2")
    drivers = ("max_pool_forward", "max_pool_backward")
    keeps_argmax = True

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: MaxPool, F×F windows, stride S, no padding."""
        return builder.node("MaxPool", [input_name], kernel_shape=[self.size, self.size],
                            strides=[self.stride, self.stride])


@register
class AvgPool2D(_Pool2D):
    syntax = LayerSyntax("avgpool", _WINDOW, 1, "avgpool 2")
    drivers = ("avg_pool_forward", "avg_pool_backward")

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: AveragePool, F×F windows, stride S, no padding."""
        return builder.node("AveragePool", [input_name], kernel_shape=[self.size, self.size],
                            strides=[self.stride, self.stride])
