"""Winograd F(4×4, 3×3) on the GPU: not built (the CPU's is ``cpu_winograd43.py``).

``cuda.py`` re-exports these names, so both backends define the same drivers; a layer
with ``algo=winograd4`` (or a network with ``conv_algo=winograd4``) on the GPU stops at
its first pass with one :class:`DeviceError`, and ``algo=auto`` never picks it here
(``WINOGRAD43_AUTO_MIN_CK`` None).
"""

from __future__ import annotations

from typing import Any

from numbacnn.errors import DeviceError

__all__ = ["WINOGRAD43_AUTO_MIN_CK", "WINOGRAD43_POOL_FUSES", "winograd43_backward",
           "winograd43_forward", "winograd43_pool_backward", "winograd43_pool_forward",
           "winograd43_workspace"]

WINOGRAD43_AUTO_MIN_CK: int | None = None
WINOGRAD43_POOL_FUSES = False  # the GPU keeps the convolution and the pooling apart


def winograd43_workspace(*args: Any) -> Any:
    """Refuses: there is no GPU driver of F(4×4, 3×3)."""
    raise DeviceError("algo=winograd4 (Winograd F(4×4, 3×3)) runs on the CPU only; give "
                      "algo=winograd or algo=auto for a convolution on the GPU")


winograd43_forward = winograd43_backward = winograd43_workspace
winograd43_pool_forward = winograd43_pool_backward = winograd43_workspace
