"""Space-to-depth convolution on the CPU (``algo=s2d``: a strided convolution as the
stride-1 convolution of its rearranged input, Winograd or im2col inside) against the
float64 reference convolution (tests/reference_conv.py) and against im2col: y, dx, dW,
db on AlexNet-conv1-like shapes made small (11×11 stride 4), ResNet's stem (7×7 stride 2
pad 3), odd and rectangular sizes, ceil and floor rounding, the fused ReLU; the span
bodies cut every way; the algorithm choice (layer, network, auto) and its errors. The
CUDA drivers run the same bodies in tests/cuda_sim (the "conv-s2d-*" cases).

Tolerance: Winograd's (tests/test_winograd.py), 2e-5 of max |reference| plus 1e-4
relative; the rearrangements only move numbers. Measured on these shapes, as a fraction of
max |reference|: at most 4.5e-7 for y, 3.5e-7 dx, 5.3e-7 dW (AlexNet's whole conv1, 2
images), 1.9e-7 db with Winograd F(2×2, 3×3) or im2col inside; 1.3e-6 dx and 2.0e-6 dW
with F(2×2, 5×5) inside (its own error, tests/test_winograd5.py); im2col alone: 7.9e-7.
"""

from __future__ import annotations

import numeric_checks as checks
import numpy as np
import pytest
from reference_conv import conv2d_backward, conv2d_forward
from test_span_bodies import run_cut

import numbacnn.backends.cpu
from numbacnn.backends import cpu
from numbacnn.errors import SpecError
from numbacnn.geometry import space_to_depth_shape
from numbacnn.kernels import space_to_depth as s2d
from numbacnn.layers import Conv2D
from numbacnn.network import Network
from numbacnn.spec import parse_spec

TOLERANCE = {"rtol": 1e-4, "atol_scale": 2e-5}

# (N, C, K, H, W, size, stride, pad, round, fused ReLU, the inner algorithm and taps)
SHAPES = [
    (2, 3, 8, 35, 35, 11, 4, 0, "exact", True, ("winograd", 9)),  # AlexNet's conv1, small
    (2, 3, 5, 18, 17, 7, 2, 3, "floor", False, ("im2col", 16)),   # ResNet's stem
    (1, 2, 5, 13, 11, 5, 2, 1, "exact", True, ("winograd", 9)),   # odd sizes, partial tiles
    (2, 3, 4, 9, 10, (4, 5), (3, 2), (1, 2), "ceil", True, ("im2col", 6)),  # rectangular
    (1, 2, 3, 15, 15, 9, 2, 0, "exact", False, ("winograd", 25)),  # 5×5 inside
    (3, 1, 6, 16, 16, 6, 3, 2, "floor", False, ("im2col", 4)),    # F a multiple of S
]


def make_layer(shape: tuple, algo: str, rng: np.random.Generator) -> Conv2D:
    N, C, K, H, W, size, stride, pad, rounding, relu, _ = shape
    layer = Conv2D(K, size, stride=stride, pad=pad, round=rounding, algo=algo)
    layer.build((C, H, W))
    layer.init_params(rng)
    layer.params["b"][:] = rng.standard_normal(K).astype(np.float32)
    layer.fused_relu = relu
    return layer


def run_conv(layer: Conv2D, x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, ...]:
    y = layer.forward(x).copy()
    dx = layer.backward(dy).copy()
    return y, dx, layer.grads["W"].copy(), layer.grads["b"].copy()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}C{}K{}-{}x{}-f{}-s{}-p{}-{}-relu{:d}"
                         .format(*s[:10]))
