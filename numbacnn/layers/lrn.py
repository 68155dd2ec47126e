"""LRN: local response normalization across channels (AlexNet's NORM layers).

y[c] = x[c] / (k + alpha/size · Σ x[c']²)^beta over the `size` channels around c,
alpha divided by size as in Caffe and PyTorch. Shape-preserving, no parameters.
Bodies: ``numbacnn/kernels/lrn.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numbacnn.layers.base import Layer, register
from numbacnn.layers.syntax import LayerSyntax, float_option, int_option


@register
class LRN(Layer):

    syntax = LayerSyntax("lrn", (int_option("size", 5), float_option("alpha", 1e-4),
                                 float_option("beta", 0.75),
                                 float_option("k", 2.0, low_open=True)), 0,
                         "lrn size=5 alpha=0.0001")
    table_name = "NORM"
    drivers = ("lrn_forward", "lrn_backward")

    def torch_module(self) -> Any:
        from torch import nn

        return nn.LocalResponseNorm(self.size, alpha=self.alpha, beta=self.beta, k=self.k)

    def _constants(self) -> tuple[np.float32, np.float32, np.float32]:
        return np.float32(self.alpha / self.size), np.float32(self.beta), np.float32(self.k)

    def forward(self, x: Any, training: bool = True) -> Any:
        x = self._check_input(x)
        C, H, W = self.input_shape  # type: ignore[misc]
        y = self._buffer("y", x.shape)
        scale = self._buffer("scale", x.shape)
        alpha_n, beta, k = self._constants()
        N = x.shape[0]
        rows = (N, C, H * W)
        B = self._backend()
        B.lrn_forward(N * C, H * W, self._reshaped(y, rows), self._reshaped(scale, rows),
                      self._reshaped(x, rows), self.size, alpha_n, beta, k)
        self._x = x
        return y

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        dy = self._check_gradient(dy)
        if not need_dx:
            return None
        C, H, W = self.input_shape  # type: ignore[misc]
        dx = self._buffer("dx", dy.shape)
        alpha_n, beta, _ = self._constants()
        N = dy.shape[0]
        rows = (N, C, H * W)
        B = self._backend()
        B.lrn_backward(N * C, H * W, self._reshaped(dx, rows), self._reshaped(dy, rows),
                       self._reshaped(self._x, rows), self._reshaped(self._buffers["y"], rows),
                       self._reshaped(self._buffers["scale"], rows), self.size, alpha_n, beta)
        return dx

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: the LRN operator for an odd size. For an even size ONNX's window
        (c − (size−1)//2 … c + size//2) is not numbacnn's (c − size//2 … c + (size−1)//2),
        so the formula is written out: x², the window sum as a ones Conv over the
        channels, y = x · (k + alpha/size · sum)^−beta."""
        if self.size % 2:
            return builder.node("LRN", [input_name], size=self.size, alpha=self.alpha,
                                beta=self.beta, bias=self.k)
        C, H, W = self.input_shape  # type: ignore[misc]
        squares = builder.node("Mul", [input_name, input_name])
        planes = builder.node("Reshape", [squares, builder.shape("planes", [0, 1, C, H * W])])
        ones = builder.constant("window", np.ones((1, 1, self.size, 1), np.float32))
        sums = builder.node("Conv", [planes, ones], kernel_shape=[self.size, 1],
                            pads=[self.size // 2, 0, (self.size - 1) // 2, 0])
        sums = builder.node("Reshape", [sums, builder.shape("volume", [0, C, H, W])])
        alpha_n, beta, k = self._constants()
        scale = builder.node("Mul", [sums, builder.constant("alpha_n", alpha_n)])
        scale = builder.node("Add", [scale, builder.constant("k", k)])
        factor = builder.node("Pow", [scale, builder.constant("minus_beta", -beta)])
        return builder.node("Mul", [input_name, factor])
