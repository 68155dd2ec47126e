"""Tiled, register-blocked single-precision GEMM for the CUDA backend.

C (M × N) = op(A) @ op(B), op(X) = Xᵀ when the kernel was built with that transpose.
Each block of 256 threads computes a 128 × 128 tile of C; it walks K in steps of 8,
staging an 8 × 128 slice of op(A) and of op(B) in shared memory, and each thread
keeps an 8 × 8 micro-tile of C in registers (rows ty, ty + 16, …; columns tx,
tx + 16, …, so shared-memory reads are conflict-free and the final stores coalesce).
Edges are handled by zero-filled loads and guarded stores, so any M, N, K work.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from numba import cuda, float32

BM = 128  # rows of C per block
BN = 128  # columns of C per block
BK = 8  # depth of one shared-memory stage
TM = 8  # rows of C per thread
TN = 8  # columns of C per thread
THREADS = (BM // TM) * (BN // TN)  # 256
LOADS_A = BM * BK // THREADS  # elements of the A tile each thread loads (4)
LOADS_B = BN * BK // THREADS
# Shared tiles get 4 spare columns: a k-fastest tile load then hits 8 banks, not 1.
A_COLS = BM + 4
B_COLS = BN + 4


def launch_config(M: int, N: int) -> tuple[tuple[int, int], int]:
    """(grid, threads per block) covering an M × N output."""
    return ((N + BN - 1) // BN, (M + BM - 1) // BM), THREADS


@functools.cache
def sgemm_kernel(trans_a: bool, trans_b: bool) -> Callable:
    """The SGEMM kernel ``kernel(A, B, C, M, N, K)`` for one pair of transposes."""

    @cuda.jit(fastmath=True)
    def sgemm(A, B, C, M, N, K):
        As = cuda.shared.array((BK, A_COLS), float32)
        Bs = cuda.shared.array((BK, B_COLS), float32)
        acc = cuda.local.array((TM, TN), float32)
        a_reg = cuda.local.array(TM, float32)
        b_reg = cuda.local.array(TN, float32)
        tid = cuda.threadIdx.x
        tx = tid % (BN // TN)
        ty = tid // (BN // TN)
        row0 = cuda.blockIdx.y * BM
        col0 = cuda.blockIdx.x * BN
        for a in range(TM):
            for b in range(TN):
                acc[a, b] = float32(0.0)
        for k0 in range(0, K, BK):
            for load in range(LOADS_A):
                e = tid + load * THREADS
                if trans_a:  # A is K × M: consecutive threads read consecutive m
                    mm = e % BM
                    kk = e // BM
                else:  # A is M × K: consecutive threads read consecutive k
                    kk = e % BK
                    mm = e // BK
                gm = row0 + mm
                gk = k0 + kk
                v = float32(0.0)
                if gm < M and gk < K:
                    v = A[gk, gm] if trans_a else A[gm, gk]
                As[kk, mm] = v
            for load in range(LOADS_B):
                e = tid + load * THREADS
                if trans_b:  # B is N × K
                    kk = e % BK
                    nn = e // BK
                else:  # B is K × N
                    nn = e % BN
                    kk = e // BN
                gn = col0 + nn
                gk = k0 + kk
                v = float32(0.0)
                if gn < N and gk < K:
                    v = B[gn, gk] if trans_b else B[gk, gn]
                Bs[kk, nn] = v
            cuda.syncthreads()
            for kk in range(BK):
                for a in range(TM):
                    a_reg[a] = As[kk, ty + a * (BM // TM)]
                for b in range(TN):
                    b_reg[b] = Bs[kk, tx + b * (BN // TN)]
                for a in range(TM):
                    for b in range(TN):
                        acc[a, b] += a_reg[a] * b_reg[b]
            cuda.syncthreads()
        for a in range(TM):
            r = row0 + ty + a * (BM // TM)
            if r < M:
                for b in range(TN):
                    c = col0 + tx + b * (BN // TN)
                    if c < N:
                        C[r, c] = acc[a, b]

    return sgemm
