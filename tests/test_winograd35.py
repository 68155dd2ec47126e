"""Winograd F(3×3, 5×5) on the CPU (``cpu_winograd35.py``, the drivers called directly)
against the float64 reference convolution (tests/reference_conv.py): y, dx, dW, db at
odd sizes (partial 3×3 tiles), pads 0–3, odd channel counts, batch 1, the fused ReLU,
chunks and parts on two threads, the no-CBLAS path, repeatability bit for bit; the
CPU's row and chunk bodies against the element bodies; the documented matrices (the
layer, the algorithm choice and the GPU's refusal: tests/test_conv_algorithm.py).

Tolerance: G's fractions (down to 1/120) and Aᵀ's 4s; the float32 error at AlexNet's conv2
(batch 16, 96 → 256, 27×27, pad 2, the fused ReLU; weights ~1/√(25·C)), max |error| /
max |reference|: 6.2e-6 (y), 7.2e-6 (dx), 7.5e-6 (dW), 9.0e-8 (db), F(2×2, 5×5)'s there
5.4e-6, 5.7e-6, 1.0e-5, 1.1e-7 (the drivers against this reference, one run).
The tolerance below, 5e-5 of max |reference| plus 1e-4 relative (as F(2×2, 5×5)'s and
F(4×4, 3×3)'s), has 6.6× room there; test_alexnet_conv2_channels checks the error
stays under a third of it at those channel counts.
"""

from __future__ import annotations

import numba
import numeric_checks as checks
import numpy as np
import pytest
from numba import njit
from reference_conv import conv2d_backward, conv2d_forward

from numbacnn.backends import cblas
from numbacnn.backends import cpu_winograd35 as cw
from numbacnn.kernels import winograd7_rows, winograd35

TOLERANCE = {"rtol": 1e-4, "atol_scale": 5e-5}

# (N, C, K, H, W, pad, fused ReLU)
SHAPES = [(2, 3, 5, 7, 9, 2, False),     # odd sizes: partial tiles on both axes
          (1, 4, 3, 8, 6, 0, True),      # batch 1, pad 0, the ReLU's mask in backward
          (3, 7, 11, 13, 13, 3, True),   # odd channel counts, pad 3 (output larger)
          (2, 1, 6, 5, 5, 1, False),     # one input channel, pad 1
          (2, 17, 9, 5, 6, 2, False),    # a plane a tile wide
          (2, 9, 16, 27, 27, 2, True)]   # AlexNet's conv2 plane: 9×9 whole tiles


