"""Winograd F(4×4, 3×3) on the CPU (``algo=winograd4``) against the float64 reference
convolution (tests/reference_conv.py): y, dx, dW, db at odd sizes (partial 4×4 tiles),
pads 0–2, odd channel counts, batch 1, the fused ReLU, chunks and parts on two threads;
the CPU's row and chunk bodies against the element bodies; the documented matrices; the
algorithm choice and the GPU's refusal.

Tolerance: G's fractions and Aᵀ's 8s make the float32 error 10–20× F(2×2, 3×3)'s:
measured at most 4.6e-6 (y), 3.0e-6 (dx), 2.8e-6 (dW), 1.9e-7 (db) of max |reference|
on these shapes; 1.8e-5, 8.4e-6, 3.2e-6 and 1.2e-7 at AlexNet's conv4 (C, K 384,
13×13; F(2×2, 3×3)'s there 5.5e-7, 7.8e-7, 3.6e-7, 2.5e-7). The tolerance below, 5e-5
of max |reference| plus 1e-4 relative (as F(2×2, 5×5)'s), has 2.8× room at conv4.
"""

from __future__ import annotations

import numba
import numeric_checks as checks
import numpy as np
import pytest
from numba import njit
from reference_conv import conv2d_backward, conv2d_forward
from test_drivers import RecordingBackend, run_layer

import numbacnn.backends.cpu
from numbacnn.backends import cblas
from numbacnn.backends import cpu_winograd43 as cw
from numbacnn.errors import DeviceError, SpecError
from numbacnn.kernels import winograd43
from numbacnn.layers import Conv2D, Layer
from numbacnn.network import Network
from numbacnn.spec import parse_spec

TOLERANCE = {"rtol": 1e-4, "atol_scale": 5e-5}

# (N, C, K, H, W, pad, fused ReLU)
SHAPES = [(2, 3, 5, 7, 9, 1, False),     # odd sizes: partial tiles on both axes
          (1, 4, 3, 6, 5, 0, True),      # batch 1, pad 0, the ReLU's mask in backward
          (3, 7, 11, 13, 13, 2, True),   # odd channel counts, pad 2 (output larger)
          (2, 1, 6, 5, 5, 1, False),     # one input channel, a plane of 2×2 tiles
          (2, 17, 9, 3, 4, 1, False),    # a plane smaller than a tile
          (4, 32, 64, 14, 14, 1, True)]  # fmnist's conv2


def make_conv(C: int, K: int, H: int, W: int, pad: int, rng: np.random.Generator,
              algo: str = "winograd4") -> Conv2D:
    layer = Conv2D(K, 3, pad=pad, algo=algo)
    layer.build((C, H, W))
    layer.init_params(rng)
    layer.params["b"][:] = rng.standard_normal(K).astype(np.float32)
    return layer


def check_layer(layer: Conv2D, x: np.ndarray, pad: int, relu: bool,
                rng: np.random.Generator) -> None:
    """y, dx, dW and db of one forward and backward pass against the float64 reference."""
    layer.fused_relu = relu
    dy = rng.standard_normal((x.shape[0], *layer.output_shape)).astype(np.float32)
    y = layer.forward(x).copy()
    dx = layer.backward(dy).copy()
    w, b = layer.params["W"], layer.params["b"]
    expected = conv2d_forward(x, w, b, pad=pad)
    if relu:
        expected = np.maximum(expected, 0)
        dy = dy * (expected > 0)
    checks.assert_close(y, expected, what="y", **TOLERANCE)
    expected_dx, expected_dw, expected_db = conv2d_backward(x, w, dy, pad=pad)
    checks.assert_close(dx, expected_dx, what="dx", **TOLERANCE)
    checks.assert_close(layer.grads["W"], expected_dw, what="dW", **TOLERANCE)
    checks.assert_close(layer.grads["b"], expected_db, what="db", **TOLERANCE)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}C{}K{}-{}x{}-p{}-relu{:d}".format(*s))
def test_winograd43_matches_the_float64_reference(shape: tuple, rng: np.random.Generator) -> None:
    N, C, K, H, W, pad, relu = shape
    layer = make_conv(C, K, H, W, pad, rng)
    assert layer.algorithm() == "winograd4" and layer.uses_winograd43
    assert not layer.uses_winograd
    check_layer(layer, rng.standard_normal((N, C, H, W)).astype(np.float32), pad, relu, rng)


@pytest.fixture
def threads():
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


