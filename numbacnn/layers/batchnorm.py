"""BatchNorm: batch normalization per channel (Ioffe & Szegedy 2015).

After a convolution each of the C channels is normalized over N×H×W values; after a
fully connected layer (N×units×1×1) each unit over the N samples. Training normalizes
with the batch's mean and biased variance and moves the running statistics,
``running = momentum·running + (1 − momentum)·batch`` with the unbiased variance
(momentum 0.9 here is PyTorch's momentum 0.1); inference normalizes with the running
statistics. Trainable ``params["gamma"]`` (ones) and ``params["beta"]`` (zeros); the
running ``state["mean"]`` (zeros) and ``state["var"]`` (ones) are saved with the model
and never touched by an optimizer. A ReLU right after the layer is fused into it
(``fused_relu``): the normalize pass writes max(y, 0) and backward masks dy with it, so
the ReLU's own passes over memory are saved. Bodies: ``numbacnn/kernels/batchnorm.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numbacnn.layers.activation import FusesFollowingReLU
from numbacnn.layers.base import Layer, Shape, register
from numbacnn.layers.syntax import LayerSyntax, float_option


@register
class BatchNorm(FusesFollowingReLU, Layer):

    syntax = LayerSyntax("batchnorm", (float_option("momentum", 0.9, high=1.0),
                                       float_option("eps", 1e-5, low_open=True)), 0,
                         "batchnorm momentum=0.9 eps=1e-05")
    table_name = "BN"
    drivers = ("batch_statistics", "inverse_std", "batchnorm_forward",
               "batchnorm_parameter_grads", "batchnorm_backward")
    bias_keys = ("beta",)
    nonnegative_state = ("var",)  # a variance: a file with var < 0 is damaged
    torch_names = {"gamma": "weight", "beta": "bias", "mean": "running_mean",
                   "var": "running_var"}

    def torch_module(self) -> Any:
        from torch import nn

        return nn.BatchNorm2d(self.input_shape[0], eps=self.eps,  # type: ignore[index]
                              momentum=1.0 - self.momentum)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        C = self.input_shape[0]  # type: ignore[index]
        return {"gamma": (C,), "beta": (C,)}

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        C = self.input_shape[0]  # type: ignore[index]
        return {"mean": (C,), "var": (C,)}

    def initial_state(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.ones(shape, np.float32) if key == "var" else np.zeros(shape, np.float32)

    def init_params(self, rng: np.random.Generator, init: str = "he") -> None:
        """γ = 1 and β = 0: the layer starts as the identity on normalized inputs."""
        super().init_params(rng, init)
        self.params["gamma"] = self._backend().to_device(
            np.ones(self.param_shapes()["gamma"], np.float32))

    def flops(self) -> int:
        C, H, W = self.input_shape  # type: ignore[misc]
        return 2 * C * H * W  # one multiply-add per value (the statistics not counted)

    def arithmetic(self) -> str:
        C, H, W = self.input_shape  # type: ignore[misc]
        over = "N" if H * W == 1 else f"N×{H}×{W}"
        return f"{C} means and variances over {over}"

    def _rows(self, a: Any) -> Any:
        C, H, W = self.input_shape  # type: ignore[misc]
        return self._reshaped(a, (a.shape[0], C, H * W))

    def forward(self, x: Any, training: bool = True) -> Any:
        x = self._check_input(x)
        C, H, W = self.input_shape  # type: ignore[misc]
        N = x.shape[0]
        B = self._backend()
        y = self._buffer("y", x.shape)
        mean = self._buffer("mean", (C,))
        inv_std = self._buffer("inv_std", (C,))
        eps = np.float32(self.eps)
        # one value per channel has no variance (PyTorch refuses it): such a batch, e.g.
        # a last batch of 1 after fc, is normalized like inference and moves nothing
        self._batch_statistics = training and N * H * W > 1
        if self._batch_statistics:
            B.batch_statistics(C, mean, inv_std, self.state["mean"], self.state["var"],
                               self._rows(x), np.float32(self.momentum), eps)
        else:
            mean = self.state["mean"]
            B.inverse_std(C, inv_std, self.state["var"], eps)
        B.batchnorm_forward(N * C, H * W, self._rows(y), self._rows(x), mean, inv_std,
                            self.params["gamma"], self.params["beta"], int(self.fused_relu))
        self._x, self._mean = x, mean
        return y

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        dy = self._check_gradient(dy)
        C, H, W = self.input_shape  # type: ignore[misc]
        N = dy.shape[0]
        B = self._backend()
        x, mean, inv_std = self._rows(self._x), self._mean, self._buffers["inv_std"]
        y, relu = self._rows(self._buffers["y"]), int(self.fused_relu)  # y masks dy when fused
        B.batchnorm_parameter_grads(C, self.grads["gamma"], self.grads["beta"], self._rows(dy),
                                    x, y, mean, inv_std, relu)
        if not need_dx:
            return None
        dx = self._buffer("dx", dy.shape)
        m_inv = np.float32(1.0 / (N * H * W)) if self._batch_statistics else np.float32(0.0)
        B.batchnorm_backward(N * C, H * W, self._rows(dx), self._rows(dy), x, y, mean, inv_std,
                             self.params["gamma"], self.grads["gamma"], self.grads["beta"], m_inv,
                             relu)
        return dx

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: BatchNormalization in inference mode (the running statistics);
        ONNX's momentum is this one (running = momentum·running + (1 − momentum)·batch).
        Then Relu when the ReLU after it is fused."""
        y = builder.node("BatchNormalization", [
            input_name, builder.constant("gamma", self.params["gamma"]),
            builder.constant("beta", self.params["beta"]),
            builder.constant("mean", self.state["mean"]),
            builder.constant("var", self.state["var"])],
            epsilon=self.eps, momentum=self.momentum)
        return self.onnx_fused_relu(builder, y)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape
