"""Loop bodies written once for every device.

Each body is a ``@numba.njit(inline="always")`` function whose first argument is
a flat output index ``i``: it computes element ``i`` of its output (or one row,
where a body says so) and nothing else. ``numbacnn/backends/cpu.py`` wraps a body
in a ``prange`` loop, ``numbacnn/backends/cuda.py`` in a grid-stride CUDA kernel.

Rules for bodies: float32 only (write constants as ``np.float32(...)``: a bare
Python float literal makes the GPU compute in float64); no allocation; backward
passes are gather-form, each input-gradient element summing the outputs it fed,
so no body needs atomics.
"""