@pytest.mark.skipif(cblas.sgemm() is None, reason="no CBLAS function in numpy's BLAS")
@pytest.mark.parametrize("images", [1, 3, 7])
def test_chunks_and_parts_on_two_threads(images: int, threads, monkeypatch: pytest.MonkeyPatch,
                                         rng: np.random.Generator) -> None:
    """Chunks of one image (MIN_CHUNK_TILES 1, a tiny CHUNK_BYTES) on two parts: fewer
    images than parts, an odd batch, several chunks a part; the filter gradient's parts
    summed, dx's chunks in place."""
    numba.set_num_threads(2)
    monkeypatch.setattr(cw, "MIN_CHUNK_TILES", 1)
    monkeypatch.setattr(cw, "MIN_CHUNK_OVER_U", 0)
    monkeypatch.setattr(cw, "CHUNK_BYTES", 1)
    assert cw._chunk(images, 5, 6, 9, 9, 9, 9, 2) == 1
    layer = make_conv(5, 6, 9, 9, 1, rng)
    assert cw.winograd43_workspace(images, 5, 6, 9, 9, 9, 9)["wino_V"][0] == 2  # two parts
    check_layer(layer, rng.standard_normal((images, 5, 9, 9)).astype(np.float32), 1, True, rng)


def test_winograd43_without_dx_and_without_cblas(monkeypatch: pytest.MonkeyPatch,
                                                 rng: np.random.Generator) -> None:
    """A first layer's backward (no dx) gives the same dW and db; without a CBLAS
    function the whole batch runs with numpy's batched matmul, to the same tolerance."""
    N, C, K, H, W, pad, _ = SHAPES[0]
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    dy = rng.standard_normal((N, K, H, W)).astype(np.float32)
    layer = make_conv(C, K, H, W, pad, rng)
    layer.forward(x)
    assert layer.backward(dy, need_dx=False) is None
    w, b = layer.params["W"], layer.params["b"]
    expected_dx, expected_dw, expected_db = conv2d_backward(x, w, dy, pad=pad)
    checks.assert_close(layer.grads["W"], expected_dw, what="dW", **TOLERANCE)
    checks.assert_close(layer.grads["b"], expected_db, what="db", **TOLERANCE)
    monkeypatch.setattr(cblas, "sgemm", lambda: None)
    alone = make_conv(C, K, H, W, pad, rng)
    alone.params["W"][:], alone.params["b"][:] = w, b
    checks.assert_close(alone.forward(x), conv2d_forward(x, w, b, pad=pad), what="y",
                        **TOLERANCE)
    checks.assert_close(alone.backward(dy), expected_dx, what="dx", **TOLERANCE)
    checks.assert_close(alone.grads["W"], expected_dw, what="dW", **TOLERANCE)
    checks.assert_close(alone.grads["b"], expected_db, what="db", **TOLERANCE)


# --- the CPU's row and chunk bodies against the element bodies --------------------------
@njit(fastmath=True)
def _inputs_by_tile(V, x, mask, relu, H, W, PT, PL, TH, TW):
    for i in range(x.shape[1] * x.shape[0] * TH * TW):
        winograd43.input_tile_at(i, V, x, mask, relu, H, W, PT, PL, TH, TW)


@njit(fastmath=True)
def _outputs_by_tile(y, M, b, relu, with_bias, OH, OW, TH, TW):
    for i in range(y.shape[1] * y.shape[0] * TH * TW):
        winograd43.output_tile_at(i, y, M, b, relu, with_bias, OH, OW, TH, TW)


@njit(fastmath=True)
def _output_grads_by_tile(dM, dy, y, relu, OH, OW, TH, TW):
    for i in range(dy.shape[1] * dy.shape[0] * TH * TW):
        winograd43.output_grad_tile_at(i, dM, dy, y, relu, OH, OW, TH, TW)


