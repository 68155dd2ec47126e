"""Every layer's forward and backward against the float64 reference (tests/reference.py).

Float32 results must match to rtol 1e-4 with an atol scaled to the magnitude of the
expected values. Also: AlexNet's CONV1 geometry, a whole tiny Network train step
against the reference chain, dropout's mask, and the optimizers' updates.
"""

from __future__ import annotations

import numeric_checks as checks
import numpy as np
import pytest
import reference as ref
import reference_optim as ref_optim
from layer_cases import POOL_OPTION_CASES, REFERENCE_CASES, LayerCase

from numbacnn import to_device, to_host
from numbacnn.layers import (
    LRN,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    Maxout,
    MaxPool2D,
    ReLU,
)
from numbacnn.network import Network
from numbacnn.training.optim import SGD, Adam


def run_layer(layer: Layer, x: np.ndarray, dy: np.ndarray, need_dx: bool = True,
              training: bool = True) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Host copies of (y, dx, grads) after one forward and one backward pass."""
    y = to_host(layer.forward(to_device(x), training)).copy()
    dx = layer.backward(to_device(dy), need_dx=need_dx)
    dx = None if dx is None else to_host(dx).copy()
    return y, dx, {key: to_host(g).copy() for key, g in layer.grads.items()}


def build(layer: Layer, shape: tuple[int, ...], rng: np.random.Generator,
          ) -> dict[str, np.ndarray]:
    """Build ``layer`` for N×C×H×W ``shape`` with random weights and non-zero biases."""
    layer.build(shape[1:])
    layer.init_params(rng, "he")
    params = {}
    for key, value in layer.params.items():
        params[key] = to_host(value).copy()
        if key == "b":
            params[key] = rng.standard_normal(params[key].shape).astype(np.float32)
            layer.params[key] = to_device(params[key])
    return params


# Geometries beyond tests/layer_cases.py's one case per kind (those come first, named
# "case-<kind>").
VARIANTS: dict[str, LayerCase] = {
    "conv-f3-s2": LayerCase("conv 2 3 stride=2", (1, 2, 5, 7)),
    "conv-ceil-rectangular": LayerCase("conv 3 3x5 stride=2x3 pad=0x1 round=ceil", (2, 3, 8, 10)),
    "conv-groups-dilated-same": LayerCase("conv 6 3 pad=same groups=3 dilation=2", (2, 3, 7, 6)),
    "conv-3x3-same-groups": LayerCase("conv 4 3 pad=1 groups=2", (2, 4, 5, 5)),
    "conv-f5-p2": LayerCase("conv 16 5 stride=1 pad=2", (4, 3, 16, 12)),
    "conv-f3-s2-odd": LayerCase("conv 8 3 stride=2", (3, 4, 15, 11)),
    "conv-f4-s4": LayerCase("conv 6 4 stride=4", (2, 2, 12, 8)),
    "conv-f3-s2-p3-pure-padding-edges": LayerCase("conv 5 3 stride=2 pad=3", (2, 3, 9, 13)),
    "maxpool-alexnet-f3-s2": LayerCase("maxpool 3 stride=2", (4, 8, 13, 13)),
    "maxpool-f2": LayerCase("maxpool 2", (2, 5, 10, 6)),
    "avgpool-f3-s2": LayerCase("avgpool 3 stride=2", (4, 8, 13, 13)),
    "avgpool-f2": LayerCase("avgpool 2", (2, 5, 10, 6)),
    "lrn-alexnet": LayerCase("lrn", (4, 16, 6, 5), scale=10.0),
    "lrn-strong": LayerCase("lrn size=5 alpha=1 beta=0.75 k=1", (2, 10, 4, 4)),
    "fc": LayerCase("fc 10", (8, 16, 4, 4)),
    "fc-one-unit": LayerCase("fc 1", (5, 3, 1, 1)),
    "flatten": LayerCase("flatten", (3, 4, 5, 2)),
    "relu": LayerCase("relu", (4, 8, 9, 7)),
    "leaky": LayerCase("leaky 0.2", (4, 8, 9, 7)),
    "sigmoid-saturating": LayerCase("sigmoid", (4, 8, 9, 7), scale=8.0),
    "tanh-saturating": LayerCase("tanh", (4, 8, 9, 7), scale=4.0),
    "elu": LayerCase("elu 1.0", (4, 8, 9, 7), scale=2.0),
    "maxout-4": LayerCase("maxout 4", (3, 12, 5, 5)),
    "maxout-1": LayerCase("maxout 1", (2, 3, 4, 4)),
    "dropout-0.5": LayerCase("dropout 0.5", (4, 8, 9, 7)),
    "batchnorm-conv": LayerCase("batchnorm", (4, 6, 9, 7), scale=3.0),
    "batchnorm-fc": LayerCase("batchnorm momentum=0.5 eps=1e-3", (16, 10, 1, 1)),
    "batchnorm-one-image": LayerCase("batchnorm", (1, 3, 4, 5)),
}
CASES = {**{f"case-{kind}": case for kind, case in REFERENCE_CASES.items()}, **VARIANTS,
         **POOL_OPTION_CASES}


@pytest.mark.parametrize("name", CASES)
def test_forward_backward_match_reference(name: str, rng: np.random.Generator):
    """y, dx and parameter gradients equal the naive reference to float32 tolerance."""
    case = CASES[name]
    layer, shape = case.make(), case.shape
    params = build(layer, shape, rng)
    x = case.draw(rng)
    tol = {"rtol": case.rtol, "atol_scale": case.atol_scale}
    dy = rng.standard_normal((shape[0], *layer.output_shape)).astype(np.float32)
    mask = None
    draw_mask = ref.REFERENCES[layer.kind].mask  # what the layer draws per step (dropout)
    if draw_mask is not None:
        layer.seed = 2024
        mask = draw_mask(layer, shape)
    y, dx, grads = run_layer(layer, x, dy)
    checks.assert_close(y, ref.reference_forward(layer, x, params, mask), what=f"{name}: y",
                           **tol)
    expected_dx, expected_grads = ref.reference_backward(layer, x, dy, params, mask)
    checks.assert_close(dx, expected_dx, what=f"{name}: dx", **tol)
    assert set(grads) == set(expected_grads), name
    for key, expected in expected_grads.items():
        checks.assert_close(grads[key], expected, what=f"{name}: d{key}", **tol)


@pytest.mark.parametrize("make", [lambda: Conv2D(4, 3, stride=2, pad=1), lambda: Dense(6)],
                         ids=["conv", "fc"])
def test_need_dx_false_still_fills_parameter_gradients(make, rng: np.random.Generator):
    """backward(need_dx=False) returns None and still computes dW and db."""
    layer = make()
    shape = (3, 2, 7, 5)
    params = build(layer, shape, rng)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal((3, *layer.output_shape)).astype(np.float32)
    _, dx, grads = run_layer(layer, x, dy, need_dx=False)
    assert dx is None
    _, expected = ref.reference_backward(layer, x, dy, params)
    for key in ("W", "b"):
        checks.assert_close(grads[key], expected[key], what=f"d{key}")


@pytest.mark.parametrize("make", [lambda: Conv2D(4, 3, stride=2, pad=1), lambda: MaxPool2D(3, 2),
                                  LRN, lambda: Maxout(2), lambda: Dense(3)],
                         ids=["conv", "maxpool", "lrn", "maxout", "fc"])
def test_batch_size_changes_between_calls(make, rng: np.random.Generator):
    """Reused buffers follow the batch size: batches of 3, 1, then 3 again stay correct."""
    layer = make()
    params = build(layer, (1, 4, 9, 7), rng)
    for N in (3, 1, 3):
        x = rng.standard_normal((N, 4, 9, 7)).astype(np.float32)
        dy = rng.standard_normal((N, *layer.output_shape)).astype(np.float32)
        y, dx, grads = run_layer(layer, x, dy)
        checks.assert_close(y, ref.reference_forward(layer, x, params), what=f"N={N}: y")
        expected_dx, expected_grads = ref.reference_backward(layer, x, dy, params)
        checks.assert_close(dx, expected_dx, what=f"N={N}: dx")
        for key, expected in expected_grads.items():
            checks.assert_close(grads[key], expected, what=f"N={N}: d{key}")


def test_alexnet_conv1_geometry(rng: np.random.Generator):
    """CONV1 of AlexNet: 227×227×3 in, 96 filters 11×11 stride 4 → 55×55×96, batch 2."""
    layer = Conv2D(96, 11, stride=4, pad=0)
    assert layer.build((3, 227, 227)) == (96, 55, 55)
    assert layer.param_shapes() == {"W": (96, 3, 11, 11), "b": (96,)}
    params = build(layer, (2, 3, 227, 227), rng)
    x = rng.standard_normal((2, 3, 227, 227)).astype(np.float32)
    dy = rng.standard_normal((2, 96, 55, 55)).astype(np.float32)
    y, dx, grads = run_layer(layer, x, dy)
    assert y.shape == (2, 96, 55, 55) and dx.shape == x.shape
    checks.assert_close(y, ref.conv2d_forward(x, params["W"], params["b"], 4, 0), what="y")
    expected_dx, expected_dw, expected_db = ref.conv2d_backward(x, params["W"], dy, 4, 0)
    checks.assert_close(dx, expected_dx, what="dx")
    checks.assert_close(grads["W"], expected_dw, what="dW")
    checks.assert_close(grads["b"], expected_db, what="db")


# --- a whole network ---------------------------------------------------------------------


def tiny_network(fuse: bool = True, relu_after_batchnorm: bool = True) -> Network:
    """Every parametrized layer kind, a ReLU after a convolution and one after batch
    normalization (both fused unless told)."""
    after_bn = [ReLU()] if relu_after_batchnorm else []
    return Network([Conv2D(6, 3, pad=1), ReLU(), Maxout(2), BatchNorm(), *after_bn,
                    LRN(3, alpha=0.5, beta=0.75, k=1.0), MaxPool2D(2), Dropout(0.25), Flatten(),
                    Dense(8), ReLU(), Dense(5)],
                   input_shape=(2, 6, 8), fuse=fuse)


def host_params(net: Network) -> list[dict[str, np.ndarray]]:
    return [{k: to_host(v).astype(np.float64) for k, v in layer.params.items()}
            for layer in net.layers]


@pytest.mark.parametrize("optimizer, fuse", [("sgd", True), ("adam", True), ("sgd", False)])
def test_network_train_step_matches_reference_chain(optimizer: str, fuse: bool,
                                                    rng: np.random.Generator):
    """Loss, every gradient and the optimizer's update of a whole tiny network equal the
    reference layers chained by hand, for two successive steps."""
    net = tiny_network(fuse).initialize(seed=7, init="he")
    assert net.layers[0].fused_relu == net.layers[3].fused_relu == fuse
    opt = SGD(momentum=0.9, weight_decay=0.01) if optimizer == "sgd" else Adam(weight_decay=0.01)
    lr = 0.05
    params = host_params(net)
    state = [{k: (np.zeros_like(v), np.zeros_like(v)) for k, v in p.items()} for p in params]
    for step in (1, 2):
        x = rng.standard_normal((4, 2, 6, 8)).astype(np.float32)
        labels = rng.integers(0, 5, 4)
        loss = net.train_step(to_device(x), labels)
        expected_loss, expected_grads = ref.reference_network_step(net.layers, params, x,
                                                                   labels)
        assert loss == pytest.approx(expected_loss, rel=1e-5)
        grads: list[dict[str, np.ndarray]] = [{} for _ in params]
        for name, _, g in net.parameters():
            index, key = name.split(".")
            grads[int(index)][key] = to_host(g).copy()
            checks.assert_close(grads[int(index)][key], expected_grads[int(index)][key],
                                what=f"step {step}: d{name}")
        opt.step(net, lr)
        for index, p in enumerate(params):
            for key in p:
                # the layer's float32 gradients (just checked): Adam divides by |g|, so
                # float32 rounding of a tiny gradient would otherwise dominate its step
                g = grads[index][key]
                m, v = state[index][key]
                if optimizer == "sgd":
                    p[key], v = ref_optim.sgd_momentum_update(p[key], v, g, lr, 0.9, 0.01)
                else:
                    p[key], m, v = ref_optim.adam_update(p[key], m, v, g, lr, step,
                                                               weight_decay=0.01)
                state[index][key] = (m, v)
                checks.assert_close(to_host(net.layers[index].params[key]), p[key],
                                    what=f"step {step}: updated {index}.{key}")


def test_fused_relu_is_bit_identical_to_unfused(rng: np.random.Generator):
    """Fusing a ReLU into the preceding convolution changes no bit of logits or gradients
    (the ReLU's max is the same instruction in the bias pass). A ReLU fused into batch
    normalization changes the backward loop LLVM vectorizes, so its last bits may move:
    tests/test_batchnorm.py compares that one within float32 rounding."""
    x = rng.standard_normal((3, 2, 6, 8)).astype(np.float32)
    labels = np.array([0, 4, 2])
    runs = []
    for fuse in (True, False):
        net = tiny_network(fuse, relu_after_batchnorm=False).initialize(seed=3)
        loss = net.train_step(to_device(x), labels)
        logits = to_host(net.forward(to_device(x), training=False)).copy()
        runs.append((loss, logits, [to_host(g).copy() for _, _, g in net.parameters()]))
    (loss_a, logits_a, grads_a), (loss_b, logits_b, grads_b) = runs
    assert loss_a == loss_b
    np.testing.assert_array_equal(logits_a, logits_b)
    for a, b in zip(grads_a, grads_b, strict=True):
        np.testing.assert_array_equal(a, b)


# --- dropout ------------------------------------------------------------------------------


def dropout_mask_of(p: float, seed: int, shape=(4, 8, 50, 50)) -> np.ndarray:
    """The layer's mask, read as its training output for an input of ones."""
    layer = Dropout(p)
    layer.build(shape[1:])
    layer.seed = seed
    return to_host(layer.forward(to_device(np.ones(shape, np.float32)), training=True)).copy()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_mask_values_and_kept_fraction(p: float):
    """Mask entries are exactly 0 or 1/(1 − p); the kept fraction is 1 − p within 5σ."""
    mask = dropout_mask_of(p, seed=11)
    kept = np.float32(1.0 / (1.0 - p))
    assert set(np.unique(mask).tolist()) == {0.0, float(kept)}
    sigma = np.sqrt(p * (1 - p) / mask.size)
    assert abs(np.mean(mask != 0) - (1 - p)) < 5 * sigma


def test_dropout_mask_is_the_documented_hash_and_repeats_per_seed():
    """The same seed gives the same mask (the SplitMix64 hash of the docs); another differs."""
    first, again = dropout_mask_of(0.5, seed=3), dropout_mask_of(0.5, seed=3)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, ref.dropout_mask(first.shape, 0.5, 3))
    other = dropout_mask_of(0.5, seed=4)
    assert np.mean(first != other) > 0.4


