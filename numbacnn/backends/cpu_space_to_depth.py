"""The CPU's space-to-depth rearrangements (bodies: ``numbacnn/kernels/space_to_depth.py``).

The input's and the input gradient's run on Python threads (``cpu_threads.py``), each a
share of the planes, whole planes per body call: plain ``@njit(nogil=True, cache=True)``
functions, not ``prange`` loops (a ``prange`` loop compiles a gufunc besides, about twice
the compile time). The filters' (K × C'·FH'·FW', 35 K floats for AlexNet's conv1) run
on this thread. The stride-1 convolution between them is the layer's: Winograd's or
im2col's drivers (``layers/conv.py``).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit

from numbacnn.backends import cpu_threads, kernel_cache
from numbacnn.kernels import space_to_depth as s2d

_numba_cache_dir = kernel_cache.use_versioned_cache_dir()  # restored at the end of this module

__all__ = ["S2D_AUTO_MIN_CK", "depth_to_space", "s2d_filter_grads", "s2d_filters",
           "space_to_depth"]  # what cpu.py re-exports

# The smallest C·SH·SW·K (the rearranged convolution's C·K) at which ``algo=auto`` runs a
# strided convolution as space-to-depth + Winograd F(2×2, 3×3) (layers/conv.py: where
# the rearranged window is 3×3); None: at none. Measured forward + backward, with and
# without dx, 1 and 2 threads (bench/RESULTS.md, "Space-to-depth"): faster than im2col at
# C·S²·K = 1024 (8 → 32, 5×5 stride 2), 2048 and AlexNet's conv1 (3·16·96), slower at 384
# (3 → 32, 5×5 stride 2)
S2D_AUTO_MIN_CK: int | None = 32 * 32


def space_to_depth(xs: np.ndarray, x: np.ndarray, H: int, W: int, geo: tuple, HS: int,
                   WS: int) -> None:
    """x' (N×C'×(H'·W'), C' = C·SH·SW, H'·W' = HS·WS) from x (N×C×(H·W)); ``geo`` of the
    strided convolution (kernels/space_to_depth.py)."""
    parts = min(numba.get_num_threads(), xs.shape[0] * xs.shape[1])
    cpu_threads.run_parts(_space_to_depth_part, parts, xs, x, H, W, geo, WS)


def depth_to_space(dx: np.ndarray, dxs: np.ndarray, H: int, W: int, geo: tuple, HS: int,
                   WS: int) -> None:
    """dx (N×C×(H·W)) from dx' (N×C'×(HS·WS)): the inverse of :func:`space_to_depth`."""
    parts = min(numba.get_num_threads(), dx.shape[0] * dx.shape[1])
    cpu_threads.run_parts(_depth_to_space_part, parts, dx, dxs, H, W, geo, HS, WS)


def s2d_filters(ws2: np.ndarray, w2: np.ndarray, geo: tuple) -> None:
    """w' (K × C'·FH'·FW') from w2 (K × C·FH·FW)."""
    _s2d_filters(ws2, w2, geo)


def s2d_filter_grads(dw2: np.ndarray, dws2: np.ndarray, geo: tuple) -> None:
    """dw2 (K × C·FH·FW) from dw' (K × C'·FH'·FW'); the padded taps' gradients dropped."""
    _s2d_filter_grads(dw2, dws2, geo)


@njit(nogil=True, fastmath=True, cache=True)
def _space_to_depth_part(part, parts, xs, x, H, W, geo, WS):
    planes = xs.shape[0] * xs.shape[1]
    L = xs.shape[2]
    for t in range(planes * part // parts, planes * (part + 1) // parts):
        s2d.space_to_depth_at(t, 0, L, xs, x, H, W, geo, WS)


@njit(nogil=True, fastmath=True, cache=True)
def _depth_to_space_part(part, parts, dx, dxs, H, W, geo, HS, WS):
    planes = dx.shape[0] * dx.shape[1]
    for t in range(planes * part // parts, planes * (part + 1) // parts):
        s2d.depth_to_space_at(t, 0, H * W, dx, dxs, H, W, geo, HS, WS)


@njit(nogil=True, fastmath=True, cache=True)
def _s2d_filters(ws2, w2, geo):
    for k in range(ws2.shape[0]):
        s2d.filters_at(k, 0, ws2.shape[1], ws2, w2, geo)


@njit(nogil=True, fastmath=True, cache=True)
def _s2d_filter_grads(dw2, dws2, geo):
    for k in range(dw2.shape[0]):
        s2d.filter_grads_at(k, 0, dw2.shape[1], dw2, dws2, geo)


kernel_cache.restore(_numba_cache_dir)
