"""What an untrained network says before its first update: its initial loss beside
ln K, and weights that cannot learn (all-zero init).

With logits near zero every class gets probability ≈ 1/K, so the cross-entropy of an
untrained classifier is ≈ ln K (2.30 for 10 classes): the lecture's first sanity check.
A loss far above it means the logits start large (too large an init for the layer
feeding the softmax, inputs not normalized); NaN, that the forward pass overflows.
All-zero weights break the symmetry no update can: every filter of the layer computes
the same output and gets the same gradient, so the filters stay equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from numbacnn.layers import Layer
from numbacnn.network import Network
from numbacnn.training.evaluation import evaluate

INITIAL_LOSS_IMAGES = 256  # the first this many training images
NEAR = 0.1  # an initial loss within 10 % of ln K is as expected
FAR_FACTOR = 1.5  # an initial loss above FAR_FACTOR · ln K is reported as far from it


@dataclass(frozen=True)
class InitialLoss:
    """The mean cross-entropy ``loss`` of an untrained network on ``images`` images of
    ``classes`` classes, in evaluation mode (dropout off, batchnorm with its initial
    running statistics: the identity)."""

    loss: float
    classes: int
    images: int

    @property
    def expected(self) -> float:
        """ln K: the loss when every class gets probability 1/K."""
        return math.log(self.classes)

    @property
    def far(self) -> bool:
        """NaN, infinite, or above FAR_FACTOR · ln K."""
        return not math.isfinite(self.loss) or self.loss > FAR_FACTOR * self.expected

    def line(self) -> str:
        """e.g. 'initial loss 2.29 on the first 256 training images, before any update
        (ln 10 = 2.30: logits near zero, as expected)'."""
        ratio = self.loss / self.expected
        verdict = ("not a number" if math.isnan(self.loss) else "far above it" if self.far
                   else "logits near zero, as expected" if abs(ratio - 1) <= NEAR
                   else "above it: the logits start somewhat large" if ratio > 1
                   else "below it: the untrained network already favours the right classes")
        return (f"initial loss {self.loss:.2f} on the first {self.images} training images, "
                f"before any update (ln {self.classes} = {self.expected:.2f}: {verdict})")

    def advice(self) -> str | None:
        """What a loss far from ln K means, in one sentence; None when it is near."""
        if not self.far:
            return None
        if not math.isfinite(self.loss):
            return ("the untrained network's forward pass overflows: check that the inputs "
                    "are normalized and choose smaller initial weights (xavier or lecun)")
        return (f"the untrained network is confidently wrong ({self.loss / self.expected:.1f}"
                f" × ln {self.classes}): its logits start large, so the first updates undo the "
                "initialization before they learn; give the layer feeding the softmax small "
                "weights (init=normal) or choose a smaller initializer")


def initial_loss(net: Network, x: np.ndarray, labels: np.ndarray,
                 images: int = INITIAL_LOSS_IMAGES) -> InitialLoss:
    """The loss of ``net`` as it is (call it before training) on the first ``images`` of
    the normalized float32 images ``x`` N×C×H×W with int labels (N,). Reads the weights
    only: no update, no random draw, so training afterwards is unchanged."""
    n = min(images, len(labels))
    loss, _, _ = evaluate(net, x[:n], labels[:n])
    return InitialLoss(loss, net.num_classes, n)


def zero_initialized(net: Network, init: str) -> list[Layer]:
    """The layers of ``net`` whose weights the initializer ``init`` (the network's; a
    layer's own ``init=`` wins) sets to all zeros."""
    return [layer for layer in net.layers
            if "W" in layer.param_shapes() and layer.initializer(init) == "zeros"]


def symmetry_warning(net: Network, init: str) -> str | None:
    """One sentence saying why all-zero weights cannot learn, naming those layers; None
    when no layer starts at zero."""
    layers = zero_initialized(net, init)
    if not layers:
        return None
    names = ", ".join(layer.describe() for layer in layers[:3])
    names += f" and {len(layers) - 3} more" if len(layers) > 3 else ""
    return (f"{names} start{'s' if len(layers) == 1 else ''} with all-zero weights (init "
            "zeros): every filter (or unit) of such a layer computes the same output and "
            "gets the same gradient, so they stay equal (symmetry) and cannot learn "
            "different features; give them random weights (he, xavier, lecun or normal)")
