"""The convolution over the whole batch at once, for either backend module ``B``.

Forward: im2col of every image into one column matrix (C·FH·FW × N·OH·OW), one GEMM
with the filters (K × C·FH·FW; with G groups one per group, :func:`grouped_gemm`), and
the reorder to N×K×OH×OW that adds the bias (and the fused
ReLU). Backward: the reorder back (the ReLU's mask applied), the weight gradient's GEMM
with the columns, the bias gradient's row sums and, for dx, the columns' gradient by a
GEMM and col2im. ``cuda.py`` always runs these; ``cpu.py`` runs them where it does not
work a chunk of images at a time (``cpu.conv_in_chunks``).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any


def grouped_gemm(B: ModuleType, groups: int, a: Any, b: Any, out: Any, trans_a: bool = False,
                 trans_b: bool = False) -> None:
    """out = op(a) @ op(b) for each of ``groups`` blocks of rows of a, b and out (group
    g's filters, columns and outputs: each operand's rows split in G equal blocks,
    contiguous row ranges of C-contiguous arrays); one GEMM when groups is 1."""
    if groups == 1:
        B.gemm(a, b, out, trans_a=trans_a, trans_b=trans_b)
        return
    ra, rb, ro = a.shape[0] // groups, b.shape[0] // groups, out.shape[0] // groups
    for g in range(groups):
        B.gemm(a[g * ra:(g + 1) * ra], b[g * rb:(g + 1) * rb], out[g * ro:(g + 1) * ro],
               trans_a=trans_a, trans_b=trans_b)


def forward(B: ModuleType, x: Any, H: int, W: int, w2: Any, b: Any, y: Any, cols: Any, out: Any,
            geo: tuple, groups: int, OH: int, OW: int, relu: int) -> None:
    """y (flat) from x (N×C×(H·W)) with buffers cols (C·FH·FW × N·OH·OW) and out
    (K × N·OH·OW); cols keeps the columns for :func:`backward`. ``geo``: (FH, FW, SH,
    SW, PT, PL, DH, DW) as ``kernels/conv.py`` takes it; w2 is K × (C/G)·FH·FW."""
    N, K = x.shape[0], w2.shape[0]
    B.im2col(cols.shape[0] * N, OH * OW, cols, x, H, W, geo, OH, OW)
    grouped_gemm(B, groups, w2, cols, out)
    B.gemm_to_nchw(N * K, OH * OW, y, out, b, K, OH * OW, relu)


def backward(B: ModuleType, x: Any, H: int, W: int, w2: Any, y: Any, dy: Any, dw2: Any, db: Any,
             dx: Any, cols: Any, out: Any, geo: tuple, groups: int, OH: int, OW: int,
             relu: int) -> None:
    """dw2, db and, unless it is None, dx (N×C×(H·W)) from dy (flat); cols holds the
    forward pass's columns and is overwritten by the input gradient's columns when dx is
    computed."""
    N, K = x.shape[0], w2.shape[0]
    L = OH * OW
    dy2 = out  # the GEMM output is free again: the gradient in GEMM layout in its place
    B.nchw_to_gemm(K * N, L, dy2, dy, y, K, L, relu)
    grouped_gemm(B, groups, dy2, cols, dw2, trans_b=True)
    B.row_sum(K, db, dy2)
    if dx is not None:
        grouped_gemm(B, groups, w2, dy2, cols, trans_a=True)  # the columns are spent: dcols
        B.col2im(N * x.shape[1], H * W, dx, cols, H, W, geo, OH, OW)