def make_params(C: int, K: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    w = (rng.standard_normal((K, C, 5, 5)) / np.sqrt(25 * C)).astype(np.float32)
    return w, rng.standard_normal(K).astype(np.float32)


def run_drivers(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int, relu: bool,
                dy: np.ndarray, need_dx: bool = True) -> tuple:
    """(y, dx, dw, db) of one forward and one backward pass of the drivers (x N×C×H×W)."""
    N, C, H, W = x.shape
    K = w.shape[0]
    OH, OW = H + 2 * pad - 4, W + 2 * pad - 4
    ws = {key: np.full(shape, np.nan, np.float32)
          for key, shape in cw.winograd35_workspace(N, C, K, H, W, OH, OW).items()}
    x3, w2 = x.reshape(N, C, H * W), w.reshape(K, C * 25)
    geo = (1, 1, 5, 5, pad, pad)
    y = np.full(N * K * OH * OW, np.nan, np.float32)
    cw.winograd35_forward(x3, H, W, w2, b, y, ws, geo, OH, OW, np.int64(relu))
    dw2, db = np.full_like(w2, np.nan), np.full_like(b, np.nan)
    dx = np.full_like(x3, np.nan) if need_dx else None
    cw.winograd35_backward(x3, H, W, w2, y, dy.reshape(-1), dw2, db, dx, ws, geo, OH, OW,
                           np.int64(relu))
    return (y.reshape(N, K, OH, OW), None if dx is None else dx.reshape(x.shape),
            dw2.reshape(w.shape), db)


def errors(x: np.ndarray, K: int, pad: int, relu: bool, rng: np.random.Generator,
           need_dx: bool = True) -> dict[str, float]:
    """max |error| / max |reference| of y, dx, dW, db of K filters on x (N×C×H×W);
    asserts the tolerance."""
    N, C = x.shape[:2]
    w, b = make_params(C, K, rng)
    OH, OW = x.shape[2] + 2 * pad - 4, x.shape[3] + 2 * pad - 4
    dy = rng.standard_normal((N, w.shape[0], OH, OW)).astype(np.float32)
    y, dx, dw, db = run_drivers(x, w, b, pad, relu, dy, need_dx)
    x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
    expected = conv2d_forward(x64, w64, b64, pad=pad)
    if relu:  # dy masked where the driver's y is 0: a float32 y and the float64 one
        expected = np.maximum(expected, 0)  # may fall on either side of 0 near it
        dy = dy * (y > 0)
    expected_dx, expected_dw, expected_db = conv2d_backward(x64, w64, dy.astype(np.float64),
                                                            pad=pad)
    found = {}
    for what, actual, ref in (("y", y, expected), ("dx", dx, expected_dx),
                              ("dW", dw, expected_dw), ("db", db, expected_db)):
        if actual is None:
            continue
        checks.assert_close(actual, ref, what=what, **TOLERANCE)
        found[what] = float(np.abs(actual - ref).max() / np.abs(ref).max())
    return found



@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}C{}K{}-{}x{}-p{}-relu{:d}".format(*s))
def test_winograd35_matches_the_float64_reference(shape: tuple, rng: np.random.Generator) -> None:
    N, C, K, H, W, pad, relu = shape
    errors(rng.standard_normal((N, C, H, W)).astype(np.float32), K, pad, relu, rng)


def test_alexnet_conv2_channels(rng: np.random.Generator) -> None:
    """AlexNet's conv2 channels (96 → 256, 27×27, pad 2, ReLU) at batch 2: the errors
    measured at batch 16 (module docstring), under a third of the tolerance's 5e-5."""
    x = rng.standard_normal((2, 96, 27, 27)).astype(np.float32)
    found = errors(x, 256, 2, True, rng)
    assert max(found.values()) < 5e-5 / 3, found


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
    monkeypatch.setattr(cw, "CHUNK_BYTES", 1)
    assert cw._chunk(images, 5, 6, 9, 9, 9, 9, 2) == 1
    assert cw.winograd35_workspace(images, 5, 6, 9, 9, 9, 9)["wino_V"][0] == 2  # two parts
    errors(rng.standard_normal((images, 5, 9, 9)).astype(np.float32), 6, 2, True, rng)


def test_winograd35_without_dx_and_without_cblas(monkeypatch: pytest.MonkeyPatch,
                                                 rng: np.random.Generator) -> None:
    """A first layer's backward (no dx) gives dW and db to the same tolerance; without a
    CBLAS function the whole batch runs with numpy's batched matmul."""
    N, C, K, H, W, pad, relu = SHAPES[2]
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    assert set(errors(x, K, pad, relu, rng, need_dx=False)) == {"y", "dW", "db"}
    monkeypatch.setattr(cblas, "sgemm", lambda: None)
    assert cw.winograd35_workspace(N, C, K, H, W, H, W)["wino_V"][0] == 1  # one part
    errors(x, K, pad, relu, rng)


