"""The layer interface shared by every layer.

Every activation array is float32, C-contiguous and 4-D, N×C×H×W (a fully
connected layer's output is N×units×1×1). A layer knows its shapes before any
kernel runs (as in ConvNetJS): ``build((C, H, W))`` checks the input geometry and
returns the output shape (C, H, W); ``param_shapes()``, ``num_params()`` and
``flops()`` follow from it. Kernels run only in ``forward`` and ``backward``, through
the backend of the current device (Caffe's Forward_cpu/Forward_gpu split).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from numbacnn.device import backend, is_device_array
from numbacnn.errors import ShapeError

Shape = tuple[int, int, int]


class Layer:
    """Base class. Subclasses set ``kind`` (the spec name) and implement the hooks."""

    kind: ClassVar[str] = ""

    def __init__(self) -> None:
        self.input_shape: Shape | None = None
        self.output_shape: Shape | None = None
        self.params: dict[str, Any] = {}
        self.grads: dict[str, Any] = {}
        self.init: str | None = None  # initializer of the weights, None = the network's
        self._buffers: dict[str, Any] = {}
        self._forward_batch: int | None = None  # N of the last forward: backward must match

    # --- shapes (pure Python, no kernel) ---------------------------------------------
    def build(self, input_shape: Shape) -> Shape:
        """Check ``input_shape`` (C, H, W) and return the output shape (C, H, W)."""
        input_shape = tuple(int(d) for d in input_shape)  # type: ignore[assignment]
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ShapeError(f"{self.describe()}: input shape must be (C, H, W) ≥ 1, "
                             f"got {input_shape}")
        self.input_shape = input_shape
        self.output_shape = self.compute_output_shape(input_shape)
        return self.output_shape

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the learnable arrays, e.g. {"W": (K, C, F, F), "b": (K,)}."""
        return {}

    def num_params(self) -> int:
        # Python integers: np.prod wraps around int64 for huge layers (negative counts)
        return sum(math.prod(s) for s in self.param_shapes().values())

    def flops(self) -> int:
        """Floating-point operations of the forward pass for one image (2 × multiply-adds)."""
        return 0

    def window(self) -> tuple[int, int] | None:
        """(F, S) of a sliding window for receptive-field arithmetic; None when the layer
        sees its whole input (fully connected)."""
        return (1, 1)

    def hyperparameters(self) -> dict[str, Any]:
        """Constructor arguments, in the order the spec writes them."""
        return {}

    def describe(self) -> str:
        """Spec text of this layer, e.g. 'conv 96 11 stride=4 pad=0'."""
        parts = [self.kind] + [f"{k}={v}" for k, v in self.hyperparameters().items()]
        return " ".join(parts)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"

    # --- parameters -----------------------------------------------------------------
    def fans(self) -> tuple[int, int]:
        """(fan_in, fan_out) of the weights, for the initializers."""
        return (1, 1)

    def init_params(self, rng: np.random.Generator, init: str = "he") -> None:
        """Draw weights with ``self.init or init`` and zero biases, on the current device."""
        from numbacnn.init import initialize

        fan_in, fan_out = self.fans()
        b = backend()
        for key, shape in self.param_shapes().items():
            method = (self.init or init) if key == "W" else "zeros"
            self.params[key] = b.to_device(initialize(shape, fan_in, fan_out, method, rng))
            self.grads[key] = b.zeros(shape)

    # --- running ----------------------------------------------------------------------
    def forward(self, x: Any, training: bool = True) -> Any:
        raise NotImplementedError

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        """Fill ``grads`` and return dL/dx (None when ``need_dx`` is False)."""
        raise NotImplementedError

    def _buffer(self, key: str, shape: tuple[int, ...], dtype: type = np.float32) -> Any:
        """A device array reused across calls while its shape stays the same."""
        buf = self._buffers.get(key)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
            buf = backend().empty(tuple(shape), dtype)
            self._buffers[key] = buf
        return buf

    def _check_input(self, x: Any) -> Any:
        """x as a float32, C-contiguous N×C×H×W array of this layer's input shape.

        float64 and non-contiguous host arrays are converted; integer arrays,
        wrong ranks and wrong shapes raise ShapeError (never a wrong result).
        """
        if self.input_shape is None:
            raise ShapeError(f"{self.describe()}: call build(input_shape) before forward")
        if not is_device_array(x):
            x = np.asarray(x)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(f"{self.describe()}: expected an N×C×H×W array with "
                             f"(C, H, W) = {self.input_shape}, got shape {tuple(x.shape)}")
        if x.dtype != np.float32:
            if not np.issubdtype(x.dtype, np.floating):
                raise ShapeError(f"{self.describe()}: expected float32 input, got {x.dtype}; "
                                 "convert it, e.g. x.astype(np.float32) / 255")
            if is_device_array(x):
                raise ShapeError(f"{self.describe()}: expected a float32 device array, "
                                 f"got {x.dtype}")
            x = x.astype(np.float32)
        if is_device_array(x):
            if not x.is_c_contiguous():
                raise ShapeError(f"{self.describe()}: device array must be C-contiguous")
        else:
            x = backend().to_device(x)
        self._forward_batch = int(x.shape[0])
        return x

    def _check_gradient(self, dy: Any) -> Any:
        """dy as a float32 C-contiguous array of this layer's output shape (4-D)."""
        C, H, W = self.output_shape  # type: ignore[misc]
        if not is_device_array(dy):
            dy = np.asarray(dy)
        if dy.size % (C * H * W) or dy.ndim not in (2, 4):
            raise ShapeError(f"{self.describe()}: gradient of shape {tuple(dy.shape)} does "
                             f"not match the output shape (N, {C}, {H}, {W})")
        dy = dy.reshape(dy.shape[0], C, H, W)
        if dy.shape[0] != self._forward_batch:  # saved activations are of another batch
            seen = "no forward yet" if self._forward_batch is None else \
                f"the last forward had {self._forward_batch} samples"
            raise ShapeError(f"{self.describe()}: backward needs the same batch's forward first "
                             f"({seen}, the gradient has {dy.shape[0]})")
        if not is_device_array(dy):
            dy = backend().to_device(np.ascontiguousarray(dy, dtype=np.float32))
        return dy
