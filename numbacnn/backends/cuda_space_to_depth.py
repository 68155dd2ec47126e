"""The GPU's space-to-depth rearrangements (bodies: ``numbacnn/kernels/space_to_depth.py``,
the same the CPU's ``cpu_space_to_depth.py`` runs): one thread per element of the
rearranged input, the input gradient, the filters or their gradient (the span bodies
with ``hi = lo + 1``). The stride-1 convolution between them is the layer's (Winograd's
or im2col's drivers). Re-exported by ``cuda.py`` (:data:`DRIVERS`).
"""

from __future__ import annotations

from typing import Any

from numba import config, cuda

from numbacnn.backends.cuda_grid import grid_stride_spans, python_bodies
from numbacnn.kernels import index
from numbacnn.kernels import space_to_depth as s2d

if config.ENABLE_CUDASIM:  # the simulator runs kernels as Python: call the bodies' Python source
    index, s2d = python_bodies(index), python_bodies(s2d)  # noqa: F811


def space_to_depth(xs: Any, x: Any, H: int, W: int, geo: tuple, HS: int, WS: int) -> None:
    """x' (N×C'×(HS·WS)) from x (N×C×(H·W)); ``geo`` of the strided convolution."""
    space_to_depth_planes(xs.shape[0] * xs.shape[1], HS * WS, xs, x, H, W, geo, WS)


def depth_to_space(dx: Any, dxs: Any, H: int, W: int, geo: tuple, HS: int, WS: int) -> None:
    """dx (N×C×(H·W)) from dx' (N×C'×(HS·WS)): the inverse of :func:`space_to_depth`."""
    depth_to_space_planes(dx.shape[0] * dx.shape[1], H * W, dx, dxs, H, W, geo, HS, WS)


def s2d_filters(ws2: Any, w2: Any, geo: tuple) -> None:
    """w' (K × C'·FH'·FW') from w2 (K × C·FH·FW)."""
    s2d_filter_rows(ws2.shape[0], ws2.shape[1], ws2, w2, geo)


def s2d_filter_grads(dw2: Any, dws2: Any, geo: tuple) -> None:
    """dw2 (K × C·FH·FW) from dw' (K × C'·FH'·FW'); the padded taps' gradients dropped."""
    s2d_filter_grad_rows(dw2.shape[0], dw2.shape[1], dw2, dws2, geo)


# (S2D_AUTO_MIN_CK: None until a GPU measures a rule; the four drivers), for cuda.py
DRIVERS = (None, space_to_depth, depth_to_space, s2d_filters, s2d_filter_grads)


# --- kernels: one thread per element of a plane or row ---------------------------------
@grid_stride_spans
def space_to_depth_planes(n, L, xs, x, H, W, geo, WS):
    i = cuda.grid(1)
    while i < n * L:
        t, p = index.split(i, L)
        s2d.space_to_depth_at(t, p, p + 1, xs, x, H, W, geo, WS)
        i += cuda.gridsize(1)


@grid_stride_spans
def depth_to_space_planes(n, L, dx, dxs, H, W, geo, HS, WS):
    i = cuda.grid(1)
    while i < n * L:
        t, p = index.split(i, L)
        s2d.depth_to_space_at(t, p, p + 1, dx, dxs, H, W, geo, HS, WS)
        i += cuda.gridsize(1)


@grid_stride_spans
def s2d_filter_rows(n, L, ws2, w2, geo):
    i = cuda.grid(1)
    while i < n * L:
        t, p = index.split(i, L)
        s2d.filters_at(t, p, p + 1, ws2, w2, geo)
        i += cuda.gridsize(1)


@grid_stride_spans
def s2d_filter_grad_rows(n, L, dw2, dws2, geo):
    i = cuda.grid(1)
    while i < n * L:
        t, p = index.split(i, L)
        s2d.filter_grads_at(t, p, p + 1, dw2, dws2, geo)
        i += cuda.gridsize(1)
