"""Gradient checks of every layer and the loss.

Every layer kind's case of tests/layer_cases.py (named "case-<kind>"), then more
geometries per kind.

For each case the scalar L = Σ y·R (R a fixed random array shaped like the output y) is
differentiated two ways on the float64 reference (tests/reference.py): analytically
and by central differences. The analytic reference gradient is then compared with the
layer's own float32 backward pass (dx and, where the layer has them, dW and db). So
both the reference and the layer are checked. Shapes cover stride > 1, padding,
non-square inputs, odd sizes and batch 1; max pooling and maxout get inputs without
ties, ReLU-like activations inputs away from their kink at 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numeric_checks as checks
import numpy as np
import pytest
import reference as ref
from layer_cases import POOL_OPTION_CASES, REFERENCE_CASES, LayerCase

from numbacnn import to_device, to_host
from numbacnn.layers import (
    Layer,
    SoftmaxCrossEntropy,
)

# Geometries beyond tests/layer_cases.py's one case per kind (those come first, named
# "case-<kind>").
VARIANTS: dict[str, LayerCase] = {
    "conv-f3-s2": LayerCase("conv 2 3 stride=2", (1, 2, 5, 7)),
    "conv-ceil-rectangular": LayerCase("conv 3 3x5 stride=2x3 pad=0x1 round=ceil", (2, 3, 8, 10)),
    "conv-groups-dilated-same": LayerCase("conv 6 3 pad=same groups=3 dilation=2", (2, 3, 7, 6)),
    "conv-3x3-same-groups": LayerCase("conv 4 3 pad=1 groups=2", (2, 4, 5, 5)),
    "conv-f3-s2-p1-nonsquare": LayerCase("conv 4 3 stride=2 pad=1", (2, 3, 7, 5)),
    "conv-f3-s3-p1-odd-batch1": LayerCase("conv 3 3 stride=3 pad=1", (1, 2, 10, 7)),
    "conv-f3-s1-p2": LayerCase("conv 2 3 stride=1 pad=2", (2, 2, 5, 4)),
    "conv-f5-s1-p0": LayerCase("conv 3 5", (1, 1, 9, 6)),
    "conv-f1": LayerCase("conv 5 1", (2, 4, 3, 5)),
    "conv-f2-s2": LayerCase("conv 3 2 stride=2", (3, 2, 6, 8)),
    "maxpool-f2-s2": LayerCase("maxpool 2", (2, 3, 6, 8), "distinct"),
    "maxpool-f3-s2-overlap-odd": LayerCase("maxpool 3 stride=2", (1, 2, 7, 9), "distinct"),
    "maxpool-f3-s1": LayerCase("maxpool 3 stride=1", (2, 1, 5, 6), "distinct"),
    "avgpool-f2-s2": LayerCase("avgpool 2", (2, 3, 6, 8)),
    "avgpool-f3-s2-overlap-odd": LayerCase("avgpool 3 stride=2", (1, 2, 7, 9)),
    "avgpool-f3-s1": LayerCase("avgpool 3 stride=1", (2, 1, 5, 6)),
    "lrn-size5": LayerCase("lrn size=5 alpha=0.5 beta=0.75 k=2", (2, 7, 3, 4)),
    "lrn-size3-batch1": LayerCase("lrn size=3 alpha=1 beta=0.6 k=1", (1, 4, 5, 3)),
    "lrn-size4-even": LayerCase("lrn size=4 alpha=0.8 beta=0.75 k=1.5", (2, 6, 2, 3)),
    "lrn-size9-wider-than-C": LayerCase("lrn size=9 alpha=0.5 beta=0.75 k=1", (1, 4, 3, 3)),
    "lrn-alexnet": LayerCase("lrn size=5 alpha=1e-4 beta=0.75 k=2", (2, 8, 3, 3)),
    "fc-4d-input": LayerCase("fc 7", (2, 3, 4, 5)),
    "fc-batch1": LayerCase("fc 3", (1, 10, 1, 1)),
    "fc-one-unit": LayerCase("fc 1", (3, 2, 3, 1)),
    "flatten": LayerCase("flatten", (2, 3, 4, 5)),
    "relu": LayerCase("relu", (2, 3, 4, 5), "away"),
    "relu-batch1": LayerCase("relu", (1, 1, 3, 7), "away"),
    "leaky": LayerCase("leaky 0.1", (2, 3, 4, 5), "away"),
    "sigmoid": LayerCase("sigmoid", (2, 3, 4, 5)),
    "tanh": LayerCase("tanh", (1, 1, 3, 7)),
    "elu": LayerCase("elu 0.7", (2, 3, 4, 5), "away"),
    "maxout-2": LayerCase("maxout 2", (2, 6, 3, 4), "distinct"),
    "maxout-3-batch1": LayerCase("maxout 3", (1, 6, 5, 3), "distinct"),
    "dropout-0.5": LayerCase("dropout 0.5", (2, 3, 4, 5)),
    "dropout-0.2-batch1": LayerCase("dropout 0.2", (1, 2, 3, 7)),
    "batchnorm-conv": LayerCase("batchnorm", (3, 2, 4, 5)),
    "batchnorm-fc": LayerCase("batchnorm eps=1e-3", (6, 4, 1, 1)),
    "batchnorm-batch1": LayerCase("batchnorm", (1, 3, 2, 3)),
}
CASES = {**{f"case-{kind}": case for kind, case in REFERENCE_CASES.items()}, **VARIANTS,
         **POOL_OPTION_CASES}


@dataclass
class Problem:
    """A built layer with its float32 input, parameters, dropout mask and R."""

    layer: Layer
    x: np.ndarray
    params: dict[str, np.ndarray]
    mask: np.ndarray | None
    R: np.ndarray
    case: LayerCase


def make_problem(case: LayerCase, rng: np.random.Generator) -> Problem:
    """Build the layer (a lone layer: on the CPU) with random weights and biases (non-zero)."""
    layer = case.make()
    out_shape = (case.shape[0], *layer.build(case.shape[1:]))
    x = case.draw(rng)
    params = {key: (0.5 * rng.standard_normal(shape)).astype(np.float32)
              for key, shape in layer.param_shapes().items()}
    layer.init_params(rng, "he")
    for key, value in params.items():
        layer.params[key] = to_device(value)
    mask = None
    draw_mask = ref.REFERENCES[layer.kind].mask  # what the layer draws per step (dropout)
    if draw_mask is not None:
        layer.seed = 987654321
        mask = draw_mask(layer, case.shape)
    R = rng.standard_normal(out_shape).astype(np.float32)
    return Problem(layer, x, params, mask, R, case)


@pytest.mark.parametrize("name", CASES)
def test_reference_gradient_matches_central_differences(name: str, rng: np.random.Generator):
    """The reference's analytic dx (and dW, db) equal central differences of Σ y·R."""
    pb = make_problem(CASES[name], rng)
    R = pb.R.astype(np.float64)
    x = pb.x.astype(np.float64)
    params = {k: v.astype(np.float64) for k, v in pb.params.items()}

    def loss_of_x(a: np.ndarray) -> float:
        return float(np.sum(ref.reference_forward(pb.layer, a, params, pb.mask) * R))

    dx, grads = ref.reference_backward(pb.layer, x, R, params, pb.mask)
    checks.assert_close(dx, checks.numerical_gradient(loss_of_x, x.copy()), rtol=1e-6,
                           atol_scale=1e-7, what=f"{name}: dx")
    assert set(grads) == set(params)
    for key in params:
        def loss_of_param(a: np.ndarray, key: str = key) -> float:
            return float(np.sum(ref.reference_forward(pb.layer, x, {**params, key: a}, pb.mask)
                                * R))

        numeric = checks.numerical_gradient(loss_of_param, params[key].copy())
        checks.assert_close(grads[key], numeric, rtol=1e-6, atol_scale=1e-7, what=f"{name}: d{key}")


