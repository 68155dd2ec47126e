"""Winograd F(2×2, 3×3) convolution on the CPU (``algo=winograd``) against the float64
reference convolution (tests/reference_conv.py): y, dx, dW, db at odd sizes (partial
tiles), pad 0, 1 and 2, channel counts that are multiples of nothing, batch 1, the fused
ReLU; the algorithm choice (layer, network, auto) and its errors; a few training steps
under both algorithms. The CUDA kernels run the same bodies in tests/cuda_sim.

Tolerance: Winograd's transforms only add and halve; its float32 error measured at most
5.0e-7 of max |reference| for y, dx, dW and db (im2col: 4.3e-7; C, K up to 256). The
tolerance below, 2e-5 of max |reference| plus 1e-4 relative, has room for other BLAS.
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
from numbacnn.training.settings import TrainSettings

TOLERANCE = {"rtol": 1e-4, "atol_scale": 2e-5}

# (N, C, K, H, W, pad, fused ReLU)
SHAPES = [(2, 3, 5, 7, 9, 1, False),     # odd sizes: partial tiles on both axes
          (1, 4, 3, 6, 5, 0, True),      # batch 1, pad 0, the ReLU's mask in backward
          (3, 7, 11, 13, 13, 1, True),   # AlexNet's 13×13, odd channel counts
          (2, 1, 6, 8, 8, 2, False),     # one input channel; pad 2 (output larger than input)
          (2, 17, 9, 4, 3, 1, False)]    # a plane smaller than two tiles


def run_conv(layer: Conv2D, x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, ...]:
    y = layer.forward(x).copy()
    dx = layer.backward(dy).copy()
    return y, dx, layer.grads["W"].copy(), layer.grads["b"].copy()


def make_conv(C: int, K: int, H: int, W: int, pad: int, algo: str,
              rng: np.random.Generator) -> Conv2D:
    layer = Conv2D(K, 3, pad=pad, algo=algo)
    layer.build((C, H, W))
    layer.init_params(rng)
    layer.params["b"][:] = rng.standard_normal(K).astype(np.float32)
    return layer


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}C{}K{}-{}x{}-p{}-relu{:d}".format(*s))
def test_winograd_matches_the_float64_reference(shape: tuple, rng: np.random.Generator) -> None:
    N, C, K, H, W, pad, relu = shape
    layer = make_conv(C, K, H, W, pad, "winograd", rng)
    layer.fused_relu = relu
    assert layer.algorithm() == "winograd"
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    dy = rng.standard_normal((N, *layer.output_shape)).astype(np.float32)
    y, dx, dw, db = run_conv(layer, x, dy)
    w, b = layer.params["W"], layer.params["b"]
    expected = conv2d_forward(x, w, b, pad=pad)
    if relu:
        expected = np.maximum(expected, 0)
        dy = dy * (expected > 0)
    checks.assert_close(y, expected, what="y", **TOLERANCE)
    expected_dx, expected_dw, expected_db = conv2d_backward(x, w, dy, pad=pad)
    checks.assert_close(dx, expected_dx, what="dx", **TOLERANCE)
    checks.assert_close(dw, expected_dw, what="dW", **TOLERANCE)
    checks.assert_close(db, expected_db, what="db", **TOLERANCE)


def test_winograd_without_dx_gives_the_same_weight_gradients(rng: np.random.Generator) -> None:
    """A first layer's backward (no dx) computes the same dW and db."""
    layer = make_conv(3, 4, 9, 7, 1, "winograd", rng)
    x = rng.standard_normal((2, 3, 9, 7)).astype(np.float32)
    dy = rng.standard_normal((2, 4, 9, 7)).astype(np.float32)
    _, _, dw, db = run_conv(layer, x, dy)
    layer.forward(x)
    assert layer.backward(dy, need_dx=False) is None
    np.testing.assert_array_equal(layer.grads["W"], dw)
    np.testing.assert_array_equal(layer.grads["b"], db)


def test_winograd_without_cblas_runs_the_whole_batch(monkeypatch: pytest.MonkeyPatch,
                                                      rng: np.random.Generator) -> None:
    """Without a CBLAS function the whole batch runs with numpy's batched matmul."""
    from numbacnn.backends import cblas

    monkeypatch.setattr(cblas, "sgemm", lambda: None)
    N, C, K, H, W, pad, _ = SHAPES[0]
    layer = make_conv(C, K, H, W, pad, "winograd", rng)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    dy = rng.standard_normal((N, K, H, W)).astype(np.float32)
    y, dx, dw, db = run_conv(layer, x, dy)
    w, b = layer.params["W"], layer.params["b"]
    checks.assert_close(y, conv2d_forward(x, w, b, pad=pad), what="y", **TOLERANCE)
    for got, expected, what in zip((dx, dw, db), conv2d_backward(x, w, dy, pad=pad),
                                   ("dx", "dW", "db"), strict=True):
        checks.assert_close(got, expected, what=what, **TOLERANCE)


@pytest.mark.parametrize("spec", ["conv 4 7 algo=winograd", "conv 4 3 stride=2 algo=winograd",
                                  "conv 4 3 dilation=2 algo=winograd",
                                  "conv 4 3 groups=2 algo=winograd"])
def test_winograd_asked_for_a_convolution_it_cannot_run_is_an_error(spec: str) -> None:
    with pytest.raises(SpecError, match="algo=winograd computes 3×3 and 5×5 windows"):
        parse_spec(f"input 8x8x4\n{spec}\n").build()


