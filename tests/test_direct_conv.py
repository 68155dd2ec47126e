"""The direct convolution on the CPU (``algo=direct``) against the float64 reference
convolution (tests/reference_conv.py): y, dx, dW, db for 3×3 "same" windows (the
constant-window bodies), other sizes, rectangular windows, padding 0, per side and
larger than the window, dilation, groups, one input channel, batch 1, the fused ReLU,
more threads than images; the algorithm choice (layer, network, auto) and its error.
The CUDA kernels run their element bodies in tests/cuda_sim.

Tolerance: that of the im2col and Winograd tests (tests/test_winograd.py), 2e-5 of
max |reference| plus 1e-4 relative.
"""

from __future__ import annotations

import numeric_checks as checks
import numpy as np
import pytest
from reference_conv import conv2d_backward, conv2d_forward
from test_drivers import RecordingBackend, run_layer

import numbacnn.backends.cpu
from numbacnn.errors import ShapeError, SpecError
from numbacnn.layers import Conv2D, Layer
from numbacnn.network import Network
from numbacnn.spec import parse_spec

TOLERANCE = {"rtol": 1e-4, "atol_scale": 2e-5}

# (N, C, spec line, H, W, fused ReLU)
CASES = [(3, 1, "conv 5 3 pad=same", 9, 8, True),        # fmnist's conv1, small
         (2, 1, "conv 4 3 pad=same", 28, 28, True),      # fmnist's conv1's planes
         (2, 3, "conv 4 3 pad=1", 7, 9, False),           # cifar's first layer, 3 channels
         (1, 2, "conv 3 3 pad=1", 6, 5, True),            # batch 1
         (2, 1, "conv 6 5 pad=2", 8, 8, False),           # lenet's 5×5
         (2, 2, "conv 3 3x5 pad=1x2", 7, 6, True),        # rectangular window
         (2, 3, "conv 4 3 pad=0,1,2,1", 6, 7, False),     # other padding on top and bottom
         (2, 2, "conv 3 3 pad=3,0,0,2", 4, 5, False),     # top past the window's reach
         (2, 2, "conv 3 5 pad=2", 3, 1, True),            # padding as wide as the plane
         (2, 2, "conv 4 3 pad=same dilation=2", 9, 8, True),   # dilated
         (2, 4, "conv 6 3 pad=1 groups=2", 5, 6, False),  # groups
         (2, 6, "conv 6 3 pad=same groups=3 dilation=2x1", 7, 6, True)]


def run_case(N: int, C: int, spec: str, H: int, W: int, relu: bool,
             rng: np.random.Generator) -> None:
    (layer,) = parse_spec(f"input {W}x{H}x{C}\n{spec} algo=direct\n").make_layers()
    layer.build((C, H, W))
    layer.init_params(rng)
    layer.params["b"][:] = rng.standard_normal(layer.filters).astype(np.float32)
    layer.fused_relu = relu
    assert layer.algorithm() == "direct"
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    dy = rng.standard_normal((N, *layer.output_shape)).astype(np.float32)
    y = layer.forward(x).copy()
    dx = layer.backward(dy).copy()
    w, b = layer.params["W"], layer.params["b"]
    FH, FW, _, _, PT, PL, DH, DW = layer.geometry
    pad = layer.used_pads()
    options = {"pad": pad, "groups": layer.groups, "dilation": (DH, DW)}
    expected = conv2d_forward(x, w, b, **options)
    if relu:
        expected = np.maximum(expected, 0)
        dy = dy * (expected > 0)
    checks.assert_close(y, expected, what="y", **TOLERANCE)
    expected_dx, expected_dw, expected_db = conv2d_backward(x, w, dy, **options)
    checks.assert_close(dx, expected_dx, what="dx", **TOLERANCE)
    checks.assert_close(layer.grads["W"], expected_dw, what="dW", **TOLERANCE)
    checks.assert_close(layer.grads["b"], expected_db, what="db", **TOLERANCE)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"N{c[0]}C{c[1]}-{c[2]}-relu{c[5]:d}")
def test_direct_matches_the_float64_reference(case: tuple, rng: np.random.Generator) -> None:
    run_case(*case, rng)


def test_direct_with_more_threads_than_images(rng: np.random.Generator) -> None:
    """Parts without images add nothing (their gradient sums are zeroed)."""
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two numba threads")
    with_threads = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        run_case(1, 1, "conv 3 3 pad=1", 5, 5, False, rng)
    finally:
        numba.set_num_threads(with_threads)


