"""One test case per registered layer kind: the tests that must cover every layer read it.

``LAYER_CASES`` maps each spec keyword of ``numbacnn.layers.LAYERS`` to a small
:class:`LayerCase`: the spec text of one layer, the N×C×H×W batch it sees, how its input
is drawn and the float32 tolerances against the float64 reference. A layer added to the
registry without a line here fails ``tests/test_layer_cases.py``; with the line it is
covered by:

- the layer against its float64 reference (``tests/test_layers.py``) and the gradient
  checks (``tests/test_gradients.py``), through ``tests/reference.py``'s ``REFERENCES``
  (an elementwise activation gives its f and f′ in its case instead);
- the CUDA kernels in the simulator (``tests/cuda_sim/test_sim_layers.py``) and the PTX
  compile drive (``tests/test_cuda_ptx.py``);
- a tiny classifier around the layer (:meth:`LayerCase.network_spec`): ONNX export
  (``tests/test_onnx_export.py``), the PyTorch twin (``tests/test_torch_twins.py``) and
  the model-file round trip (``tests/test_model_io.py``);
- the spec fuzzer's words (``tests/test_fuzz.py``).

Layers are made from spec text (``numbacnn.spec.parse_spec``), so a case names no class.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numeric_checks as checks
import numpy as np

from numbacnn.layers import Layer
from numbacnn.spec import parse_spec


@dataclass(frozen=True)
class LayerCase:
    """A layer written as spec text, the batch shape N×C×H×W it sees, and how to test it.

    ``inputs``: "normal" (standard normal × ``scale``), "distinct" (no two values closer
    than 0.01: no ties for a max) or "away" (0.05 ≤ |x| ≤ 2: away from a kink at 0).
    ``rtol``/``atol_scale``: float32 against the float64 reference
    (``numeric_checks.assert_close``). ``loss``: the layer closes a network (the softmax
    cross-entropy): it has no per-layer reference and comes last in a network.
    ``elementwise``: for an activation y = f(x), the float64 functions (f, f′) of numpy
    arrays; they are its reference (``tests/reference.py`` derives forward f(x) and
    backward dy·f′(x)), so such a layer needs no entry in ``REFERENCES``.
    """

    layer: str
    shape: tuple[int, int, int, int]
    inputs: str = "normal"
    scale: float = 1.0
    rtol: float = 1e-4
    atol_scale: float = 1e-5
    loss: bool = False
    elementwise: tuple[Callable[[np.ndarray], np.ndarray],
                       Callable[[np.ndarray], np.ndarray]] | None = None

    @property
    def kind(self) -> str:
        """The spec keyword (the registry's key)."""
        return self.layer.split()[0]

    def make(self) -> Layer:
        """A fresh, unbuilt layer parsed from ``layer``."""
        (layer,) = parse_spec(self.layer).make_layers()
        return layer

    def network_spec(self, classes: int = 3, before: str = "") -> str:
        """A tiny classifier around the layer: the input line of ``shape``, ``before``
        (shape-keeping layers, e.g. "tanh": then the layer's backward computes its input
        gradient, which a first layer skips), the layer, then ``fc classes`` (the loss
        after it instead)."""
        _, C, H, W = self.shape
        body = f"fc {classes}; {self.layer}" if self.loss else f"{self.layer}; fc {classes}"
        return f"input {W}x{H}x{C}; " + (f"{before}; " if before else "") + body

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...] | None = None,
             ) -> np.ndarray:
        """A float32 input batch of ``shape`` (default the case's) drawn as ``inputs`` says."""
        shape = shape or self.shape
        if self.inputs == "distinct":
            return checks.distinct_values(rng, shape)
        if self.inputs == "away":
            return checks.away_from_zero(rng, shape)
        return (self.scale * rng.standard_normal(shape)).astype(np.float32)


erf = np.vectorize(math.erf, otypes=[np.float64])  # float64 erf of an array, for references

