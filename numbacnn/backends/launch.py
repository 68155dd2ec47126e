"""Fast kernel launches for the CUDA backend: numba compiles, the driver launches.

A numba-cuda launch from Python, ``kernel[blocks, threads](*args)``, types every
argument, marshals it through ctypes and goes through cuda.core: measured 56 µs per
launch on an H200 (8 arguments, bench/gpu_probe.py), about the GPU time of a whole
small layer. :class:`FastLaunch` pays that once per argument-type signature: the first
launch goes through numba (which compiles the kernel), later ones write the arguments
into a kept parameter block in numba's kernel ABI and call ``cuLaunchKernel`` directly.

numba's ABI for a kernel argument (``numba.cuda.dispatcher._Kernel._prepare_args``):
an array of ndim d is 5 + 2d 8-byte words (meminfo, parent, nitems, itemsize, data
pointer, shape…, strides… in bytes); an integer its own width; float32 4 bytes,
float64 8. Each argument word gets its own 8-byte slot and ``kernelParams`` points at
every slot, so no alignment rules apply. Anything else (booleans, records, tuples)
keeps numba's own launch. ``tests/test_cuda_launch.py`` checks the layout against the
parameter list of the PTX numba emits, so a change in numba's ABI is caught without a GPU.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np

_ARRAY_WORD = "q"
# numba type name → struct code of one 8-byte slot
_SCALAR_SLOTS = {
    "int64": "q", "uint64": "Q", "int32": "i4x", "uint32": "I4x", "int16": "h6x",
    "uint16": "H6x", "int8": "b7x", "uint8": "B7x", "float32": "f4x", "float64": "d",
}


def slot_codes(argtypes: tuple[Any, ...]) -> list[str] | None:
    """The struct code of every parameter slot of a kernel with numba ``argtypes``, or
    None when one of them is not a plain array or scalar (then numba launches it)."""
    from numba.cuda import types

    codes: list[str] = []
    for ty in argtypes:
        if isinstance(ty, types.Array):
            codes.extend([_ARRAY_WORD] * (5 + 2 * ty.ndim))
        elif str(ty) in _SCALAR_SLOTS:
            codes.append(_SCALAR_SLOTS[str(ty)])
        else:
            return None
    return codes


def device_pointer(a: Any) -> int:
    """The address of a numba device array's first element (0 for an empty array)."""
    data = a.gpu_data
    return int(data.device_pointer) if data is not None else 0


def array_words(a: Any) -> tuple[int, ...]:
    """The 5 + 2·ndim ABI words of a numba device array (meminfo and parent are 0)."""
    return (0, 0, a.size, a.dtype.itemsize, device_pointer(a), *a.shape, *a.strides)


class _Prepared:
    """One kernel overload ready to launch: its driver handle and a parameter block."""

    def __init__(self, handle: Any, codes: list[str], array_args: tuple[bool, ...]) -> None:
        self.handle = handle
        self.format = "=" + "".join(codes)
        self.block = np.zeros(len(codes), np.uint64)  # one 8-byte slot per word
        base = self.block.ctypes.data
        self.pointers = np.arange(len(codes), dtype=np.uint64) * 8 + np.uint64(base)
        self.pointers_address = self.pointers.ctypes.data
        self.array_args = array_args


class FastLaunch:
    """Launch a compiled numba-cuda kernel through ``cuLaunchKernel``.

    Argument lists are told apart by :func:`signature_key`, which sees what numba's
    typing sees: for arrays dtype, ndim and layout (C, F or neither), for scalars the type.
    """

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.prepared: dict[tuple, _Prepared | None] = {}

    def __call__(self, blocks: int | tuple[int, ...], threads: int | tuple[int, ...],
                 args: tuple) -> None:
        """Launch on a grid of ``blocks`` blocks of ``threads`` threads (each an int, or
        (x, y) or (x, y, z) for a 2-D or 3-D grid or block)."""
        key = signature_key(args)
        prepared = self.prepared.get(key, False)
        if prepared is False:
            self._prepare(blocks, threads, args, key)  # launches through numba
            return
        if prepared is None:
            self.kernel[blocks, threads](*args)
            return
        words: list[Any] = []
        for a, is_array in zip(args, prepared.array_args, strict=True):
            if is_array:
                words.extend(array_words(a))
            else:
                words.append(a)
        struct.pack_into(prepared.format, prepared.block, 0, *words)
        _launch(prepared.handle, blocks, threads, prepared.pointers_address)

    def _prepare(self, blocks: int | tuple[int, ...], threads: int | tuple[int, ...],
                 args: tuple, key: tuple) -> None:
        from numba.cuda.typing.typeof import Purpose, typeof

        self.kernel[blocks, threads](*args)  # compiles this signature and launches it
        argtypes = tuple(typeof(a, Purpose.argument) for a in args)
        overload = self.kernel.overloads.get(argtypes)
        host_arrays = any(isinstance(a, np.ndarray) for a in args)  # numba copies those
        codes = slot_codes(argtypes) if overload is not None and not host_arrays else None
        prepared = None
        if codes is not None:
            handle = overload._codelibrary.get_cufunc().handle
            prepared = _Prepared(handle, codes, tuple(hasattr(a, "gpu_data") for a in args))
        self.prepared[key] = prepared


def signature_key(args: tuple) -> tuple:
    """What numba's typing of ``args`` depends on, cheaply."""
    return tuple((a.dtype.num, a.ndim, a.is_c_contiguous(), a.is_f_contiguous())
                 if hasattr(a, "gpu_data") else type(a) for a in args)


_driver_launch: Callable[..., Any] | None = None


def dims3(size: int | tuple[int, ...]) -> tuple[int, int, int]:
    """A grid or block size (x, or (x, y) or (x, y, z)) as CUDA's (x, y, z)."""
    if isinstance(size, int):
        return size, 1, 1
    x, y, z = (*size, 1, 1)[:3]
    return x, y, z


def _launch(handle: Any, blocks: int | tuple[int, ...], threads: int | tuple[int, ...],
            params_address: int) -> None:
    global _driver_launch
    if _driver_launch is None:
        from cuda.bindings import driver

        def launch(handle: Any, blocks: int | tuple[int, ...], threads: int | tuple[int, ...],
                   params: int) -> None:
            err, = driver.cuLaunchKernel(handle, *dims3(blocks), *dims3(threads), 0, 0, params,
                                         0)
            if err != driver.CUresult.CUDA_SUCCESS:
                raise RuntimeError(f"cuLaunchKernel failed: {err!r}")

        _driver_launch = launch
    _driver_launch(handle, blocks, threads, params_address)
