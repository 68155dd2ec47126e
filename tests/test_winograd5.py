"""Winograd F(2×2, 5×5) on the CPU (``algo=winograd`` on a 5×5 window) against the float64
reference convolution (tests/reference_conv.py): y, dx, dW, db at odd sizes (partial
tiles), pads 0–4, odd channel counts, batch 1, the fused ReLU; the CPU's row bodies
against the element bodies the GPU runs; the algorithm choice. The CUDA kernels run the
same element bodies in tests/cuda_sim.

Tolerance: the transforms multiply by up to 5 (Bᵀ) and 16/24 (G), so the float32 error
is 10–25× im2col's: measured at most 1.6e-6 (y), 2.0e-6 (dx), 6.5e-6 (dW), 1.1e-7 (db)
of max |reference| on these shapes; 6.5e-6, 7.8e-6, 1.4e-5 and 1.4e-7 at AlexNet's conv2
(C 96, K 256, 27×27) and at C 256, K 128 (13×13); im2col's there 4.0e-7, 3.0e-7, 7.4e-7,
2.1e-7. The tolerance below, 5e-5 of max |reference| plus 1e-4 relative, has 3.5× room.
"""

from __future__ import annotations

import numeric_checks as checks
import numpy as np
import pytest
from numba import njit
from reference_conv import conv2d_backward, conv2d_forward

import numbacnn.backends.cpu
from numbacnn.backends import cpu_winograd5 as cw
from numbacnn.kernels import winograd5
from numbacnn.layers import Conv2D
from numbacnn.network import Network

TOLERANCE = {"rtol": 1e-4, "atol_scale": 5e-5}

# (N, C, K, H, W, pad, fused ReLU)
SHAPES = [(2, 3, 5, 7, 9, 2, False),     # odd sizes: partial tiles on both axes
          (1, 4, 3, 6, 5, 0, True),      # batch 1, pad 0, the ReLU's mask in backward
          (3, 7, 11, 13, 13, 2, True),   # odd channel counts
          (2, 1, 6, 8, 8, 4, False),     # one input channel; pad 4 (output larger than input)
          (2, 17, 9, 4, 3, 2, False),    # a plane smaller than a tile
          (2, 5, 4, 9, 8, 1, True)]      # pad 1: dx's padding 3


def make_conv(C: int, K: int, H: int, W: int, pad: int, algo: str,
              rng: np.random.Generator) -> Conv2D:
    layer = Conv2D(K, 5, pad=pad, algo=algo)
    layer.build((C, H, W))
    layer.init_params(rng)
    layer.params["b"][:] = rng.standard_normal(K).astype(np.float32)
    return layer


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}C{}K{}-{}x{}-p{}-relu{:d}".format(*s))
def test_winograd5_matches_the_float64_reference(shape: tuple, rng: np.random.Generator) -> None:
    N, C, K, H, W, pad, relu = shape
    layer = make_conv(C, K, H, W, pad, "winograd", rng)
    layer.fused_relu = relu
    assert layer.algorithm() == "winograd" and layer.uses_winograd5
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    dy = rng.standard_normal((N, *layer.output_shape)).astype(np.float32)
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


def test_winograd5_without_dx_and_without_cblas(monkeypatch: pytest.MonkeyPatch,
                                                rng: np.random.Generator) -> None:
    """A first layer's backward (no dx) gives the same dW and db; without a CBLAS
    function the whole batch runs with numpy's batched matmul, to the same tolerance."""
    from numbacnn.backends import cblas

    N, C, K, H, W, pad, _ = SHAPES[0]
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    dy = rng.standard_normal((N, K, H, W)).astype(np.float32)
    layer = make_conv(C, K, H, W, pad, "winograd", rng)
    layer.forward(x)
    assert layer.backward(dy, need_dx=False) is None
    w, b = layer.params["W"], layer.params["b"]
    expected_dx, expected_dw, expected_db = conv2d_backward(x, w, dy, pad=pad)
    checks.assert_close(layer.grads["W"], expected_dw, what="dW", **TOLERANCE)
    checks.assert_close(layer.grads["b"], expected_db, what="db", **TOLERANCE)
    monkeypatch.setattr(cblas, "sgemm", lambda: None)
    alone = make_conv(C, K, H, W, pad, "winograd", rng)
    alone.params["W"][:], alone.params["b"][:] = w, b
    checks.assert_close(alone.forward(x), conv2d_forward(x, w, b, pad=pad), what="y",
                        **TOLERANCE)
    checks.assert_close(alone.backward(dy), expected_dx, what="dx", **TOLERANCE)
    checks.assert_close(alone.grads["W"], expected_dw, what="dW", **TOLERANCE)


