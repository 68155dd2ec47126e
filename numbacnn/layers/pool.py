"""MaxPool2D and AvgPool2D over FH×FW windows with stride SH×SW and padding PH×PW (no
parameters).

Input N×C×H×W, output N×C×OH×OW with OH = (H − FH + 2·PH)/SH + 1, whole unless
``round=floor`` (⌊…⌋ + 1) or ``round=ceil`` (⌈…⌉ + 1, PyTorch's ``ceil_mode``: a last
window that would start in the right padding is dropped). Padded cells never win a max
(−∞, as in PyTorch); an average divides by the window's cells including the padding
(``count_pad=yes``, PyTorch's ``count_include_pad=True``: with no padding that is F·F,
today's divisor) or by the input cells it covers only (``count_pad=no``, ONNX's default);
either way not by the part of a ceil window beyond the padded edge. Max pooling remembers
the winning position of each window for its gather-form backward pass.
Bodies: ``numbacnn/kernels/pool.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numbacnn.errors import ShapeError
from numbacnn.geometry import ROUNDINGS, output_size, window_arithmetic, windows_inside
from numbacnn.layers.base import Layer, Shape, register
from numbacnn.layers.syntax import LayerSyntax, Option, per_axis

# size F, and stride S: None until derive_options makes it F (windows side by side);
# each one number or HxW. pad and round came later: left out of describe() at 0 and exact.
_WINDOW = (Option("size", int, low=1, axes=True), Option("stride", int, None, 1, axes=True),
           Option("pad", int, 0, 0, axes=True, quiet_default=True),
           Option("round", str, "exact", choices=ROUNDINGS, quiet_default=True))
_COUNT_PAD = Option("count_pad", str, "yes", choices=("yes", "no"), quiet_default=True)


class _Pool2D(Layer):
    """``drivers``: (forward, backward)."""

    table_name, numbered_with, spatial = "POOL", "maxpool", True
    feature_map = True
    count_pad = "yes"  # average pooling's option (max pooling has none and counts no cells)

    def arithmetic(self) -> str:
        return window_arithmetic(self.input_shape, self.size, self.stride, self.pad,  # type: ignore[arg-type]
                                 rounding=self.round)

    def torch_module(self) -> Any:
        from torch import nn

        ceil = self.round == "ceil"
        if self.keeps_argmax:
            return nn.MaxPool2d(self.size, stride=self.stride, padding=self.pad, ceil_mode=ceil)
        return nn.AvgPool2d(self.size, stride=self.stride, padding=self.pad, ceil_mode=ceil,
                            count_include_pad=self.count_pad == "yes")

    @classmethod
    def derive_options(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The stride defaults to the size (the lecture's default: windows side by side)."""
        return {**values, "stride": values["size"]} if values["stride"] is None else values

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        C, H, W = input_shape
        (FH, FW), (SH, SW), (PH, PW) = self.geometry()[:3]
        for axis, F, P in (("height", FH, PH), ("width", FW, PW)):
            if 2 * P > F:  # else a window could hold padding only (PyTorch's rule too)
                raise ShapeError(f"{self.describe()}: pad {P} is more than half the window "
                                 f"{F} ({axis}); use pad ≤ {F // 2}")
        window = f"{FH}x{FW}"  # as the spec writes a size: rows x columns
        OH = output_size(H, FH, SH, PH, f"{self.describe()} (height)", rounding=self.round,
                         window=window)
        OW = output_size(W, FW, SW, PW, f"{self.describe()} (width)", rounding=self.round,
                         window=window)
        return (C, OH, OW)

    def geometry(self) -> tuple[tuple[int, int], ...]:
        """((FH, FW), (SH, SW), (PH, PW)): the window, stride and padding per axis."""
        return per_axis(self.size), per_axis(self.stride), per_axis(self.pad)

    def window(self) -> tuple[int, int]:
        (FH, FW), (SH, SW), _ = self.geometry()
        return (max(FH, FW), max(SH, SW))  # the receptive field of the wider axis

    def driver_window(self) -> tuple[int, ...]:
        """The window as its CPU driver is chosen (backends.cpu_pool._ByWindow.choose):
        FH, FW, SH, SW, PH, PW and whether every window lies inside the input."""
        (FH, FW), (SH, SW), (PH, PW) = self.geometry()
        (_, H, W), (_, OH, OW) = self.input_shape, self.output_shape  # type: ignore[misc]
        inside = windows_inside(H, W, OH, OW, FH, FW, SH, SW, PH, PW)
        return (FH, FW, SH, SW, PH, PW, inside)

    def _window_args(self) -> tuple[int, ...]:
        """The kernels' FH, FW, SH, SW, PH, PW (and count_pad for an average)."""
        (FH, FW), (SH, SW), (PH, PW) = self.geometry()
        counted = () if self.keeps_argmax else (int(self.count_pad == "yes"),)
        return (FH, FW, SH, SW, PH, PW, *counted)

    # Max pooling keeps the argmax of each window for backward; average pooling nothing.
    keeps_argmax = False

    def forward(self, x: Any, training: bool = True) -> Any:
        x = self._check_input(x)
        N = x.shape[0]
        C, OH, OW = self.output_shape  # type: ignore[misc]
        y = self._buffer("y", (N, C, OH, OW))
        saved = (self._buffer("argmax", y.shape, np.int32),) if self.keeps_argmax else ()
        driver = getattr(self._backend(), self.drivers[0])
        driver(N * C, OH * OW, y, *saved, x, *self._window_args())
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
        driver(N * C, H * W, dx, dy, *saved, *self._window_args())
        return dx

    def _onnx_window(self) -> dict[str, Any]:
        """kernel_shape, strides, pads (begin then end per axis) and ceil_mode.

        ONNX's shape inference (onnx 1.23, which the exporter's checker runs) rounds up
        without dropping a last window that starts in the right padding, where PyTorch,
        onnxruntime and numbacnn drop it. So ceil_mode=1 is written only where onnx
        infers numbacnn's size; otherwise the same windows are floor windows with more
        padding at the end (never a max, and not counted with count_pad=no)."""
        (FH, FW), (SH, SW), (PH, PW) = self.geometry()
        _, H, W = self.input_shape  # type: ignore[misc]
        _, OH, OW = self.output_shape  # type: ignore[misc]
        axes = ((H, FH, SH, PH, OH), (W, FW, SW, PW, OW))
        ends, ceil = [PH, PW], 0
        if self.round == "ceil":
            if all(-(-(n + 2 * P - F) // S) + 1 == O for n, F, S, P, O in axes):
                ceil = 1
            else:
                ends = [P + max(0, (O - 1) * S + F - (n + 2 * P)) for n, F, S, P, O in axes]
                if ends != [PH, PW] and not self.keeps_argmax and self.count_pad == "yes":
                    raise NotImplementedError(
                        "ONNX has no form of this window with count_pad=yes (its shape "
                        "inference keeps a window that starts in the right padding); use "
                        "count_pad=no, or a pad or stride that rounds the same on both axes")
        return {"kernel_shape": [FH, FW], "strides": [SH, SW], "pads": [PH, PW, *ends],
                "ceil_mode": ceil}


@register
class MaxPool2D(_Pool2D):
    syntax = LayerSyntax("maxpool", _WINDOW, 1, "maxpool 3 stride=2")
    drivers = ("max_pool_forward", "max_pool_backward")
    keeps_argmax = True
    _passed_on = False  # the last forward pass passed x on (a fused one, done by the conv)

    def forward(self, x: Any, training: bool = True) -> Any:
        """The pooling; in a training pass with ``fused`` set, x passed on: the
        convolution before it (and its ReLU) pooled already, into :meth:`outputs`."""
        self._passed_on = self.fused and training
        if not self._passed_on:
            return super().forward(x, training)
        self._forward_batch = int(x.shape[0])  # for the gradient's check in backward
        return x

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        """dx; dy passed on after a fused forward pass (the convolution takes it)."""
        if self._passed_on:
            return self._check_gradient(dy) if need_dx else None
        return super().backward(dy, need_dx)

    def outputs(self, N: int) -> tuple[Any, Any]:
        """The pooled output y (float32) and argmax (int32, see ``kernels/pool.py``),
        N×C×OH×OW: this layer's, which its forward pass writes, or a convolution that
        does its work."""
        shape = (N, *self.output_shape)  # type: ignore[misc]
        return self._buffer("y", shape), self._buffer("argmax", shape, np.int32)

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: MaxPool, FH×FW windows, stride, padding (never the max) and ceil_mode."""
        return builder.node("MaxPool", [input_name], **self._onnx_window())


@register
class AvgPool2D(_Pool2D):
    syntax = LayerSyntax("avgpool", (*_WINDOW, _COUNT_PAD), 1, "avgpool 2")
    drivers = ("avg_pool_forward", "avg_pool_backward")

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: AveragePool, FH×FW windows, stride, padding, ceil_mode and
        count_include_pad (written out: ONNX's default 0 is not numbacnn's yes)."""
        return builder.node("AveragePool", [input_name], **self._onnx_window(),
                            count_include_pad=int(self.count_pad == "yes"))