@pytest.mark.parametrize("name", CASES)
def test_layer_backward_matches_reference_gradient(name: str, rng: np.random.Generator):
    """The layer's float32 forward and backward (dx, dW, db) equal the reference's."""
    pb = make_problem(CASES[name], rng)
    tol = {"rtol": pb.case.rtol, "atol_scale": pb.case.atol_scale}
    y = to_host(pb.layer.forward(to_device(pb.x), training=True)).copy()
    checks.assert_close(y, ref.reference_forward(pb.layer, pb.x, pb.params, pb.mask),
                        what=f"{name}: y", **tol)
    dx = to_host(pb.layer.backward(to_device(pb.R))).copy()
    expected_dx, expected_grads = ref.reference_backward(pb.layer, pb.x, pb.R, pb.params, pb.mask)
    checks.assert_close(dx, expected_dx, what=f"{name}: dx", **tol)
    assert set(pb.layer.grads) == set(expected_grads)
    for key, expected in expected_grads.items():
        checks.assert_close(to_host(pb.layer.grads[key]), expected, what=f"{name}: d{key}",
                            **tol)


LOSS_CASES = {"n4-k5": (4, 5), "batch1-k3": (1, 3), "n7-k10": (7, 10), "n3-k1": (3, 1)}


def loss_problem(N: int, K: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    logits = (2.0 * rng.standard_normal((N, K))).astype(np.float32)
    return logits, rng.integers(0, K, N)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("name", LOSS_CASES)
def test_loss_reference_gradient_matches_central_differences(name: str, smoothing: float,
                                                              rng: np.random.Generator):
    """d(mean cross-entropy)/dlogits of the reference equals central differences, with
    and without label smoothing."""
    logits, labels = loss_problem(*LOSS_CASES[name], rng)
    z = logits.astype(np.float64)
    numeric = checks.numerical_gradient(
           lambda a: ref.softmax_cross_entropy_forward(a, labels, smoothing), z.copy())
    checks.assert_close(ref.softmax_cross_entropy_backward(z, labels, smoothing), numeric,
                        rtol=1e-6, atol_scale=1e-7)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("name", LOSS_CASES)
def test_loss_layer_matches_reference(name: str, smoothing: float, rng: np.random.Generator):
    """SoftmaxCrossEntropy's mean loss and dlogits (N×K×1×1) equal the reference, with
    and without label smoothing; its probabilities do not depend on the smoothing."""
    N, K = LOSS_CASES[name]
    logits, labels = loss_problem(N, K, rng)
    loss = SoftmaxCrossEntropy()
    loss.label_smoothing = smoothing
    loss.build((K, 1, 1))
    value = loss.forward(to_device(logits.reshape(N, K, 1, 1)), labels)
    assert value == pytest.approx(ref.softmax_cross_entropy_forward(logits, labels, smoothing),
                                  rel=1e-5)
    dlogits = to_host(loss.backward())
    assert dlogits.shape == (N, K, 1, 1)
    checks.assert_close(dlogits.reshape(N, K),
                        ref.softmax_cross_entropy_backward(logits, labels, smoothing))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    checks.assert_close(to_host(loss.probabilities(to_device(logits))),
                        e / e.sum(axis=1, keepdims=True))
