"""Conv2D: im2col + one GEMM forward, GEMM + col2im backward.

Input N×C×H×W, filters W: K×C×F×F, biases b: K, output N×K×OH×OW with
OH = (H − F + 2P)/S + 1. Parameters: (F·F·C)·K weights + K biases.
Kernel bodies: ``numbacnn/kernels/conv.py``; the passes are ``conv_forward`` and
``conv_backward`` of ``numbacnn/backends/cpu.py`` (a chunk of images at a time, in
each core's cache) and ``cuda.py`` (the whole batch at once).
"""

from __future__ import annotations

from typing import Any

from numbacnn.errors import ShapeError
from numbacnn.geometry import output_size, window_arithmetic
from numbacnn.layers.activation import FusesFollowingReLU
from numbacnn.layers.base import Layer, Shape, register
from numbacnn.layers.syntax import ACTIVATION, INIT, PAD, LayerSyntax, int_option


@register
class Conv2D(FusesFollowingReLU, Layer):
    syntax = LayerSyntax("conv", (int_option("filters"), int_option("size"),
                                  int_option("stride", 1), PAD, INIT, ACTIVATION), 2,
                         "conv 96 11 stride=4 pad=0")

    table_name, spatial, bias_keys = "CONV", True, ("b",)
    feature_map = True
    drivers = ("conv_workspace", "conv_forward", "conv_backward")

    @classmethod
    def derive_options(cls, values: dict[str, Any]) -> dict[str, Any]:
        """``pad=valid`` is 0; ``pad=same`` is (F − 1)/2, which keeps a stride-1 output the
        size of the input (F must be odd)."""
        if values["pad"] == "valid":
            return {**values, "pad": 0}
        if values["pad"] == "same":
            F = values["size"]
            if F % 2 == 0:
                raise ValueError(f"pad=same needs an odd size, got size {F}: (F − 1)/2 = "
                                 f"{(F - 1) / 2:g} is not whole; give pad=N instead")
            return {**values, "pad": (F - 1) // 2}
        return values

    def _setup(self) -> None:
        self._cols_hold_input = False  # False once backward reused the columns for dcols
        self._x: Any = None  # the last forward pass's input

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

    def _workspace(self, N: int) -> dict[str, Any]:
        """The backend's convolution buffers for a batch of N (``conv_workspace``)."""
        K, OH, OW = self.output_shape  # type: ignore[misc]
        shapes = self._backend().conv_workspace(N, self.input_shape[0], K, self.size, OH, OW)  # type: ignore[index]
        return {key: self._buffer(key, shape) for key, shape in shapes.items()}

    def forward(self, x: Any, training: bool = True) -> Any:
        x = self._check_input(x)
        B = self._backend()
        N = x.shape[0]
        C, H, W = self.input_shape  # type: ignore[misc]
        K, OH, OW = self.output_shape  # type: ignore[misc]
        F, S, P = self.size, self.stride, self.pad
        y = self._buffer("y", (N, K, OH, OW))
        x3 = self._reshaped(x, (N, C, H * W))  # im2col reads each input plane flat
        B.conv_forward(x3, H, W, self._reshaped(self.params["W"], (K, C * F * F)),
                       self.params["b"], self._flat(y), self._workspace(N), F, S, P, OH, OW,
                       int(self.fused_relu))
        self._x = x3  # the CPU computes each chunk's columns again in backward
        self._cols_hold_input = True
        return y

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        dy = self._check_gradient(dy)
        B = self._backend()
        N = dy.shape[0]
        C, H, W = self.input_shape  # type: ignore[misc]
        K, OH, OW = self.output_shape  # type: ignore[misc]
        F, S, P = self.size, self.stride, self.pad
        if not self._cols_hold_input or self._x.shape[0] != N:
            raise ShapeError(f"{self.describe()}: backward needs the same batch's forward first")
        dx = self._buffer("dx", (N, C, H, W)) if need_dx else None
        self._cols_hold_input = not need_dx  # computing dx overwrites the columns
        B.conv_backward(self._x, H, W, self._reshaped(self.params["W"], (K, C * F * F)),
                        self._flat(self._buffers["y"]), self._flat(dy),
                        self._reshaped(self.grads["W"], (K, C * F * F)), self.grads["b"],
                        None if dx is None else self._reshaped(dx, (N, C, H * W)),
                        self._workspace(N), F, S, P, OH, OW, int(self.fused_relu))
        return dx

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: Conv (W K×C×F×F, b K, strides S, pads P on every side), then Relu
        when a following ReLU is fused into this convolution."""
        F, S, P = self.size, self.stride, self.pad
        y = builder.node("Conv", [input_name, builder.constant("W", self.params["W"]),
                                  builder.constant("b", self.params["b"])],
                         kernel_shape=[F, F], strides=[S, S], pads=[P, P, P, P])
        return self.onnx_fused_relu(builder, y)
