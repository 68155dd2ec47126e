"""Winograd F(3×3, 5×5) on the GPU: not built (the CPU's is ``cpu_winograd35.py``).

For ``cuda.py`` to re-export, so both backends define the same drivers: a layer with
``algo=winograd3`` on the GPU stops at its first pass with one :class:`DeviceError`,
and ``algo=auto`` never picks it here (``WINOGRAD35_AUTO_MIN_CK`` None).
"""

from __future__ import annotations

from typing import Any

from numbacnn.errors import DeviceError

__all__ = ["WINOGRAD35_AUTO_MIN_CK", "winograd35_backward", "winograd35_forward",
           "winograd35_workspace"]

WINOGRAD35_AUTO_MIN_CK: int | None = None


def winograd35_workspace(*args: Any) -> Any:
    """Refuses: there is no GPU driver of F(3×3, 5×5)."""
    raise DeviceError("algo=winograd3 (Winograd F(3×3, 5×5)) runs on the CPU only; give "
                      "algo=winograd or algo=auto for a convolution on the GPU")


winograd35_forward = winograd35_backward = winograd35_workspace