@njit(fastmath=True)
def _filters_by_pair(U, w2):
    for i in range(w2.shape[0] * (w2.shape[1] // 9)):
        winograd43.filter_tile_at(i, U, w2)


@njit(fastmath=True)
def _filter_grads_by_pair(dw2, dU):
    for i in range(dw2.shape[0] * (dw2.shape[1] // 9)):
        winograd43.filter_grad_at(i, dw2, dU)


def assert_near(actual: np.ndarray, expected: np.ndarray) -> None:
    """Both compiled with fastmath, reassociated otherwise: a few float32 ulps apart."""
    assert not np.isnan(expected).any()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=4e-6 * np.abs(expected).max())


@pytest.mark.parametrize("plane", [(2, 3, 7, 9, 1), (1, 2, 6, 5, 0), (2, 2, 3, 4, 2),
                                   (3, 1, 13, 13, 1), (2, 2, 14, 14, 1)])
@pytest.mark.parametrize("relu", [0, 1])
def test_the_row_bodies_compute_the_element_bodies(plane: tuple, relu: int,
                                                   rng: np.random.Generator) -> None:
    N, C, H, W, pad = plane
    OH, OW = H + 2 * pad - 2, W + 2 * pad - 2
    TH, TW = cw.tiles(OH, OW)
    T = N * TH * TW
    x = rng.standard_normal((N, C, H * W)).astype(np.float32)
    mask = rng.standard_normal((N, C, H * W)).astype(np.float32)
    by_rows, by_tile = (np.full((36, C * T), np.nan, np.float32) for _ in range(2))
    cw._winograd43_inputs(by_rows, x, mask, np.int64(relu), H, W, pad, pad, TH, TW)
    _inputs_by_tile(by_tile, x, mask, np.int64(relu), H, W, pad, pad, TH, TW)
    assert_near(by_rows, by_tile)
    # the output transform (b, ReLU; it overwrites M) and the output gradient's (the
    # ReLU mask), C as K
    M = rng.standard_normal((36, C * T)).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    y_rows, y_tile = (np.full((N, C, OH * OW), np.nan, np.float32) for _ in range(2))
    _outputs_by_tile(y_tile, M, b, np.int64(relu), np.int64(1), OH, OW, TH, TW)
    cw._winograd43_outputs(y_rows, M.copy(), b, np.int64(relu), np.int64(1), OH, OW, TH, TW)
    assert_near(y_rows, y_tile)
    dy = rng.standard_normal((N, C, OH * OW)).astype(np.float32)
    dM_rows, dM_tile = (np.full((36, C * T), np.nan, np.float32) for _ in range(2))
    cw._winograd43_output_grads(dM_rows, dy, y_tile, np.int64(relu), OH, OW, TH, TW)
    _output_grads_by_tile(dM_tile, dy, y_tile, np.int64(relu), OH, OW, TH, TW)
    assert_near(dM_rows, dM_tile)


def test_the_filter_transforms_by_rows_and_by_pair(rng: np.random.Generator) -> None:
    K, C = 3, 4
    w2 = rng.standard_normal((K, C * 9)).astype(np.float32)
    by_rows, by_pair = (np.full((36, K * C), np.nan, np.float32) for _ in range(2))
    for part in range(2):  # the driver's split among threads: every filter written once
        cw._winograd43_filters_part(part, 2, by_rows, w2)
    _filters_by_pair(by_pair, w2)
    assert_near(by_rows, by_pair)
    dU = rng.standard_normal((36, K * C)).astype(np.float32)
    dw_rows, dw_pair = (np.full((K, C * 9), np.nan, np.float32) for _ in range(2))
    cw._winograd43_filter_grads(dw_rows, dU)
    _filter_grads_by_pair(dw_pair, dU)
    np.testing.assert_array_equal(dw_rows, dw_pair)


def test_the_transforms_are_the_documented_matrices(rng: np.random.Generator) -> None:
    """One tile through the element bodies equals Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A with the
    module's matrices, that equals the 3×3 correlation of d with g; the gradient
    bodies are the transposes (A·g·Aᵀ, Gᵀ·u·G)."""
    BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                   [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], float)
    G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
    AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                   [0, 1, -1, 8, -8, 1]], float)
    d = rng.standard_normal((6, 6)).astype(np.float32)
    g = rng.standard_normal((3, 3)).astype(np.float32)
    V = np.zeros((36, 1), np.float32)
    _inputs_by_tile(V, d.reshape(1, 1, 36), d.reshape(1, 1, 36), np.int64(0), 6, 6, 0, 0, 1, 1)
    np.testing.assert_allclose(V.reshape(6, 6), BT @ d @ BT.T, atol=1e-4)
    U = np.zeros((36, 1), np.float32)
    _filters_by_pair(U, g.reshape(1, 9))
    np.testing.assert_allclose(U.reshape(6, 6), G @ g @ G.T, atol=1e-5)
    y = np.zeros((1, 1, 16), np.float32)
    _outputs_by_tile(y, (U * V).astype(np.float32), np.zeros(1, np.float32), np.int64(0),
                     np.int64(0), 4, 4, 1, 1)
    product = (U * V).reshape(6, 6).astype(np.float64)
    np.testing.assert_allclose(y.reshape(4, 4), AT @ product @ AT.T, rtol=1e-5, atol=1e-4)
    direct = [[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(4)] for i in range(4)]
    np.testing.assert_allclose(y.reshape(4, 4), direct, rtol=1e-4, atol=1e-4)
    gy = rng.standard_normal((4, 4)).astype(np.float32)
    dM = np.zeros((36, 1), np.float32)
    _output_grads_by_tile(dM, gy.reshape(1, 1, 16), gy.reshape(1, 1, 16), np.int64(0), 4, 4,
                          1, 1)
    np.testing.assert_allclose(dM.reshape(6, 6), AT.T @ gy @ AT, rtol=1e-5, atol=1e-4)
    dw = np.zeros((1, 9), np.float32)
    _filter_grads_by_pair(dw, dM)
    np.testing.assert_allclose(dw.reshape(3, 3), G.T @ dM.reshape(6, 6) @ G, rtol=1e-5,
                               atol=1e-4)


