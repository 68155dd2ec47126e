"""Registers and spills of the CUDA backend's hottest kernels, without a GPU.

Each kernel is compiled to PTX for sm_90 with ``numba.cuda.compile_ptx`` (the types the
convolution and pooling layers launch it with) and assembled with ``ptxas -v``; the table
lists registers per thread, spill bytes (stores/loads) and PTX instructions of the
kernel entry, then the PTX instructions one element costs on each hot path
(``ptx_paths.py``, division and square root weighted by their machine code). Static
figures: nothing runs on a GPU.

    python bench/ptx_registers.py [--ptxas PATH]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

CC = (9, 0)


def find_ptxas() -> str | None:
    """NVIDIA's pip ptxas (nvidia-cuda-nvcc), else /usr/local/cuda*/bin/ptxas, else PATH."""
    try:
        import nvidia

        for root in nvidia.__path__:
            for candidate in sorted(Path(root).glob("cu*/bin/ptxas"), reverse=True):
                return str(candidate)
    except ImportError:
        pass
    for candidate in sorted(Path("/usr/local").glob("cuda*/bin/ptxas"), reverse=True):
        return str(candidate)
    return shutil.which("ptxas")


def hot_kernels() -> list[tuple[str, object, tuple]]:
    """(label, kernel function, numba argument types) of im2col, col2im, max pooling, the
    GEMM reorders and the softmax forward as the layers launch them (arrays
    C-contiguous, integers int64, geo a tuple, argmax int32)."""
    from numbacnn.backends import cuda as B

    f32 = np.float32
    N, C, H, W, K = 2, 3, 8, 8, 4
    cols, x3 = np.zeros((C * 9, N * H * W), f32), np.zeros((N, C, H * W), f32)
    x4, y4 = np.zeros((N, C, H, W), f32), np.zeros((N, C, 3, 3), f32)
    at4 = np.zeros((N, C, 3, 3), np.int32)
    out, y = np.zeros((K, N * H * W), f32), np.zeros(N * K * H * W, f32)
    geo = (3, 3, 1, 1, 1, 1, 1, 1)
    pool = (3, 3, 2, 2, 0, 0)  # AlexNet's 3×3/2
    table = [
        ("im2col", B.im2col, (1, 1, cols, x3, H, W, geo, H, W)),
        ("col2im", B.col2im, (1, 1, x3, cols, H, W, geo, H, W)),
        ("max_pool_forward", B.max_pool_forward, (N * C, 9, y4, at4, x4, *pool)),
        ("max_pool_backward", B.max_pool_backward, (N * C, H * W, x4, y4, at4, *pool)),
        ("gemm_to_nchw", B.gemm_to_nchw, (N * K, H * W, y, out, np.zeros(K, f32), K, H * W, 1)),
        ("nchw_to_gemm", B.nchw_to_gemm, (K * N, H * W, out, y, y, K, H * W, 1)),
        ("softmax_cross_entropy_forward", B.softmax_cross_entropy_forward,
         (N, np.zeros((N, 10), f32), np.zeros(N, f32), np.zeros((N, 10), f32),
          np.zeros(N, np.int64))),
    ]
    out = []
    for label, launcher, args in table:
        for fn, types in kernel_signatures(launcher, args):
            out.append((label if fn.__name__ == label else f"{label}: {fn.__name__}", fn,
                        types))
    return out


# The per-element paths counted (bench/ptx_paths.py): (label, kernel, the path with inner
# loops or the one without, trips of the inner loops by depth, the instruction each
# tap executes once).
ELEMENT_PATHS = [
    ("im2col 3×3 same", "im2col", False, (), r"st\.global"),
    ("im2col 11×11/4 (AlexNet conv1)", "im2col", True, (11, 11), r"st\.global"),
    ("col2im 3×3 same", "col2im", False, (), r"ld\.global"),
    ("col2im 11×11/4 (3×3 windows)", "col2im", True, (3, 3), r"ld\.global\.f32"),
    ("max_pool_forward 3×3/2", "max_pool_forward", True, (3, 3), r"ld\.global\.f32"),
    ("max_pool_backward 3×3/2", "max_pool_backward", True, (2, 2), r"ld\.global\.[usb]32"),
    ("gemm_to_nchw", "gemm_to_nchw", False, (), r"st\.global"),
    ("nchw_to_gemm", "nchw_to_gemm", False, (), r"st\.global"),
]


def element_instructions(ptx_of: dict[str, str]) -> dict[str, int]:
    """{path label: PTX instructions one element costs} of :data:`ELEMENT_PATHS`, from
    the PTX of each kernel by name."""
    from ptx_paths import per_element

    return {label: per_element(ptx_of[kernel], inner, trips, marker)
            for label, kernel, inner, trips, marker in ELEMENT_PATHS}


def kernel_signatures(launcher, args):
    """The (kernel function, numba argument types) the launcher records in a dry run."""
    from numbacnn.backends import cuda as B

    with B.dry_run() as records:
        launcher(*args)
    return list(records)


def ptxas_report(ptx: str, ptxas: str) -> tuple[int, int, int]:
    """(registers, spill store bytes, spill load bytes) of the PTX's kernel for sm_90."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        proc = subprocess.run([ptxas, "-arch=sm_90", "-v", str(src), "-o", str(Path(tmp) / "k")],
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{ptxas}: {proc.stderr.strip()[:300]} (numba-cuda's PTX needs the "
                         "ptxas of the same CUDA version: pip install nvidia-cuda-nvcc)")
    regs = max(int(n) for n in re.findall(r"Used (\d+) registers", proc.stderr))
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", proc.stderr)
    return regs, sum(int(a) for a, _ in spills), sum(int(b) for _, b in spills)


def instruction_count(ptx: str) -> int:
    """PTX instructions of the entry (lines ending in ';' that are not declarations)."""
    body = ptx[ptx.index(".entry"):]
    return sum(1 for line in body.splitlines()
               if line.strip().endswith(";") and not line.strip().startswith((".", "//")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ptxas", default=None, help="ptxas to use (default: found)")
    args = parser.parse_args()
    from numba import cuda

    ptxas = args.ptxas or find_ptxas()
    if ptxas is None:
        raise SystemExit("no ptxas: pip install nvidia-cuda-nvcc, or pass --ptxas PATH")
    print(f"ptxas: {ptxas}; cc {CC}; static figures (no GPU run)")
    print(f"| {'kernel':<32} | registers | spill stores / loads (bytes) | PTX instructions |")
    print(f"| {'-' * 32} | --- | --- | --- |")
    ptx_of = {}
    for label, fn, types in hot_kernels():
        ptx, _ = cuda.compile_ptx(fn, types, cc=CC, fastmath=False)
        ptx_of[label] = ptx
        regs, stores, loads = ptxas_report(ptx, ptxas)
        print(f"| {label:<32} | {regs} | {stores} / {loads} | {instruction_count(ptx)} |")
    print(f"\n| {'path (bench/ptx_paths.py)':<32} | PTX instructions per element |")
    print(f"| {'-' * 32} | --- |")
    for label, count in element_instructions(ptx_of).items():
        print(f"| {label:<32} | {count} |")


if __name__ == "__main__":
    main()
