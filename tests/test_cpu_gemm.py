"""The CPU backend's SGEMM: one CBLAS call per block of out on numba's threads."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from numbacnn.backends import cblas, cpu

# (M, N, K): split by rows (M ≥ N), by columns (a fully connected layer at batch 16),
# too small to split, an odd split, and empty
SHAPES = [(384, 270, 230), (16, 600, 500), (5, 4, 3), (101, 37, 50), (0, 5, 3)]


@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_matches_the_float64_product(M: int, N: int, K: int, trans_a: bool,
                                          trans_b: bool) -> None:
    rng = np.random.default_rng(M + 7 * N + 13 * K)
    A = rng.standard_normal((M, K), dtype=np.float32)
    B = rng.standard_normal((K, N), dtype=np.float32)
    a = np.ascontiguousarray(A.T) if trans_a else A
    b = np.ascontiguousarray(B.T) if trans_b else B
    out = np.full((M, N), np.nan, np.float32)  # every block must be written
    cpu.gemm(a, b, out, trans_a=trans_a, trans_b=trans_b)
    np.testing.assert_allclose(out, A.astype(np.float64) @ B, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(cblas.sgemm() is None, reason="no CBLAS function in numpy's BLAS")
@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
def test_large_products_run_in_parts_on_numba_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = cpu._gemm_in_parts
    monkeypatch.setattr(cpu, "_gemm_in_parts",
                        lambda *args: (calls.append(args[-1]), real(*args))[1])
    before = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        out = np.empty((256, 300), np.float32)
        a = np.ones((256, 200), np.float32)
        cpu.gemm(a, np.ones((200, 300), np.float32), out)
    finally:
        numba.set_num_threads(before)
    assert calls == [2]
    assert np.all(out == 200.0)


def test_views_that_are_not_contiguous_fall_back_to_numpy() -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 80), dtype=np.float32)[:, ::2]  # 64 × 40, strided
    b = rng.standard_normal((40, 70), dtype=np.float32)
    out = np.empty((64, 70), np.float32)
    cpu.gemm(a, b, out)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(cblas.sgemm() is None, reason="no CBLAS function in numpy's BLAS")
def test_a_short_batch_times_transposed_weights_runs_as_the_transposed_product(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A fully connected forward at batch 16, x (16 × K) @ Wᵀ: the weights become the left
    operand (M, N of the call swapped), and out is still x @ Wᵀ."""
    shapes: list[tuple[int, int]] = []
    real = cpu._gemm_in_parts
    monkeypatch.setattr(cpu, "_gemm_in_parts",
                        lambda *args: (shapes.append((args[3], args[4])), real(*args))[1])
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 300), dtype=np.float32)
    w = rng.standard_normal((700, 300), dtype=np.float32)
    out = np.full((16, 700), np.nan, np.float32)
    cpu.gemm(x, w, out, trans_b=True)
    assert shapes == [(700, 16)]
    np.testing.assert_allclose(out, x.astype(np.float64) @ w.T, rtol=1e-4, atol=1e-4)