@pytest.mark.skipif(cblas.sgemm() is None, reason="no CBLAS function in numpy's BLAS")
def test_repeatable_bit_for_bit(threads, rng: np.random.Generator) -> None:
    """The same pass twice gives the same bits (two threads, parts added in order), and
    the finish split among 1 or 3 threads writes the same dW."""
    numba.set_num_threads(2)
    N, C, K, H, W, pad, relu = SHAPES[2]
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w, b = make_params(C, K, rng)
    dy = rng.standard_normal((N, K, H + 2 * pad - 4, W + 2 * pad - 4)).astype(np.float32)
    first, second = (run_drivers(x, w, b, pad, relu, dy) for _ in range(2))
    for one, two in zip(first, second, strict=True):
        np.testing.assert_array_equal(one, two)
    dU = rng.standard_normal((3, 49, K * C)).astype(np.float32)
    alone, split = (np.full((K, C * 25), np.nan, np.float32) for _ in range(2))
    cw._winograd35_finish_part(0, 1, alone, dU.copy())
    shared = dU.copy()  # each thread adds the parts' sums of its own filters into part 0's
    for part in range(3):
        cw._winograd35_finish_part(part, 3, split, shared)
    np.testing.assert_array_equal(alone, split)


# --- the CPU's row and chunk bodies against the element bodies --------------------------
@njit(fastmath=True)
def _inputs_by_tile(V, x, mask, relu, H, W, PT, PL, TH, TW):
    for i in range(x.shape[1] * x.shape[0] * TH * TW):
        winograd35.input_tile_at(i, V, x, mask, relu, H, W, PT, PL, TH, TW)


@njit(fastmath=True)
def _outputs_by_tile(y, M, b, relu, with_bias, OH, OW, TH, TW):
    for i in range(y.shape[1] * y.shape[0] * TH * TW):
        winograd35.output_tile_at(i, y, M, b, relu, with_bias, OH, OW, TH, TW)


@njit(fastmath=True)
def _output_grads_by_tile(dM, dy, y, relu, OH, OW, TH, TW):
    for i in range(dy.shape[1] * dy.shape[0] * TH * TW):
        winograd35.output_grad_tile_at(i, dM, dy, y, relu, OH, OW, TH, TW)


