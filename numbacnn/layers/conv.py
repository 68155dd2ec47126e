"""Conv2D: im2col + one GEMM per group forward, GEMM + col2im backward.

Input N×C×H×W, filters W: K×(C/G)×FH×FW, biases b: K, output N×K×OH×OW with
OH = (H − FH' + PT + PB)/SH + 1, FH' = DH·(FH − 1) + 1 (``numbacnn/geometry.py``;
``round=floor|ceil`` rounds a count that is not whole). Parameters:
(FH·FW·C/G)·K weights + K biases. Groups G: filters k of group g = k // (K/G) see only
the input channels of that group, g·C/G … (g + 1)·C/G − 1; the column matrix is the
same as ungrouped, and the GEMM runs once per group on its block of rows.
Kernel bodies: ``numbacnn/kernels/conv.py``; the passes are ``conv_forward`` and
``conv_backward`` of ``numbacnn/backends/cpu.py`` (a chunk of images at a time, in
each core's cache) and ``cuda.py`` (the whole batch at once).

Algorithm (``algo=``, else the network's ``conv_algo``, :data:`CONV_ALGORITHMS`):
``im2col`` as above, ``winograd``, F(2×2, 3×3) (``numbacnn/kernels/winograd.py``;
``winograd_forward``/``winograd_backward`` of each backend) for 3×3 windows of stride 1,
dilation 1 and one group, F(2×2, 5×5) (``kernels/winograd5.py``; ``winograd5_forward``/
``winograd5_backward``) for such 5×5 windows, ``winograd4``, F(4×4, 3×3) (``kernels/winograd43.py``;
``winograd43_forward``/``winograd43_backward``; the CPU only, less accurate) for 3×3
windows as ``winograd``'s, ``winograd3``, F(3×3, 5×5) (``kernels/winograd35.py``;
``winograd35_*``; the CPU only) for 5×5 ones, ``direct`` (``numbacnn/kernels/direct_conv.py``;
``direct_forward``/``direct_backward``) for stride 1 and an output as wide as the input
(``geometry.direct_applies``: ``pad=same`` and the like), or ``s2d`` (``layers/conv_s2d.py``)
for stride 2 or more, dilation 1 and one group: the stride-1 convolution of the input and
filters rearranged into S×S blocks, on the Winograd drivers where its window is 3×3 or 5×5,
else on im2col's. ``auto`` picks s2d where the rearranged window is 3×3 and C·SH·SW·K is at
least the backend's ``S2D_AUTO_MIN_CK`` (None: never), the direct
convolution where it applies and C/G·FH·FW is at most the backend's
``DIRECT_AUTO_MAX_TAPS``, else Winograd where it applies and the backend's
``WINOGRAD_AUTO_MIN_CK`` (``WINOGRAD5_AUTO_MIN_CK`` for 5×5: the smallest C·K it measured
Winograd faster at; None: at none) says so, a 3×3 one as F(4×4, 3×3) where C·K is at
least ``WINOGRAD43_AUTO_MIN_CK``, a 5×5 one as F(3×3, 5×5) where it is at least
``WINOGRAD35_AUTO_MIN_CK`` (the choice and the table of Winograd variants:
``layers/conv_algorithm.py``). A network-wide ``winograd``, ``winograd3``,
``winograd4``, ``direct`` or ``s2d`` leaves the convolutions it cannot run on im2col;
any of them as a layer's ``algo=`` on a layer that cannot use it is an error.

Fusion (``Network.build``): a ReLU right after the convolution is applied in its last
pass (``fused_relu``); then a 2×2 stride-2 max pooling without padding after that ReLU
(its windows inside the output: floor on an odd size) is done by the training passes
of a direct or Winograd F(4×4, 3×3) convolution on a backend that fuses it (the CPU:
``DIRECT_POOL_FUSES``, ``direct_pool_forward``/``_backward``; ``WINOGRAD43_POOL_FUSES``,
``winograd43_pool_forward``/``_backward``, a 4×4 tile's 2×2 windows whole): each output
plane pooled in cache, only the pooled output and argmax written, into the pooling
layer's buffers (:meth:`MaxPool2D.outputs`), and backward from the pooled gradient
(``fused_pool``, each tile's gradient built from it in Winograd's).
Inference passes compute the convolution's output and leave the pooling to its layer.
"""

from __future__ import annotations

from math import prod
from typing import Any

