"""Convolution drivers the GPU does not have: Winograd with larger tiles.

``cuda.py`` re-exports these names, so both backends define the same drivers: a layer
with ``algo=winograd3`` (F(3×3, 5×5)) or ``algo=winograd4`` (F(4×4, 3×3), also its form
with the 2×2 max pooling fused), or a network with that ``conv_algo``, on the GPU stops
at its first pass with one :class:`DeviceError`, and ``algo=auto`` never picks them here
(their ``*_AUTO_MIN_CK`` None). The CPU's drivers: ``cpu_winograd35.py``,
``cpu_winograd43.py`` and ``cpu_winograd43_pool.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from numbacnn.errors import DeviceError

__all__ = ["WINOGRAD35_AUTO_MIN_CK", "WINOGRAD43_AUTO_MIN_CK", "WINOGRAD43_POOL_FUSES",
           "winograd35_backward", "winograd35_forward", "winograd35_workspace",
           "winograd43_backward", "winograd43_forward", "winograd43_pool_backward",
           "winograd43_pool_forward", "winograd43_workspace"]


def _refusal(algo: str, variant: str) -> Callable[..., Any]:
    def refuse(*args: Any) -> Any:
        raise DeviceError(f"algo={algo} (Winograd {variant}) runs on the CPU only; give "
                          f"algo=winograd or algo=auto for a convolution on the GPU")

    refuse.__doc__ = f"Refuses: there is no GPU driver of {variant}."
    return refuse


WINOGRAD35_AUTO_MIN_CK: int | None = None
WINOGRAD43_AUTO_MIN_CK: int | None = None
WINOGRAD43_POOL_FUSES = False  # the GPU keeps the convolution and the pooling apart
winograd35_workspace = winograd35_forward = winograd35_backward = _refusal(
    "winograd3", "F(3×3, 5×5)")
winograd43_workspace = winograd43_forward = winograd43_backward = _refusal(
    "winograd4", "F(4×4, 3×3)")
winograd43_pool_forward = winograd43_pool_backward = winograd43_workspace
