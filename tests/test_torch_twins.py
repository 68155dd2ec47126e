"""Each layer's PyTorch twin (``Layer.torch_module()``, used by the suite's
``--compare torch`` through bench/torch_models.py) computes what the layer computes: a
network with every layer kind, and each kind alone in tests/layer_cases.py's tiny
classifier, run forward by numbacnn and by its twin with the same weights, in inference
mode."""

from __future__ import annotations

import numpy as np
import pytest
from layer_cases import LAYER_CASES, POOL_OPTION_CASES

from numbacnn.layers import LAYERS
from numbacnn.network import Network

torch = pytest.importorskip("torch", reason="PyTorch is not installed (benchmarks only)")

EVERY_KIND = ("input 9x9x2; conv 4 3 pad=1; relu; maxout 2; lrn size=3; maxpool 2 stride=1; "
              "leaky 0.1; conv 3 2 stride=2; batchnorm; avgpool 2 stride=1; sigmoid; tanh; "
              "elu 0.5; gelu; dropout 0.3; flatten; fc 5; relu; fc 3")


def assert_twin_agrees(net: Network, x: np.ndarray) -> None:
    """Layer by layer, numbacnn's output equals the twin module's."""
    import torch_models

    twin = torch_models.make_twin(net).eval()
    h_ours, h_theirs = x, torch.from_numpy(x)
    with torch.no_grad():
        for layer, module in zip(net.layers, twin, strict=True):
            h_ours = np.asarray(layer.forward(h_ours, training=False))
            h_theirs = module(h_theirs)
            if getattr(layer, "fused_relu", False):
                continue  # its ReLU is applied here, the twin's in the next layer
            np.testing.assert_allclose(h_theirs.numpy(), h_ours, rtol=1e-4, atol=1e-5,
                                       err_msg=layer.describe())


def test_every_layer_kind_has_a_twin_that_agrees():
    net = Network.from_spec(EVERY_KIND).initialize(seed=2)
    kinds = {layer.kind for layer in net.layers}
    assert kinds == set(LAYERS) - {"softmax"}, sorted(set(LAYERS) - kinds)
    assert_twin_agrees(net, np.random.default_rng(0).standard_normal((3, 2, 9, 9))
                       .astype(np.float32))


@pytest.mark.parametrize("kind", [*LAYER_CASES, *POOL_OPTION_CASES])
def test_each_layer_kind_alone_agrees_with_its_twin(kind: str):
    """Each kind, and pooling with each of its options (padding, rounding, count_pad)."""
    case = LAYER_CASES.get(kind) or POOL_OPTION_CASES[kind]
    net = Network.from_spec(case.network_spec()).initialize(seed=2)
    assert_twin_agrees(net, case.draw(np.random.default_rng(0)))


@pytest.mark.parametrize("spec", [
    # ceil: the last window runs past the end; the twin pads bottom and right that far
    "input 10x8x3; conv 3 3x5 stride=2x3 pad=0x1 round=ceil; fc 3",
    "input 6x7x3; conv 6 3 pad=same groups=3 dilation=2; fc 3",
    "input 9x9x4; conv 4 2 stride=2 pad=0,1,1,0 groups=4; fc 3",
])
def test_conv_options_agree_with_their_twin(spec: str):
    net = Network.from_spec(spec).initialize(seed=2)
    C, H, W = net.input_shape
    assert_twin_agrees(net, np.random.default_rng(0).standard_normal((2, C, H, W))
                       .astype(np.float32))


@pytest.mark.parametrize("name", POOL_OPTION_CASES)
def test_pooling_options_backward_agrees_with_torch_autograd(name: str):
    """Padding, rounding, count_pad and rectangular windows: dx of numbacnn's gather-form
    backward equals PyTorch's autograd through the twin module."""
    case = POOL_OPTION_CASES[name]
    layer = case.make()
    layer.build(case.shape[1:])
    rng = np.random.default_rng(4)
    x = case.draw(rng)
    y = np.asarray(layer.forward(x))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = np.asarray(layer.backward(dy))
    x_t = torch.from_numpy(x).requires_grad_(True)
    y_t = layer.torch_module()(x_t)
    y_t.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-5, atol=1e-6)
