"""The CPU pooling drivers: the kernel bodies of numbacnn/kernels/pool.py in prange
loops over the N·C planes, one compiled driver per window kind.

``max_pool_forward(n, L, y, argmax, x, FH, FW, SH, SW, PH, PW)``,
``max_pool_backward(n, L, dx, dy, argmax, FH, FW, SH, SW, PH, PW)``,
``avg_pool_forward(n, L, y, x, FH, FW, SH, SW, PH, PW, count_pad)`` and
``avg_pool_backward(n, L, dx, dy, FH, FW, SH, SW, PH, PW, count_pad)``: x and dx are
(N, C, H, W), y, dy and argmax (N, C, OH, OW); n = N·C planes of L = OH·OW outputs.
Re-exported by numbacnn/backends/cpu.py, the backend's one module of drivers.
"""

from __future__ import annotations

from typing import Any

from numba import njit, prange

from numbacnn.backends import kernel_cache
from numbacnn.geometry import windows_inside
from numbacnn.kernels import pool

# the drivers' cache folder is named after the kernel sources, as cpu.py's (which imports
# this module before it sets the folder: without this, numba cached these drivers beside
# this file, keyed by its own timestamp, and served them stale after an edit of
# kernels/pool.py)
_numba_cache_dir = kernel_cache.use_versioned_cache_dir()  # restored at the end of this module


# The pooling drivers call their body with the window as constants for the usual windows
# (2×2 stride 2, 3×3 stride 2 for max pooling; 2×2 stride 2 for averages), when every
# window lies inside the input (no padding, no ceil window past the edge: the body's
# ``inside`` part alone): inlined, LLVM then unrolls and vectorizes the window loops.
# fmnist's first pooling forward, one thread: 2.4 ms with F and S as variables, 0.7 ms as
# constants; lenet's first average pooling 0.40 ms against 0.10 ms. One compiled driver
# per window, chosen in Python (_ByWindow), so a network compiles only those of its
# windows: the three loops in one driver took a third of fmnist's first-run compile (9.7
# of 29 CPU seconds, 3.2 with one loop). Max pooling's backward for overlapping and
# padded windows runs the scatter body (``max_pool_backward_plane``, any window: AlexNet's
# three, one thread, 18.9 → 5.8 ms a step); 2×2 stride 2 the tiles body, one store per
# element, one dx row at a time (``max_pool_backward_tiles_plane``: fmnist's first pooling
# 1.24 → 0.7 ms, one thread; the scatter took 2.2 ms in fmnist's step). The 2×2 forward
# finds its winners by selects, which vectorize (``max_pool_forward_by_selects``); 3×3
# stride 2 by branches, faster there.
class _ByWindow:
    """A pooling driver ``name(n, L, ...)`` that calls the compiled driver of its window:
    :meth:`choose`. ``arrays``: the positions of the input-sized and output-sized
    arrays in its arguments; ``window``: the position of FH (FH, FW, SH, SW, PH, PW)."""

    def __init__(self, constant: dict[tuple[int, int, int, int], str], general: str,
                 arrays: tuple[int, int], window: int) -> None:
        self._constant = constant  # (FH, FW, SH, SW) → this module's driver for it
        self._general = general
        self._arrays, self._window = arrays, window

    def choose(self, FH: int, FW: int, SH: int, SW: int, PH: int, PW: int,
               inside: bool) -> Any:
        """The numba driver for FH×FW windows of stride SH×SW padded PH×PW; ``inside``:
        every window lies inside the input (looked up in this module at each call: the
        compile workers of training/warmup.py replace drivers)."""
        name = self._constant.get((FH, FW, SH, SW), self._general) if inside else self._general
        return globals()[name]

    def __call__(self, *args: Any) -> None:
        big, small = (args[i].shape for i in self._arrays)
        FH, FW, SH, SW, PH, PW = args[self._window:self._window + 6]
        inside = windows_inside(big[2], big[3], small[2], small[3],
                                             FH, FW, SH, SW, PH, PW)
        self.choose(FH, FW, SH, SW, PH, PW, inside)(*args)