def test_dropout_backward_applies_the_mask(rng: np.random.Generator):
    """y = x·mask and dx = dy·mask exactly, with the documented mask of the seed."""
    layer = Dropout(0.3)
    layer.build((3, 5, 5))
    layer.seed = 99
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    dy = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    y, dx, _ = run_layer(layer, x, dy)
    mask = ref.dropout_mask(x.shape, 0.3, 99)
    np.testing.assert_array_equal(y, (x * mask).astype(np.float32))
    np.testing.assert_array_equal(dx, (dy * mask).astype(np.float32))


@pytest.mark.parametrize("p, training", [(0.5, False), (0.0, True)], ids=["eval", "p0-train"])
def test_dropout_identity_when_not_dropping(p: float, training: bool, rng: np.random.Generator):
    """training=False (or p = 0) passes x and dy through unchanged."""
    layer = Dropout(p)
    layer.build((3, 4, 4))
    layer.seed = 5
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    dy = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    y, dx, _ = run_layer(layer, x, dy, training=training)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(dx, dy)


def test_network_dropout_repeats_with_seed_and_changes_per_step(rng: np.random.Generator):
    """Two networks with the same seed draw the same masks; successive steps differ."""
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)

    def outputs() -> list[np.ndarray]:
        net = Network([Flatten(), Dropout(0.5)], input_shape=(3, 4, 4)).initialize(seed=1)
        return [to_host(net.forward(to_device(x), training=True)).copy() for _ in range(2)]

    first, second = outputs(), outputs()
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], first[1])