# One line per registered layer kind. Shapes are tiny: the CUDA simulator runs each GPU
# thread as a Python thread, and the gradient check perturbs every input element.
_CASES = [
    # every option of conv at once: a 3x2 window, its rows dilated by 2, 2 groups, unequal
    # strides and padding, and 3 output rows rounded down from (7 − 5 + 1 + 2)/2 + 1 = 3.5
    LayerCase("conv 4 3x2 stride=2x1 pad=1,0,2,1 groups=2 dilation=2x1 round=floor",
              (1, 2, 7, 6)),
    LayerCase("maxpool 3 stride=2", (1, 1, 5, 7), "distinct"),
    LayerCase("avgpool 3 stride=2", (1, 2, 5, 7)),
    LayerCase("lrn size=3 alpha=0.5 beta=0.75 k=1", (2, 4, 2, 3)),
    LayerCase("batchnorm", (2, 3, 4, 5)),
    LayerCase("fc 3", (2, 2, 2, 2)),
    LayerCase("flatten", (2, 2, 2, 3)),
    LayerCase("relu", (2, 2, 3, 3), "away"),
    LayerCase("leaky 0.1", (2, 2, 3, 3), "away"),
    LayerCase("sigmoid", (2, 2, 3, 3)),
    LayerCase("tanh", (2, 2, 3, 3)),
    LayerCase("elu 0.5", (2, 2, 3, 3), "away"),
    LayerCase("gelu", (2, 2, 3, 3), elementwise=(
        lambda x: x * (1 + erf(x / 2 ** 0.5)) / 2,
        lambda x: (1 + erf(x / 2 ** 0.5)) / 2 + x * np.exp(-x * x / 2) / (2 * np.pi) ** 0.5)),
    LayerCase("maxout 2", (1, 4, 2, 3), "distinct"),
    LayerCase("dropout 0.5", (2, 2, 3, 3)),
    LayerCase("softmax", (2, 4, 1, 1), loss=True),
]

LAYER_CASES: dict[str, LayerCase] = {case.kind: case for case in _CASES}
assert len(LAYER_CASES) == len(_CASES), "two cases for one layer kind"

# Pooling's options beyond a plain window, each in one case at least: padding (never a max;
# counted by an average or not), round=floor, round=ceil (a last window past the input's
# edge, and past the padded edge: divided by its cells inside the padded input) and
# rectangular windows. The reference (``tests/test_layers.py``), gradient, CUDA simulator
# and PTX tests, ONNX export, PyTorch twins and model files run each of them too.
POOL_OPTION_CASES: dict[str, LayerCase] = {
    "maxpool-pad": LayerCase("maxpool 3 stride=2 pad=1", (1, 2, 5, 7), "distinct"),
    "maxpool-floor": LayerCase("maxpool 3 stride=2 round=floor", (1, 1, 6, 8), "distinct"),
    "maxpool-ceil": LayerCase("maxpool 2 round=ceil", (1, 2, 5, 7), "distinct"),
    "maxpool-rect-pad-ceil": LayerCase("maxpool 3x2 stride=2x1 pad=1x0 round=ceil",
                                       (1, 2, 6, 5), "distinct"),
    "avgpool-pad-counted": LayerCase("avgpool 3 stride=2 pad=1", (1, 2, 5, 7)),
    "avgpool-pad-not-counted": LayerCase("avgpool 3 stride=2 pad=1 count_pad=no", (1, 2, 5, 7)),
    "avgpool-ceil-past-padding": LayerCase("avgpool 3 stride=2 pad=1 round=ceil", (1, 2, 6, 6)),
    "avgpool-rect-ceil-not-counted": LayerCase("avgpool 2x3 stride=2 pad=1 round=ceil "
                                               "count_pad=no", (1, 2, 5, 6)),
    "avgpool-floor": LayerCase("avgpool 2 stride=3 round=floor", (2, 1, 7, 8)),
}

# The cases with a per-layer float64 reference (every kind but the loss).
REFERENCE_CASES: dict[str, LayerCase] = {kind: case for kind, case in LAYER_CASES.items()
                                         if not case.loss}
