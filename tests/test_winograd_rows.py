"""The CPU's Winograd row bodies (``kernels/winograd_rows.py``, run by the loops of
``backends/cpu_winograd.py``) against the element bodies the GPU runs
(``kernels/winograd.py``), called tile by tile: the input, output and output-gradient
transforms at odd plane sizes (partial tiles), pads 0–2, with and without the ReLU mask (the
output gradient's tiles and dx's input tiles from one pass over dy);
the filter transform, and the flipped filters as the CPU reads them (``FLIPPED``).

The row bodies write each tile's arithmetic in the element body's order, but both are
compiled with fastmath, and LLVM reassociates the sums of the vectorized loop otherwise
than the scalar one: values differ by a float32 ulp or two (4.8e-7 at 2.0 seen). The
tolerance, 1e-6 of max |expected| (≈ 8 ulps of the largest value), is far below what a
wrong tap, sign or position gives (order 1). The flipped filters are the unflipped ones
with positions permuted (G·rot180(g)·Gᵀ = P·G·g·Gᵀ·P): the same tolerance. Areas the
bodies must not touch (past the columns in use, outside the output) stay NaN.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from numbacnn.backends import cpu_winograd as cw
from numbacnn.kernels import winograd

# (N, C, H, W, pad): odd sizes, a plane smaller than two tiles, pad 0 (output smaller)
PLANES = [(2, 3, 7, 9, 1), (1, 2, 6, 5, 0), (2, 2, 4, 3, 2), (3, 1, 13, 13, 1)]


@njit(fastmath=True)
def _inputs_by_tile(V, x, mask, relu, H, W, PT, PL, TH, TW):
    for i in range(x.shape[1] * x.shape[0] * TH * TW):
        winograd.input_tile_at(i, V, x, mask, relu, H, W, PT, PL, TH, TW)


@njit(fastmath=True)
def _outputs_by_tile(y, M, b, relu, with_bias, OH, OW, TH, TW):
    for i in range(y.shape[1] * y.shape[0] * TH * TW):
        winograd.output_tile_at(i, y, M, b, relu, with_bias, OH, OW, TH, TW)


@njit(fastmath=True)
def _output_grads_by_tile(dM, dy, y, relu, OH, OW, TH, TW):
    for i in range(dy.shape[1] * dy.shape[0] * TH * TW):
        winograd.output_grad_tile_at(i, dM, dy, y, relu, OH, OW, TH, TW)


@njit(fastmath=True)
def _filters_by_pair(U, w2, flip):
    for i in range(w2.shape[0] * (w2.shape[1] // 9)):
        winograd.filter_tile_at(i, U, w2, flip)


def assert_near(actual: np.ndarray, expected: np.ndarray) -> None:
    assert not np.isnan(expected).any()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6 * np.abs(expected).max())


def _plane_case(N: int, C: int, H: int, W: int, rng: np.random.Generator):
    x = rng.standard_normal((N, C, H * W)).astype(np.float32)
    mask = rng.standard_normal((N, C, H * W)).astype(np.float32)
    return x, mask


@pytest.mark.parametrize("relu", [0, 1])
@pytest.mark.parametrize("case", PLANES, ids=lambda s: "N{}C{}-{}x{}-p{}".format(*s))
def test_input_rows_equal_the_element_body(case, relu, rng: np.random.Generator) -> None:
    N, C, H, W, pad = case
    OH, OW = H + 2 * pad - 2, W + 2 * pad - 2
    TH, TW = cw.tiles(OH, OW)
    x, mask = _plane_case(N, C, H, W, rng)
    width = C * N * TH * TW
    rows = np.full((16, cw.pitch(width)), np.nan, np.float32)
    tiles = np.full((16, width), np.nan, np.float32)
    cw._winograd_inputs(rows, x, mask, np.int64(relu), H, W, pad, pad, TH, TW)
    _inputs_by_tile(tiles, x, mask, np.int64(relu), H, W, pad, pad, TH, TW)
    assert_near(rows[:, :width], tiles)
    assert np.isnan(rows[:, width:]).all()


@pytest.mark.parametrize("relu, with_bias", [(0, 0), (1, 1), (0, 1)])
@pytest.mark.parametrize("case", PLANES, ids=lambda s: "N{}K{}-{}x{}-p{}".format(*s))
def test_output_rows_equal_the_element_body(case, relu, with_bias,
                                            rng: np.random.Generator) -> None:
    N, K, OH, OW, _ = case
    TH, TW = cw.tiles(OH, OW)
    width = K * N * TH * TW
    M = np.full((16, cw.pitch(width)), np.nan, np.float32)
    M[:, :width] = rng.standard_normal((16, width))
    b = rng.standard_normal(K).astype(np.float32)
    rows = np.full((N, K, OH * OW), np.nan, np.float32)
    tiles = np.full((N, K, OH * OW), np.nan, np.float32)
    cw._winograd_outputs(rows, M, b, np.int64(relu), np.int64(with_bias), OH, OW, TH, TW)
    _outputs_by_tile(tiles, M[:, :width].copy(), b, np.int64(relu), np.int64(with_bias), OH,
                     OW, TH, TW)
    assert_near(rows, tiles)


@pytest.mark.parametrize("relu", [0, 1])
@pytest.mark.parametrize("case", PLANES, ids=lambda s: "N{}K{}-{}x{}-p{}".format(*s))
def test_gradient_tiles_equal_the_element_bodies(case, relu, rng: np.random.Generator) -> None:
    """One pass over dy gives the output gradient's tiles dM and dx's input tiles Vb
    (dy padded 2 − pad): each as the element bodies compute it."""
    N, K, H, W, pad = case
    OH, OW = H + 2 * pad - 2, W + 2 * pad - 2
    TH, TW = cw.tiles(OH, OW)
    BH, BW = cw.tiles(H, W)
    dy, y = _plane_case(N, K, OH, OW, rng)
    width, width_b = K * N * TH * TW, K * N * BH * BW
    rows = np.full((16, cw.pitch(width)), np.nan, np.float32)
    rows_b = np.full((16, cw.pitch(width_b)), np.nan, np.float32)
    tiles = np.full((16, width), np.nan, np.float32)
    tiles_b = np.full((16, width_b), np.nan, np.float32)
    cw._winograd_grad_tiles(rows, rows_b, dy, y, np.int64(relu), True, H, W, pad, pad, OH, OW)
    _output_grads_by_tile(tiles, dy, y, np.int64(relu), OH, OW, TH, TW)
    _inputs_by_tile(tiles_b, dy, y, np.int64(relu), OH, OW, 2 - pad, 2 - pad, BH, BW)
    assert_near(rows[:, :width], tiles)
    assert np.isnan(rows[:, width:]).all()
    assert_near(rows_b[:, :width_b], tiles_b)
    assert np.isnan(rows_b[:, width_b:]).all()
    untouched = np.full_like(rows_b, np.nan)  # without dx, Vb is left alone
    cw._winograd_grad_tiles(rows, untouched, dy, y, np.int64(relu), False, H, W, pad, pad, OH,
                            OW)
    assert np.isnan(untouched).all()


def test_parts_split_the_batch_evenly_in_even_chunks() -> None:
    """Each part gets its share of the batch (±1 image) in chunks of at most ``chunk``
    images, equal but for the last; every image once, in order."""
    for N, parts, chunk in [(16, 2, 6), (128, 2, 6), (1, 2, 4), (7, 3, 2), (16, 1, 12)]:
        seen = []
        for part in range(parts):
            lo, hi, size = cw._part_chunks(part, parts, N, chunk)
            assert hi - lo in (N // parts, -(-N // parts))
            assert 1 <= size <= chunk
            starts = list(range(lo, hi, size))
            assert len(starts) == -(-(hi - lo) // chunk)
            seen += [n for n0 in starts for n in range(n0, min(hi, n0 + size))]
        assert seen == list(range(N))
    assert cw._part_chunks(1, 2, 16, 6) == (8, 16, 4)  # not 10 images against 6


@pytest.mark.parametrize("K, C", [(5, 3), (1, 7), (16, 16)])
def test_filter_rows_and_flipped_positions_equal_the_element_body(
        K: int, C: int, rng: np.random.Generator) -> None:
    w2 = rng.standard_normal((K, C * 9)).astype(np.float32)
    rows = np.full((16, cw.pitch(K * C)), np.nan, np.float32)
    cw._winograd_filters(rows, w2)
    tiles = np.full((16, K * C), np.nan, np.float32)
    _filters_by_pair(tiles, w2, np.int64(0))
    assert_near(rows[:, :K * C], tiles)
    flipped = np.full((16, C * K), np.nan, np.float32)  # column c·K + k
    _filters_by_pair(flipped, w2, np.int64(1))
    as_read = rows[cw.FLIPPED, :K * C].reshape(16, K, C).transpose(0, 2, 1).reshape(16, C * K)
    assert_near(as_read, flipped)


def test_pitch_is_an_odd_number_of_cache_lines() -> None:
    for width in (1, 16, 17, 147456, 150528):
        p = cw.pitch(width)
        assert p >= width and p % 16 == 0 and (p // 16) % 2 == 1 and p - width < 48