def test_s2d_matches_the_reference_and_im2col(shape: tuple, rng: np.random.Generator) -> None:
    N, C, K, H, W, size, stride, pad, rounding, relu, inner = shape
    layer = make_layer(shape, "s2d", rng)
    assert (layer.algorithm(), layer.s2d_inner()) == ("s2d", inner)
    assert layer.params["W"].shape == (K, C, *((size,) * 2 if isinstance(size, int) else size))
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    dy = rng.standard_normal((N, *layer.output_shape)).astype(np.float32)
    got = run_conv(layer, x, dy)
    w, b = layer.params["W"], layer.params["b"]
    options = {"stride": stride, "pad": pad, "rounding": rounding}
    expected_y = conv2d_forward(x, w, b, **options)
    masked_dy = dy
    if relu:
        expected_y = np.maximum(expected_y, 0)
        masked_dy = dy * (expected_y > 0)
    expected = (expected_y, *conv2d_backward(x, w, masked_dy, **options))
    twin = make_layer(shape, "im2col", rng)
    twin.params["W"][:], twin.params["b"][:] = w, b
    im2col = run_conv(twin, x, dy)
    for what, value, reference, other in zip(("y", "dx", "dW", "db"), got, expected, im2col,
                                             strict=True):
        checks.assert_close(value, reference, what=what, **TOLERANCE)
        checks.assert_close(value, other, what=f"{what} against im2col", **TOLERANCE)


def test_s2d_without_dx_gives_the_same_weight_gradients(rng: np.random.Generator) -> None:
    """A first layer's backward (no dx) computes the same dW and db, and no dx."""
    layer = make_layer(SHAPES[0], "s2d", rng)
    x = rng.standard_normal((2, 3, 35, 35)).astype(np.float32)
    dy = rng.standard_normal((2, *layer.output_shape)).astype(np.float32)
    _, _, dw, db = run_conv(layer, x, dy)
    layer.forward(x)
    assert layer.backward(dy, need_dx=False) is None
    np.testing.assert_array_equal(layer.grads["W"], dw)
    np.testing.assert_array_equal(layer.grads["b"], db)


def test_a_smaller_batch_after_a_larger_one(rng: np.random.Generator) -> None:
    """The last batch of an epoch (smaller) uses views of the same buffers."""
    layer = make_layer(SHAPES[2], "s2d", rng)
    x = rng.standard_normal((3, 2, 13, 11)).astype(np.float32)
    layer.forward(x)
    y = layer.forward(x[:1]).copy()
    expected = np.maximum(conv2d_forward(x[:1], layer.params["W"], layer.params["b"],
                                         stride=2, pad=1), 0)
    checks.assert_close(y, expected, what="y", **TOLERANCE)


# geo = (FH, FW, SH, SW, PT, PL, DH, DW), output OH×OW
BODY_GEOMETRIES = [((11, 11, 4, 4, 0, 0, 1, 1), 3, 3), ((7, 7, 2, 2, 3, 3, 1, 1), 4, 3),
                   ((4, 5, 3, 2, 1, 2, 1, 1), 3, 4)]


@pytest.mark.parametrize("cut", ["element", "random"])
@pytest.mark.parametrize("geometry", BODY_GEOMETRIES, ids=str)
def test_the_bodies_give_the_drivers_result_however_cut(cut: str, geometry: tuple,
                                                        rng: np.random.Generator) -> None:
    """Each span body called per element (the GPU's way) or on random cuts of each plane
    writes what the CPU driver (whole planes) writes, element for element."""
    geo, OH, OW = geometry
    N, C, K = 2, 2, 3
    H = (OH - 1) * geo[2] + geo[0] - 2 * geo[4] + 1  # a row past the last window
    W = (OW - 1) * geo[3] + geo[1] - 2 * geo[5]
    Cs, HS, WS, FHs, FWs = space_to_depth_shape(C, geo[:2], geo[2:4], OH, OW)
    x = rng.standard_normal((N, C, H * W)).astype(np.float32)
    xs = rng.standard_normal((N, Cs, HS * WS)).astype(np.float32)
    w2 = rng.standard_normal((K, C * geo[0] * geo[1])).astype(np.float32)
    ws2 = rng.standard_normal((K, Cs * FHs * FWs)).astype(np.float32)
    drivers = [(s2d.space_to_depth_at, N * Cs, HS * WS, (xs, x, H, W, geo, WS),
                lambda out: cpu.space_to_depth(out, x, H, W, geo, HS, WS)),
               (s2d.depth_to_space_at, N * C, H * W, (x, xs, H, W, geo, HS, WS),
                lambda out: cpu.depth_to_space(out, xs, H, W, geo, HS, WS)),
               (s2d.filters_at, K, Cs * FHs * FWs, (ws2, w2, geo),
                lambda out: cpu.s2d_filters(out, w2, geo)),
               (s2d.filter_grads_at, K, C * geo[0] * geo[1], (w2, ws2, geo),
                lambda out: cpu.s2d_filter_grads(out, ws2, geo))]
    for body, n, L, args, driver in drivers:
        expected = np.full_like(args[0], np.nan)
        driver(expected)
        assert not np.isnan(expected).any(), body.__name__
        got = np.full_like(args[0], np.nan)
        run_cut(body, n, L, (got, *args[1:]), cut, rng)
        np.testing.assert_array_equal(got, expected, err_msg=body.__name__)