# --- the CPU's row bodies against the element bodies (the GPU's) ------------------------
@njit(fastmath=True)
def _inputs_by_tile(V, x, mask, relu, H, W, PT, PL, TH, TW):
    for i in range(2 * x.shape[1] * x.shape[0] * TH * TW):
        winograd5.input_tile_at(i, V, x, mask, relu, H, W, PT, PL, TH, TW)


@njit(fastmath=True)
def _outputs_by_tile(y, M, b, relu, with_bias, OH, OW, TH, TW):
    for i in range(y.shape[1] * y.shape[0] * TH * TW):
        winograd5.output_tile_at(i, y, M, b, relu, with_bias, OH, OW, TH, TW)


@njit(fastmath=True)
def _output_grads_by_tile(dM, dy, y, relu, OH, OW, TH, TW):
    for i in range(dy.shape[1] * dy.shape[0] * TH * TW):
        winograd5.output_grad_tile_at(i, dM, dy, y, relu, OH, OW, TH, TW)


@njit(fastmath=True)
def _filters_by_pair(U, w2, flip):
    for i in range(w2.shape[0] * (w2.shape[1] // 25)):
        winograd5.filter_tile_at(i, U, w2, flip)


def assert_near(actual: np.ndarray, expected: np.ndarray) -> None:
    """Both compiled with fastmath, reassociated otherwise: a few float32 ulps apart."""
    assert not np.isnan(expected).any()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-6 * np.abs(expected).max())


@pytest.mark.parametrize("plane", [(2, 3, 7, 9, 2), (1, 2, 6, 5, 0), (2, 2, 4, 3, 4),
                                   (3, 1, 13, 13, 1)])
@pytest.mark.parametrize("relu", [0, 1])
def test_the_row_bodies_compute_the_element_bodies(plane: tuple, relu: int,
                                                   rng: np.random.Generator) -> None:
    N, C, H, W, pad = plane
    OH, OW = H + 2 * pad - 4, W + 2 * pad - 4
    TH, TW = cw.tiles(OH, OW)
    T = N * TH * TW
    x = rng.standard_normal((N, C, H * W)).astype(np.float32)
    mask = rng.standard_normal((N, C, H * W)).astype(np.float32)
    by_rows, by_tile = (np.full((36, C * T), np.nan, np.float32) for _ in range(2))
    cw._winograd5_inputs(by_rows, x, mask, np.int64(relu), H, W, pad, pad, TH, TW)
    _inputs_by_tile(by_tile, x, mask, np.int64(relu), H, W, pad, pad, TH, TW)
    assert_near(by_rows, by_tile)
    # the output transform (b, ReLU) and the output gradient's (ReLU mask), C as K
    M = rng.standard_normal((36, C * T)).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    y_rows, y_tile = (np.full((N, C, OH * OW), np.nan, np.float32) for _ in range(2))
    cw._winograd5_outputs(y_rows, M, b, np.int64(relu), np.int64(1), OH, OW, TH, TW)
    _outputs_by_tile(y_tile, M, b, np.int64(relu), np.int64(1), OH, OW, TH, TW)
    assert_near(y_rows, y_tile)
    dy = rng.standard_normal((N, C, OH * OW)).astype(np.float32)
    dM_rows, dM_tile = (np.full((36, C * T), np.nan, np.float32) for _ in range(2))
    cw._winograd5_output_grads(dM_rows, dy, y_tile, np.int64(relu), OH, OW, TH, TW)
    _output_grads_by_tile(dM_tile, dy, y_tile, np.int64(relu), OH, OW, TH, TW)
    assert_near(dM_rows, dM_tile)


def test_the_filter_transform_by_rows_and_by_pair(rng: np.random.Generator) -> None:
    """The CPU's filter rows equal the element body; the element body's ``flip`` (the
    GPU's dx filters, C × K) equals it on the rotated, transposed filters."""
    K, C = 3, 4
    w2 = rng.standard_normal((K, C * 25)).astype(np.float32)
    by_rows, by_pair = (np.full((36, K * C), np.nan, np.float32) for _ in range(2))
    cw._winograd5_filters(by_rows, w2)
    _filters_by_pair(by_pair, w2, np.int64(0))
    assert_near(by_rows, by_pair)
    flipped = np.ascontiguousarray(w2.reshape(K, C, 5, 5)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    expected, by_flip = (np.full((36, C * K), np.nan, np.float32) for _ in range(2))
    _filters_by_pair(expected, flipped.reshape(C, K * 25), np.int64(0))
    _filters_by_pair(by_flip, w2, np.int64(1))
    np.testing.assert_array_equal(by_flip, expected)


def test_the_transforms_are_the_documented_matrices(rng: np.random.Generator) -> None:
    """One tile through the element bodies equals Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A with the
    module's matrices, and that equals the 5×5 correlation of d with g."""
    BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                   [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], float)
    G = np.array([[1 / 4, 0, 0, 0, 0], [-1 / 6] * 5, [-1 / 6, 1 / 6, -1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6, 1 / 3, 2 / 3], [1 / 24, -1 / 12, 1 / 6, -1 / 3, 2 / 3],
                  [0, 0, 0, 0, 1]])
    AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 1]], float)
    d = rng.standard_normal((6, 6)).astype(np.float32)
    g = rng.standard_normal((5, 5)).astype(np.float32)
    V = np.zeros((36, 1), np.float32)
    _inputs_by_tile(V, d.reshape(1, 1, 36), d.reshape(1, 1, 36), np.int64(0), 6, 6, 0, 0, 1, 1)
    np.testing.assert_allclose(V.reshape(6, 6), BT @ d @ BT.T, atol=1e-4)
    U = np.zeros((36, 1), np.float32)
    _filters_by_pair(U, g.reshape(1, 25), np.int64(0))
    np.testing.assert_allclose(U.reshape(6, 6), G @ g @ G.T, atol=1e-5)
    y = np.zeros((1, 1, 4), np.float32)
    _outputs_by_tile(y, (U * V).astype(np.float32), np.zeros(1, np.float32), np.int64(0),
                     np.int64(0), 2, 2, 1, 1)
    product = (U * V).reshape(6, 6).astype(np.float64)
    np.testing.assert_allclose(y.reshape(2, 2), AT @ product @ AT.T, rtol=1e-5, atol=1e-4)
    direct = [[np.sum(d[i:i + 5, j:j + 5] * g) for j in range(2)] for i in range(2)]
    np.testing.assert_allclose(y.reshape(2, 2), direct, rtol=1e-4, atol=1e-4)


