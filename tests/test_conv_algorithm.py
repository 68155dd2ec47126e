"""Conv2D's choice of algorithm and its Winograd table (``layers/conv_algorithm.py``),
through ``algo=winograd3``, Winograd F(3×3, 5×5): the layer against the float64
reference, the network-wide and auto rules, s2d's inner 5×5 convolution, the drivers it
calls, its errors and the GPU's refusal. The drivers' own numerics, at many shapes and
on two threads: tests/test_winograd35.py.
"""

from __future__ import annotations

import numeric_checks as checks
import numpy as np
import pytest
from reference_conv import conv2d_backward, conv2d_forward
from test_drivers import RecordingBackend, run_layer

import numbacnn.backends.cpu
from numbacnn.backends import cuda_cpu_only
from numbacnn.errors import DeviceError, SpecError
from numbacnn.layers import Conv2D, Layer
from numbacnn.layers.conv_algorithm import WINOGRAD_DRIVERS, WINOGRAD_RUNS
from numbacnn.network import Network
from numbacnn.spec import parse_spec

TOLERANCE = {"rtol": 1e-4, "atol_scale": 5e-5}  # test_winograd35.py's


@pytest.mark.parametrize("relu", [False, True])
def test_a_winograd3_layer_matches_the_float64_reference(relu: bool,
                                                         rng: np.random.Generator) -> None:
    """A 5×5 pad-2 layer with partial 3×3 tiles (10×11), forward and backward."""
    N, C, K, H, W = 3, 5, 7, 10, 11
    layer = Conv2D(K, 5, pad=2, algo="winograd3")
    layer.build((C, H, W))
    layer.init_params(rng)
    layer.params["b"][:] = rng.standard_normal(K).astype(np.float32)
    layer.fused_relu = relu
    assert layer.algorithm() == "winograd3" and layer.uses_winograd35
    assert not layer.uses_winograd5
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    y = layer.forward(x).copy()
    w, b = layer.params["W"], layer.params["b"]
    expected = conv2d_forward(x, w, b, pad=2)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    if relu:
        expected = np.maximum(expected, 0)
        dy = dy * (y > 0)  # the layer's own mask: a sign flip near 0 is no error
    checks.assert_close(y, expected, what="y", **TOLERANCE)
    dx = layer.backward(dy).copy()
    expected_dx, expected_dw, expected_db = conv2d_backward(x, w, dy, pad=2)
    checks.assert_close(dx, expected_dx, what="dx", **TOLERANCE)
    checks.assert_close(layer.grads["W"], expected_dw, what="dW", **TOLERANCE)
    checks.assert_close(layer.grads["b"], expected_db, what="db", **TOLERANCE)


def test_network_wide_winograd3_and_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    """A network-wide winograd3 runs the 5×5 stride-1 convolutions as F(3×3, 5×5) and
    leaves a 3×3 or a stride-2 one on im2col; auto gives F(3×3, 5×5) the 5×5 layers the
    Winograd rule takes where C·K reaches WINOGRAD35_AUTO_MIN_CK, F(2×2, 5×5) the others."""
    net = Network.from_spec("input 13x13x3\nconv 4 5 pad=2\nconv 4 3 pad=1\n"
                            "conv 4 5 stride=2\nconv 4 5 pad=2 algo=winograd\nfc 2\nsoftmax",
                            device="cpu")
    convs = [layer for layer in net.layers if isinstance(layer, Conv2D)]
    net.conv_algo = "winograd3"
    assert [c.algorithm() for c in convs] == ["winograd3", "im2col", "im2col", "winograd"]
    net.conv_algo = "auto"
    cpu = numbacnn.backends.cpu
    monkeypatch.setattr(cpu, "WINOGRAD5_AUTO_MIN_CK", 12)
    monkeypatch.setattr(cpu, "WINOGRAD35_AUTO_MIN_CK", 13)
    assert convs[0].algorithm() == "winograd"  # C·K = 12
    monkeypatch.setattr(cpu, "WINOGRAD35_AUTO_MIN_CK", 12)
    assert convs[0].algorithm() == "winograd3" and convs[0].conv_run() == ("winograd3", 25)
    monkeypatch.setattr(cpu, "WINOGRAD35_AUTO_MIN_CK", None)
    assert convs[0].algorithm() == "winograd"
    monkeypatch.setattr(cpu, "WINOGRAD5_AUTO_MIN_CK", 13)  # no Winograd at all
    monkeypatch.setattr(cpu, "WINOGRAD35_AUTO_MIN_CK", 1)
    assert convs[0].algorithm() == "im2col"


