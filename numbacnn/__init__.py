"""numbacnn: convolutional neural networks from first principles.

Hot loops are Numba kernels written once (``numbacnn/kernels``) and run on the CPU
(``numbacnn/backends/cpu.py``) or an NVIDIA GPU (``numbacnn/backends/cuda.py``),
on the device each network owns (``Network(..., device="auto")``, see
``numbacnn/device.py``). Importing this package imports no kernel and compiles nothing.

``numbacnn.Network`` (a network with ``fit`` and ``evaluate``) and ``numbacnn.load_model``
come from ``numbacnn/api.py``; ``docs/lecture.ipynb`` shows them at work.
"""

from numbacnn.device import to_device, to_host
from numbacnn.version import __version__

__all__ = ["Network", "__version__", "load_model", "to_device", "to_host"]


def __getattr__(name: str):
    # imported on first use, so `import numbacnn` imports no numba (numbacnn/api.py: the
    # network with fit and evaluate, and the model loader that gives it)
    if name in ("Network", "load_model"):
        from numbacnn import api

        return getattr(api, name)
    raise AttributeError(f"module 'numbacnn' has no attribute {name!r}")
