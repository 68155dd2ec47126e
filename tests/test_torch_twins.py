"""Each layer's PyTorch twin (``Layer.torch_module()``, used by the suite's
``--compare torch`` through bench/torch_models.py)
computes what the layer computes: a network with every layer kind, run forward by
numbacnn and by its twin with the same weights, in inference mode."""

from __future__ import annotations

import numpy as np
import pytest

from numbacnn.layers import LAYERS
from numbacnn.network import Network

torch = pytest.importorskip("torch", reason="PyTorch is not installed (benchmarks only)")

EVERY_KIND = ("input 9x9x2; conv 4 3 pad=1; relu; maxout 2; lrn size=3; maxpool 2 stride=1; "
              "leaky 0.1; conv 3 2 stride=2; batchnorm; avgpool 2 stride=1; sigmoid; tanh; "
              "elu 0.5; dropout 0.3; flatten; fc 5; relu; fc 3")


def test_every_layer_kind_has_a_twin_that_agrees():
    import torch_models

    net = Network.from_spec(EVERY_KIND).initialize(seed=2)
    kinds = {layer.kind for layer in net.layers}
    assert kinds == set(LAYERS) - {"softmax"}, sorted(set(LAYERS) - kinds)
    twin = torch_models.make_twin(net).eval()
    x = np.random.default_rng(0).standard_normal((3, 2, 9, 9)).astype(np.float32)
    h_ours, h_theirs = x, torch.from_numpy(x)
    with torch.no_grad():
        for layer, module in zip(net.layers, twin, strict=True):
            h_ours = np.asarray(layer.forward(h_ours, training=False))
            h_theirs = module(h_theirs)
            if getattr(layer, "fused_relu", False):
                continue  # its ReLU is applied here, the twin's in the next layer
            np.testing.assert_allclose(h_theirs.numpy(), h_ours, rtol=1e-4, atol=1e-5,
                                       err_msg=layer.describe())
