"""The convolution over the whole batch at once, for either backend module ``B``.

Forward: im2col of every image into one column matrix (C·F·F × N·OH·OW), one GEMM with
the filters (K × C·F·F), and the reorder to N×K×OH×OW that adds the bias (and the fused
ReLU). Backward: the reorder back (the ReLU's mask applied), the weight gradient's GEMM
with the columns, the bias gradient's row sums and, for dx, the columns' gradient by a
GEMM and col2im. ``cuda.py`` always runs these; ``cpu.py`` runs them where it does not
work a chunk of images at a time (``cpu.conv_in_chunks``).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any


def forward(B: ModuleType, x: Any, H: int, W: int, w2: Any, b: Any, y: Any, cols: Any, out: Any,
            F: int, S: int, P: int, OH: int, OW: int, relu: int) -> None:
    """y (flat) from x (N×C×(H·W)) with buffers cols (C·F·F × N·OH·OW) and out
    (K × N·OH·OW); cols keeps the columns for :func:`backward`."""
    N, K = x.shape[0], w2.shape[0]
    B.im2col(cols.shape[0] * N, OH * OW, cols, x, H, W, F, S, P, OH, OW)
    B.gemm(w2, cols, out)
    B.gemm_to_nchw(N * K, OH * OW, y, out, b, K, OH * OW, relu)


def backward(B: ModuleType, x: Any, H: int, W: int, w2: Any, y: Any, dy: Any, dw2: Any, db: Any,
             dx: Any, cols: Any, out: Any, F: int, S: int, P: int, OH: int, OW: int,
             relu: int) -> None:
    """dw2, db and, unless it is None, dx (N×C×(H·W)) from dy (flat); cols holds the
    forward pass's columns and is overwritten by the input gradient's columns when dx is
    computed."""
    N, K = x.shape[0], w2.shape[0]
    L = OH * OW
    dy2 = out  # the GEMM output is free again: the gradient in GEMM layout in its place
    B.nchw_to_gemm(K * N, L, dy2, dy, y, K, L, relu)
    B.gemm(dy2, cols, dw2, trans_b=True)
    B.row_sum(K, db, dy2)
    if dx is not None:
        B.gemm(w2, dy2, cols, trans_a=True)  # the columns are spent: dcols in their place
        B.col2im(N * x.shape[1], H * W, dx, cols, H, W, F, S, P, OH, OW)
