"""Conv → ReLU → 2×2 stride-2 max pooling fused into the direct convolution's training
passes on the CPU (``layers/conv.py``, ``backends/cpu_direct.py``): a network that fuses
gives the same loss, pooled outputs, argmax and gradients, bit for bit, as the same
network built with ``fuse=False``: fmnist's shapes, odd planes (floor pooling drops
the last row and column), several input channels (the input gradient), a batch split
unevenly between the threads, ties (plateaus, all-negative windows). What fuses and
what does not (other pools, other algorithms, ``fuse=False``, a changed algorithm);
inference passes and the activation statistics as before; the profiler's "(fused)".
"""

from __future__ import annotations

import numpy as np
import pytest

import numbacnn.backends.cpu
from numbacnn.layers import Conv2D, MaxPool2D, ReLU
from numbacnn.network import Network
from numbacnn.spec import load_spec
from numbacnn.tools.activation_stats import layer_statistics
from numbacnn.training.profiler import layer_table_lines, profile_training

# fmnist's first two blocks, small: conv1 one channel (no dx), conv2 direct with 8
FMNIST_LIKE = """input 28x28x1
conv 8 3 pad=same activation=relu
maxpool 2
conv 6 3 pad=same activation=relu algo=direct
maxpool 2
fc 10
softmax
"""
# odd planes: 7 rows × 9 columns, then 3 × 4; floor pooling drops the last row/column
ODD = """input 9x7x2
conv 4 3 pad=same activation=relu algo=direct
maxpool 2 round=floor
conv 5 3 pad=same activation=relu algo=direct
maxpool 2 round=floor
fc 3
softmax
"""


def build(spec: str, fuse: bool, algo: str = "auto", seed: int = 3) -> Network:
    parsed = load_spec(spec)
    net = Network(parsed.build(None), input_shape=parsed.input_shape, fuse=fuse,
                  device="cpu")
    net.conv_algo = algo
    net.initialize(seed=seed)
    for layer in net.layers:  # biases of both signs: windows of all-negative outputs
        if "b" in layer.params:
            layer.params["b"][:] = np.linspace(-0.3, 0.3, layer.params["b"].size)
    return net


def pooled_by_conv(net: Network) -> list[int]:
    """Indices of the max pooling layers a convolution does the work of."""
    return [i for i, layer in enumerate(net.layers)
            if isinstance(layer, MaxPool2D) and layer.fused
            and net.layers[i - 2].fused_pool is layer]


def assert_same_step(fused: Network, plain: Network, x: np.ndarray, labels: np.ndarray) -> None:
    """One train_step of each: the same loss, every pooling's y and argmax, every
    convolution's input gradient and every parameter's gradient, bit for bit."""
    assert fused.train_step(x, labels) == plain.train_step(x, labels)
    for a, b in zip(fused.layers, plain.layers, strict=True):
        if isinstance(a, MaxPool2D):
            assert np.array_equal(a._buffers["y"], b._buffers["y"]), a.describe()
            assert np.array_equal(a._buffers["argmax"], b._buffers["argmax"]), a.describe()
        if isinstance(a, Conv2D) and "dx" in b._buffers:
            assert np.array_equal(a._buffers["dx"], b._buffers["dx"]), a.describe()
    for (name, _, ga), (_, _, gb) in zip(fused.parameters(), plain.parameters(), strict=True):
        assert np.array_equal(ga, gb), name


@pytest.mark.parametrize(("spec", "N"), [(FMNIST_LIKE, 5), (ODD, 3)], ids=["fmnist", "odd"])
def test_fused_step_equals_unfused(spec: str, N: int, rng: np.random.Generator) -> None:
    fused, plain = build(spec, True), build(spec, False)
    assert pooled_by_conv(fused) == [2, 5]
    assert pooled_by_conv(plain) == [] and not any(layer.fused for layer in plain.layers)
    for _ in range(2):  # the second step with the weights the first one's SGD would not
        # change: same inputs again, after a batch of another size
        x = rng.standard_normal((N, *fused.input_shape)).astype(np.float32)
        labels = rng.integers(0, fused.num_classes, N)
        assert_same_step(fused, plain, x, labels)
        assert_same_step(fused, plain, x[:1], labels[:1])
    assert not fused.layers[0]._buffers.get("y", np.empty(0)).size  # never written in training
    x = rng.standard_normal((N, *fused.input_shape)).astype(np.float32)
    assert np.array_equal(fused.forward(x, training=False), plain.forward(x, training=False))


