"""Elementwise activations: ReLU, LeakyReLU, Sigmoid, Tanh, ELU, and Maxout.

Shape-preserving (Maxout divides the channels by `pieces`), no parameters.
Bodies: ``numbacnn/kernels/elementwise.py`` and ``numbacnn/kernels/maxout.py``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from numbacnn.errors import ShapeError
from numbacnn.layers.base import Layer, Shape


class _Elementwise(Layer):
    """y = f(x) elementwise; backward from x, y or both (``uses``)."""

    body: ClassVar[str] = ""  # driver name prefix: f"{body}_forward", f"{body}_backward"
    uses: ClassVar[tuple[str, ...]] = ("x",)
    alpha: float | None = None

    def _extra(self) -> tuple:
        return () if self.alpha is None else (np.float32(self.alpha),)

    def forward(self, x: Any, training: bool = True) -> Any:
        x = self._check_input(x)
        y = self._buffer("y", x.shape)
        getattr(self._backend(), f"{self.body}_forward")(y.size, self._flat(y), self._flat(x),
                                                         *self._extra())
        self._x = x
        return y

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        dy = self._check_gradient(dy)
        if not need_dx:
            return None
        dx = self._buffer("dx", dy.shape)
        saved = {"x": self._x, "y": self._buffers["y"]}
        inputs = [self._flat(saved[name]) for name in self.uses]
        getattr(self._backend(), f"{self.body}_backward")(dx.size, self._flat(dx), self._flat(dy),
                                                          *inputs, *self._extra())
        return dx


class ReLU(_Elementwise):
    """max(x, 0). When it directly follows a Conv2D the network fuses it into the
    convolution's bias pass (``fused`` is True): then it passes x and dy through."""

    kind = "relu"
    body = "relu"

    def __init__(self) -> None:
        super().__init__()
        self.fused = False

    def forward(self, x: Any, training: bool = True) -> Any:
        return self._check_input(x) if self.fused else super().forward(x, training)

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        if self.fused:
            return self._check_gradient(dy) if need_dx else None
        return super().backward(dy, need_dx)

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: Relu; nothing when fused (the convolution wrote its Relu)."""
        return input_name if self.fused else builder.node("Relu", [input_name])


class LeakyReLU(_Elementwise):
    kind = "leaky"
    body = "leaky_relu"

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def hyperparameters(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: LeakyRelu with this alpha."""
        return builder.node("LeakyRelu", [input_name], alpha=self.alpha)


class Sigmoid(_Elementwise):
    kind = "sigmoid"
    body = "sigmoid"
    uses = ("y",)

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: Sigmoid."""
        return builder.node("Sigmoid", [input_name])


class Tanh(_Elementwise):
    kind = "tanh"
    body = "tanh"
    uses = ("y",)

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: Tanh."""
        return builder.node("Tanh", [input_name])


class ELU(_Elementwise):
    kind = "elu"
    body = "elu"
    uses = ("x", "y")

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def hyperparameters(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: Elu with this alpha."""
        return builder.node("Elu", [input_name], alpha=self.alpha)


class Maxout(Layer):
    """Max over groups of `pieces` consecutive channels: C channels in, C/pieces out."""

    kind = "maxout"

    def __init__(self, pieces: int = 2) -> None:
        super().__init__()
        self.pieces = int(pieces)
        if self.pieces < 1:
            raise ShapeError(f"maxout: pieces must be ≥ 1, got {pieces}")

    def hyperparameters(self) -> dict[str, Any]:
        return {"pieces": self.pieces}

    def describe(self) -> str:
        return f"maxout {self.pieces}"

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        C, H, W = input_shape
        if C % self.pieces:
            raise ShapeError(f"{self.describe()}: {C} input channels are not divisible by "
                             f"{self.pieces} pieces; use a piece count that divides {C}")
        return (C // self.pieces, H, W)

    def forward(self, x: Any, training: bool = True) -> Any:
        x = self._check_input(x)
        N = x.shape[0]
        C_out, H, W = self.output_shape  # type: ignore[misc]
        y = self._buffer("y", (N, C_out, H, W))
        which = self._buffer("which", (N, C_out, H, W), np.int32)
        rows = (N, C_out, H * W)
        self._backend().maxout_forward(N * C_out, H * W, self._reshaped(y, rows),
                                       self._reshaped(which, rows),
                                       self._reshaped(x, (N, C_out * self.pieces, H * W)),
                                       self.pieces)
        return y

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        dy = self._check_gradient(dy)
        if not need_dx:
            return None
        N = dy.shape[0]
        C_out, H, W = self.output_shape  # type: ignore[misc]
        dx = self._buffer("dx", (N, *self.input_shape))  # type: ignore[misc]
        C = C_out * self.pieces
        self._backend().maxout_backward(N * C, H * W, self._reshaped(dx, (N, C, H * W)),
                                        self._reshaped(dy, (N, C_out, H * W)),
                                        self._reshaped(self._buffers["which"], (N, C_out, H * W)),
                                        self.pieces)
        return dx

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: Reshape N×C×H×W → N×(C/pieces)×pieces×H×W, ReduceMax over the
        pieces (axis 2)."""
        C_out, H, W = self.output_shape  # type: ignore[misc]
        groups = builder.node("Reshape", [input_name, builder.shape(
            "groups", [0, C_out, self.pieces, H, W])])
        return builder.reduce_max(groups, axis=2)