@pytest.mark.parametrize("spec", ["conv 4 3 algo=s2d", "conv 4 3 stride=2 dilation=2 algo=s2d",
                                  "conv 4 3 stride=2 groups=2 algo=s2d"])
def test_s2d_asked_for_a_convolution_it_cannot_run_is_an_error(spec: str) -> None:
    with pytest.raises(SpecError, match="algo=s2d computes convolutions of stride 2 or more"):
        parse_spec(f"input 9x9x4\n{spec}\n").build()


def test_the_network_choice_and_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    """A network-wide s2d leaves stride-1 convolutions on im2col; auto takes s2d where the
    rearranged window is 3×3 and C·S²·K reaches the backend's S2D_AUTO_MIN_CK (AlexNet's
    conv1: 3·16·96), not where it is 4×4 (ResNet's stem) or the threshold None."""
    net = Network.from_spec("input 227x227x3\nconv 96 11 stride=4 pad=0\n"
                            "conv 8 7 stride=2 pad=3\nconv 8 3 pad=1\nfc 2\nsoftmax",
                            device="cpu")
    convs = [layer for layer in net.layers if isinstance(layer, Conv2D)]
    net.conv_algo = "s2d"
    assert [c.algorithm() for c in convs] == ["s2d", "s2d", "im2col"]
    net.conv_algo = "auto"
    assert numbacnn.backends.cpu.S2D_AUTO_MIN_CK <= 3 * 16 * 96
    assert [c.algorithm() for c in convs[:2]] == ["s2d", "im2col"]
    assert convs[0].uses_s2d and not convs[0].uses_im2col  # Winograd inside
    assert convs[0].conv_run()[0].startswith("winograd")
    monkeypatch.setattr(numbacnn.backends.cpu, "S2D_AUTO_MIN_CK", None)
    assert convs[0].algorithm() == "im2col"
    monkeypatch.setattr(numbacnn.backends.cpu, "S2D_AUTO_MIN_CK", 3 * 16 * 96 + 1)
    assert convs[0].algorithm() == "im2col"


def test_a_few_training_steps_agree_with_im2col() -> None:
    """A small network (a strided convolution after another, so its dx is needed) trained
    4 SGD steps from the same weights on the same batches ends with the same weights under
    im2col and s2d, to float32 tolerance; the weights keep their K×C×FH×FW shape."""
    from numbacnn.training.optim import SGD

    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 2, 15, 15)).astype(np.float32)
    labels = rng.integers(0, 3, 6)
    weights = {}
    for algo in ("im2col", "s2d"):
        net = Network.from_spec("input 15x15x2\nconv 4 3 pad=1 activation=relu\n"
                                "conv 6 5 stride=2 pad=1 activation=relu\nfc 3\nsoftmax",
                                device="cpu").initialize(3)
        net.conv_algo = algo
        assert net.layers[2].algorithm() == algo and net.layers[2].params["W"].shape == (6, 4, 5, 5)
        optimizer = SGD(momentum=0.9, weight_decay=0.0)
        for _ in range(4):
            net.train_step(x, labels)
            optimizer.step(net, 0.05)
        weights[algo] = {f"{i}.{k}": v.copy() for i, layer in enumerate(net.layers)
                         for k, v in layer.params.items()}
    for key, expected in weights["im2col"].items():
        checks.assert_close(weights["s2d"][key], expected, what=key, rtol=1e-3, atol_scale=1e-4)