@njit(parallel=True, fastmath=True, cache=True)
def _max_pool_forward_2x2(n, L, y, argmax, x, FH, FW, SH, SW, PH, PW):
    for t in prange(n):
        pool.max_pool_forward_by_selects(t, y, argmax, x, 2, 2, 2, 2)

@njit(parallel=True, fastmath=True, cache=True)
def _max_pool_forward_3x3s2(n, L, y, argmax, x, FH, FW, SH, SW, PH, PW):
    for t in prange(n):
        pool.max_pool_forward_inside_at(t, 0, L, y, argmax, x, 3, 3, 2, 2)

@njit(parallel=True, fastmath=True, cache=True)
def _max_pool_forward_any(n, L, y, argmax, x, FH, FW, SH, SW, PH, PW):
    for t in prange(n):
        pool.max_pool_forward_at(t, 0, L, y, argmax, x, FH, FW, SH, SW, PH, PW)

@njit(parallel=True, fastmath=True, cache=True)
def _max_pool_backward_2x2(n, L, dx, dy, argmax, FH, FW, SH, SW, PH, PW):
    for t in prange(n):
        pool.max_pool_backward_tiles_plane(t, dx, dy, argmax, 2, 2, 2, 2)

@njit(parallel=True, fastmath=True, cache=True)
def _max_pool_backward_any(n, L, dx, dy, argmax, FH, FW, SH, SW, PH, PW):
    for t in prange(n):
        pool.max_pool_backward_plane(t, dx, dy, argmax, SH, SW, PH, PW)

@njit(parallel=True, fastmath=True, cache=True)
def _avg_pool_forward_2x2(n, L, y, x, FH, FW, SH, SW, PH, PW, count_pad):
    for t in prange(n):
        pool.avg_pool_forward_inside_at(t, 0, L, y, x, 2, 2, 2, 2)

@njit(parallel=True, fastmath=True, cache=True)
def _avg_pool_forward_any(n, L, y, x, FH, FW, SH, SW, PH, PW, count_pad):
    for t in prange(n):
        pool.avg_pool_forward_at(t, 0, L, y, x, FH, FW, SH, SW, PH, PW, count_pad)

@njit(parallel=True, fastmath=True, cache=True)
def _avg_pool_backward_2x2(n, L, dx, dy, FH, FW, SH, SW, PH, PW, count_pad):
    for t in prange(n):
        pool.avg_pool_backward_inside_at(t, 0, L, dx, dy, 2, 2, 2, 2)

@njit(parallel=True, fastmath=True, cache=True)
def _avg_pool_backward_any(n, L, dx, dy, FH, FW, SH, SW, PH, PW, count_pad):
    for t in prange(n):
        pool.avg_pool_backward_at(t, 0, L, dx, dy, FH, FW, SH, SW, PH, PW, count_pad)

max_pool_forward = _ByWindow({(2, 2, 2, 2): "_max_pool_forward_2x2",
                              (3, 3, 2, 2): "_max_pool_forward_3x3s2"},
                             "_max_pool_forward_any", arrays=(4, 2), window=5)
# 3x3 stride 2 has no backward driver of its own: the scatter body of every window but
# 2x2 stride 2 (``_max_pool_backward_any``) needs no window: it adds dy at its argmax
max_pool_backward = _ByWindow({(2, 2, 2, 2): "_max_pool_backward_2x2"},
                              "_max_pool_backward_any", arrays=(2, 3), window=5)
avg_pool_forward = _ByWindow({(2, 2, 2, 2): "_avg_pool_forward_2x2"}, "_avg_pool_forward_any",
                             arrays=(3, 2), window=4)
avg_pool_backward = _ByWindow({(2, 2, 2, 2): "_avg_pool_backward_2x2"},
                              "_avg_pool_backward_any", arrays=(2, 3), window=4)

kernel_cache.restore(_numba_cache_dir)
