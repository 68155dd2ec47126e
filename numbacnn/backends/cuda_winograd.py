"""The GPU's Winograd F(2×2, 3×3) convolution over the whole batch (bodies:
``numbacnn/kernels/winograd.py``, the same the CPU's ``cpu_winograd.py`` runs).

Forward: the filter transform (one thread per filter pair), the input transform (one
thread per input tile and channel), the 16 products M[ξ] = U[ξ] @ V[ξ] as one
``cublasSgemmStridedBatched`` (or 16 calls of the numba SGEMM, ``gemm_choice.py``) and
the output transform with the bias and the fused ReLU (one thread per output tile and
filter). Backward: the output-gradient transform, dU[ξ] = dM[ξ] @ V[ξ]ᵀ, the filter
gradient's transform, the bias gradient as the row sums of dM[5] (``row_sum``, passed in
by ``cuda.py``), and dx through the forward transforms with the flipped filters.
Re-exported by ``cuda.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import config, cuda

from numbacnn.backends import cublas
from numbacnn.backends import cuda_dry_run as dry
from numbacnn.backends.cuda_dry_run import counters
from numbacnn.backends.cuda_gemm import gemm
from numbacnn.backends.cuda_grid import grid_stride, python_bodies
from numbacnn.backends.gemm_choice import gemm_name
from numbacnn.kernels import winograd

if config.ENABLE_CUDASIM:  # the simulator runs kernels as Python: call the bodies' Python source
    winograd = python_bodies(winograd)  # noqa: F811

# int64 flags, as the CPU passes them (one compiled kernel for either value)
NO_RELU = NO_BIAS = NO_FLIP = np.int64(0)
WITH_BIAS = FLIP = np.int64(1)


def _tiles(OH: int, OW: int) -> int:
    """The 2×2 tiles covering OH×OW."""
    return (OH + 1) // 2 * ((OW + 1) // 2)


def winograd_workspace(N: int, C: int, K: int, H: int, W: int, OH: int,
                       OW: int) -> dict[str, tuple]:
    """Shapes of the float32 buffers of :func:`winograd_forward` and
    ``winograd_backward``: the whole batch's V and M (for y's tiles or, in backward,
    dx's; flat), the transformed filters U and their gradient dU (16 × K·C)."""
    tf, tb = N * _tiles(OH, OW), N * _tiles(H, W)
    return {"wino_V": (16 * max(C * tf, K * tb),), "wino_M": (16 * max(K * tf, C * tb),),
            "wino_U": (16, K * C), "wino_dU": (16, K * C)}


def _planes(buffer: Any, width: int) -> Any:
    """The first 16·width floats of a flat buffer as 16 × width."""
    return buffer[:16 * width].reshape(16, width)


def batched_gemm(a: Any, b: Any, out: Any, trans_a: bool = False, trans_b: bool = False) -> None:
    """out[ξ] = op(a[ξ]) @ op(b[ξ]) for the 16 ξ: one strided-batched cuBLAS call, or the
    numba SGEMM 16 times."""
    if gemm_name() == "cublas":
        counters["launches"] += 1
        if not dry.active():
            cublas.sgemm_strided_batched(a, b, out, trans_a, trans_b)
        return
    for xi in range(out.shape[0]):
        gemm(a[xi], b[xi], out[xi], trans_a, trans_b)