def test_direct_without_dx_gives_the_same_weight_gradients(rng: np.random.Generator) -> None:
    """A first layer's backward (no dx) computes the same dW and db."""
    layer = Conv2D(4, 3, pad=1, algo="direct")
    layer.build((2, 9, 7))
    layer.init_params(rng)
    x = rng.standard_normal((2, 2, 9, 7)).astype(np.float32)
    dy = rng.standard_normal((2, 4, 9, 7)).astype(np.float32)
    layer.forward(x)
    layer.backward(dy)
    dw, db = layer.grads["W"].copy(), layer.grads["b"].copy()
    layer.forward(x)
    assert layer.backward(dy, need_dx=False) is None
    np.testing.assert_array_equal(layer.grads["W"], dw)
    np.testing.assert_array_equal(layer.grads["b"], db)


@pytest.mark.parametrize("spec", ["conv 4 3 stride=2 pad=1 algo=direct", "conv 4 3 algo=direct",
                                  "conv 4 3 pad=1,1,1,0 algo=direct",
                                  "conv 4 3 dilation=2 pad=1 algo=direct"])
def test_direct_asked_for_a_convolution_it_cannot_run_is_an_error(spec: str) -> None:
    """Stride 2, no padding (the output narrower than the input), one-sided padding,
    padding short of a dilated window's reach."""
    with pytest.raises(SpecError, match="algo=direct computes stride-1 convolutions that keep"):
        parse_spec(f"input 8x8x4\n{spec}\n").build()


def test_the_constructor_refuses_direct_where_it_cannot_run() -> None:
    with pytest.raises(ShapeError, match="give algo=im2col or algo=auto"):
        Conv2D(4, 3, stride=2, pad=1, algo="direct")


def test_the_network_choice_and_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    """A network-wide direct leaves a stride-2 convolution on im2col; auto runs direct
    where it applies and C/G·FH·FW is at most the backend's DIRECT_AUTO_MAX_TAPS."""
    monkeypatch.setattr(numbacnn.backends.cpu, "DIRECT_AUTO_MAX_TAPS", 9)
    monkeypatch.setattr(numbacnn.backends.cpu, "WINOGRAD_AUTO_MIN_CK", 4 * 4)
    net = Network.from_spec("input 13x13x1\nconv 4 3 pad=1\nconv 4 3 stride=2 pad=1\n"
                            "conv 4 3 pad=1\nconv 4 3 pad=1 algo=im2col\nfc 2\nsoftmax",
                            device="cpu")
    convs = [layer for layer in net.layers if isinstance(layer, Conv2D)]
    net.conv_algo = "direct"
    assert [c.algorithm() for c in convs] == ["direct", "im2col", "direct", "im2col"]
    net.conv_algo = "auto"  # 1·9 taps: direct; 4·9: Winograd (C·K = 16)
    assert [c.algorithm() for c in convs] == ["direct", "im2col", "winograd", "im2col"]
    monkeypatch.setattr(numbacnn.backends.cpu, "DIRECT_AUTO_MAX_TAPS", None)
    assert convs[0].algorithm() == "im2col"


def test_a_direct_layer_calls_the_direct_drivers(monkeypatch: pytest.MonkeyPatch,
                                                 rng: np.random.Generator) -> None:
    recorder = RecordingBackend(numbacnn.backends.cpu)
    monkeypatch.setattr(Layer, "_backend", lambda self: recorder)
    run_layer(Conv2D(3, 3, pad=1, algo="direct"), rng)
    assert {"direct_workspace", "direct_forward", "direct_backward"} <= recorder.called
    assert not recorder.called & {"conv_workspace", "conv_forward", "conv_backward"}


def test_a_few_training_steps_agree_with_im2col() -> None:
    """A small network (a one-channel first layer with a fused ReLU, then a layer that
    computes dx) trained 4 SGD steps from the same weights ends with the same weights
    under im2col and direct (the tolerance of test_winograd.py's twin)."""
    from numbacnn.training.optim import SGD

    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 1, 10, 10)).astype(np.float32)
    labels = rng.integers(0, 3, 6)
    weights = {}
    for algo in ("im2col", "direct"):
        net = Network.from_spec("input 10x10x1\nconv 4 3 pad=same activation=relu\n"
                                "conv 5 3 pad=1\nrelu\nmaxpool 2\nfc 3\nsoftmax",
                                device="cpu").initialize(3)
        net.conv_algo = algo
        assert [c.algorithm() for c in net.layers if isinstance(c, Conv2D)] == [algo] * 2
        optimizer = SGD(momentum=0.9, weight_decay=0.0)
        for _ in range(4):
            net.train_step(x, labels)
            optimizer.step(net, 0.05)
        weights[algo] = {f"{i}.{k}": v.copy() for i, layer in enumerate(net.layers)
                         for k, v in layer.params.items()}
    for key, expected in weights["im2col"].items():
        checks.assert_close(weights["direct"][key], expected, what=key, rtol=1e-3,
                            atol_scale=1e-4)