# --- the algorithm choice -----------------------------------------------------------------
def test_winograd4_applies_to_3x3_only_and_auto_follows_its_threshold(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A network-wide winograd4 runs 3×3 stride-1 convolutions as F(4×4, 3×3) and leaves
    a stride-2 or a 5×5 one on im2col; auto gives F(4×4, 3×3) the 3×3 layers the
    Winograd rule takes and WINOGRAD43_AUTO_MIN_CK allows, F(2×2, 3×3) the others."""
    net = Network.from_spec("input 13x13x3\nconv 4 3 pad=1\nconv 4 3 stride=2\n"
                            "conv 4 5 pad=2\nconv 4 3 pad=1 algo=winograd\nfc 2\nsoftmax",
                            device="cpu")
    convs = [layer for layer in net.layers if isinstance(layer, Conv2D)]
    net.conv_algo = "winograd4"
    assert [c.algorithm() for c in convs] == ["winograd4", "im2col", "im2col", "winograd"]
    net.conv_algo = "auto"
    monkeypatch.setattr(numbacnn.backends.cpu, "DIRECT_AUTO_MAX_TAPS", None)
    monkeypatch.setattr(numbacnn.backends.cpu, "WINOGRAD_AUTO_MIN_CK", 12)
    monkeypatch.setattr(numbacnn.backends.cpu, "WINOGRAD43_AUTO_MIN_CK", 13)
    assert convs[0].algorithm() == "winograd"
    monkeypatch.setattr(numbacnn.backends.cpu, "WINOGRAD43_AUTO_MIN_CK", 12)
    assert convs[0].algorithm() == "winograd4"
    monkeypatch.setattr(numbacnn.backends.cpu, "WINOGRAD43_AUTO_MIN_CK", None)
    assert convs[0].algorithm() == "winograd"
    monkeypatch.setattr(numbacnn.backends.cpu, "WINOGRAD_AUTO_MIN_CK", 13)  # no Winograd
    monkeypatch.setattr(numbacnn.backends.cpu, "WINOGRAD43_AUTO_MIN_CK", 1)
    assert convs[0].algorithm() == "im2col"


@pytest.mark.parametrize("C, K, algorithm", [(32, 64, "winograd4"), (256, 384, "winograd4"),
                                             (384, 384, "winograd4"), (384, 256, "winograd4"),
                                             (4, 4, "im2col")])
def test_auto_picks_winograd4_for_fmnist_and_alexnet(C: int, K: int, algorithm: str) -> None:
    """The CPU's measured rule (C·K ≥ 32·64): fmnist's conv2 and AlexNet's conv3–5."""
    assert numbacnn.backends.cpu.WINOGRAD43_AUTO_MIN_CK == 32 * 64
    layer = Conv2D(K, 3, pad=1, algo="auto")
    layer.build((C, 13, 13))
    assert layer.algorithm() == algorithm


@pytest.mark.parametrize("spec", ["conv 4 5 algo=winograd4", "conv 4 3 stride=2 algo=winograd4",
                                  "conv 4 3 dilation=2 algo=winograd4",
                                  "conv 4 3 groups=2 algo=winograd4"])
def test_winograd4_asked_for_a_convolution_it_cannot_run_is_an_error(spec: str) -> None:
    with pytest.raises(SpecError, match="algo=winograd4 computes 3×3 windows"):
        parse_spec(f"input 8x8x4\n{spec}\n").build()


def test_a_winograd4_layer_calls_the_winograd43_drivers(monkeypatch: pytest.MonkeyPatch,
                                                        rng: np.random.Generator) -> None:
    recorder = RecordingBackend(numbacnn.backends.cpu)
    monkeypatch.setattr(Layer, "_backend", lambda self: recorder)
    run_layer(Conv2D(3, 3, algo="winograd4"), rng)
    assert {"winograd43_workspace", "winograd43_forward", "winograd43_backward"} <= recorder.called
    assert not recorder.called & {"winograd_workspace", "winograd_forward", "conv_forward"}


def test_the_gpu_refuses_winograd4_in_one_line() -> None:
    """No GPU driver: cuda.py's refuse with one DeviceError, and its auto rule is None.
    (cuda_cpu_only.py is what cuda.py re-exports; importing cuda.py needs numba-cuda.)"""
    from numbacnn.backends import cuda_cpu_only

    assert cuda_cpu_only.WINOGRAD43_AUTO_MIN_CK is None
    for driver in (cuda_cpu_only.winograd43_workspace, cuda_cpu_only.winograd43_forward,
                   cuda_cpu_only.winograd43_backward):
        with pytest.raises(DeviceError, match="runs on the CPU only; give algo=winograd") as bad:
            driver(1, 2, 3)
        assert "\n" not in str(bad.value)
