"""The GPU's Winograd F(2×2, 5×5) convolution over the whole batch (bodies:
``numbacnn/kernels/winograd5.py``, the same the CPU's ``cpu_winograd5.py`` runs).

Built as ``cuda_winograd.py`` with 36 positions: the filter transform (one thread per
filter pair), the input transform (two threads per input tile and channel), the 36
products as one ``cublasSgemmStridedBatched`` (``cuda_winograd.batched_gemm``), the
output transform with the bias and the fused ReLU; backward the output-gradient
transform, dU[ξ] = dM[ξ] @ V[ξ]ᵀ, the filter gradient's transform, the bias gradient as
the row sums of dM[7] (``row_sum``, passed in by ``cuda.py``), and dx through the
forward transforms with the flipped filters. Re-exported by ``cuda.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import config, cuda

from numbacnn.backends.cuda_grid import grid_stride, python_bodies
from numbacnn.backends.cuda_winograd import batched_gemm
from numbacnn.kernels import winograd5

if config.ENABLE_CUDASIM:  # the simulator runs kernels as Python: call the bodies' Python source
    winograd5 = python_bodies(winograd5)  # noqa: F811

P = 36  # positions of the 6×6 transformed tile
NO_RELU = NO_BIAS = NO_FLIP = np.int64(0)
WITH_BIAS = FLIP = np.int64(1)


def _tiles(OH: int, OW: int) -> int:
    """The 2×2 tiles covering OH×OW."""
    return (OH + 1) // 2 * ((OW + 1) // 2)


def winograd5_workspace(N: int, C: int, K: int, H: int, W: int, OH: int,
                        OW: int) -> dict[str, tuple]:
    """Shapes of the float32 buffers of :func:`winograd5_forward` and
    ``winograd5_backward``: the whole batch's V and M (for y's tiles or dx's; flat), the
    transformed filters U and their gradient dU (36 × K·C)."""
    tf, tb = N * _tiles(OH, OW), N * _tiles(H, W)
    return {"wino_V": (P * max(C * tf, K * tb),), "wino_M": (P * max(K * tf, C * tb),),
            "wino_U": (P, K * C), "wino_dU": (P, K * C)}


def _planes(buffer: Any, width: int) -> Any:
    """The first 36·width floats of a flat buffer as 36 × width."""
    return buffer[:P * width].reshape(P, width)


def winograd5_forward(x: Any, H: int, W: int, w2: Any, b: Any, y: Any, ws: dict[str, Any],
                      geo: tuple, OH: int, OW: int, relu: int) -> None:
    """y (N×K×OH×OW, passed flat) = the 5×5 convolution of x (N×C×(H·W)) with w2
    (K × C·25) plus b, then ReLU when ``relu``."""
    N, C, K = x.shape[0], x.shape[1], w2.shape[0]
    TH, TW = (OH + 1) // 2, (OW + 1) // 2
    T = N * TH * TW
    U, V, M = ws["wino_U"], ws["wino_V"], ws["wino_M"]
    winograd5_filters(K * C, U, w2, NO_FLIP)
    Vf, Mf = _planes(V, C * T), _planes(M, K * T)
    winograd5_inputs(2 * C * T, Vf, x, x, NO_RELU, H, W, geo[4], geo[5], TH, TW)
    batched_gemm(U.reshape(P, K, C), Vf.reshape(P, C, T), Mf.reshape(P, K, T))
    winograd5_outputs(K * T, y.reshape(N, K, OH * OW), Mf, b, np.int64(relu), WITH_BIAS, OH,
                      OW, TH, TW)


def winograd5_backward(row_sum: Any, x: Any, H: int, W: int, w2: Any, y: Any, dy: Any,
                       dw2: Any, db: Any, dx: Any, ws: dict[str, Any], geo: tuple, OH: int,
                       OW: int, relu: int) -> None:
    """dw2 (K × C·25), db (K) and, unless it is None, dx (N×C×(H·W)) from dy (passed flat
    like y); ``row_sum``: the backend's row-sum driver."""
    N, C, K = x.shape[0], x.shape[1], w2.shape[0]
    PT, PL = geo[4], geo[5]
    TH, TW = (OH + 1) // 2, (OW + 1) // 2
    T = N * TH * TW
    U, V, M, dU = ws["wino_U"], ws["wino_V"], ws["wino_M"], ws["wino_dU"]
    y3, dy3 = y.reshape(N, K, OH * OW), dy.reshape(N, K, OH * OW)
    mask = np.int64(relu)
    dM, Vf = _planes(M, K * T), _planes(V, C * T)
    winograd5_output_grads(K * T, dM, dy3, y3, mask, OH, OW, TH, TW)
    row_sum(K, db, dM[7].reshape(K, T))  # position 7 of A·g·Aᵀ is the tile's sum
    winograd5_inputs(2 * C * T, Vf, x, x, NO_RELU, H, W, PT, PL, TH, TW)
    batched_gemm(dM.reshape(P, K, T), Vf.reshape(P, C, T), dU.reshape(P, K, C), trans_b=True)
    winograd5_filter_grads(K * C, dw2, dU)
    if dx is None:
        return
    BH, BW = (H + 1) // 2, (W + 1) // 2
    Tb = N * BH * BW
    Vb, Mb = _planes(V, K * Tb), _planes(M, C * Tb)
    winograd5_filters(K * C, U, w2, FLIP)  # C × K: dx's filters, rotated by 180°
    winograd5_inputs(2 * K * Tb, Vb, dy3, y3, mask, OH, OW, 4 - PT, 4 - PL, BH, BW)
    batched_gemm(U.reshape(P, C, K), Vb.reshape(P, K, Tb), Mb.reshape(P, C, Tb))
    winograd5_outputs(C * Tb, dx, Mb, db, NO_RELU, NO_BIAS, H, W, BH, BW)


def backend_drivers(row_sum: Callable[[], Any]) -> tuple[Any, ...]:
    """What ``cuda.py`` exports: (WINOGRAD5_AUTO_MIN_CK: None, no measurement on a GPU
    yet; the workspace, forward and backward drivers), backward with the row sums of
    ``row_sum()`` (the backend's driver, defined after the export)."""
    def backward(*args: Any) -> None:
        """:func:`winograd5_backward` with the backend's row sums."""
        winograd5_backward(row_sum(), *args)

    return None, winograd5_workspace, winograd5_forward, backward


# --- kernels: one thread per tile or filter pair ---------------------------------------
@grid_stride
def winograd5_filters(n, U, w2, flip):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        winograd5.filter_tile_at(i, U, w2, flip)


@grid_stride
def winograd5_inputs(n, V, x, mask, relu, H, W, PT, PL, TH, TW):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        winograd5.input_tile_at(i, V, x, mask, relu, H, W, PT, PL, TH, TW)


@grid_stride
def winograd5_outputs(n, y, M, b, relu, with_bias, OH, OW, TH, TW):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        winograd5.output_tile_at(i, y, M, b, relu, with_bias, OH, OW, TH, TW)


@grid_stride
def winograd5_output_grads(n, dM, dy, y, relu, OH, OW, TH, TW):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        winograd5.output_grad_tile_at(i, dM, dy, y, relu, OH, OW, TH, TW)


@grid_stride
def winograd5_filter_grads(n, dw2, dU):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        winograd5.filter_grad_at(i, dw2, dU)
