"""Conv2D: im2col + one GEMM forward, GEMM + col2im backward.

Input N×C×H×W, filters W: K×C×F×F, biases b: K, output N×K×OH×OW with
OH = (H − F + 2P)/S + 1. Parameters: (F·F·C)·K weights + K biases.
Kernel bodies: ``numbacnn/kernels/conv.py``; drivers: ``im2col``/``col2im`` in
``numbacnn/backends/cpu.py`` and ``cuda.py``.
"""

from __future__ import annotations

from typing import Any

from numbacnn.errors import ShapeError
from numbacnn.geometry import output_size, window_arithmetic
from numbacnn.layers.base import Layer, Shape, register
from numbacnn.spec import ACTIVATION, INIT, PAD, LayerSyntax, int_option


@register
class Conv2D(Layer):
    syntax = LayerSyntax("conv", (int_option("filters"), int_option("size"),
                                  int_option("stride", 1), PAD, INIT, ACTIVATION), 2,
                         "conv 96 11 stride=4 pad=0")

    table_name, spatial, bias_keys = "CONV", True, ("b",)
    feature_map = True

    def _setup(self) -> None:
        self._cols_hold_input = False  # False once backward reused the columns for dcols
        self.fused_relu = False  # set by Network when a ReLU follows: applied in the bias pass

    def torch_module(self) -> Any:
        from torch import nn

        return nn.Conv2d(self.input_shape[0], self.filters, self.size,  # type: ignore[index]
                         stride=self.stride, padding=self.pad)

    def arithmetic(self) -> str:
        return window_arithmetic(self.input_shape, self.size, self.stride, self.pad)  # type: ignore[arg-type]

    def workspace_bytes(self, batch: int) -> int:
        K, OH, OW = self.output_shape  # type: ignore[misc]
        C = self.input_shape[0]  # type: ignore[index]
        return 4 * batch * OH * OW * (C * self.size * self.size + K)  # columns, GEMM output

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        _, H, W = input_shape
        F, S, P = self.size, self.stride, self.pad
        OH = output_size(H, F, S, P, f"{self.describe()} (height)")
        OW = output_size(W, F, S, P, f"{self.describe()} (width)")
        return (self.filters, OH, OW)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        C = self.input_shape[0]  # type: ignore[index]
        return {"W": (self.filters, C, self.size, self.size), "b": (self.filters,)}

    def fans(self) -> tuple[int, int]:
        C = self.input_shape[0]  # type: ignore[index]
        return C * self.size * self.size, self.filters * self.size * self.size

    def flops(self) -> int:
        K, OH, OW = self.output_shape  # type: ignore[misc]
        return 2 * K * OH * OW * self.input_shape[0] * self.size * self.size  # type: ignore[index]

    def window(self) -> tuple[int, int]:
        return (self.size, self.stride)

    def forward(self, x: Any, training: bool = True) -> Any:
        x = self._check_input(x)
        B = self._backend()
        N = x.shape[0]
        C, H, W = self.input_shape  # type: ignore[misc]
        K, OH, OW = self.output_shape  # type: ignore[misc]
        F, S, P = self.size, self.stride, self.pad
        cols = self._buffer("cols", (C * F * F, N * OH * OW))
        B.im2col(C * F * F * N, OH * OW, cols, x, F, S, P, OH, OW)
        out = self._buffer("out", (K, N * OH * OW))
        B.gemm(self._reshaped(self.params["W"], (K, C * F * F)), cols, out)
        y = self._buffer("y", (N, K, OH, OW))
        B.gemm_to_nchw(N * K, OH * OW, self._flat(y), out, self.params["b"], K, OH * OW,
                       int(self.fused_relu))
        self._cols_hold_input = True
        return y

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        dy = self._check_gradient(dy)
        B = self._backend()
        N = dy.shape[0]
        C, H, W = self.input_shape  # type: ignore[misc]
        K, OH, OW = self.output_shape  # type: ignore[misc]
        F, S, P = self.size, self.stride, self.pad
        cols = self._buffers["cols"]
        if cols.shape[1] != N * OH * OW or not self._cols_hold_input:
            raise ShapeError(f"{self.describe()}: backward needs the same batch's forward first")
        dy2 = self._buffer("out", (K, N * OH * OW))  # the GEMM output is free again: reuse it
        B.nchw_to_gemm(K * N, OH * OW, dy2, self._flat(dy), self._flat(self._buffers["y"]), K,
                       OH * OW, int(self.fused_relu))
        B.gemm(dy2, cols, self._reshaped(self.grads["W"], (K, C * F * F)), trans_b=True)
        B.row_sum(K, self.grads["b"], dy2)
        if not need_dx:
            return None
        dcols = cols  # the columns are spent once dW is known: hold dcols in their place
        self._cols_hold_input = False
        B.gemm(self._reshaped(self.params["W"], (K, C * F * F)), dy2, dcols, trans_a=True)
        dx = self._buffer("dx", (N, C, H, W))
        B.col2im(N * C, H * W, dx, dcols, F, S, P, OH, OW)
        return dx

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: Conv (W K×C×F×F, b K, strides S, pads P on every side), then Relu
        when a following ReLU is fused into this convolution."""
        F, S, P = self.size, self.stride, self.pad
        y = builder.node("Conv", [input_name, builder.constant("W", self.params["W"]),
                                  builder.constant("b", self.params["b"])],
                         kernel_shape=[F, F], strides=[S, S], pads=[P, P, P, P])
        return builder.node("Relu", [y]) if self.fused_relu else y