def test_ties_and_all_negative_windows(rng: np.random.Generator) -> None:
    """Integer inputs and weights make equal outputs in a window (the pooling keeps the
    first in row order); negative biases whole windows of 0 after the ReLU."""
    fused, plain = build(FMNIST_LIKE, True), build(FMNIST_LIKE, False)
    for net in (fused, plain):
        for layer in net.layers:
            if "W" in layer.params:
                w = np.random.default_rng(1).integers(-1, 2, layer.params["W"].shape)
                layer.params["W"][:] = w
                layer.params["b"][:] = np.arange(layer.params["b"].size) % 3 - 1
    x = rng.integers(0, 2, (4, 1, 28, 28)).astype(np.float32)
    x[:, :, 8:20, 8:20] = 1  # a plateau: every window of equal values
    labels = rng.integers(0, 10, 4)
    assert_same_step(fused, plain, x, labels)
    argmax, y = fused.layers[2]._buffers["argmax"], fused.layers[2]._buffers["y"]
    assert (y == 0).any() and (argmax[y == 0] == 0).all()  # all 0: the first cell wins
    assert len(np.unique(argmax)) == 4


def test_what_fuses() -> None:
    """Only a 2×2 stride-2 unpadded pooling whose windows lie inside, after a ReLU fused
    into a direct convolution; again when the algorithm changes; never with fuse=False."""
    for spec, fuses in (("conv 4 3 pad=same activation=relu\nmaxpool 2", True),
                        ("conv 4 3 pad=same\nmaxpool 2", False),           # no ReLU
                        ("conv 4 3 pad=same activation=relu\nmaxpool 3 stride=2 round=floor",
                         False),
                        ("conv 4 3 pad=same activation=relu\nmaxpool 2 pad=1", False),
                        ("conv 4 3 pad=same activation=relu\navgpool 2", False),
                        ("conv 4 3 pad=same\nrelu\nrelu\nmaxpool 2", False)):
        net = build(f"input 10x10x1\n{spec}\nfc 2\nsoftmax\n", True)
        assert bool(pooled_by_conv(net)) == fuses, spec
    odd = "input 9x9x1\nconv 4 3 pad=same activation=relu\nmaxpool 2 round={}\nfc 2\nsoftmax\n"
    assert pooled_by_conv(build(odd.format("floor"), True)) == [2]
    assert pooled_by_conv(build(odd.format("ceil"), True)) == []  # a window past the edge
    net = build(FMNIST_LIKE, True)
    net.conv_algo = "im2col"  # conv1 no longer direct; conv2 has algo=direct
    assert pooled_by_conv(net) == [5] and not net.layers[2].fused
    assert net.layers[1].fused and isinstance(net.layers[1], ReLU)
    net.conv_algo = "auto"
    assert pooled_by_conv(net) == [2, 5]
    assert pooled_by_conv(build(FMNIST_LIKE, False)) == []


def test_inference_and_activation_statistics_as_unfused(rng: np.random.Generator,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Inference passes run the convolution's whole output and the pooling layer: the
    per-layer outputs and gradients of the statistics are those of the network whose
    backend fuses the ReLUs only."""
    fused = build(ODD, True)
    monkeypatch.setattr(numbacnn.backends.cpu, "DIRECT_POOL_FUSES", False)
    plain = build(ODD, True)
    assert pooled_by_conv(fused) == [2, 5] and pooled_by_conv(plain) == []
    x = rng.standard_normal((3, 2, 7, 9)).astype(np.float32)
    labels = np.array([0, 2, 1])
    a, b = layer_statistics(fused, x, labels), layer_statistics(plain, x, labels)
    assert [s.label for s in a] == [s.label for s in b]
    for sa, sb in zip(a, b, strict=True):
        assert np.array_equal(sa.values, sb.values) and np.array_equal(sa.gradients, sb.gradients)


def test_profile_marks_the_pooling_fused() -> None:
    """The profile's rows: the ReLU and the pooling "(fused)", their time in the conv's."""
    net = build(FMNIST_LIKE, True)
    profile = profile_training(net, batch=4, iterations=1, warmup=1)
    assert [r["fused"] for r in profile["layers"]][:6] == [False, True, True,
                                                          False, True, True]
    assert "maxpool 2 stride=2 (fused)" in "\n".join(layer_table_lines(profile))
