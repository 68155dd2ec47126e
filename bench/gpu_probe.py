"""Low-level GPU facts the CUDA backend is designed around, printed as they are measured.

Run on a machine with an NVIDIA GPU (``python3 bench/gpu_probe.py``): the cost of one
numba-cuda kernel launch from Python, cuBLAS SGEMM reached through CuPy on numba device
arrays (zero-copy, raw pointers) in true FP32 and in TF32, and PyTorch's training
throughput for the fmnist and AlexNet presets with TF32 off and on. Each line is
flushed at once, so a time-out loses only what was not yet measured.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def say(*parts: object) -> None:
    print(*parts, flush=True)


def launch_overhead() -> None:
    from numba import cuda

    @cuda.jit
    def axpy(n, y, x, a, b, c, d, e):
        i = cuda.grid(1)
        if i < n:
            y[i] = x[i] * a + b + c + d + e

    x = cuda.to_device(np.ones(1024, np.float32))
    y = cuda.device_array(1024, np.float32)
    axpy[4, 256](1024, y, x, 1.0, 2.0, 3, 4, 5)
    cuda.synchronize()
    reps = 2000
    t0 = time.perf_counter()
    for _ in range(reps):
        axpy[4, 256](1024, y, x, 1.0, 2.0, 3, 4, 5)
    t1 = time.perf_counter()
    cuda.synchronize()
    t2 = time.perf_counter()
    say(f"probe: numba launch, 8 args: {(t1 - t0) / reps * 1e6:.1f} us issue, "
        f"{(t2 - t0) / reps * 1e6:.1f} us incl. sync")
    t0 = time.perf_counter()
    for _ in range(reps):
        y.reshape(32, 32)
    say(f"probe: device array reshape: {(time.perf_counter() - t0) / reps * 1e6:.1f} us")


def cublas_probe() -> None:
    import cupy
    from cupy.cuda import cublas
    from numba import cuda

    handle = cupy.cuda.device.get_cublas_handle()
    say("probe: cublas math mode at start:", cublas.getMathMode(handle),
        "pointer mode:", cublas.getPointerMode(handle))
    rng = np.random.default_rng(0)
    one = np.array(1.0, np.float32)
    zero = np.array(0.0, np.float32)

    def sgemm(a, b, c, ta, tb):
        # row-major C = op(A) op(B)  ==  column-major Cᵀ = op(B)ᵀ op(A)ᵀ
        M, N = c.shape
        K = a.shape[0] if ta else a.shape[1]
        cublas.sgemm(handle, int(tb), int(ta), N, M, K, one.ctypes.data,
                     b.device_ctypes_pointer.value, b.shape[1],
                     a.device_ctypes_pointer.value, a.shape[1], zero.ctypes.data,
                     c.device_ctypes_pointer.value, N)

    for ta in (False, True):
        for tb in (False, True):
            M, N, K = 130, 70, 300
            a = rng.standard_normal((K, M) if ta else (M, K), dtype=np.float32)
            b = rng.standard_normal((N, K) if tb else (K, N), dtype=np.float32)
            c = cuda.device_array((M, N), np.float32)
            sgemm(cuda.to_device(a), cuda.to_device(b), c, ta, tb)
            want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b)
            err = np.abs(c.copy_to_host() - want).max() / np.abs(want).max()
            say(f"probe: cublas raw sgemm ta={ta} tb={tb}: rel err {err:.2e}")
    n = 4096
    a = cuda.to_device(rng.standard_normal((n, n), dtype=np.float32))
    b = cuda.to_device(rng.standard_normal((n, n), dtype=np.float32))
    c = cuda.device_array((n, n), np.float32)
    for mode, label in ((cublas.CUBLAS_DEFAULT_MATH, "fp32"),
                        (cublas.CUBLAS_TF32_TENSOR_OP_MATH, "tf32")):
        cublas.setMathMode(handle, mode)
        sgemm(a, b, c, False, False)
        cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(20):
            sgemm(a, b, c, False, False)
        cuda.synchronize()
        dt = (time.perf_counter() - t0) / 20
        say(f"probe: cublas sgemm 4096^3 {label}: {2 * n**3 / dt / 1e12:.1f} TFLOP/s")
    cublas.setMathMode(handle, cublas.CUBLAS_DEFAULT_MATH)
    small = cuda.device_array((64, 64), np.float32)
    sgemm(small, small, small, False, False)
    cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(2000):
        sgemm(small, small, small, False, False)
    cuda.synchronize()
    say(f"probe: cublas small sgemm call: {(time.perf_counter() - t0) / 2000 * 1e6:.1f} us")


def torch_probe() -> None:
    import torch
    import torch_models as tm

    from numbacnn.network import Network

    say("probe: torch", torch.__version__, "cudnn", torch.backends.cudnn.version(),
        "defaults: cudnn.allow_tf32", torch.backends.cudnn.allow_tf32,
        "matmul.allow_tf32", torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.benchmark = True
    for tf32 in (False, True):
        for spec in ("fmnist", "alexnet"):
            net = Network.from_spec(spec)
            r = tm.bench_twin(net, batch=128, iterations=30, warmup=5, device="cuda",
                              layers=False, tf32=tf32)
            say(f"probe: torch {spec} batch 128 train {'tf32' if tf32 else 'fp32'}: "
                f"{r['train']['images_per_s']:.0f} images/s")


if __name__ == "__main__":
    for probe in (launch_overhead, cublas_probe, torch_probe):
        try:
            probe()
        except Exception as exc:  # keep going: each probe is independent
            say(f"probe: {probe.__name__} failed: {type(exc).__name__}: {exc}")
