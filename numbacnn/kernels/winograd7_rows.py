"""The CPU's row bodies of the α = 7 Winograd input transform (Bᵀ of ``winograd35.py``):
a whole row of tiles per call, for any tile step.

7×7 input tiles serve F(3×3, 5×5) (step 3) and would serve F(5×5, 3×3) (step 5): the
same Bᵀ, points 0, ±1, ±2, 1/2, ∞. As ``winograd5_rows.input_tile_row`` and
``input_grad_tile_row`` (6×6 tiles, steps 2 and 4; the reasons for two passes are
there): loads from a zero-padded plane (``winograd_rows.pad_plane``), Bᵀ over seven
rows of it into Q (7 × P's width, a loop over the columns that vectorizes), then B over
each row of Q tile by tile. The element body applies B first: the same values to
float32 rounding (tests/test_winograd35.py compares them).

Layouts: V and dV 49 × (C·T), position 7·i + j, column c·T + t, t = (n·TH + th)·TW + tw.
"""

import numpy as np
from numba import njit

from numbacnn.kernels.index import u64
from numbacnn.kernels.winograd35 import b7, bt7

ZERO = np.float32(0.0)


@njit(inline="always")
def input_tile_row(V, col0, P, r0, TW, Q, step):
    """V[:, col0 + tw] = Bᵀ·d·B for tw < TW, d the 7×7 tile at rows r0 …, columns
    step·tw … of the padded plane P (``winograd_rows.pad_plane``); Q: 7 × P's width."""
    p0, p1, p2, p3 = P[r0], P[r0 + 1], P[r0 + 2], P[r0 + 3]
    p4, p5, p6 = P[r0 + 4], P[r0 + 5], P[r0 + 6]
    q0, q1, q2, q3, q4, q5, q6 = Q[0], Q[1], Q[2], Q[3], Q[4], Q[5], Q[6]
    for s in range(P.shape[1]):
        v = bt7(p0[s], p1[s], p2[s], p3[s], p4[s], p5[s], p6[s])
        q0[s] = v[0]
        q1[s] = v[1]
        q2[s] = v[2]
        q3[s] = v[3]
        q4[s] = v[4]
        q5[s] = v[5]
        q6[s] = v[6]
    for i in range(7):
        q = Q[i]
        v0, v1, v2, v3 = V[7 * i], V[7 * i + 1], V[7 * i + 2], V[7 * i + 3]
        v4, v5, v6 = V[7 * i + 4], V[7 * i + 5], V[7 * i + 6]
        for tw in range(TW):
            s = u64(step * tw)
            v = bt7(q[s], q[s + u64(1)], q[s + u64(2)], q[s + u64(3)], q[s + u64(4)],
                    q[s + u64(5)], q[s + u64(6)])
            col = u64(col0 + tw)
            v0[col] = v[0]
            v1[col] = v[1]
            v2[col] = v[2]
            v3[col] = v[3]
            v4[col] = v[4]
            v5[col] = v[5]
            v6[col] = v[6]


@njit(inline="always")
def input_grad_tile_row(P, r0, dV, col0, TW, Q, step):
    """Adds each tile's input gradient B·dv·Bᵀ (dv = dV[:, col0 + tw], 7×7, tw < TW) into
    the padded plane P at rows r0 …, columns step·tw … (neighbouring tiles overlap by
    7 − ``step`` columns and rows: their sums). B over each row of every dv, added into Q
    (7 × P's width), then B over Q's columns into P's rows, a loop that vectorizes. The
    transpose of :func:`input_tile_row`: the CPU's dx."""
    PW = P.shape[1]
    for i in range(7):
        q = Q[i]
        for s in range(PW):
            q[u64(s)] = ZERO
        d0, d1, d2, d3 = dV[7 * i], dV[7 * i + 1], dV[7 * i + 2], dV[7 * i + 3]
        d4, d5, d6 = dV[7 * i + 4], dV[7 * i + 5], dV[7 * i + 6]
        for tw in range(TW):
            col = u64(col0 + tw)
            w = b7(d0[col], d1[col], d2[col], d3[col], d4[col], d5[col], d6[col])
            s = u64(step * tw)
            for a in range(7):
                q[s + u64(a)] += w[a]
    q0, q1, q2, q3, q4, q5, q6 = Q[0], Q[1], Q[2], Q[3], Q[4], Q[5], Q[6]
    p0, p1, p2, p3 = P[r0], P[r0 + 1], P[r0 + 2], P[r0 + 3]
    p4, p5, p6 = P[r0 + 4], P[r0 + 5], P[r0 + 6]
    for s in range(PW):
        v = b7(q0[s], q1[s], q2[s], q3[s], q4[s], q5[s], q6[s])
        p0[s] += v[0]
        p1[s] += v[1]
        p2[s] += v[2]
        p3[s] += v[3]
        p4[s] += v[4]
        p5[s] += v[5]
        p6[s] += v[6]
