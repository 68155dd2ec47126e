"""Conv → ReLU → 2×2 stride-2 max pooling fused into Winograd F(4×4, 3×3)'s training
passes on the CPU (``layers/conv.py``, ``backends/cpu_winograd43_pool.py``): the same loss,
pooled outputs, argmax and gradients, bit for bit, as the network built with
``fuse=False``: planes of 14 (partial edge tiles), 13 (floor pooling) and 8 (whole
tiles), an input gradient (a convolution before), a batch split unevenly between the
threads, with CBLAS and without (numpy's matmul), ties and all-negative windows. What
fuses (winograd4 only among the Winograds; never on the GPU or with ``fuse=False``).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_conv_pool_fusion import assert_same_step, build, pooled_by_conv

import numbacnn.backends.cpu
import numbacnn.backends.cuda_cpu_only


def spec(size: int, algo: str = "winograd4", rounding: str = "floor") -> str:
    """A convolution (its input gradient checked), then the fusing block on size×size."""
    return (f"input {size}x{size}x3\n"
            "conv 4 3 pad=same activation=relu algo=im2col\n"
            f"conv 6 3 pad=same activation=relu algo={algo}\n"
            f"maxpool 2 round={rounding}\n"
            "fc 5\nsoftmax\n")


@pytest.mark.parametrize("size", [14, 13, 8])
@pytest.mark.parametrize("blocked", ["1", "0"], ids=["cblas", "matmul"])
def test_fused_step_equals_unfused(size: int, blocked: str, rng: np.random.Generator,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMBACNN_BLOCKED_CONV", blocked)
    fused, plain = build(spec(size), True), build(spec(size), False)
    assert pooled_by_conv(fused) == [4] and fused.layers[2].pools_winograd43
    assert not fused.layers[2].pools_direct and pooled_by_conv(plain) == []
    for N in (5, 1):  # 5: three images and two between the threads
        x = rng.standard_normal((N, *fused.input_shape)).astype(np.float32)
        labels = rng.integers(0, fused.num_classes, N)
        assert_same_step(fused, plain, x, labels)
    assert not fused.layers[2]._buffers.get("y", np.empty(0)).size  # never written in training
    x = rng.standard_normal((3, *fused.input_shape)).astype(np.float32)
    assert np.array_equal(fused.forward(x, training=False), plain.forward(x, training=False))


def test_ties_and_all_negative_windows(rng: np.random.Generator) -> None:
    """Integer inputs and weights, a plateau (windows of equal values: the first cell
    wins) and negative biases (windows of 0 after the ReLU, gradient 0)."""
    fused, plain = build(spec(14), True), build(spec(14), False)
    for net in (fused, plain):
        for layer in net.layers:
            if "W" in layer.params:
                w = np.random.default_rng(1).integers(-1, 2, layer.params["W"].shape)
                layer.params["W"][:] = w
                layer.params["b"][:] = np.arange(layer.params["b"].size) % 3 - 1
    x = rng.integers(0, 2, (4, 3, 14, 14)).astype(np.float32)
    x[:, :, 4:12, 4:12] = 1
    assert_same_step(fused, plain, x, rng.integers(0, 5, 4))
    argmax, y = fused.layers[4]._buffers["argmax"], fused.layers[4]._buffers["y"]
    assert (y == 0).any() and (argmax[y == 0] == 0).all() and (y > 0).any()
    assert set(np.unique(argmax)) <= {0, 1, 14, 15} and len(np.unique(argmax)) > 1


def test_what_fuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """winograd4 with its backend's WINOGRAD43_POOL_FUSES; not F(2×2, 3×3), not a window
    past an odd plane's edge, not fuse=False; the GPU's module never fuses."""
    assert pooled_by_conv(build(spec(8), True)) == [4]
    assert pooled_by_conv(build(spec(8, "winograd"), True)) == []
    assert pooled_by_conv(build(spec(13, rounding="ceil"), True)) == []
    assert pooled_by_conv(build(spec(8), False)) == []
    assert numbacnn.backends.cuda_cpu_only.WINOGRAD43_POOL_FUSES is False
    monkeypatch.setattr(numbacnn.backends.cpu, "WINOGRAD43_POOL_FUSES", False)
    net = build(spec(8), True)
    assert pooled_by_conv(net) == [] and not net.layers[2].pools_winograd43


def test_a_space_to_depth_convolution_does_not_fuse(rng: np.random.Generator) -> None:
    """s2d runs F(4×4, 3×3) inside (6×6 stride 2 → 3×3 over 4·C channels, C'·K = 2048) on
    rearranged planes: its training passes must not take the pooling's work (they fused
    it and failed with a reshape error), and the step equals the unfused network's."""
    text = ("input 16x16x8\nconv 64 6 stride=2 pad=2 activation=relu algo=s2d\n"
            "maxpool 2\nfc 3\nsoftmax\n")
    fused, plain = build(text, True), build(text, False)
    assert fused.layers[0].conv_run() == ("winograd4", 9)
    assert pooled_by_conv(fused) == [] and not fused.layers[0].pools_winograd43
    x = rng.standard_normal((4, 8, 16, 16)).astype(np.float32)
    assert_same_step(fused, plain, x, rng.integers(0, 3, 4))