def test_auto_runs_alexnets_conv2_as_winograd3() -> None:
    """The CPU's measured rules: AlexNet's conv2 (96 → 256, 5×5) as F(3×3, 5×5), its
    conv3–5 as F(4×4, 3×3), its conv1 under s2d on F(4×4, 3×3)."""
    net = Network.from_spec("alexnet", device="cpu")
    net.conv_algo = "auto"
    runs = [c.conv_run() for c in net.layers if isinstance(c, Conv2D)]
    assert runs == [("winograd4", 9), ("winograd3", 25), ("winograd4", 9), ("winograd4", 9),
                    ("winograd4", 9)]


def test_s2d_runs_a_rearranged_5x5_window_on_winograd3(monkeypatch: pytest.MonkeyPatch,
                                                       rng: np.random.Generator) -> None:
    """10×10 stride 2 is a 5×5 stride-1 convolution over 4·C channels: auto's larger
    tiles for it are F(3×3, 5×5), and the layer still computes the strided convolution."""
    monkeypatch.setattr(numbacnn.backends.cpu, "WINOGRAD35_AUTO_MIN_CK", 1)
    layer = Conv2D(6, 10, stride=2, pad=1, algo="s2d")
    layer.build((3, 20, 20))
    layer.init_params(rng)
    assert layer.s2d_inner() == ("winograd3", 25) and layer.uses_winograd35
    x = rng.standard_normal((2, 3, 20, 20)).astype(np.float32)
    y = layer.forward(x).copy()
    checks.assert_close(y, conv2d_forward(x, layer.params["W"], layer.params["b"], stride=2,
                                          pad=1), what="y", **TOLERANCE)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy).copy()
    expected_dx, expected_dw, _ = conv2d_backward(x, layer.params["W"], dy, stride=2, pad=1)
    checks.assert_close(dx, expected_dx, what="dx", **TOLERANCE)
    checks.assert_close(layer.grads["W"], expected_dw, what="dW", **TOLERANCE)


@pytest.mark.parametrize("spec", ["conv 4 3 algo=winograd3", "conv 4 5 stride=2 algo=winograd3",
                                  "conv 4 5 dilation=2 algo=winograd3",
                                  "conv 4 5 groups=2 algo=winograd3"])
def test_winograd3_asked_for_a_convolution_it_cannot_run_is_an_error(spec: str) -> None:
    with pytest.raises(SpecError, match="algo=winograd3 computes 5×5 windows"):
        parse_spec(f"input 12x12x4\n{spec}\n").build()


def test_a_winograd3_layer_calls_the_winograd35_drivers(monkeypatch: pytest.MonkeyPatch,
                                                        rng: np.random.Generator) -> None:
    recorder = RecordingBackend(numbacnn.backends.cpu)
    monkeypatch.setattr(Layer, "_backend", lambda self: recorder)
    run_layer(Conv2D(3, 5, pad=2, algo="winograd3"), rng)
    assert {"winograd35_workspace", "winograd35_forward", "winograd35_backward"} <= \
        recorder.called
    assert not recorder.called & {"winograd5_forward", "winograd_forward", "conv_forward"}


def test_the_table_names_drivers_both_backends_declare() -> None:
    """Every Winograd variant's three drivers are Conv2D's, in the CPU backend and in
    the GPU's (there, the larger tiles' refuse)."""
    assert set(WINOGRAD_DRIVERS) <= set(Conv2D.drivers)
    for run in WINOGRAD_RUNS.values():
        for part in ("workspace", "forward", "backward"):
            assert callable(getattr(numbacnn.backends.cpu, f"{run.prefix}_{part}"))


def test_the_gpu_refuses_winograd3_in_one_line() -> None:
    """No GPU driver: cuda.py re-exports cuda_cpu_only's, which refuse with one
    DeviceError; its auto rule is None (importing cuda.py needs numba-cuda)."""
    assert cuda_cpu_only.WINOGRAD35_AUTO_MIN_CK is None
    for driver in (cuda_cpu_only.winograd35_workspace, cuda_cpu_only.winograd35_forward,
                   cuda_cpu_only.winograd35_backward):
        with pytest.raises(DeviceError, match="algo=winograd3 .* runs on the CPU only") as bad:
            driver(1, 2, 3)
        assert "\n" not in str(bad.value)
