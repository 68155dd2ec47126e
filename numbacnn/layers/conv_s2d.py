"""Conv2D's space-to-depth passes (``algo=s2d``): a stride-S convolution as a stride-1 one.

The input is rearranged into S×S blocks (N×C×H×W → N × C·SH·SW × H' × W') and the
filters the same way (K×C×FH×FW → K × C·SH·SW × ⌈FH/SH⌉ × ⌈FW/SW⌉, the taps past FH and
FW zero): the formulas are in ``numbacnn/kernels/space_to_depth.py``. The stride-1,
unpadded convolution of the two gives the same y, and runs on the backend's Winograd
drivers where its window is 3×3 or 5×5 (``layers/conv_algorithm.py``; AlexNet's conv1:
11×11 stride 4 on 3 channels becomes 3×3 on 48), else on im2col's. Backward: that
convolution's backward gives dw' (rearranged back, the padded taps' gradients dropped),
db, and dx' when dx is wanted (rearranged back). The layer's W stays K×C×FH×FW (model
files, ONNX); w' is a workspace buffer, rearranged again each forward pass (35 K floats
for AlexNet's conv1).

``algo=auto`` takes it on a backend whose ``S2D_AUTO_MIN_CK`` (None: never) is at most
the rearranged convolution's C·SH·SW·K, where its window is 3×3 (so Winograd runs it).
"""

from __future__ import annotations

from math import prod
from typing import Any

from numbacnn.geometry import space_to_depth_shape, winograd_applies


class SpaceToDepthPasses:
    """Conv2D's ``s2d`` algorithm, mixed into ``layers/conv.py``'s Conv2D: it reads the
    layer's shapes, geometry, params, grads and buffers (no type checker runs here)."""

    drivers = ("space_to_depth", "depth_to_space", "s2d_filters", "s2d_filter_grads")

    def s2d_shape(self) -> tuple[int, ...]:
        """(C', H', W', FH', FW') of the rearranged stride-1 convolution."""
        _, OH, OW = self.output_shape
        return space_to_depth_shape(self.input_shape[0], self.size, self.stride, OH, OW)

    def s2d_inner(self) -> tuple[str, int]:
        """(algorithm, taps) of the rearranged stride-1 convolution: "winograd" for a
        3×3 or 5×5 window, with the larger tiles ``auto`` gives its C'·K
        (``conv_algorithm.larger_tiles``: F(4×4, 3×3) for a 3×3 one where C'·K reaches
        the backend's ``WINOGRAD43_AUTO_MIN_CK``), else "im2col"."""
        Cs, _, _, FHs, FWs = self.s2d_shape()
        taps = FHs * FWs
        if not winograd_applies((FHs, FWs), 1):
            return "im2col", taps
        return self.larger_tiles(taps, Cs) or "winograd", taps

    def s2d_auto(self) -> bool:
        """Whether ``algo=auto`` runs this strided convolution as space-to-depth."""
        least = getattr(self._backend(), "S2D_AUTO_MIN_CK", None)
        Cs, _, _, FHs, FWs = self.s2d_shape()
        return least is not None and (FHs, FWs) == (3, 3) and Cs * self.filters >= least

    def _s2d_inner_geometry(self) -> tuple[int, ...]:
        _, _, _, FHs, FWs = self.s2d_shape()
        return (FHs, FWs, 1, 1, 0, 0, 1, 1)

    def _s2d_workspace_shapes(self, N: int) -> dict[str, tuple]:
        """x' and w', the rearranged filter gradient, and the inner convolution's buffers."""
        B = self._backend()
        K, OH, OW = self.output_shape
        Cs, HS, WS, FHs, FWs = self.s2d_shape()
        inner, taps = self.s2d_inner()
        if inner == "im2col":
            shapes = B.conv_workspace(N, Cs, K, (FHs, FWs), OH, OW, 1)
        else:
            shapes = self.winograd_driver((inner, taps), "workspace")(N, Cs, K, HS, WS, OH, OW)
        return {**shapes, "s2d_x": (N, Cs, HS * WS), "s2d_w": (K, Cs * taps),
                "s2d_dw": (K, Cs * taps)}

    def s2d_workspace_bytes(self, batch: int) -> int:
        """The buffers' bytes: the workspace and dx' (a layer that is not the first)."""
        Cs, HS, WS, _, _ = self.s2d_shape()
        shapes = self._s2d_workspace_shapes(batch).values()
        return 4 * (sum(prod(shape) for shape in shapes) + batch * Cs * HS * WS)

    def _s2d_forward(self, x3: Any, y: Any, N: int, ws: dict[str, Any]) -> None:
        """y (flat) from x3 (N×C×(H·W)): x' and w', then the stride-1 convolution."""
        B = self._backend()
        C, H, W = self.input_shape
        K, OH, OW = self.output_shape
        Cs, HS, WS, _, _ = self.s2d_shape()
        geo = self.geometry
        xs, ws2 = ws["s2d_x"], ws["s2d_w"]
        B.space_to_depth(xs, x3, H, W, geo, HS, WS)
        B.s2d_filters(ws2, self._reshaped(self.params["W"], (K, C * self.taps())), geo)
        inner, taps = self.s2d_inner()
        relu = int(self.fused_relu)
        args = (xs, HS, WS, ws2, self.params["b"], y, ws, self._s2d_inner_geometry())
        if inner == "im2col":
            B.conv_forward(*args, 1, OH, OW, relu)
        else:
            self.winograd_driver((inner, taps), "forward")(*args, OH, OW, relu)

    def _s2d_backward(self, dy: Any, dx: Any, ws: dict[str, Any]) -> None:
        """grads W and b and, unless dx is None, dx (N×C×(H·W)) from dy (flat), after
        :meth:`_s2d_forward` of the same batch (x' and w' are still in ``ws``)."""
        B = self._backend()
        C, H, W = self.input_shape
        K, OH, OW = self.output_shape
        Cs, HS, WS, _, _ = self.s2d_shape()
        geo = self.geometry
        xs = ws["s2d_x"]
        N = xs.shape[0]
        dxs = None if dx is None else self._buffer("s2d_dx", (N, Cs, HS * WS))
        inner, taps = self.s2d_inner()
        relu = int(self.fused_relu)
        args = (xs, HS, WS, ws["s2d_w"], self._flat(self._buffers["y"]), dy, ws["s2d_dw"],
                self.grads["b"], dxs, ws, self._s2d_inner_geometry())
        if inner == "im2col":
            B.conv_backward(*args, 1, OH, OW, relu)
        else:
            self.winograd_driver((inner, taps), "backward")(*args, OH, OW, relu)
        B.s2d_filter_grads(self._reshaped(self.grads["W"], (K, C * self.taps())), ws["s2d_dw"],
                           geo)
        if dx is not None:
            B.depth_to_space(dx, dxs, H, W, geo, HS, WS)