# --- the algorithm choice -----------------------------------------------------------------
def test_winograd_applies_to_5x5_and_auto_follows_the_5x5_threshold(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A network-wide winograd runs 5×5 stride-1 convolutions as F(2×2, 5×5) and leaves
    a 5×5 stride-2 one on im2col; auto follows WINOGRAD5_AUTO_MIN_CK, not the 3×3's."""
    net = Network.from_spec("input 13x13x3\nconv 4 5 pad=2\nconv 4 5 stride=2\n"
                            "conv 4 3 pad=1\nfc 2\nsoftmax", device="cpu")
    convs = [layer for layer in net.layers if isinstance(layer, Conv2D)]
    net.conv_algo = "winograd"
    assert [c.algorithm() for c in convs] == ["winograd", "im2col", "winograd"]
    assert [c.uses_winograd5 for c in convs] == [True, False, False]
    assert [c.uses_winograd for c in convs] == [False, False, True]
    net.conv_algo = "auto"
    monkeypatch.setattr(numbacnn.backends.cpu, "WINOGRAD_AUTO_MIN_CK", 1)
    monkeypatch.setattr(numbacnn.backends.cpu, "WINOGRAD5_AUTO_MIN_CK", 13)
    assert [c.algorithm() for c in convs] == ["im2col", "im2col", "winograd"]
    monkeypatch.setattr(numbacnn.backends.cpu, "WINOGRAD5_AUTO_MIN_CK", 12)
    assert [c.algorithm() for c in convs] == ["winograd", "im2col", "winograd"]


def test_auto_picks_winograd_for_alexnets_conv2_and_not_for_cifar10s_conv1(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU's measured rules (C·K ≥ 32·64 both): AlexNet's conv2 and cifar10's conv2
    run Winograd under auto, as F(3×3, 5×5) (winograd3), as F(2×2, 5×5) without that
    rule; cifar10's conv1 (3 channels) stays on im2col."""
    assert numbacnn.backends.cpu.WINOGRAD5_AUTO_MIN_CK == 32 * 64
    assert numbacnn.backends.cpu.WINOGRAD35_AUTO_MIN_CK == 32 * 64
    for C, K, algorithm in ((96, 256, "winograd3"), (32, 64, "winograd3"), (3, 32, "im2col")):
        layer = Conv2D(K, 5, pad=2, algo="auto")
        layer.build((C, 8, 8))
        assert layer.algorithm() == algorithm, (C, K)
    monkeypatch.setattr(numbacnn.backends.cpu, "WINOGRAD35_AUTO_MIN_CK", None)
    for C, K, algorithm in ((96, 256, "winograd"), (32, 64, "winograd"), (3, 32, "im2col")):
        layer = Conv2D(K, 5, pad=2, algo="auto")
        layer.build((C, 8, 8))
        assert layer.algorithm() == algorithm, (C, K)
