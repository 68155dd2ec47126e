"""Backends turn the loop bodies of ``numbacnn/kernels`` into parallel loops:
``cpu.py`` (numba ``prange``) and ``cuda.py`` (grid-stride CUDA kernels). Both
modules expose the same functions; ``numbacnn.device.backend()`` picks one."""