@njit(fastmath=True)
def _filters_by_pair(U, w2):
    for i in range(w2.shape[0] * (w2.shape[1] // 25)):
        winograd35.filter_tile_at(i, U, w2)


@njit(fastmath=True)
def _filter_grads_by_pair(dw2, dU):
    for i in range(dw2.shape[0] * (dw2.shape[1] // 25)):
        winograd35.filter_grad_at(i, dw2, dU)


def assert_near(actual: np.ndarray, expected: np.ndarray) -> None:
    """Both compiled with fastmath, reassociated otherwise: a few float32 ulps apart."""
    assert not np.isnan(expected).any()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=4e-6 * np.abs(expected).max())


@pytest.mark.parametrize("plane", [(2, 3, 7, 9, 2), (1, 2, 6, 5, 0), (2, 2, 5, 6, 3),
                                   (3, 1, 13, 13, 1), (1, 2, 27, 27, 2)])
@pytest.mark.parametrize("relu", [0, 1])
def test_the_row_bodies_compute_the_element_bodies(plane: tuple, relu: int,
                                                   rng: np.random.Generator) -> None:
    N, C, H, W, pad = plane
    OH, OW = H + 2 * pad - 4, W + 2 * pad - 4
    TH, TW = cw.tiles(OH, OW)
    T = N * TH * TW
    x = rng.standard_normal((N, C, H * W)).astype(np.float32)
    mask = rng.standard_normal((N, C, H * W)).astype(np.float32)
    by_rows, by_tile = (np.full((49, C * T), np.nan, np.float32) for _ in range(2))
    cw._winograd35_inputs(by_rows, x, mask, np.int64(relu), H, W, pad, pad, TH, TW)
    _inputs_by_tile(by_tile, x, mask, np.int64(relu), H, W, pad, pad, TH, TW)
    assert_near(by_rows, by_tile)
    # the output transform (b, ReLU; it overwrites M) and the output gradient's (the
    # ReLU mask), C as K
    M = rng.standard_normal((49, C * T)).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    y_rows, y_tile = (np.full((N, C, OH * OW), np.nan, np.float32) for _ in range(2))
    _outputs_by_tile(y_tile, M, b, np.int64(relu), np.int64(1), OH, OW, TH, TW)
    cw._winograd35_outputs(y_rows, M.copy(), b, np.int64(relu), np.int64(1), OH, OW, TH, TW)
    assert_near(y_rows, y_tile)
    dy = rng.standard_normal((N, C, OH * OW)).astype(np.float32)
    dM_rows, dM_tile = (np.full((49, C * T), np.nan, np.float32) for _ in range(2))
    cw._winograd35_output_grads(dM_rows, dy, y_tile, np.int64(relu), OH, OW, TH, TW)
    _output_grads_by_tile(dM_tile, dy, y_tile, np.int64(relu), OH, OW, TH, TW)
    assert_near(dM_rows, dM_tile)


def test_the_filter_transforms_by_rows_and_by_pair(rng: np.random.Generator) -> None:
    K, C = 3, 4
    w2 = rng.standard_normal((K, C * 25)).astype(np.float32)
    by_rows, by_pair = (np.full((49, K * C), np.nan, np.float32) for _ in range(2))
    for part in range(2):  # the driver's split among threads: every filter written once
        cw._winograd35_filters_part(part, 2, by_rows, w2)
    _filters_by_pair(by_pair, w2)
    assert_near(by_rows, by_pair)
    dU = rng.standard_normal((49, K * C)).astype(np.float32)
    dw_rows, dw_pair = (np.full((K, C * 25), np.nan, np.float32) for _ in range(2))
    cw._winograd35_filter_grads(dw_rows, dU)
    _filter_grads_by_pair(dw_pair, dU)
    np.testing.assert_array_equal(dw_rows, dw_pair)


BT = np.array([[4, -8, -5, 10, 1, -2, 0], [0, -4, 4, 9, -1, -2, 0], [0, -4, 12, -7, -3, 2, 0],
               [0, 2, -3, -4, 3, 2, 0], [0, 2, -5, 0, 5, -2, 0], [0, 4, 0, -5, 0, 1, 0],
               [0, -4, 8, 5, -10, -1, 2]], float)
G = np.array([[1 / 4, 0, 0, 0, 0], [1 / 6] * 5, [1 / 18, -1 / 18, 1 / 18, -1 / 18, 1 / 18],
              [1 / 72, 1 / 36, 1 / 18, 1 / 9, 2 / 9], [1 / 120, -1 / 60, 1 / 30, -1 / 15, 2 / 15],
              [32 / 45, 16 / 45, 8 / 45, 4 / 45, 2 / 45], [0, 0, 0, 0, 1 / 2]])
AT = np.array([[1, 1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 1 / 2, 0], [0, 1, 1, 4, 4, 1 / 4, 1]])


def test_the_documented_matrices_compute_the_convolution(rng: np.random.Generator) -> None:
    """Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A is the 3×3 correlation of a 7×7 d with a 5×5 g, exactly
    (float64, to rounding)."""
    for _ in range(3):
        d, g = rng.standard_normal((7, 7)), rng.standard_normal((5, 5))
        y = AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T
        direct = [[np.sum(d[i:i + 5, j:j + 5] * g) for j in range(3)] for i in range(3)]
        np.testing.assert_allclose(y, direct, rtol=0, atol=1e-12)


def test_the_transforms_are_the_documented_matrices(rng: np.random.Generator) -> None:
    """One tile through the element bodies: Bᵀ·d·B, G·g·Gᵀ, Aᵀ·m·A and the gradient
    bodies' transposes (A·g·Aᵀ, Gᵀ·u·G) with the module's matrices; the 1-D factored
    transforms against their matrices column by column."""
    d = rng.standard_normal((7, 7)).astype(np.float32)
    g = rng.standard_normal((5, 5)).astype(np.float32)
    V = np.zeros((49, 1), np.float32)
    _inputs_by_tile(V, d.reshape(1, 1, 49), d.reshape(1, 1, 49), np.int64(0), 7, 7, 0, 0, 1, 1)
    np.testing.assert_allclose(V.reshape(7, 7), BT @ d @ BT.T, rtol=1e-5, atol=1e-3)
    U = np.zeros((49, 1), np.float32)
    _filters_by_pair(U, g.reshape(1, 25))
    np.testing.assert_allclose(U.reshape(7, 7), G @ g @ G.T, rtol=1e-5, atol=1e-5)
    y = np.zeros((1, 1, 9), np.float32)
    product = (U * V).astype(np.float32)
    _outputs_by_tile(y, product, np.zeros(1, np.float32), np.int64(0), np.int64(0), 3, 3, 1, 1)
    np.testing.assert_allclose(y.reshape(3, 3), AT @ product.reshape(7, 7) @ AT.T, rtol=1e-5,
                               atol=1e-3)
    direct = [[np.sum(d[i:i + 5, j:j + 5] * g) for j in range(3)] for i in range(3)]
    np.testing.assert_allclose(y.reshape(3, 3), direct, rtol=1e-4, atol=1e-3)
    gy = rng.standard_normal((3, 3)).astype(np.float32)
    dM = np.zeros((49, 1), np.float32)
    _output_grads_by_tile(dM, gy.reshape(1, 1, 9), gy.reshape(1, 1, 9), np.int64(0), 3, 3,
                          1, 1)
    np.testing.assert_allclose(dM.reshape(7, 7), AT.T @ gy @ AT, rtol=1e-5, atol=1e-4)
    dw = np.zeros((1, 25), np.float32)
    _filter_grads_by_pair(dw, dM)
    np.testing.assert_allclose(dw.reshape(5, 5), G.T @ dM.reshape(7, 7) @ G, rtol=1e-5,
                               atol=1e-4)
    for body, matrix in ((winograd35.bt7, BT), (winograd35.b7, BT.T), (winograd35.g5, G),
                         (winograd35.gt5, G.T), (winograd35.at3, AT), (winograd35.a3, AT.T)):
        columns = [body(*(np.float32(v) for v in unit)) for unit in np.eye(matrix.shape[1])]
        np.testing.assert_allclose(np.array(columns, float).T, matrix, rtol=1e-6, atol=0)


@pytest.mark.parametrize("step", [3, 5])
def test_the_alpha_7_rows_take_the_tile_step(step: int, rng: np.random.Generator) -> None:
    """winograd7_rows at step 3 (F(3×3, 5×5)) and 5 (a later F(5×5, 3×3)): V's column tw
    is Bᵀ·d·B of the 7×7 tile at columns step·tw, and the input gradient sums each
    tile's B·dv·Bᵀ at its place."""
    TW = 3
    P = rng.standard_normal((7, step * (TW - 1) + 7)).astype(np.float32)
    V = np.full((49, TW), np.nan, np.float32)
    Q = np.empty((7, P.shape[1]), np.float32)
    winograd7_rows.input_tile_row(V, 0, P, 0, TW, Q, step)
    for tw in range(TW):
        tile = P[:, step * tw:step * tw + 7].astype(np.float64)
        np.testing.assert_allclose(V[:, tw].reshape(7, 7), BT @ tile @ BT.T, rtol=1e-5,
                                   atol=1e-3)
    dV = rng.standard_normal((49, TW)).astype(np.float32)
    dP = np.zeros_like(P)
    winograd7_rows.input_grad_tile_row(dP, 0, dV, 0, TW, Q, step)
    expected = np.zeros(P.shape)
    for tw in range(TW):
        expected[:, step * tw:step * tw + 7] += BT.T @ dV[:, tw].reshape(7, 7) @ BT
    np.testing.assert_allclose(dP, expected, rtol=1e-5, atol=1e-3)
