"""numbacnn: convolutional neural networks from first principles.

Hot loops are Numba kernels written once (``numbacnn/kernels``) and run on the CPU
(``numbacnn/backends/cpu.py``) or an NVIDIA GPU (``numbacnn/backends/cuda.py``),
on the device each network owns (``Network(..., device="auto")``, see
``numbacnn/device.py``). Importing this package imports no kernel and compiles nothing.
"""

from numbacnn.device import to_device, to_host
from numbacnn.version import __version__

__all__ = ["Network", "__version__", "to_device", "to_host"]


def __getattr__(name: str):
    if name == "Network":
        from numbacnn.network import Network

        return Network
    raise AttributeError(f"module 'numbacnn' has no attribute {name!r}")
