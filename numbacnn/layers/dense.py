"""Dense (fully connected) and Flatten.

Dense: input N×C×H×W seen as N × (C·H·W) (no Flatten needed before it), weights
W: units × (C·H·W), biases b: units, output N×units×1×1; y = x·Wᵀ + b, one GEMM.
Flatten: N×C×H×W → N×(C·H·W)×1×1, a free reshape.
"""

from __future__ import annotations

from typing import Any

from numbacnn.errors import ShapeError
from numbacnn.layers.base import Layer, Shape, register
from numbacnn.layers.syntax import ACTIVATION, INIT, LayerSyntax, int_option


@register
class Dense(Layer):
    syntax = LayerSyntax("fc", (int_option("units"), INIT, ACTIVATION), 1, "fc 4096")
    table_name, numbered_with, bias_keys = "FC", "conv", ("b",)  # CONV1 … CONV5, FC6 …
    drivers = ("gemm", "add_bias_rows", "col_sum")

    def arithmetic(self) -> str:
        return f"{_inputs(self.input_shape)} → {self.units}"  # type: ignore[arg-type]

    def torch_module(self) -> Any:
        """Flatten, Linear (weights units × inputs, as here), back to N×units×1×1."""
        from torch import nn

        inputs = _size(self.input_shape)  # type: ignore[arg-type]
        return nn.Sequential(nn.Flatten(1), nn.Linear(inputs, self.units),
                             nn.Unflatten(1, (self.units, 1, 1)))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (self.units, 1, 1)

    def _fan_in(self) -> int:
        C, H, W = self.input_shape  # type: ignore[misc]
        return C * H * W

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"W": (self.units, self._fan_in()), "b": (self.units,)}

    def fans(self) -> tuple[int, int]:
        return self._fan_in(), self.units

    def flops(self) -> int:
        return 2 * self._fan_in() * self.units

    def window(self) -> None:
        return None

    def forward(self, x: Any, training: bool = True) -> Any:
        x = self._check_input(x)
        B = self._backend()
        N = x.shape[0]
        x2 = self._reshaped(x, (N, self._fan_in()))
        y = self._buffer("y", (N, self.units, 1, 1))
        y2 = self._reshaped(y, (N, self.units))
        B.gemm(x2, self.params["W"], y2, trans_b=True)
        B.add_bias_rows(y2.size, y2, self.params["b"])
        self._x2 = x2
        return y

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        dy = self._check_gradient(dy)
        B = self._backend()
        N = dy.shape[0]
        if self._x2.shape[0] != N:
            raise ShapeError(f"{self.describe()}: backward needs the same batch's forward first")
        dy2 = self._reshaped(dy, (N, self.units))
        B.gemm(dy2, self._x2, self.grads["W"], trans_a=True)
        B.col_sum(self.units, self.grads["b"], dy2)
        if not need_dx:
            return None
        dx = self._buffer("dx", (N, *self.input_shape))  # type: ignore[misc]
        B.gemm(dy2, self.params["W"], self._reshaped(dx, (N, self._fan_in())))
        return dx

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: Flatten to N×inputs, Gemm with Wᵀ (W units×inputs) + b, Reshape to
        N×units×1×1."""
        x = builder.node("Flatten", [input_name], axis=1)
        y = builder.node("Gemm", [x, builder.constant("W", self.params["W"]),
                                  builder.constant("b", self.params["b"])], transB=1)
        return builder.node("Reshape", [y, builder.shape("shape", [0, self.units, 1, 1])])


def _size(shape: tuple[int, int, int]) -> int:
    C, H, W = shape
    return C * H * W


def _inputs(shape: tuple[int, int, int]) -> str:
    """The length of a flattened (C, H, W) input, with its product when it is an image."""
    C, H, W = shape
    return f"{C}" if H == W == 1 else f"{W}·{H}·{C} = {C * H * W}"


@register
class Flatten(Layer):
    syntax = LayerSyntax("flatten")
    drivers = ()  # a reshape

    def arithmetic(self) -> str:
        return _inputs(self.input_shape)  # type: ignore[arg-type]

    def torch_module(self) -> Any:
        from torch import nn

        return nn.Sequential(nn.Flatten(1), nn.Unflatten(1, (self.output_shape[0], 1, 1)))  # type: ignore[index]

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        C, H, W = input_shape
        return (C * H * W, 1, 1)

    def window(self) -> None:
        return None

    def forward(self, x: Any, training: bool = True) -> Any:
        x = self._check_input(x)
        return self._reshaped(x, (x.shape[0], self.output_shape[0], 1, 1))  # type: ignore[index]

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        dy = self._check_gradient(dy)
        return self._reshaped(dy, (dy.shape[0], *self.input_shape)) if need_dx else None  # type: ignore[misc]

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: Reshape N×C×H×W → N×(C·H·W)×1×1."""
        size = self.output_shape[0]  # type: ignore[index]
        return builder.node("Reshape", [input_name, builder.shape("shape", [0, size, 1, 1])])