# --- optimizers ---------------------------------------------------------------------------


def one_layer_net(rng: np.random.Generator) -> Network:
    net = Network([Dense(4)], input_shape=(3, 2, 2)).initialize(seed=0)
    net.layers[0].params["b"] = to_device(rng.standard_normal(4).astype(np.float32))
    return net


def set_gradients(net: Network, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random gradients of magnitudes 1e-5 … 1 (small ones make Adam's ε matter)."""
    grads = {}
    for key, g in net.layers[0].grads.items():
        magnitude = 10.0 ** rng.uniform(-5, 0, g.shape)
        grads[key] = (magnitude * rng.standard_normal(g.shape)).astype(np.float32)
        net.layers[0].grads[key] = to_device(grads[key])
    return grads


@pytest.mark.parametrize("momentum, weight_decay", [(0.9, 5e-4), (0.0, 0.0), (0.5, 0.1)])
def test_sgd_momentum_update_matches_reference(momentum: float, weight_decay: float,
                                               rng: np.random.Generator):
    """Three SGD steps (new gradients each) equal v ← μv − lr(g + λw); w ← w + v."""
    net = one_layer_net(rng)
    opt = SGD(momentum=momentum, weight_decay=weight_decay)
    w = {k: to_host(v).astype(np.float64) for k, v in net.layers[0].params.items()}
    v = {k: np.zeros_like(a) for k, a in w.items()}
    for lr in (0.1, 0.05, 0.01):
        grads = set_gradients(net, rng)
        opt.step(net, lr)
        for key in w:
            w[key], v[key] = ref_optim.sgd_momentum_update(w[key], v[key], grads[key], lr, momentum,
                                                           weight_decay)
            checks.assert_close(to_host(net.layers[0].params[key]), w[key], what=f"w {key}")
            checks.assert_close(opt.state()["v"][f"0.{key}"], v[key], what=f"v {key}")


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_update_matches_reference(weight_decay: float, rng: np.random.Generator):
    """Three Adam steps equal Algorithm 1 of Kingma & Ba (bias-corrected moments; ε as
    the paper's efficient form places it, see reference.adam_update)."""
    net = one_layer_net(rng)
    opt = Adam(weight_decay=weight_decay)
    w = {k: to_host(v).astype(np.float64) for k, v in net.layers[0].params.items()}
    m = {k: np.zeros_like(a) for k, a in w.items()}
    v = {k: np.zeros_like(a) for k, a in w.items()}
    for t, lr in enumerate((0.01, 0.01, 0.003), start=1):
        grads = set_gradients(net, rng)
        opt.step(net, lr)
        for key in w:
            w[key], m[key], v[key] = ref_optim.adam_update(w[key], m[key], v[key], grads[key],
                                                                 lr, t, weight_decay=weight_decay)
            checks.assert_close(to_host(net.layers[0].params[key]), w[key], what=f"w {key}, t={t}")
