"""Tiled, register-blocked, double-buffered single-precision GEMM in numba-cuda.

The readable reference kernel of the CUDA backend, and its fallback when CuPy (cuBLAS)
is absent. C (M × N) = op(A) @ op(B), op(X) = Xᵀ when the kernel was built with that
transpose.

* A block of 256 threads computes a 128 × 128 tile of C; each thread keeps an 8 × 8
  micro-tile of C in registers (rows ty, ty + 16, …; columns tx, tx + 16, …, so
  shared-memory reads are conflict-free and the final stores coalesce).
* K is walked in steps of 8. Two shared-memory stages: while the tile of step s is
  multiplied out of one stage, the global loads of step s + 1 are already in flight
  into registers, and land in the other stage (one barrier per step).
* Split-K for tall-K products (weight gradients: K = N·OH·OW up to 387,200; the fc
  forward pass): the grid's z dimension cuts K into ``splits`` slices; each slice
  writes its partial tile to a workspace (splits × M × N) and :func:`sum_splits` adds
  the slices up (gather form, no atomics, deterministic).
* Indices are unsigned 32-bit (numba skips its negative-index wraparound code, and
  the address arithmetic stays narrow), the k-step is unrolled (constant trip
  counts), and the kernel is compiled for ≤ 128 registers per thread
  (launch bounds of 256 threads and two blocks per SM; ptxas 13.5: 114–121 registers,
  no spills). ``tests/test_cuda_ptx.py`` checks that with ptxas where it is installed.
Edges are handled by zero-filled loads and guarded stores, so any M, N, K work.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from numba import config, cuda, float32

BM = 128  # rows of C per block
BN = 128  # columns of C per block
BK = 8  # depth of one shared-memory stage (the kernel's k-step is unrolled for 8)
TM = 8  # rows of C per thread
TN = 8  # columns of C per thread
THREADS = (BM // TM) * (BN // TN)  # 256
assert BK == 8, "sgemm_kernel unrolls its k-step for BK = 8"
LOADS_A = BM * BK // THREADS  # elements of the A tile each thread loads (4)
LOADS_B = BN * BK // THREADS
MAX_REGISTERS = 128
LAUNCH_BOUNDS = (THREADS, 2)  # 2 blocks per SM: ptxas keeps ≤ 65,536 / 512 = 128 registers
# Shared tiles get 4 spare columns: a k-fastest tile store then hits 8 banks, not 1.
A_COLS = BM + 4
B_COLS = BN + 4
TARGET_BLOCKS = 264  # 2 blocks on each of an H100's 132 SMs
MIN_SPLIT_K = 256  # no slice of K shorter than this

_U0, _U1 = np.uint32(0), np.uint32(1)
_BM, _BN, _BK = np.uint32(BM), np.uint32(BN), np.uint32(BK)
_TM, _TN = np.uint32(TM), np.uint32(TN)
_THREADS = np.uint32(THREADS)
_ROWS_STEP = np.uint32(BM // TM)  # 16: distance between a thread's rows of C
_COLS_STEP = np.uint32(BN // TN)


def split_count(M: int, N: int, K: int) -> int:
    """How many K slices keep the GPU busy: 1 unless the M × N tiles are too few."""
    tiles = -(-M // BM) * -(-N // BN)
    if tiles >= TARGET_BLOCKS:
        return 1
    return int(max(1, min(-(-TARGET_BLOCKS // tiles), K // MIN_SPLIT_K, 64)))


def k_slices(M: int, N: int, K: int) -> tuple[int, int]:
    """(splits, k_slice): K cut into ``splits`` slices of ``k_slice`` (a whole number of
    k-steps; the last slice may be shorter) for an M × N output."""
    splits = split_count(M, N, K)
    k_slice = -(-K // splits) if K else 1
    k_slice = -(-k_slice // BK) * BK  # whole k-steps per slice
    return max(1, -(-K // k_slice)), k_slice


def launch_config(M: int, N: int, splits: int = 1) -> tuple[tuple[int, int, int], int]:
    """(grid, threads per block) covering an M × N output in ``splits`` K slices."""
    return ((N + BN - 1) // BN, (M + BM - 1) // BM, splits), THREADS


@functools.cache
def sgemm_kernel(trans_a: bool, trans_b: bool) -> Callable:
    """The kernel ``kernel(A, B, C, M, N, K, k_slice)`` for one pair of transposes.

    C is 3-D, splits × M × N: slice z (the grid's z index) sums k in
    z·k_slice … (z + 1)·k_slice − 1 into C[z]; with one split C[0] is the product.
    """

    # The simulator's jit knows no launch bounds.
    options = {} if config.ENABLE_CUDASIM else {"launch_bounds": LAUNCH_BOUNDS}

    @cuda.jit(fastmath=True, **options)
    def sgemm(A, B, C, M, N, K, k_slice):
        As = cuda.shared.array((2, BK, A_COLS), float32)
        Bs = cuda.shared.array((2, BK, B_COLS), float32)
        acc = cuda.local.array((TM, TN), float32)
        a_reg = cuda.local.array(TM, float32)
        b_reg = cuda.local.array(TN, float32)
        a_next = cuda.local.array(LOADS_A, float32)
        b_next = cuda.local.array(LOADS_B, float32)
        m_u = np.uint32(M)
        n_u = np.uint32(N)
        tid = np.uint32(cuda.threadIdx.x)
        tx = np.uint32(tid % _COLS_STEP)
        ty = np.uint32(tid // _COLS_STEP)
        row0 = np.uint32(np.uint32(cuda.blockIdx.y) * _BM)
        col0 = np.uint32(np.uint32(cuda.blockIdx.x) * _BN)
        z = np.uint32(cuda.blockIdx.z)
        k_begin = np.uint32(z * np.uint32(k_slice))
        k_end = np.uint32(min(np.uint32(K), np.uint32(k_begin + np.uint32(k_slice))))
        for a in range(TM):
            for b in range(TN):
                acc[a, b] = float32(0.0)

        # --- global → registers: the 4 + 4 elements this thread stages for step k0 ---
        def load_tile(k0):
            for j in range(LOADS_A):
                e = np.uint32(tid + np.uint32(j) * _THREADS)
                if trans_a:  # A is K × M: consecutive threads read consecutive m
                    mm = np.uint32(e % _BM)
                    kk = np.uint32(e // _BM)
                else:  # A is M × K: consecutive threads read consecutive k
                    kk = np.uint32(e % _BK)
                    mm = np.uint32(e // _BK)
                gm = np.uint32(row0 + mm)
                gk = np.uint32(k0 + kk)
                v = float32(0.0)
                if gm < m_u and gk < k_end:
                    v = A[gk, gm] if trans_a else A[gm, gk]
                a_next[j] = v
            for j in range(LOADS_B):
                e = np.uint32(tid + np.uint32(j) * _THREADS)
                if trans_b:  # B is N × K
                    kk = np.uint32(e % _BK)
                    nn = np.uint32(e // _BK)
                else:  # B is K × N
                    nn = np.uint32(e % _BN)
                    kk = np.uint32(e // _BN)
                gn = np.uint32(col0 + nn)
                gk = np.uint32(k0 + kk)
                v = float32(0.0)
                if gn < n_u and gk < k_end:
                    v = B[gn, gk] if trans_b else B[gk, gn]
                b_next[j] = v

        # --- registers → shared stage s ---------------------------------------------------
        def store_tile(s):
            for j in range(LOADS_A):
                e = np.uint32(tid + np.uint32(j) * _THREADS)
                if trans_a:
                    As[s, e // _BM, e % _BM] = a_next[j]
                else:
                    As[s, e % _BK, e // _BK] = a_next[j]
            for j in range(LOADS_B):
                e = np.uint32(tid + np.uint32(j) * _THREADS)
                if trans_b:
                    Bs[s, e % _BK, e // _BK] = b_next[j]
                else:
                    Bs[s, e // _BN, e % _BN] = b_next[j]

        # --- one k of the stage: an 8 × 8 outer product into the accumulators ---------------
        def multiply_k(s, kk):
            for a in range(TM):
                a_reg[a] = As[s, kk, ty + np.uint32(a) * _ROWS_STEP]
            for b in range(TN):
                b_reg[b] = Bs[s, kk, tx + np.uint32(b) * _COLS_STEP]
            for a in range(TM):
                for b in range(TN):
                    acc[a, b] += a_reg[a] * b_reg[b]

        load_tile(k_begin)
        store_tile(_U0)
        cuda.syncthreads()
        stage = _U0
        k0 = k_begin
        while k0 < k_end:
            k_next = np.uint32(k0 + _BK)
            more = k_next < k_end
            if more:
                load_tile(k_next)  # in flight while this stage is multiplied out
            # the k-step, unrolled by hand (BK = 8): NVVM leaves a loop of 8 × 64 FMAs
            # rolled, with its index arithmetic between the FMAs
            multiply_k(stage, 0)
            multiply_k(stage, 1)
            multiply_k(stage, 2)
            multiply_k(stage, 3)
            multiply_k(stage, 4)
            multiply_k(stage, 5)
            multiply_k(stage, 6)
            multiply_k(stage, 7)
            stage = np.uint32(_U1 - stage)
            if more:
                store_tile(stage)  # the other stage: last read before the previous barrier
            cuda.syncthreads()
            k0 = k_next
        out = C[z]
        for a in range(TM):
            r = np.uint32(row0 + ty + np.uint32(a) * _ROWS_STEP)
            if r < m_u:
                for b in range(TN):
                    c = np.uint32(col0 + tx + np.uint32(b) * _COLS_STEP)
                    if c < n_u:
                        out[r, c] = acc[a, b]

    return sgemm


@cuda.jit
def sum_splits(out, parts):
    """out[i] = Σ_z parts[z, i] for flat out (M·N) and parts (splits × M·N)."""
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        acc = float32(0.0)
        for z in range(parts.shape[0]):
            acc += parts[z, i]
        out[i] = acc
