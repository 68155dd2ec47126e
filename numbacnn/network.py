"""Network: an ordered list of layers, their loss, and the passes over them.

    net = Network([Conv2D(8, 3, pad=1), ReLU(), MaxPool2D(2), Dense(10)], input_shape=(1, 28, 28))
    loss = net.loss.forward(net.forward(x), labels); net.backward()

Activations flow N×C×H×W from layer to layer and stay on the device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from numbacnn.device import backend, resolve_device, to_host
from numbacnn.errors import ShapeError
from numbacnn.geometry import volume
from numbacnn.layers import Layer, SoftmaxCrossEntropy
from numbacnn.layers.base import Shape

_UNTIMED = nullcontext()


class LayerTimer(Protocol):
    """What the passes need of a timer (``numbacnn.training.profiler.LayerTimer`` is one):
    a context manager that adds the time its block takes to layer ``slot``'s ``phase``
    ("forward" or "backward"; slot ``len(layers)`` is the loss)."""

    def measure(self, slot: int, phase: str) -> AbstractContextManager[Any]: ...


def _timed(timer: LayerTimer | None, slot: int, phase: str) -> AbstractContextManager[Any]:
    """``timer``'s clock around one call of a layer (``slot``: its index; the loss is
    ``len(layers)``) in ``phase`` ("forward" or "backward"); nothing without a timer."""
    return _UNTIMED if timer is None else timer.measure(slot, phase)


class Network:
    """Layers in order; ``loss`` is the SoftmaxCrossEntropy at the end.

    ``input_shape`` is (C, H, W). Building checks every layer's geometry (no kernel
    runs); :meth:`initialize` draws the weights on the network's device. ``device``
    ("auto", "cpu" or "cuda") is resolved here, once (``auto``: the GPU when there is
    one): the network owns it, and its layers, optimizer buffers and staging use its
    backend (:meth:`backend`).
    """

    def __init__(self, layers: Sequence[Layer], input_shape: Shape | None = None,
                 loss: SoftmaxCrossEntropy | None = None, spec_text: str | None = None,
                 fuse: bool = True, device: str = "auto") -> None:
        self.layers: list[Layer] = list(layers)
        if self.layers and isinstance(self.layers[-1], SoftmaxCrossEntropy):
            loss = self.layers.pop()  # type: ignore[assignment]
        self.explicit_loss = loss is not None
        self.loss = loss or SoftmaxCrossEntropy()
        self.spec_text = spec_text
        self.fuse = fuse  # a ReLU after a Conv2D or BatchNorm runs in that layer's pass (and
        # a 2×2 max pooling after a direct or F(4×4, 3×3) Conv2D and its ReLU in its
        # training passes, on the CPU)
        self.step = 0  # training forward passes so far: seeds dropout
        self.seed = 0
        self.stream = 0  # which dropout stream: the rank in data-parallel training
        self._device = ""
        self._use_device(resolve_device(device))  # "cpu" or "cuda", from now on
        self.input_shape: Shape | None = None
        if input_shape is not None:
            self.build(input_shape)

    @classmethod
    def from_spec(cls, spec: str, input_shape: Shape | None = None,
                  device: str = "auto") -> Network:
        """Build from spec text, a preset name or a spec file (see docs/spec.md), on
        ``device`` ("auto", "cpu" or "cuda")."""
        from numbacnn.spec import load_spec

        parsed = load_spec(spec)
        layers = parsed.build(input_shape)  # shape errors name the spec line
        return cls(layers, input_shape=input_shape or parsed.input_shape,
                   spec_text=parsed.to_text(), device=device)

    def build(self, input_shape: Shape) -> Shape:
        """Propagate (C, H, W) through the layers; returns the output shape."""
        self.input_shape = tuple(int(d) for d in input_shape)  # type: ignore[assignment]
        shape = self.input_shape
        for layer in self.layers:
            shape = layer.build(shape)  # type: ignore[arg-type]
        scores = self.explicit_loss or shape[1:] == (1, 1)  # the last layer feeds the loss
        self._fuse_layers()
        for layer, after in zip(self.layers, [*self.layers[1:], None], strict=True):
            follower = after or (self.loss if scores else None)  # its weights' default init
            layer.init_of_next = follower.init_of_input if follower is not None else {}
        if scores:
            self.loss.build(shape)  # type: ignore[arg-type]
        return shape  # type: ignore[return-value]

    def _fuse_layers(self) -> None:
        """Ask each layer whether it does the next one's work (``fuse_next``: a conv its
        ReLU), and a layer that did whether it does the one after that too
        (``fuse_further``: the conv then the max pooling); mark those ``fused``. Again
        when the convolutions' algorithm or the device changes (what fuses depends on
        them)."""
        owner = None  # the layer doing the work of the fused layers so far
        for layer, after in zip(self.layers, [*self.layers[1:], None], strict=True):
            if layer.fused and owner is not None:
                taken = owner.fuse_further(after, self.fuse)
            else:
                owner, taken = layer, layer.fuse_next(after, self.fuse)
            if after is not None:
                after.fused = taken

    @property
    def device(self) -> str:
        """The device the network's arrays live on and its kernels run on ("cpu" or
        "cuda", resolved at construction)."""
        return self._device

    def _use_device(self, name: str) -> None:
        """Run on ``name`` ("cpu" or "cuda"): the network's layers use its backend."""
        self._device = name
        for layer in [*self.layers, self.loss]:
            layer.device = name
        if getattr(self, "input_shape", None) is not None:
            self._fuse_layers()

    @property
    def conv_algo(self) -> str:
        """How the convolutions without their own ``algo=`` compute: "im2col" (the
        default), "winograd", "winograd4" or "winograd3" where a convolution can, or "auto"
        (``layers/conv.py``)."""
        return next((layer.network_algo for layer in self.layers
                     if hasattr(layer, "network_algo")), "im2col")

    @conv_algo.setter
    def conv_algo(self, name: str) -> None:
        for layer in self.layers:
            if hasattr(layer, "network_algo"):
                layer.network_algo = name
        if self.input_shape is not None:
            self._fuse_layers()

    def backend(self) -> ModuleType:
        """The backend module of the network's device."""
        return backend(self.device)

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].output_shape if self.layers else self.input_shape  # type: ignore[return-value]

    @property
    def ends_in_scores(self) -> bool:
        """Whether the network gives class scores 1×1×K (its loss is built on them); a
        network that ends in a volume W×H×D runs forward but cannot classify or train."""
        return self.loss.input_shape is not None

    def require_scores(self) -> None:
        """ShapeError unless the network ends in class scores: what classifying, the loss
        and training need (a built network that ends in a volume is refused)."""
        if self.input_shape is not None and not self.ends_in_scores:
            # 10: the classes of the bundled datasets; the message says which line to add
            raise ShapeError(f"this network ends in a {volume(self.output_shape)} volume, not "
                             'class scores: add "fc 10; softmax" to classify')

    @property
    def num_classes(self) -> int:
        """K of the class scores 1×1×K (ShapeError for a network that ends in a volume)."""
        self.require_scores()
        return self.output_shape[0]

    def initialize(self, seed: int = 0, init: str = "he", device: str | None = None) -> Network:
        """Draw all weights (layer.init or ``init``) from a generator seeded with ``seed``,
        on ``device`` (default: the network's own; another moves the network there)."""
        if self.input_shape is None:
            raise ShapeError("network: give an input shape (C, H, W) before initializing")
        self._use_device(resolve_device(device) if device is not None else self.device)
        rng = np.random.default_rng(seed)
        self.seed = int(seed)
        for layer in self.layers:
            layer.init_params(rng, init)
        return self

    def forward(self, x: Any, training: bool = True, timer: LayerTimer | None = None) -> Any:
        """Logits N×K×1×1 (a device array) for a batch x of N×C×H×W, or the output volume
        N×D×H×W of a network that ends in one; ``timer`` (see
        :mod:`numbacnn.training.profiler`) times each layer's call."""
        if training:
            self.step += 1
        for index, layer in enumerate(self.layers):
            if layer.draws_random:
                layer.seed = (self.seed * 1_000_003 + self.step * 7_919 + index
                              + self.stream * 0x9E3779B97F4A7C15) % 2**64
            with _timed(timer, index, "forward"):
                x = layer.forward(x, training)
        return x

    def backward(self, dlogits: Any = None, timer: LayerTimer | None = None) -> None:
        """Backpropagate from the loss (or from ``dlogits``), filling every layer's grads;
        ``timer`` times the loss's and each layer's call. A network that ends in a volume
        (no loss) needs ``dlogits``: the gradient of its output N×D×H×W."""
        if dlogits is None:
            self.require_scores()
        with _timed(timer, len(self.layers), "backward"):
            dy = self.loss.backward() if dlogits is None else dlogits
        for index in range(len(self.layers) - 1, -1, -1):
            with _timed(timer, index, "backward"):
                dy = self.layers[index].backward(dy, need_dx=index > 0)

    def train_step(self, x: Any, labels: Any) -> float:
        """Forward, loss and backward for one batch; returns the mean loss (read back)."""
        self.require_scores()
        loss = self.loss.forward(self.forward(x, training=True), labels)
        self.backward()
        return loss

    def train_step_on_device(self, x: Any, labels: Any, stats: Any = None,
                             timer: LayerTimer | None = None) -> None:
        """Forward, loss and backward for one batch with nothing read back: on a GPU the
        host only queues kernels. With ``stats`` (a float32 device array of 2) the
        batch's loss sum and correct predictions are added to it on the device.
        ``timer`` (see :mod:`numbacnn.training.profiler`) times every layer's and the
        loss's calls."""
        self.require_scores()
        logits = self.forward(x, training=True, timer=timer)
        with _timed(timer, len(self.layers), "forward"):
            self.loss.forward_on_device(logits, labels)
            if stats is not None:
                self.loss.add_batch_stats(stats)
        self.backward(timer=timer)

    def parameters(self) -> Iterator[tuple[str, Any, Any]]:
        """(name, parameter, gradient) for every learnable array, e.g. ("0.W", W, dW)."""
        for index, layer in enumerate(self.layers):
            for key, value in layer.params.items():
                yield f"{index}.{key}", value, layer.grads[key]

    def num_params(self) -> int:
        return sum(layer.num_params() for layer in self.layers)

    def predict_proba(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities N×K on the host, for normalized float32 images N×C×H×W."""
        self.require_scores()
        out = []
        B = self.backend()
        staging = None
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size]
            if (not B.on_host and isinstance(xb, np.ndarray) and xb.ndim == 4
                    and np.issubdtype(xb.dtype, np.floating)
                    and xb.shape[1:] == tuple(self.input_shape or ())):
                if staging is None:  # one reused device buffer, no allocation per batch
                    staging = B.empty((min(batch_size, len(x)), *xb.shape[1:]))
                xb = B.upload(np.ascontiguousarray(xb, dtype=np.float32), staging[:len(xb)])
            logits = self.forward(xb, training=False)
            out.append(to_host(self.loss.probabilities(logits)).copy())
        K = self.num_classes
        return np.concatenate(out) if out else np.zeros((0, K), np.float32)

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Network([{inner}], input_shape={self.input_shape})"

    def summary(self, batch: int = 1, width: int | None = None) -> None:
        """Print the shapes table (:mod:`numbacnn.shapes`): every layer's output W×H×D,
        the arithmetic, parameters with their formula, and memory for ``batch`` images,
        fitted to ``width`` columns (default: the terminal's, $COLUMNS, else 80). The
        report itself is ``numbacnn.shapes.shape_table(net)``."""
        from numbacnn.shapes import format_table, shape_table, terminal_width

        report = shape_table(self, batch=batch)
        print(format_table(report, width=width or terminal_width()), end="")

    def _repr_html_(self) -> str | None:
        """The shapes table as HTML, for Jupyter; None (plain repr) before building."""
        if self.input_shape is None:
            return None
        from numbacnn.shapes import shape_table

        return shape_table(self)._repr_html_()
