"""A network's parameters and gradients as views of flat buffers: one kernel launch
updates every parameter (``optim.py``), one Allreduce sums every gradient
(``distributed.py``).

:func:`flat_arrays` rebinds ``layer.params[key]`` (role "params") or
``layer.grads[key]`` (role "grads") of every layer, in the network's order, to a view of
one flat float32 buffer of the network's device (same shape, the values copied in) and
returns the buffer. It is idempotent and cheap when nothing changed (an identity check of
each array), so the optimizer and the gradient all-reduce can both call it, in either
order, and share the one buffer. When something rebinds an array afterwards (a test
handing in a gradient, a fine-tune loading weights into the layers), the next call copies
it into its view and rebinds the view: the buffer stays the same object.

Each array starts at a multiple of :data:`ALIGN` floats (256 bytes, a cudaMalloc's
alignment), so the views handed to cuBLAS keep aligned pointers. The gaps hold zeros,
which every update keeps at zero (w = v = g = 0 gives 0 in SGD and in Adam) and an
Allreduce sums to zero.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

ALIGN = 64  # floats: 256 bytes


@dataclass
class FlatLayout:
    """Where each array of a list of shapes starts in a flat buffer of ``size`` floats."""

    shapes: list[tuple[int, ...]]
    offsets: list[int]
    size: int

    @classmethod
    def of(cls, shapes: Iterable[tuple[int, ...]]) -> FlatLayout:
        shapes = [tuple(int(d) for d in shape) for shape in shapes]
        offsets, size = [], 0
        for shape in shapes:
            offsets.append(size)
            size += -(-int(np.prod(shape, dtype=np.int64)) // ALIGN) * ALIGN
        return cls(shapes, offsets, size)

    def views(self, flat: Any) -> list[Any]:
        """Each array's view of ``flat`` (C-contiguous, its own shape)."""
        return [flat[o:o + int(np.prod(s, dtype=np.int64))].reshape(s)
                for o, s in zip(self.offsets, self.shapes, strict=True)]


def copy_into(dst: Any, src: Any) -> None:
    """dst[...] = src for two arrays of one shape on the same device (host or dry-run
    arrays with numpy, GPU arrays device to device)."""
    if isinstance(dst, np.ndarray):
        np.copyto(dst, np.asarray(src))
    else:
        dst.copy_to_device(src)


@dataclass
class _Packed:
    flat: Any
    layout: FlatLayout
    views: list[Any]


_packed: weakref.WeakKeyDictionary[Any, dict[str, _Packed]] = weakref.WeakKeyDictionary()


def flat_arrays(net: Any, role: str) -> Any:
    """The flat buffer whose views are ``layer.<role>[key]`` of every layer of ``net``
    with parameters (role "params" or "grads"); made, and the arrays rebound, on the
    first call or when the shapes changed."""
    tables = [(getattr(layer, role), key) for layer in net.layers for key in layer.params]
    arrays = [table[key] for table, key in tables]
    packed = _packed.setdefault(net, {}).get(role)
    if (packed is not None and len(arrays) == len(packed.views)
            and all(a is v for a, v in zip(arrays, packed.views, strict=True))):
        return packed.flat
    shapes = [tuple(a.shape) for a in arrays]
    if packed is None or packed.layout.shapes != shapes:
        layout = FlatLayout.of(shapes)
        flat = net.backend().zeros((layout.size,))
        packed = _packed[net][role] = _Packed(flat, layout, layout.views(flat))
    layers = [layer for layer in net.layers for _ in layer.params]
    for layer, (table, key), a, view in zip(layers, tables, arrays, packed.views, strict=True):
        if a is not view:
            copy_into(view, a)
            table[key] = view
            layer.forget_views()  # its remembered reshapes of the old array
    return packed.flat


def network_layout(net: Any) -> FlatLayout:
    """The layout of ``net``'s parameters in their flat buffers (as :func:`flat_arrays`
    made it)."""
    return FlatLayout.of(tuple(layer.params[key].shape) for layer in net.layers
                         for key in layer.params)
