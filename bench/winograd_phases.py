"""Where the CPU Winograd driver's time goes, phase by phase (one thread).

For each case the driver's own chunk of images (``cpu_winograd._chunk``) is run through
each phase alone, over the whole batch chunk by chunk: the input transform, the 16
products, the output transform (forward); the output-gradient transform, the same pass
over dy also making dx's input tiles (it replaces the first), the input transform again,
the 16 dU products, dx's 16 products and its output transform (backward); the sum counts
both gradient passes. Each figure is the minimum CPU time
(``time.process_time``) of the repetitions, in ms per batch:

    NUMBA_NUM_THREADS=1 python bench/winograd_phases.py [--reps 9]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from numba import njit

from numbacnn.backends import cblas
from numbacnn.backends import cpu_winograd as cw

# name → (batch, C, K, H (= W))
CASES = {"fmnist conv2": (64, 32, 64, 14), "fmnist conv2 b128": (128, 32, 64, 14),
         "alexnet conv4": (16, 384, 384, 13)}


@njit(nogil=True, cache=True)
def _products(sgemm, A, B, Cm, rows, cols, inner, trans_b, beta):
    """16 SGEMMs: Cm[ξ] (rows × cols) = A[ξ] (rows × inner) @ B[ξ] (or B[ξ]ᵀ); with
    beta < 0, A[FLIPPED[ξ]]ᵀ @ B[ξ] (dx's products) and beta 0."""
    for xi in range(16):
        if beta < np.float32(0.0):
            sgemm(cblas.ROW_MAJOR, cblas.TRANS, cblas.NO_TRANS, rows, cols, inner,
                  np.float32(1.0), A[cw.FLIPPED[xi]].ctypes, rows, B[xi].ctypes, cols,
                  np.float32(0.0), Cm[xi].ctypes, cols)
        elif trans_b:
            sgemm(cblas.ROW_MAJOR, cblas.NO_TRANS, cblas.TRANS, rows, cols, inner,
                  np.float32(1.0), A[xi].ctypes, inner, B[xi].ctypes, inner, beta,
                  Cm[xi].ctypes, cols)
        else:
            sgemm(cblas.ROW_MAJOR, cblas.NO_TRANS, cblas.NO_TRANS, rows, cols, inner,
                  np.float32(1.0), A[xi].ctypes, inner, B[xi].ctypes, cols, beta,
                  Cm[xi].ctypes, cols)


def phases(N: int, C: int, K: int, H: int, rng: np.random.Generator) -> dict:
    """{phase: callable running it over the whole batch, chunk by chunk}."""
    sgemm = cblas.sgemm()
    W, OH, OW = H, H, H
    TH, TW = cw.tiles(OH, OW)
    chunk = cw._chunk(N, C, K, H, W, OH, OW, 1)
    x = rng.standard_normal((N, C, H * W)).astype(np.float32)
    y = np.maximum(rng.standard_normal((N, K, OH * OW)).astype(np.float32), 0)
    dy = rng.standard_normal((N, K, OH * OW)).astype(np.float32)
    dx = np.empty_like(x)
    b = np.zeros(K, np.float32)
    T = chunk * TH * TW
    U = rng.standard_normal((16, cw.pitch(K * C))).astype(np.float32)
    V = np.empty((16, cw.pitch(max(C, K) * T)), np.float32)  # the driver's pitches
    M = np.empty((16, cw.pitch(max(C, K) * T)), np.float32)
    dU = np.zeros((16, cw.pitch(K * C)), np.float32)
    one, zero = np.float32(1.0), np.float32(0.0)
    starts = range(0, N, chunk)

    def each(fn):
        def run():
            for n0 in starts:
                fn(n0, min(N, n0 + chunk) - n0)
        return run

    def v(width, m):
        return V

    def mm(width, m):
        return M

    w2 = rng.standard_normal((K, C * 9)).astype(np.float32)
    dw2 = np.empty_like(w2)
    return {
        "chunk": chunk,
        "fwd filter transform": lambda: cw._winograd_filters(U, w2),
        "fwd input transform": each(lambda n0, m: cw._winograd_inputs(
            v(C, m), x[n0:n0 + m], x[n0:n0 + m], cw.NO_RELU, H, W, 1, 1, TH, TW)),
        "fwd 16 products": each(lambda n0, m: _products(
            sgemm, U, v(C, m), mm(K, m), K, m * TH * TW, C, False, zero)),
        "fwd output transform": each(lambda n0, m: cw._winograd_outputs(
            y.copy()[n0:n0 + m] if False else dx[:0] if False else _yout[n0:n0 + m],
            mm(K, m), b, np.int64(1), cw.WITH_BIAS, OH, OW, TH, TW)),
        "bwd filter-grad transform": lambda: cw._winograd_filter_grads(dw2, dU),
        "bwd output-grad transform": each(lambda n0, m: cw._winograd_grad_tiles(
            mm(K, m), v(K, m), dy[n0:n0 + m], y[n0:n0 + m], np.int64(1), False, H, W, 1, 1, OH,
            OW)),
        "bwd input transform": each(lambda n0, m: cw._winograd_inputs(
            v(C, m), x[n0:n0 + m], x[n0:n0 + m], cw.NO_RELU, H, W, 1, 1, TH, TW)),
        "bwd 16 dU products": each(lambda n0, m: _products(
            sgemm, mm(K, m), v(C, m), dU, K, C, m * TH * TW, True, one)),
        "bwd same with dx's input": each(lambda n0, m: cw._winograd_grad_tiles(
            mm(K, m), v(K, m), dy[n0:n0 + m], y[n0:n0 + m], np.int64(1), True, H, W, 1, 1, OH,
            OW)),
        "bwd dx 16 products": each(lambda n0, m: _products(
            sgemm, U, v(K, m), mm(C, m), C, m * TH * TW, K, False, -one)),
        "bwd dx output transform": each(lambda n0, m: cw._winograd_outputs(
            dx[n0:n0 + m], mm(C, m), b, cw.NO_RELU, cw.NO_BIAS, H, W, TH, TW)),
    }


_yout = np.empty(0, np.float32)


def main() -> None:
    global _yout
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--chunk-mb", type=float, help="CHUNK_BYTES in MB (default: the driver's)")
    parser.add_argument("--min-tiles", type=int, help="MIN_CHUNK_TILES (default: the driver's)")
    options = parser.parse_args()
    if options.min_tiles is not None:
        cw.MIN_CHUNK_TILES = options.min_tiles
    if options.chunk_mb:
        cw.CHUNK_BYTES = int(options.chunk_mb * (1 << 20))
    rng = np.random.default_rng(0)
    with cblas.one_blas_thread():
        for name, (N, C, K, H) in CASES.items():
            _yout = np.empty((N, K, H * H), np.float32)
            runs = phases(N, C, K, H, rng)
            chunk = runs.pop("chunk")
            best = {}
            for _ in range(options.reps):
                for phase, run in runs.items():
                    started = time.process_time()
                    run()
                    spent = time.process_time() - started
                    best[phase] = min(best.get(phase, spent), spent)
            print(f"{name} (batch {N}, {C} → {K}, {H}×{H}, chunk {chunk} images, "
                  f"CHUNK_BYTES {cw.CHUNK_BYTES / (1 << 20):g} MB), ms:")
            for phase, ms in best.items():
                print(f"  {phase:27s} {1e3 * ms:7.2f}")
            print(f"  {'sum':27s} {1e3 * sum(best.values()):7.2f}")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
