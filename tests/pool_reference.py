"""The float64 reference of max and average pooling (``tests/reference.py``'s entries).

Written from PyTorch's documented semantics, not from numbacnn's kernels: windows of
FH×FW with stride SH×SW over an input padded by PH×PW, padded cells never win a max, an
average divides by the cells of the window inside the padded input (``count_pad=yes``)
or inside the input (``no``), output sizes rounded as ``round=`` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def _pool_size(size: int, window: int, stride: int, pad: int, rounding: str) -> int:
    """Outputs along one axis, written out from PyTorch's pooling_output_shape: floor or
    ceil of (size + 2·pad − window)/stride, + 1, and with ceil one less where the last
    window would start at or past size + pad (in the right padding)."""
    span = size + 2 * pad - window
    if rounding == "exact":
        assert span >= 0 and span % stride == 0, "reference: the window does not tile the input"
    count = (span + (stride - 1 if rounding == "ceil" else 0)) // stride + 1
    if rounding == "ceil" and (count - 1) * stride >= size + pad:
        count -= 1
    return count


@dataclass(frozen=True)
class PoolGeometry:
    """A pooling layer's window per axis (FH, FW), stride, padding, rounding and whether
    an average counts padded cells; read from the layer's options."""

    F: tuple[int, int]
    S: tuple[int, int]
    P: tuple[int, int]
    rounding: str = "exact"
    count_pad: bool = True

    @classmethod
    def of(cls, layer: Any) -> PoolGeometry:
        def pair(v: Any) -> tuple[int, int]:
            return tuple(v) if isinstance(v, tuple) else (v, v)  # type: ignore[return-value]
        return cls(pair(layer.size), pair(layer.stride), pair(layer.pad), layer.round,
                   getattr(layer, "count_pad", "yes") == "yes")

    def windows(self, H: int, W: int):
        """(oy, ox, rows, cols, cells) of every window: its rows and columns clipped to
        the input, and the cells an average divides by (PyTorch's avg_pool2d: the window
        clipped to the padded input with count_pad, to the input without)."""
        (FH, FW), (SH, SW), (PH, PW) = self.F, self.S, self.P
        for oy in range(_pool_size(H, FH, SH, PH, self.rounding)):
            for ox in range(_pool_size(W, FW, SW, PW, self.rounding)):
                y0, x0 = oy * SH - PH, ox * SW - PW
                rows = slice(max(y0, 0), min(y0 + FH, H))
                cols = slice(max(x0, 0), min(x0 + FW, W))
                if self.count_pad:
                    cells = (min(y0 + FH, H + PH) - y0) * (min(x0 + FW, W + PW) - x0)
                else:
                    cells = (rows.stop - rows.start) * (cols.stop - cols.start)
                yield oy, ox, rows, cols, cells

    def output(self, N: int, C: int, H: int, W: int) -> np.ndarray:
        return np.zeros((N, C, _pool_size(H, self.F[0], self.S[0], self.P[0], self.rounding),
                         _pool_size(W, self.F[1], self.S[1], self.P[1], self.rounding)))


def max_pool_forward(x: np.ndarray, g: PoolGeometry) -> np.ndarray:
    """y[n, c, oy, ox] = max of the window's input cells (padding never wins)."""
    x = np.asarray(x, np.float64)
    y = g.output(*x.shape)
    for oy, ox, rows, cols, _ in g.windows(*x.shape[2:]):
        y[:, :, oy, ox] = x[:, :, rows, cols].max(axis=(2, 3))
    return y


def max_pool_backward(x: np.ndarray, dy: np.ndarray, g: PoolGeometry) -> np.ndarray:
    """Each window sends its dy to the position of its maximum (inputs without ties)."""
    x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    N, C, H, W = x.shape
    dx = np.zeros_like(x)
    for oy, ox, rows, cols, _ in g.windows(H, W):
        for n in range(N):
            for c in range(C):
                window = x[n, c, rows, cols]
                fy, fx = np.unravel_index(np.argmax(window), window.shape)
                dx[n, c, rows.start + fy, cols.start + fx] += dy[n, c, oy, ox]
    return dx


def avg_pool_forward(x: np.ndarray, g: PoolGeometry) -> np.ndarray:
    """y[n, c, oy, ox] = the window's sum over its input cells / its cells."""
    x = np.asarray(x, np.float64)
    y = g.output(*x.shape)
    for oy, ox, rows, cols, cells in g.windows(*x.shape[2:]):
        y[:, :, oy, ox] = x[:, :, rows, cols].sum(axis=(2, 3)) / cells
    return y


def avg_pool_backward(x_shape: tuple[int, ...], dy: np.ndarray, g: PoolGeometry) -> np.ndarray:
    """Each window spreads dy / cells evenly over its input cells."""
    dy = np.asarray(dy, np.float64)
    dx = np.zeros(x_shape)
    for oy, ox, rows, cols, cells in g.windows(x_shape[2], x_shape[3]):
        dx[:, :, rows, cols] += dy[:, :, oy, ox][:, :, None, None] / cells
    return dx
