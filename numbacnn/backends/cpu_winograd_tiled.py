"""The Python side of the CPU's larger-tile Winograd drivers, F(4×4, 3×3)
(``cpu_winograd43.py``) and F(3×3, 5×5) (``cpu_winograd35.py``): their workspace, the
parts started on threads, and the whole batch in one chunk with numpy's batched matmul
when there is no CBLAS function.

Each variant keeps its compiled loops (the transforms, the parts, the finish) and hands
them here as :class:`TiledLoops`, built in a function of its own module that names them,
so the warm-up (``training/warmup.py``) still finds them from the variant's drivers.
Layouts: V, M (and dM) P × (C·T), P × (K·T) a chunk per part, U P × (K·C), P the
positions of the transformed tile; x N×C×(H·W), w2 K × C·FH·FW, y and dy N×K×OH×OW
passed flat.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numba
import numpy as np

from numbacnn.backends import cblas, cpu_threads
from numbacnn.backends.cpu_winograd import pitch

NO_RELU = np.int64(0)
WITH_BIAS = np.int64(1)


class TiledLoops(NamedTuple):
    """A variant's constants and compiled loops (the signatures of ``cpu_winograd43.py``'s)."""

    positions: int  # (m + r − 1)²
    bias_position: int  # the position of A·g·Aᵀ that is the tile's sum
    tiles: Callable[[int, int], tuple[int, int]]  # (OH, OW) → (TH, TW)
    chunk: Callable[..., int]  # (N, C, K, H, W, OH, OW, parts) → images a chunk
    filters_part: Any
    inputs: Any
    outputs: Any
    output_grads: Any
    filter_grads: Any
    input_grads: Any
    forward_part: Any
    backward_part: Any
    finish_part: Any
    finish_bias: Any


def workspace(loops: TiledLoops, N: int, C: int, K: int, H: int, W: int, OH: int,
              OW: int) -> dict[str, tuple]:
    """Shapes of the float32 buffers for a batch of N: per part a chunk's V and M and its
    gradient sums, and the transformed filters U."""
    TH, TW = loops.tiles(OH, OW)
    parts = numba.get_num_threads() if cblas.sgemm() is not None else 1
    chunk = loops.chunk(N, C, K, H, W, OH, OW, parts) if cblas.sgemm() is not None else N
    P = loops.positions
    return {"wino_V": (parts, P * pitch(chunk * C * TH * TW)),  # V, and dV for dx
            "wino_M": (parts, P * pitch(chunk * K * TH * TW)),
            "wino_U": (P, pitch(K * C)), "wino_dU": (parts, P, pitch(K * C)), "wino_db": (parts, K)}


def forward(loops: TiledLoops, x: np.ndarray, H: int, W: int, w2: np.ndarray, b: np.ndarray,
            y: np.ndarray, ws: dict[str, np.ndarray], geo: tuple, OH: int, OW: int,
            relu: int) -> None:
    """y = the convolution of x with w2 plus b, then ReLU when ``relu``: the filters
    transformed by the threads, then each part's chunks."""
    N, C, K = x.shape[0], x.shape[1], w2.shape[0]
    PT, PL = geo[4], geo[5]
    U, V, M = ws["wino_U"], ws["wino_V"], ws["wino_M"]
    y3 = y.reshape(N, K, OH * OW)
    cpu_threads.run_parts(loops.filters_part, V.shape[0], U, w2)
    sgemm = cblas.sgemm()
    if sgemm is None:  # one chunk, numpy's batched matmul
        TH, TW = loops.tiles(OH, OW)
        T = N * TH * TW
        V2, M2 = V[0].reshape(loops.positions, -1), M[0].reshape(loops.positions, -1)
        loops.inputs(V2, x, x, NO_RELU, H, W, PT, PL, TH, TW)
        np.matmul(U[:, :K * C].reshape(-1, K, C), V2[:, :C * T].reshape(-1, C, T),
                  out=M2[:, :K * T].reshape(-1, K, T))
        loops.outputs(y3, M2, b, relu, WITH_BIAS, OH, OW, TH, TW)
        return
    chunk = loops.chunk(N, C, K, H, W, OH, OW, V.shape[0])
    with cblas.one_blas_thread():
        cpu_threads.run_parts(loops.forward_part, V.shape[0], chunk, sgemm, x, H, W, U, b, y3,
                              V, M, PT, PL, OH, OW, relu)