def test_the_constructor_refuses_winograd_where_it_cannot_run() -> None:
    with pytest.raises((ShapeError, ValueError), match="give algo=im2col or algo=auto"):
        Conv2D(4, 3, stride=2, algo="winograd")


def test_the_network_choice_applies_where_winograd_can_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A network-wide winograd leaves a stride-2 convolution on im2col; a layer's own
    algo= wins over the network's; auto follows the backend's rule (C·K ≥ 2048 on the CPU)."""
    net = Network.from_spec("input 13x13x3\nconv 4 3 pad=1\nconv 4 3 stride=2\n"
                            "conv 4 3 pad=1 algo=im2col\nfc 2\nsoftmax", device="cpu")
    convs = [layer for layer in net.layers if isinstance(layer, Conv2D)]
    assert [c.algorithm() for c in convs] == ["im2col"] * 3  # the default
    net.conv_algo = "winograd"
    assert net.conv_algo == "winograd"
    assert [c.algorithm() for c in convs] == ["winograd", "im2col", "im2col"]
    net.conv_algo = "auto"
    monkeypatch.setattr(numbacnn.backends.cpu, "DIRECT_AUTO_MAX_TAPS", None)  # Winograd's rule
    assert numbacnn.backends.cpu.WINOGRAD_AUTO_MIN_CK > 3 * 4  # too few channels here
    assert [c.algorithm() for c in convs] == ["im2col"] * 3


def test_auto_follows_the_backends_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(numbacnn.backends.cpu, "WINOGRAD_AUTO_MIN_CK", 12)
    small, large = Conv2D(3, 3, algo="auto"), Conv2D(4, 3, algo="auto")
    small.build((3, 8, 8))
    large.build((3, 8, 8))
    assert (small.algorithm(), large.algorithm()) == ("im2col", "winograd")


def test_a_winograd_layer_calls_the_winograd_drivers(monkeypatch: pytest.MonkeyPatch,
                                                     rng: np.random.Generator) -> None:
    recorder = RecordingBackend(numbacnn.backends.cpu)
    monkeypatch.setattr(Layer, "_backend", lambda self: recorder)
    run_layer(Conv2D(3, 3, algo="winograd"), rng)
    assert {"winograd_workspace", "winograd_forward", "winograd_backward"} <= recorder.called
    assert not recorder.called & {"conv_workspace", "conv_forward", "conv_backward"}


def test_conv_algo_setting_is_checked() -> None:
    assert TrainSettings().conv_algo == "im2col"
    with pytest.raises(Exception, match="conv_algo") as bad:
        TrainSettings(conv_algo="fft").checked()
    assert bad.value.field == "conv_algo"  # type: ignore[attr-defined]


def test_a_few_training_steps_agree_under_both_algorithms() -> None:
    """A small network trained 4 SGD steps from the same weights on the same batches ends
    with the same weights under im2col and winograd, to float32 tolerance."""
    from numbacnn.training.optim import SGD

    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 2, 9, 9)).astype(np.float32)
    labels = rng.integers(0, 3, 6)
    weights = {}
    for algo in ("im2col", "winograd"):
        net = Network.from_spec("input 9x9x2\nconv 5 3 pad=1 activation=relu\nconv 4 3\n"
                                "fc 3\nsoftmax", device="cpu").initialize(3)
        net.conv_algo = algo
        optimizer = SGD(momentum=0.9, weight_decay=0.0)
        for _ in range(4):
            net.train_step(x, labels)
            optimizer.step(net, 0.05)
        weights[algo] = {f"{i}.{k}": v.copy() for i, layer in enumerate(net.layers)
                         for k, v in layer.params.items()}
    for key, expected in weights["im2col"].items():
        checks.assert_close(weights["winograd"][key], expected, what=key, rtol=1e-3,
                            atol_scale=1e-4)


def test_the_commands_take_conv_algo(tmp_path) -> None:
    """numbacnn train --conv-algo trains (the checkpoint keeps the setting); a bad value
    is one line and exit 2; bench takes it too."""
    from helpers import CLASSES, assert_ok, assert_one_error, quadrant_images, run

    from numbacnn.training.checkpoint import load_checkpoint

    rng = np.random.default_rng(7)
    x, y = quadrant_images(32, rng, 8)
    data = tmp_path / "data.npz"
    np.savez(data, x_train=x, y_train=y, x_test=x[:8], y_test=y[:8],
             class_names=np.array(CLASSES))
    spec = "input 8x8x1\nconv 4 3 pad=1 activation=relu\nfc 4\nsoftmax"
    out = tmp_path / "m.h5"
    assert_ok(run("train", spec, "--data", data, "--out", out, "--epochs", 1, "--batch-size",
                  16, "--conv-algo", "winograd", "--device", "cpu"))
    assert load_checkpoint(out)[1].settings["conv_algo"] == "winograd"
    assert_one_error(run("train", spec, "--data", data, "--conv-algo", "fft"), "--conv-algo",
                     "winograd")
    assert "--conv-algo" in run("bench", "--help").output


def test_fit_passes_conv_algo_to_the_network() -> None:
    import numbacnn

    net = numbacnn.Network.from_spec("input 28x28x1\nconv 4 3 pad=1\nmaxpool 2\nfc 10\nsoftmax",
                                     device="cpu")
    net.fit("fashion-mnist-mini", epochs=1, limit=64, verbose=0, conv_algo="winograd")
    assert net.layers[0].algorithm() == "winograd"
