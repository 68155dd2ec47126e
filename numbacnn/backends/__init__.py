"""Backends turn the loop bodies of ``numbacnn/kernels`` into parallel loops:
``cpu.py`` (numba ``prange``) and ``cuda.py`` (grid-stride CUDA kernels). Both
modules expose the same functions and say what they are by capability (``on_host``:
arrays are numpy arrays in host memory); ``numbacnn.device.backend(name)`` gives the
one of a device, and a network its own (``net.backend()``)."""
