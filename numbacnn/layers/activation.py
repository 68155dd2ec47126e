"""Elementwise activations: ReLU, LeakyReLU, Sigmoid, Tanh, ELU, GELU, and Maxout.

Shape-preserving (Maxout divides the channels by `pieces`), no parameters.
Bodies: ``numbacnn/kernels/elementwise.py`` and ``numbacnn/kernels/maxout.py``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from numbacnn.errors import ShapeError
from numbacnn.init import MAXOUT_INIT
from numbacnn.layers.base import Layer, Shape, register
from numbacnn.layers.syntax import LayerSyntax, float_option, int_option


class _Elementwise(Layer):
    """y = f(x) elementwise; backward from x, y or both (``uses``). Usable as
    ``activation=NAME`` on conv and fc lines; ``drivers`` names (forward, backward)."""

    as_activation = True
    uses: ClassVar[tuple[str, ...]] = ("x",)
    alpha: float | None = None

    torch_name: ClassVar[str] = ""  # the torch.nn module of the same function

    def torch_module(self) -> Any:
        from torch import nn

        return getattr(nn, self.torch_name)(*(() if self.alpha is None else (self.alpha,)))

    def _extra(self) -> tuple:
        return () if self.alpha is None else (np.float32(self.alpha),)

    def forward(self, x: Any, training: bool = True) -> Any:
        x = self._check_input(x)
        y = self._buffer("y", x.shape)
        getattr(self._backend(), self.drivers[0])(y.size, self._flat(y), self._flat(x),
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
        getattr(self._backend(), self.drivers[1])(dx.size, self._flat(dx), self._flat(dy),
                                                  *inputs, *self._extra())
        return dx


@register
class ReLU(_Elementwise):
    """max(x, 0). When it directly follows a Conv2D or a BatchNorm the network fuses it
    into that layer's last pass (``fused`` is True): then it passes x and dy through
    (in a training pass of a convolution that also does the max pooling after it, the
    pooled x and dy: ``layers/conv.py``)."""

    syntax = LayerSyntax("relu")
    drivers = ("relu_forward", "relu_backward")
    torch_name = "ReLU"

    def forward(self, x: Any, training: bool = True) -> Any:
        return x if self.fused else super().forward(x, training)

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        if self.fused:
            return dy if need_dx else None
        return super().backward(dy, need_dx)

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: Relu; nothing when fused (the layer before it wrote its Relu)."""
        return input_name if self.fused else builder.node("Relu", [input_name])


class FusesFollowingReLU:
    """Mixin for a layer whose last pass can apply the ReLU after it (Conv2D's bias pass,
    BatchNorm's normalize pass): ``fuse_next`` sets ``fused_relu``, the layer hands
    ``int(self.fused_relu)`` to its kernels, and its ONNX nodes end with
    :meth:`onnx_fused_relu`. List it before ``Layer`` among the bases."""

    fused_relu = False  # set by Network.build through fuse_next

    def fuse_next(self, after: Layer | None, enabled: bool) -> bool:
        """A ReLU right after this layer is applied in its last pass (``fused_relu``)."""
        self.fused_relu = enabled and isinstance(after, ReLU)
        return self.fused_relu

    def onnx_fused_relu(self, builder: Any, name: str) -> str:
        """``name`` through a Relu node when the following ReLU is fused, else ``name``."""
        return builder.node("Relu", [name]) if self.fused_relu else name


@register
class LeakyReLU(_Elementwise):
    syntax = LayerSyntax("leaky", (float_option("alpha", 0.01),), 1, "leaky 0.1")
    drivers = ("leaky_relu_forward", "leaky_relu_backward")
    torch_name = "LeakyReLU"

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: LeakyRelu with this alpha."""
        return builder.node("LeakyRelu", [input_name], alpha=self.alpha)


@register
class Sigmoid(_Elementwise):
    syntax = LayerSyntax("sigmoid")
    torch_name = "Sigmoid"
    drivers = ("sigmoid_forward", "sigmoid_backward")
    uses = ("y",)

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: Sigmoid."""
        return builder.node("Sigmoid", [input_name])


@register
class Tanh(_Elementwise):
    syntax = LayerSyntax("tanh")
    torch_name = "Tanh"
    drivers = ("tanh_forward", "tanh_backward")
    uses = ("y",)

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: Tanh."""
        return builder.node("Tanh", [input_name])


@register
class GELU(_Elementwise):
    """x·Φ(x), Φ the standard normal's CDF (exact, with erf; not the tanh approximation)."""

    syntax = LayerSyntax("gelu")
    drivers = ("gelu_forward", "gelu_backward")
    torch_name = "GELU"

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: x · (erf(x/√2) + 1) · ½ written out (the Gelu operator needs opset 20)."""
        scaled = builder.node("Div", [input_name, builder.constant("sqrt2", np.float32(2 ** 0.5))])
        one = builder.constant("one", np.float32(1.0))
        cdf2 = builder.node("Add", [builder.node("Erf", [scaled]), one])
        half = builder.constant("half", np.float32(0.5))
        return builder.node("Mul", [builder.node("Mul", [input_name, cdf2]), half])


@register
class ELU(_Elementwise):
    syntax = LayerSyntax("elu", (float_option("alpha", 1.0),), 1, "elu 1.0")
    drivers = ("elu_forward", "elu_backward")
    torch_name = "ELU"
    uses = ("x", "y")

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: Elu with this alpha."""
        return builder.node("Elu", [input_name], alpha=self.alpha)


@register
class Maxout(Layer):
    """Max over groups of `pieces` consecutive channels: C channels in, C/pieces out."""

    syntax = LayerSyntax("maxout", (int_option("pieces", 2),), 1, "maxout 2")
    init_of_input = MAXOUT_INIT  # LeCun, not He: a max of pieces keeps the variance
    drivers = ("maxout_forward", "maxout_backward")

    def arithmetic(self) -> str:
        return f"{self.input_shape[0]}/{self.pieces} = {self.output_shape[0]}"  # type: ignore[index]

    def torch_module(self) -> Any:
        """(N, C, H, W) → (N, C/p, p, H, W), the max over p, → (N, C/p, H, W)."""
        from torch import nn

        C = self.input_shape[0]  # type: ignore[index]
        return nn.Sequential(nn.Unflatten(1, (C // self.pieces, self.pieces)),
                             nn.MaxPool3d((self.pieces, 1, 1)), nn.Flatten(1, 2))

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