def winograd_forward(x: Any, H: int, W: int, w2: Any, b: Any, y: Any, ws: dict[str, Any],
                     geo: tuple, OH: int, OW: int, relu: int) -> None:
    """y (N×K×OH×OW, passed flat) = the convolution of x (N×C×(H·W)) with w2 (K × C·9)
    plus b, then ReLU when ``relu``."""
    N, C, K = x.shape[0], x.shape[1], w2.shape[0]
    TH, TW = (OH + 1) // 2, (OW + 1) // 2
    T = N * TH * TW
    U, V, M = ws["wino_U"], ws["wino_V"], ws["wino_M"]
    winograd_filters(K * C, U, w2, NO_FLIP)
    Vf, Mf = _planes(V, C * T), _planes(M, K * T)
    winograd_inputs(C * T, Vf, x, x, NO_RELU, H, W, geo[4], geo[5], TH, TW)
    batched_gemm(U.reshape(16, K, C), Vf.reshape(16, C, T), Mf.reshape(16, K, T))
    winograd_outputs(K * T, y.reshape(N, K, OH * OW), Mf, b, np.int64(relu), WITH_BIAS, OH, OW,
                     TH, TW)


def winograd_backward(row_sum: Any, x: Any, H: int, W: int, w2: Any, y: Any, dy: Any, dw2: Any,
                      db: Any, dx: Any, ws: dict[str, Any], geo: tuple, OH: int, OW: int,
                      relu: int) -> None:
    """dw2 (K × C·9), db (K) and, unless it is None, dx (N×C×(H·W)) from dy (passed flat
    like y); ``row_sum``: the backend's row-sum driver."""
    N, C, K = x.shape[0], x.shape[1], w2.shape[0]
    PT, PL = geo[4], geo[5]
    TH, TW = (OH + 1) // 2, (OW + 1) // 2
    T = N * TH * TW
    U, V, M, dU = ws["wino_U"], ws["wino_V"], ws["wino_M"], ws["wino_dU"]
    y3, dy3 = y.reshape(N, K, OH * OW), dy.reshape(N, K, OH * OW)
    mask = np.int64(relu)
    dM, Vf = _planes(M, K * T), _planes(V, C * T)
    winograd_output_grads(K * T, dM, dy3, y3, mask, OH, OW, TH, TW)
    row_sum(K, db, dM[5].reshape(K, T))  # position 5 of A·g·Aᵀ is the tile's sum
    winograd_inputs(C * T, Vf, x, x, NO_RELU, H, W, PT, PL, TH, TW)
    batched_gemm(dM.reshape(16, K, T), Vf.reshape(16, C, T), dU.reshape(16, K, C),
                 trans_b=True)
    winograd_filter_grads(K * C, dw2, dU)
    if dx is None:
        return
    BH, BW = (H + 1) // 2, (W + 1) // 2
    Tb = N * BH * BW
    Vb, Mb = _planes(V, K * Tb), _planes(M, C * Tb)
    winograd_filters(K * C, U, w2, FLIP)  # C × K: dx's filters, rotated by 180°
    winograd_inputs(K * Tb, Vb, dy3, y3, mask, OH, OW, 2 - PT, 2 - PL, BH, BW)
    batched_gemm(U.reshape(16, C, K), Vb.reshape(16, K, Tb), Mb.reshape(16, C, Tb))
    winograd_outputs(C * Tb, dx, Mb, db, NO_RELU, NO_BIAS, H, W, BH, BW)


# --- kernels: one thread per tile or filter pair ---------------------------------------
@grid_stride
def winograd_filters(n, U, w2, flip):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        winograd.filter_tile_at(i, U, w2, flip)


@grid_stride
def winograd_inputs(n, V, x, mask, relu, H, W, PT, PL, TH, TW):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        winograd.input_tile_at(i, V, x, mask, relu, H, W, PT, PL, TH, TW)


@grid_stride
def winograd_outputs(n, y, M, b, relu, with_bias, OH, OW, TH, TW):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        winograd.output_tile_at(i, y, M, b, relu, with_bias, OH, OW, TH, TW)


@grid_stride
def winograd_output_grads(n, dM, dy, y, relu, OH, OW, TH, TW):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        winograd.output_grad_tile_at(i, dM, dy, y, relu, OH, OW, TH, TW)


@grid_stride
def winograd_filter_grads(n, dw2, dU):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        winograd.filter_grad_at(i, dw2, dU)