from numbacnn.errors import ShapeError
from numbacnn.geometry import (
    CONV_ALGORITHMS,
    LARGER_TILE_WINDOWS,
    direct_applies,
    effective_size,
    larger_tiles_apply,
    output_hw,
    pads4,
    pair,
    s2d_applies,
    window_arithmetic,
    winograd_applies,
)
from numbacnn.layers.activation import FusesFollowingReLU
from numbacnn.layers.base import Layer, Shape, register
from numbacnn.layers.conv_algorithm import WINOGRAD_DRIVERS, WINOGRAD_RUNS, ConvAlgorithm
from numbacnn.layers.conv_s2d import SpaceToDepthPasses
from numbacnn.layers.pool import MaxPool2D
from numbacnn.layers.syntax import (
    ACTIVATION,
    INIT,
    PAD,
    ROUND,
    LayerSyntax,
    Option,
    collapse,
    int_option,
)

# How the layer computes (None: as its network says); not a hyperparameter: every
# algorithm computes the same convolution, to float32 rounding
ALGO = Option("algo", str, None, choices=CONV_ALGORITHMS, hyperparameter=False)


@register
class Conv2D(FusesFollowingReLU, ConvAlgorithm, SpaceToDepthPasses, Layer):
    syntax = LayerSyntax("conv", (int_option("filters"), int_option("size", axes=True),
                                  int_option("stride", 1, axes=True), PAD,
                                  int_option("groups", 1, quiet_default=True),
                                  int_option("dilation", 1, axes=True, quiet_default=True),
                                  ROUND, INIT, ALGO, ACTIVATION), 2,
                         "conv 96 11 stride=4 pad=0")

    table_name, spatial, bias_keys = "CONV", True, ("b",)
    feature_map = True
    drivers = ("conv_workspace", "conv_forward", "conv_backward", *WINOGRAD_DRIVERS,
               "direct_workspace", "direct_forward", "direct_backward", "direct_pool_workspace",
               "direct_pool_forward", "direct_pool_backward", "winograd43_pool_forward",
               "winograd43_pool_backward")
    # the drivers of the algorithm the layer does not use are not called (a Winograd
    # variant's: ``uses_`` and its prefix)
    conditional_drivers = {"conv_workspace": "uses_im2col", "conv_forward": "uses_im2col",
                           "conv_backward": "uses_im2col",
                           **{name: f"uses_{name.rsplit('_', 1)[0]}" for name in WINOGRAD_DRIVERS},
                           "direct_workspace": "uses_direct", "direct_forward": "uses_direct",
                           "direct_backward": "uses_direct",
                           "direct_pool_workspace": "pools_direct",
                           "direct_pool_forward": "pools_direct",
                           "direct_pool_backward": "pools_direct",
                           "winograd43_pool_forward": "pools_winograd43",
                           "winograd43_pool_backward": "pools_winograd43",
                           **dict.fromkeys(SpaceToDepthPasses.drivers, "uses_s2d")}
    # the MaxPool2D whose work the training passes do (set by Network.build: fuse_further)
    fused_pool: MaxPool2D | None = None

    @classmethod
    def derive_options(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The options worked out (:meth:`_derived_options`); ``algo=direct`` needs a
        convolution it can run."""
        values = cls._derived_options(values)
        if values.get("algo") == "direct" and not direct_applies(
                values["size"], values["stride"], values["pad"], values["dilation"]):
            raise ValueError("algo=direct computes stride-1 convolutions that keep the input's "
                             "width (left + right padding = the dilated window's width − 1, "
                             "e.g. pad=same) only; give algo=im2col or algo=auto for this "
                             "convolution")
        if values.get("algo") == "s2d" and not s2d_applies(
                values["stride"], values["dilation"], values["groups"]):
            raise ValueError("algo=s2d computes convolutions of stride 2 or more, dilation 1 "
                             "and one group only; give algo=im2col or algo=auto for this "
                             "convolution")
        return values

    @classmethod
    def _derived_options(cls, values: dict[str, Any]) -> dict[str, Any]:
        """``pad=valid`` is 0; ``pad=same`` is (F' − 1)/2 per axis, F' = D·(F − 1) + 1,
        which keeps a stride-1 output the size of the input (F' must be odd). The
        groups must divide the filters; ``algo=winograd`` needs a window it can run."""
        if values.get("algo") == "winograd" and not winograd_applies(
                values["size"], values["stride"], values["dilation"], values["groups"]):
            raise ValueError("algo=winograd computes 3×3 and 5×5 windows of stride 1, "
                             "dilation 1 and one group only; give algo=im2col or algo=auto "
                             "for this convolution")
        algo = values.get("algo")
        if algo in LARGER_TILE_WINDOWS and not larger_tiles_apply(
                algo, values["size"], values["stride"], values["dilation"], values["groups"]):
            F = LARGER_TILE_WINDOWS[algo]
            raise ValueError(f"algo={algo} computes {F}×{F} windows of stride 1, dilation 1 "
                             f"and one group only; give algo=im2col or algo=auto for this "
                             f"convolution")
        if values["filters"] % values["groups"]:
            raise ValueError(f"groups={values['groups']} must divide the {values['filters']} "
                             f"filters (each group has K/G of them)")
        if values["pad"] == "valid":
            return {**values, "pad": 0}
        if values["pad"] == "same":
            pads = []
            for F, D in zip(pair(values["size"]), pair(values["dilation"]), strict=True):
                Fe = effective_size(F, D)
                if Fe % 2 == 0:
                    raise ValueError(f"pad=same needs an odd size, got size {F}"
                                     f"{'' if D == 1 else f' dilated by {D} ({Fe} pixels)'}: "
                                     f"(F − 1)/2 = {(Fe - 1) / 2:g} is not whole; give pad=N "
                                     f"instead")
                pads.append((Fe - 1) // 2)
            return {**values, "pad": collapse(tuple(pads))}
        return values

    def _setup(self) -> None:
        self._cols_hold_input = False  # False once backward reused the columns for dcols
        self._pooled = False  # the last forward pass did fused_pool's work
        self._x: Any = None  # the last forward pass's input
        self.network_algo = "im2col"  # the network's conv_algo, for algo=None

    # --- fusion ------------------------------------------------------------------------
    def fuse_next(self, after: Layer | None, enabled: bool) -> bool:
        """A ReLU right after the convolution is applied in its last pass."""
        self.fused_pool = None
        return super().fuse_next(after, enabled)

    def fuse_further(self, after: Layer | None, enabled: bool) -> bool:
        """After the fused ReLU, a max pooling of 2×2 windows, stride 2, no padding, each
        window inside the output, is done by the training passes when the convolution
        is direct or Winograd F(4×4, 3×3) and its backend fuses that algorithm
        (``DIRECT_POOL_FUSES``, ``WINOGRAD43_POOL_FUSES``); the layer's own algorithm, not
        the stride-1 convolution an ``s2d`` one runs inside (its planes are rearranged)."""
        if not (enabled and self.fused_relu and self.fused_pool is None
                and isinstance(after, MaxPool2D)
                and after.driver_window() == (2, 2, 2, 2, 0, 0, True)):
            return False
        algo = self.algorithm()
        if not ((algo == "direct" and getattr(self._backend(), "DIRECT_POOL_FUSES", False))
                or (algo == "winograd4"
                    and getattr(self._backend(), "WINOGRAD43_POOL_FUSES", False))):
            return False
        self.fused_pool = after
        return True

    # --- the algorithm (layers/conv_algorithm.py) ---------------------------------------
    @property
    def pools_direct(self) -> bool:
        """The training passes do ``fused_pool``'s work in the direct convolution."""
        return self.fused_pool is not None and self.uses_direct

    @property
    def pools_winograd43(self) -> bool:
        """The training passes do ``fused_pool``'s work in Winograd F(4×4, 3×3)."""
        return self.fused_pool is not None and self.algorithm() == "winograd4"

    # --- the window, per axis ---------------------------------------------------------
    @property
    def geometry(self) -> tuple[int, int, int, int, int, int, int, int]:
        """(FH, FW, SH, SW, PT, PL, DH, DW): what the kernels need (the bottom and right
        padding only decide OH and OW)."""
        (FH, FW), (SH, SW), (DH, DW) = pair(self.size), pair(self.stride), pair(self.dilation)
        PT, PL, _, _ = pads4(self.pad)
        return (FH, FW, SH, SW, PT, PL, DH, DW)

    def taps(self) -> int:
        """FH·FW, the weights of one filter in one input channel."""
        FH, FW = pair(self.size)
        return FH * FW

    def used_pads(self) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) padding that the windows reach, for frameworks
        that round down (ONNX, PyTorch): bottom and right as far as the last window
        reaches, (O − 1)·S + F' − W − P1 (at least 0). The declared padding under
        exact and floor; more under ceil (its last window runs past the end)."""
        FH, FW, SH, SW, PT, PL, DH, DW = self.geometry
        _, H, W = self.input_shape  # type: ignore[misc]
        _, OH, OW = self.output_shape  # type: ignore[misc]
        bottom = max(0, (OH - 1) * SH + effective_size(FH, DH) - H - PT)
        right = max(0, (OW - 1) * SW + effective_size(FW, DW) - W - PL)
        return (PT, PL, bottom, right)

    def torch_module(self) -> Any:
        from torch import nn

        FH, FW, SH, SW, PT, PL, DH, DW = self.geometry
        conv = nn.Conv2d(self.input_shape[0], self.filters, (FH, FW),  # type: ignore[index]
                         stride=(SH, SW), dilation=(DH, DW), groups=self.groups)
        top, left, bottom, right = self.used_pads()
        if (top, left) == (bottom, right):
            conv.padding = (top, left)
            return conv
        return nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), conv)

    def arithmetic(self) -> str:
        return window_arithmetic(self.input_shape, self.size, self.stride, self.pad,  # type: ignore[arg-type]
                                 dilation=self.dilation, rounding=self.round)

    def workspace_bytes(self, batch: int) -> int:
        K, OH, OW = self.output_shape  # type: ignore[misc]
        C, H, W = self.input_shape  # type: ignore[misc]
        algo = self.algorithm()
        if algo == "s2d":
            return self.s2d_workspace_bytes(batch)
        if (algo, self.taps()) in WINOGRAD_RUNS:
            return self.winograd_workspace_bytes(batch)
        if algo == "direct":  # per part a few padded planes (per image on the GPU)
            shapes = self._backend().direct_workspace(batch, C, K, H, W, OH, OW,
                                                      self.geometry, self.groups)
            return 4 * sum(prod(shape) for shape in shapes.values())
        return 4 * batch * OH * OW * (C * self.taps() + K)  # columns, GEMM output

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        C, H, W = input_shape
        if C % self.groups:
            raise ShapeError(f"{self.describe()}: groups={self.groups} must divide the "
                             f"{C} input channels (each group sees C/G of them)")
        OH, OW = output_hw(H, W, self.size, self.stride, self.pad, self.describe(),
                           dilation=self.dilation, rounding=self.round)
        return (self.filters, OH, OW)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        C = self.input_shape[0]  # type: ignore[index]
        return {"W": (self.filters, C // self.groups, *pair(self.size)), "b": (self.filters,)}

    def fans(self) -> tuple[int, int]:
        C = self.input_shape[0]  # type: ignore[index]
        return C // self.groups * self.taps(), self.filters * self.taps()

    def flops(self) -> int:
        K, OH, OW = self.output_shape  # type: ignore[misc]
        return 2 * K * OH * OW * self.input_shape[0] // self.groups * self.taps()  # type: ignore[index]

    def window(self) -> tuple[int, int]:
        """(F', S) of the wider axis (a rectangular window: the larger of each)."""
        FH, FW, SH, SW, _, _, DH, DW = self.geometry
        return (max(effective_size(FH, DH), effective_size(FW, DW)), max(SH, SW))

    def _workspace(self, N: int, algo: str) -> dict[str, Any]:
        """The backend's convolution buffers for a batch of N (``conv_workspace``, the
        Winograd variant's ``{prefix}_workspace`` (``conv_algorithm.WINOGRAD_RUNS``),
        ``direct_workspace`` or, for ``algo`` "direct_pool", ``direct_pool_workspace``)."""
        K, OH, OW = self.output_shape  # type: ignore[misc]
        C, H, W = self.input_shape  # type: ignore[misc]
        if algo == "s2d":
            shapes = self._s2d_workspace_shapes(N)
        elif algo in ("direct", "direct_pool"):
            workspace = getattr(self._backend(), f"{algo}_workspace")
            shapes = workspace(N, C, K, H, W, OH, OW, self.geometry, self.groups)
        elif (algo, self.taps()) in WINOGRAD_RUNS:
            shapes = self.winograd_driver((algo, self.taps()), "workspace")(N, C, K, H, W, OH,
                                                                              OW)
        else:
            shapes = self._backend().conv_workspace(N, C, K, self.size, OH, OW, self.groups)
        return {key: self._buffer(key, shape) for key, shape in shapes.items()}

    def forward(self, x: Any, training: bool = True) -> Any:
        x = self._check_input(x)
        B = self._backend()
        N = x.shape[0]
        C, H, W = self.input_shape  # type: ignore[misc]
        K, OH, OW = self.output_shape  # type: ignore[misc]
        x3 = self._reshaped(x, (N, C, H * W))  # im2col reads each input plane flat
        w2 = self._reshaped(self.params["W"], (K, C // self.groups * self.taps()))
        algo = self.algorithm()
        self._pooled = training and self.fused_pool is not None
        if self._pooled:  # the pooling's output and argmax only, in its buffers
            y, argmax = self.fused_pool.outputs(N)  # type: ignore[union-attr]
            if algo == "winograd4":
                B.winograd43_pool_forward(x3, H, W, w2, self.params["b"], y, argmax,
                                          self._workspace(N, algo), self.geometry, OH, OW,
                                          int(self.fused_relu))
            else:
                B.direct_pool_forward(x3, H, W, w2, self.params["b"], y, argmax,
                                      self._workspace(N, "direct_pool"), self.geometry,
                                      self.groups, OH, OW, int(self.fused_relu))
            self._x = x3
            self._cols_hold_input = True
            return y
        y = self._buffer("y", (N, K, OH, OW))
        if algo == "s2d":
            self._s2d_forward(x3, self._flat(y), N, self._workspace(N, algo))
        elif (algo, self.taps()) in WINOGRAD_RUNS:
            self.winograd_driver((algo, self.taps()), "forward")(
                x3, H, W, w2, self.params["b"], self._flat(y), self._workspace(N, algo),
                self.geometry, OH, OW, int(self.fused_relu))
        else:
            forward = B.direct_forward if algo == "direct" else B.conv_forward
            forward(x3, H, W, w2, self.params["b"], self._flat(y), self._workspace(N, algo),
                    self.geometry, self.groups, OH, OW, int(self.fused_relu))
        self._x = x3  # the CPU computes each chunk's columns again in backward
        self._cols_hold_input = True
        return y

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        """dW, db and dx from dy: the gradient of the output, or after a pass that did
        ``fused_pool``'s work the gradient of that pooling's output."""
        if self._pooled:
            dy = self.fused_pool._check_gradient(dy)  # type: ignore[union-attr]
        else:
            dy = self._check_gradient(dy)
        B = self._backend()
        N = dy.shape[0]
        C, H, W = self.input_shape  # type: ignore[misc]
        K, OH, OW = self.output_shape  # type: ignore[misc]
        if not self._cols_hold_input or self._x.shape[0] != N:
            raise ShapeError(f"{self.describe()}: backward needs the same batch's forward first")
        dx = self._buffer("dx", (N, C, H, W)) if need_dx else None
        self._cols_hold_input = not need_dx  # computing dx overwrites the columns
        CFF = C // self.groups * self.taps()
        if self._pooled:
            y, argmax = self.fused_pool.outputs(N)  # type: ignore[union-attr]
            w2, dw2 = (self._reshaped(a, (K, CFF)) for a in (self.params["W"], self.grads["W"]))
            dx3 = None if dx is None else self._reshaped(dx, (N, C, H * W))
            if self.algorithm() == "winograd4":
                B.winograd43_pool_backward(self._x, H, W, w2, y, argmax, dy, dw2,
                                           self.grads["b"], dx3, self._workspace(N, "winograd4"),
                                           self.geometry, OH, OW, int(self.fused_relu))
            else:
                B.direct_pool_backward(self._x, H, W, w2, y, argmax, dy, dw2, self.grads["b"],
                                       dx3, self._workspace(N, "direct_pool"), self.geometry,
                                       self.groups, OH, OW, int(self.fused_relu))
            return dx
        args = (self._x, H, W, self._reshaped(self.params["W"], (K, CFF)),
                self._flat(self._buffers["y"]), self._flat(dy),
                self._reshaped(self.grads["W"], (K, CFF)), self.grads["b"],
                None if dx is None else self._reshaped(dx, (N, C, H * W)))
        algo = self.algorithm()
        if algo == "s2d":
            self._s2d_backward(self._flat(dy), None if dx is None else args[-1],
                               self._workspace(N, algo))
        elif (algo, self.taps()) in WINOGRAD_RUNS:
            self.winograd_driver((algo, self.taps()), "backward")(
                *args, self._workspace(N, algo), self.geometry, OH, OW, int(self.fused_relu))
        else:
            backward = B.direct_backward if algo == "direct" else B.conv_backward
            backward(*args, self._workspace(N, algo), self.geometry, self.groups, OH, OW,
                     int(self.fused_relu))
        return dx

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: Conv (W K×C/G×FH×FW, b K, kernel_shape, strides, dilations, group,
        pads top, left, bottom, right as far as the windows reach: ONNX rounds down),
        then Relu when a following ReLU is fused into this convolution."""
        FH, FW, SH, SW, _, _, DH, DW = self.geometry
        top, left, bottom, right = self.used_pads()
        attributes: dict[str, Any] = {"kernel_shape": [FH, FW], "strides": [SH, SW],
                                      "pads": [top, left, bottom, right]}
        if (DH, DW) != (1, 1):
            attributes["dilations"] = [DH, DW]
        if self.groups != 1:
            attributes["group"] = self.groups
        y = builder.node("Conv", [input_name, builder.constant("W", self.params["W"]),
                                  builder.constant("b", self.params["b"])], **attributes)
        return self.onnx_fused_relu(builder, y)
