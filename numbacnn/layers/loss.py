"""SoftmaxCrossEntropy: the classifier's loss on logits N×K (or N×K×1×1).

forward(logits, labels) → mean over the batch of −log softmax(logits)[label];
backward() → dL/dlogits = (softmax − onehot)/N, shaped N×K×1×1 (N: ``mean_over`` when set).
With ``label_smoothing`` ε > 0 the one-hot target becomes (1 − ε)·onehot + ε/K in both.
Bodies: ``numbacnn/kernels/loss.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numbacnn.device import is_device_array, to_host
from numbacnn.errors import ShapeError
from numbacnn.geometry import VOLUME_AXES, volume
from numbacnn.init import OUTPUT_INIT
from numbacnn.layers.base import Layer, Shape, register
from numbacnn.layers.syntax import LayerSyntax


@register
class SoftmaxCrossEntropy(Layer):
    """``mean_over``: the number of images the gradient is averaged over; None (the
    default) is this batch, data-parallel training sets the global batch size so that
    each rank's gradient is its share of the global mean (``numbacnn/training/distributed.py``).
    ``label_smoothing``: ε (0 ≤ ε < 1) of the training loss and its gradient, set by the
    trainer from its settings; :meth:`probabilities` does not depend on it."""

    syntax = LayerSyntax("softmax")
    must_be_last = "it is the classifier's loss"
    init_of_input = OUTPUT_INIT  # small logits: the initial loss is near ln K
    drivers = ("upload", "fill", "softmax_cross_entropy_forward",
               "softmax_cross_entropy_smoothing", "softmax_cross_entropy_backward",
               "batch_stats")
    # a driver called only while the named attribute is set (a cold start compiles it then)
    conditional_drivers = {"softmax_cross_entropy_smoothing": "label_smoothing"}
    mean_over: int | None = None
    label_smoothing: float = 0.0

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        C, H, W = input_shape
        if H != 1 or W != 1:
            raise ShapeError(f"softmax: expects class scores 1x1xK ({VOLUME_AXES}; put fc K "
                             f"before it), got {volume(input_shape)}")
        return input_shape

    def _logits(self, logits: Any) -> Any:
        K = self.input_shape[0]  # type: ignore[index]
        if not is_device_array(logits):
            logits = np.asarray(logits)
        if logits.ndim == 2:  # N×K' → N×K'×1×1; a K' other than K is refused below
            logits = logits.reshape(*logits.shape, 1, 1)
        return self._reshaped(self._check_input(logits), (logits.shape[0], K))

    def _labels(self, labels: Any, N: int) -> Any:
        K = self.input_shape[0]  # type: ignore[index]
        if not is_device_array(labels):
            labels = np.asarray(labels)
            if labels.shape != (N,) or not np.issubdtype(labels.dtype, np.integer):
                raise ShapeError(f"softmax: labels must be {N} integers, got shape "
                                 f"{labels.shape} of {labels.dtype}")
            if N and (labels.min() < 0 or labels.max() >= K):
                raise ShapeError(f"softmax: labels must lie in 0…{K - 1}, got "
                                 f"{labels.min()}…{labels.max()}")
            labels = self._backend().upload(labels.astype(np.int64, copy=False),
                                            self._buffer("labels", (N,), np.int64))
        elif labels.shape != (N,) or labels.dtype != np.int64:
            raise ShapeError(f"softmax: device labels must be int64 of shape ({N},)")
        return labels

    def probabilities(self, logits: Any) -> Any:
        """softmax(logits) as an N×K device array (nothing kept for backward)."""
        logits = self._logits(logits)
        N, K = logits.shape
        labels = self._buffer("no_labels", (N,), np.int64)
        self._backend().fill(N, labels, np.int64(0))
        probs = self._buffer("proba", (N, K))  # not "probs": backward() still needs those
        self._backend().softmax_cross_entropy_forward(N, probs, self._buffer("proba_losses", (N,)),
                                                      logits, labels)
        return probs

    def forward(self, logits: Any, labels: Any = None, training: bool = True) -> float:  # type: ignore[override]
        """Mean cross-entropy loss of the batch against the (smoothed) targets (a host
        float: reads the losses back)."""
        self.forward_on_device(logits, labels)
        return float(to_host(self.losses).astype(np.float64).mean())

    def forward_on_device(self, logits: Any, labels: Any) -> Any:
        """Per-sample losses (N,) as a device array, nothing read back: what a training
        step needs, the host waiting on nothing."""
        logits = self._logits(logits)
        N, K = logits.shape
        self._labels_dev = self._labels(labels, N)
        self._logits_dev = logits
        probs = self._buffer("probs", (N, K))
        losses = self._buffer("losses", (N,))
        self._backend().softmax_cross_entropy_forward(N, probs, losses, logits, self._labels_dev)
        if self.label_smoothing:
            self._backend().softmax_cross_entropy_smoothing(
                N, losses, logits, self._labels_dev, np.float32(self.label_smoothing))
        self.losses = losses
        return losses

    def add_batch_stats(self, stats: Any) -> None:
        """stats[0] += Σ losses, stats[1] += correct predictions (argmax of the logits is
        the label), for the batch of the last forward; ``stats`` is a float32 device
        array of 2, read back by the trainer once per progress update."""
        N = self.losses.shape[0]
        self._backend().batch_stats(N, stats, self.losses, self._logits_dev, self._labels_dev)

    def backward(self, dy: Any = None, need_dx: bool = True) -> Any:
        """dL/dlogits as N×K×1×1 (``dy`` is ignored: the loss is the end of the chain)."""
        if getattr(self, "_labels_dev", None) is None:
            raise ShapeError("softmax: backward needs forward(logits, labels) first")
        probs = self._buffers["probs"]
        N, K = probs.shape
        dlogits = self._buffer("dx", (N, K, 1, 1))
        self._backend().softmax_cross_entropy_backward(
            dlogits.size, self._reshaped(dlogits, (N, K)), probs, self._labels_dev,
            np.float32(1.0 / (self.mean_over or N)), np.float32(self.label_smoothing))
        return dlogits

    def onnx_nodes(self, builder: Any, input_name: str) -> str:
        """ONNX export: logits N×K×1×1 → Reshape N×K → Softmax over the classes (axis 1)."""
        K = self.input_shape[0]  # type: ignore[index]
        logits = builder.node("Reshape", [input_name, builder.shape("shape", [0, K])])
        return builder.node("Softmax", [logits], axis=1)