def backward(loops: TiledLoops, x: np.ndarray, H: int, W: int, w2: np.ndarray,
             y: np.ndarray, dy: np.ndarray, dw2: np.ndarray, db: np.ndarray,
             dx: np.ndarray | None, ws: dict[str, np.ndarray], geo: tuple, OH: int, OW: int,
             relu: int) -> None:
    """dw2, db and, unless it is None, dx from dy, with the forward pass's input x and
    output y (its ReLU mask) and its U (backward follows the forward of the same batch
    with the same weights): each part's chunks, then the parts' sums finished in order."""
    N, K = x.shape[0], w2.shape[0]
    PT, PL = geo[4], geo[5]
    U, V, M, dU, dbp = ws["wino_U"], ws["wino_V"], ws["wino_M"], ws["wino_dU"], ws["wino_db"]
    y3, dy3 = y.reshape(N, K, OH * OW), dy.reshape(N, K, OH * OW)
    sgemm = cblas.sgemm()
    if sgemm is None:  # one chunk, numpy's batched matmul
        TH, TW = loops.tiles(OH, OW)
        loops.output_grads(M[0].reshape(loops.positions, -1), dy3, y3, relu, OH, OW, TH, TW)
        backward_whole_from_grads(loops, x, H, W, U, dw2, db, dx, V, M, dU[0], PT, PL, OH, OW)
        return
    chunk = loops.chunk(N, x.shape[1], K, H, W, OH, OW, V.shape[0])
    with cblas.one_blas_thread():
        cpu_threads.run_parts(loops.backward_part, V.shape[0], chunk, sgemm, x, H, W, U, y3,
                              dy3, x if dx is None else dx, dx is not None, V, M, dU, dbp, PT,
                              PL, OH, OW, relu)
    cpu_threads.run_parts(loops.finish_part, dU.shape[0], dw2, dU)
    loops.finish_bias(db, dbp)


def backward_whole_from_grads(loops: TiledLoops, x: np.ndarray, H: int, W: int, U: np.ndarray,
                              dw2: np.ndarray, db: np.ndarray, dx: np.ndarray | None,
                              V: np.ndarray, M: np.ndarray, dU: np.ndarray, PT: int, PL: int,
                              OH: int, OW: int) -> None:
    """Backward without CBLAS, the whole batch in one chunk, once the output gradients'
    tiles (dM) are in M[0]: db from the tile sums, dU[ξ] = dM[ξ] @ V[ξ]ᵀ, dW = Gᵀ·dU·G,
    and dx: dV[ξ] = U[ξ]ᵀ @ dM[ξ], then each tile's B·dV·Bᵀ."""
    N, C, K = x.shape[0], x.shape[1], db.shape[0]
    TH, TW = loops.tiles(OH, OW)
    T = N * TH * TW
    dM, V2 = M[0].reshape(loops.positions, -1), V[0].reshape(loops.positions, -1)
    db[:] = dM[loops.bias_position, :K * T].reshape(K, T).sum(axis=1)
    loops.inputs(V2, x, x, NO_RELU, H, W, PT, PL, TH, TW)
    np.matmul(dM[:, :K * T].reshape(-1, K, T),
              V2[:, :C * T].reshape(-1, C, T).transpose(0, 2, 1),
              out=dU[:, :K * C].reshape(-1, K, C))
    loops.filter_grads(dw2, dU)
    if dx is not None:
        np.matmul(U[:, :K * C].reshape(-1, K, C).transpose(0, 2, 1),
                  dM[:, :K * T].reshape(-1, K, T), out=V2[:, :C * T].reshape(-1, C, T))
        loops.input_grads(dx, V2, H, W, PT, PL, TH, TW)
