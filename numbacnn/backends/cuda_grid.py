"""How the CUDA backend launches its kernels: grid geometry and the launcher decorators.

Each decorator compiles a kernel ``fn(n, *args)`` (without fastmath: ``tanh.approx.f32``
and friends would break the CPU's tolerances) and returns ``launch(n, *args)``, which
picks the grid from n, counts the launch (``cuda_dry_run.counters``), records it instead
of running it in a dry run, and after the first launch of each signature bypasses
numba's dispatcher (``launch.py``). ``launch.py_func`` is ``fn`` for ``compile_ptx``.
"""

from __future__ import annotations

from collections.abc import Callable
from types import FunctionType, ModuleType, SimpleNamespace
from typing import Any

from numba import config, cuda

from numbacnn.backends import cuda_dry_run as dry
from numbacnn.backends.launch import FastLaunch
from numbacnn.errors import DeviceError

THREADS_PER_BLOCK = 256
MAX_BLOCKS = 65536
MAX_GRID_Y = MAX_GRID_Z = 65535  # CUDA's limits of a grid's y and z dimensions
REDUCE_THREADS = 256  # threads of a reduction block (a power of two)
INDEX_LIMIT = 2**32  # kernels/index.py splits flat indices in unsigned 32-bit arithmetic


def blocks(n: int) -> int:
    """Blocks of THREADS_PER_BLOCK for one thread per element of n (at most MAX_BLOCKS)."""
    return min(MAX_BLOCKS, (n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK)


def _launcher(fn: Callable, blocks_for: Callable[[int, tuple], Any], threads: Any,
              doc: str) -> Callable:
    """Compile ``fn(n, *args)`` (no fastmath) and return ``launch(n, *args)``, which runs it
    on ``blocks_for(n, args)`` blocks of ``threads`` (none when that is 0), records it in
    a dry run, and counts it. A 2-D or 3-D launch: ``blocks_for`` returns
    ((blocks_x, blocks_y, blocks_z), (threads_x, threads_y)) and ``threads`` is None."""
    kernel = cuda.jit(fastmath=False)(fn)
    fast = None if config.ENABLE_CUDASIM else FastLaunch(kernel)

    def launch(n: int, *args: Any) -> None:
        dry.counters["launches"] += 1
        if dry.active():
            dry.record(fn, (n, *args))
            return
        count, block = blocks_for(n, args), threads
        if block is None:
            count, block = count
        if (count if isinstance(count, int) else min(count)) > 0:
            if fast is None:
                kernel[count, block](n, *args)
            else:
                fast(count, block, (n, *args))

    launch.py_func = fn
    launch.fastmath = False
    launch.__name__ = fn.__name__
    launch.__doc__ = doc
    return launch


def _element_blocks(fn: Callable, total: int) -> int:
    """Blocks for one thread per element of ``total`` (grid-stride beyond MAX_BLOCKS)."""
    if total >= INDEX_LIMIT:
        raise DeviceError(f"{fn.__name__}: {total:,} elements exceed the GPU kernels' "
                          "32-bit index arithmetic; use a smaller batch")
    return blocks(total)


def grid_stride(fn: Callable) -> Callable:
    """Compile ``fn(n, *args)`` as a CUDA kernel; return a launcher ``launch(n, *args)``.

    The launcher picks ⌈n / 256⌉ blocks of 256 threads (at most 65,536 blocks; the
    grid-stride loop covers the rest).
    """
    return _launcher(fn, lambda n, args: _element_blocks(fn, n), THREADS_PER_BLOCK,
                     f"Grid-stride CUDA launch of body {fn.__name__}_at over n elements.")


def grid_stride_spans(fn: Callable) -> Callable:
    """Like :func:`grid_stride` for ``fn(n, L, *args)``: n planes of L elements, one
    thread per element (n·L threads)."""
    return _launcher(fn, lambda n, args: _element_blocks(fn, n * args[0]), THREADS_PER_BLOCK,
                     f"CUDA launch of span body {fn.__name__}_at, one thread per element.")


def grid_stride_count(count: Callable[..., int]) -> Callable[[Callable], Callable]:
    """Like :func:`grid_stride_spans` for a kernel ``fn(n, L, *args)`` that runs one
    thread per element of its output, ``count(n, L, *args)`` of them, not n·L."""
    def decorate(fn: Callable) -> Callable:
        return _launcher(fn, lambda n, args: _element_blocks(fn, count(n, *args)),
                         THREADS_PER_BLOCK, f"CUDA launch of {fn.__name__}, one thread per "
                         "output element.")
    return decorate


def plane_grid_shape(planes: int, K: int, P: int) -> tuple[tuple[int, int, int],
                                                           tuple[int, int]]:
    """(blocks, threads) of a 3-D launch over ``planes`` = N·K planes of P elements: x the
    position in the plane, y the plane's k (several planes a block when P is short), z
    the image n (block-stride beyond MAX_GRID_Z). No thread divides an index."""
    tx = min(THREADS_PER_BLOCK, max(1, -(-P // 32)) * 32)  # whole warps
    ty = THREADS_PER_BLOCK // tx
    by = -(-K // ty)
    if by > MAX_GRID_Y:
        raise DeviceError(f"{K:,} channels exceed a CUDA grid's y dimension "
                          f"({MAX_GRID_Y:,} blocks of {ty})")
    images = planes // K if K else 0
    return (-(-P // tx), by, min(MAX_GRID_Z, images)), (tx, ty)


def plane_grid(fn: Callable) -> Callable:
    """Compile ``fn(n, L, *args, K, P, relu)`` (n = N·K planes of P elements; the
    GEMM reorders) for the 3-D launch of :func:`plane_grid_shape`."""
    return _launcher(fn, lambda n, args: plane_grid_shape(n, args[-3], args[-2]), None,
                     f"3-D CUDA launch of {fn.__name__}: x the element, y the channel, z "
                     "the image.")


def block_per_row(fn: Callable) -> Callable:
    """Compile a reduction kernel ``fn(n, *args)`` that gives each of n rows to one block
    of REDUCE_THREADS threads (at most 65,536 blocks, block-stride over the rest)."""
    return _launcher(fn, lambda n, args: min(MAX_BLOCKS, n), REDUCE_THREADS,
                     f"CUDA block-per-row reduction {fn.__name__}.")


def one_block(fn: Callable) -> Callable:
    """Compile a reduction kernel ``fn(n, *args)`` over n items run by a single block."""
    return _launcher(fn, lambda n, args: 1 if n > 0 else 0, REDUCE_THREADS,
                     f"CUDA one-block reduction {fn.__name__}.")


def python_bodies(module: ModuleType) -> SimpleNamespace:
    """The bodies of a kernel module as Python functions, for the simulator
    (``NUMBA_ENABLE_CUDASIM=1`` runs kernels as Python). A body that calls another body of
    its module (pooling's _inside_at and _clipped_at parts) must reach its Python source
    too, a compiled one cannot take the simulator's arrays: the module's own bodies run
    with globals holding those."""
    own = {k: v.py_func for k, v in vars(module).items()
           if getattr(getattr(v, "py_func", None), "__module__", None) == module.__name__}
    scope = dict(vars(module))
    scope.update({k: FunctionType(f.__code__, scope, f.__name__, f.__defaults__,
                                  f.__closure__) for k, f in own.items()})
    return SimpleNamespace(**{k: scope[k] if k in own else getattr(v, "py_func", v)
                              for k, v in vars(module).items()})
