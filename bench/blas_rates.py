"""One-thread SGEMM rates of MKL (the ``mkl`` wheel) and numpy's BLAS on the products
fmnist's and AlexNet's layers make, side by side in one process.

    python bench/blas_rates.py [--markdown]

Each product is the row-major ``cblas_sgemm`` the CPU drivers call (``backends/cblas.py``),
on one thread (the drivers make one call per part from their own threads), best of 5
repeats. The shapes are per chunk or per part as the drivers cut them, named by layer.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from numbacnn.backends import cblas  # noqa: E402

# name, transpose a, transpose b, M, N, K
PRODUCTS = [
    ("fmnist conv2 forward, W @ cols (16 images)", False, False, 64, 196 * 16, 288),
    ("fmnist conv2 dW, dY @ colsᵀ", False, True, 64, 288, 196 * 16),
    ("fmnist conv2 dcols, Wᵀ @ dY", True, False, 288, 196 * 16, 64),
    ("fmnist conv1 forward (K = 9)", False, False, 32, 784 * 16, 9),
    ("fmnist fc 128, x @ Wᵀ", False, True, 128, 128, 3136),
    ("fmnist conv2 Winograd, one of 16", False, False, 64, 49 * 16, 32),
    ("AlexNet conv1 forward", False, False, 96, 3025, 363),
    ("AlexNet conv1 dW", False, True, 96, 363, 3025),
    ("AlexNet conv2 forward", False, False, 256, 729, 2400),
    ("AlexNet conv2 dcols", True, False, 2400, 729, 256),
    ("AlexNet conv3 forward", False, False, 384, 169, 2304),
    ("AlexNet fc6 forward, half of the columns", False, True, 16, 2048, 9216),
    ("AlexNet fc6 dx, half of the columns", False, False, 16, 4608, 4096),
    ("AlexNet fc6 dW, half of the rows", True, False, 2048, 9216, 16),
]


def seconds(function, ta: bool, tb: bool, M: int, N: int, K: int) -> float:
    """Best of 5 repeats of one product, in seconds; checked against numpy."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((K, M) if ta else (M, K), dtype=np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N), dtype=np.float32)
    c = np.zeros((M, N), np.float32)
    args = (cblas.ROW_MAJOR, cblas.TRANS if ta else cblas.NO_TRANS,
            cblas.TRANS if tb else cblas.NO_TRANS, M, N, K, 1.0, a.ctypes.data, a.shape[1],
            b.ctypes.data, b.shape[1], 0.0, c.ctypes.data, N)
    function(*args)
    reps = max(1, int(2e8 / (2 * M * N * K)))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(reps):
            function(*args)
        best = min(best, (time.perf_counter() - start) / reps)
    expected = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b)
    assert np.allclose(c, expected, rtol=1e-3, atol=1e-2), "wrong product"
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--markdown", action="store_true", help="print a RESULTS.md table")
    args = p.parse_args(argv)
    import threadpoolctl

    threadpoolctl.threadpool_limits(1)
    mkl, numpy_blas = cblas.library_sgemm("mkl"), cblas.library_sgemm("numpy")
    if mkl is None or numpy_blas is None:
        print("blas_rates: needs MKL (pip install mkl) and numpy's CBLAS", file=sys.stderr)
        return 2
    rows = []
    for name, ta, tb, M, N, K in PRODUCTS:
        flop = 2.0 * M * N * K
        ours, theirs = seconds(mkl, ta, tb, M, N, K), seconds(numpy_blas, ta, tb, M, N, K)
        rows.append((name, f"{M}×{N}×{K}", flop / theirs / 1e9, flop / ours / 1e9,
                     theirs / ours))
    if args.markdown:
        print("| product | M×N×K | numpy BLAS GFLOP/s | MKL GFLOP/s | MKL ÷ numpy |")
        print("| --- | --- | --- | --- | --- |")
        for name, shape, a, b, r in rows:
            print(f"| {name} | {shape} | {a:.0f} | {b:.0f} | {r:.2f} |")
    else:
        for name, shape, a, b, r in rows:
            print(f"{name:44s} {shape:>15s}  numpy {a:6.1f}  MKL {b:6.1f} GFLOP/s  {r:4.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
