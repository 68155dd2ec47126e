"""The CPU's Winograd F(2×2, 3×3) convolution (bodies: ``numbacnn/kernels/winograd.py``).

Each thread takes its share of the batch (a part: the parts differ by one image at
most) and works it a chunk of images at a time, like ``cpu_conv.py``: the chunk's input
tiles transformed (V, 16 × C·T), 16 products with the transformed filters (the CBLAS
SGEMM of ``cblas.py``, MKL's where installed, called from numba), the output transform
with the bias and the fused ReLU, while the chunk's tiles are in the core's cache.
Backward reads the forward's filter transform U again (backward follows the forward of
the same batch with the same weights), pads and masks each plane of the gradient once
for both its own tiles (dM) and dx's input tiles (Vb), recomputes a chunk's V, sums the
filter gradient's 16 products per part (the parts added in order: repeatable bit for bit
for a thread count) and computes dx as the convolution of the gradient with the flipped
filters through the same transforms (see the kernel module); its products read U
transposed and with positions permuted (``FLIPPED``).

The transforms run the row bodies (``kernels/winograd_rows.py``: a row of tiles per
call, vectorized across tiles), the GPU the element bodies; the 16 rows of V, M and U lie
an odd number of cache lines apart (``pitch``). Phase by phase: bench/winograd_phases.py.

The parts are plain ``@njit(nogil=True, cache=True)`` functions run on Python threads,
not ``prange`` loops: a ``prange`` loop compiles a gufunc besides (about twice the
compile time), and this module's functions all compile on a run's first step
(``bench/compile_profile.py``). Without a CBLAS function the whole batch runs in one
chunk on this thread with numpy's batched ``matmul``.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit

from numbacnn.backends import cblas, cpu_threads, kernel_cache
from numbacnn.kernels import winograd, winograd_rows

_numba_cache_dir = kernel_cache.use_versioned_cache_dir()  # restored at the end of this module

# V and M of one chunk (both 16 × channels × tiles floats): within a core's L2 …
CHUNK_BYTES = 1 << 20
# … but with at least this many tiles: the products stream all of U (16 × K·C) once a
# chunk, and at AlexNet's 384 channels and one image a chunk (49 tiles) they ran at 2/3
# of their rate at 6 images (bench/RESULTS.md, "Winograd on the CPU, transforms by rows")
MIN_CHUNK_TILES = 256
# … and with V and M at least this many times U's bytes: U is streamed from memory once a
# chunk. AlexNet's conv4 (U 9.4 MB, V and M 2.4 MB an image), one thread, products of 16
# images: 21.9 ms in one chunk, 24.1 in chunks of 8, 25.7 of 6 and of 4 (2026-12-06)
MIN_CHUNK_OVER_U = 3
# Flags as int64 values, not literals: a literal 0 or 1 argument is its own type to numba,
# and each function would compile once more for it
NO_RELU = NO_BIAS = np.int64(0)
WITH_BIAS = np.int64(1)
# dx's filters, G·rot180(g)·Gᵀ = P·(G·g·Gᵀ)·P with P the swap of rows 0 and 3: position ξ
# of the flipped (c, k) filter is position FLIPPED[ξ] of the (k, c) one, so dx's products
# take U transposed at FLIPPED[ξ] rather than a second filter transform
FLIPPED = np.array([4 * (3 - i if i in (0, 3) else i) + (3 - j if j in (0, 3) else j)
                    for i in range(4) for j in range(4)], np.int64)


def tiles(OH: int, OW: int) -> tuple[int, int]:
    """(TH, TW): the 2×2 output tiles covering OH×OW."""
    return (OH + 1) // 2, (OW + 1) // 2


def _chunk(N: int, C: int, K: int, H: int, W: int, OH: int, OW: int, parts: int) -> int:
    """Images per chunk at most: its V and M within CHUNK_BYTES, or else as many images as
    make MIN_CHUNK_TILES tiles and MIN_CHUNK_OVER_U times U's bytes, no more than a part's
    share of the batch (:func:`_part_chunks` evens the chunks out)."""
    per_image = 4 * 16 * max((C + K) * _count(tiles(OH, OW)), (C + K) * _count(tiles(H, W)))
    enough = max(-(-MIN_CHUNK_TILES // _count(tiles(OH, OW))),
                 -(-MIN_CHUNK_OVER_U * 4 * 16 * K * C // per_image))
    return max(1, min(max(CHUNK_BYTES // per_image, enough), -(-N // parts)))


@njit(nogil=True, cache=True)
def _part_chunks(part, parts, N, chunk):
    """(first image, end, images per chunk) of part ``part``: the batch split into parts
    that differ by one image at most, each in chunks of at most ``chunk`` images and
    equal but for the last (chunks of the whole batch dealt out to the parts left
    AlexNet's batch of 16 in chunks of 6 as 6 images on one thread and 10 on the other)."""
    lo, hi = N * part // parts, N * (part + 1) // parts
    count = -(-(hi - lo) // chunk)
    return lo, hi, max(1, -(-(hi - lo) // max(count, 1)))


def _count(hw: tuple[int, int]) -> int:
    return hw[0] * hw[1]


def pitch(width: int) -> int:
    """The row pitch (floats) of a 16-row buffer of ``width`` columns: an odd number of
    64-byte lines. The transforms write (or read) all 16 rows at once; with a pitch a
    multiple of 4 KB (AlexNet's 384·384 filters, 8 images of 384 channels) the 16
    streams fell into one set of the L1 cache and each pass ran 6× slower."""
    lines = -(-width // 16)
    return 16 * (lines + 1 - lines % 2)


def winograd_workspace(N: int, C: int, K: int, H: int, W: int, OH: int,
                       OW: int) -> dict[str, tuple]:
    """Shapes of the float32 buffers of :func:`winograd_forward` and
    :func:`winograd_backward` for a batch of N (N×C×H×W → N×K×OH×OW): per part a chunk's
    V and M and its gradient sums, and the transformed filters U (16 × K·C)."""
    tf, tb = _count(tiles(OH, OW)), _count(tiles(H, W))  # tiles per image: y, dx
    parts = numba.get_num_threads() if cblas.sgemm() is not None else 1
    chunk = _chunk(N, C, K, H, W, OH, OW, parts) if cblas.sgemm() is not None else N
    return {"wino_V": (parts, 16 * pitch(chunk * C * max(tf, tb))),
            "wino_Vb": (parts, 16 * pitch(chunk * K * tb)),
            "wino_M": (parts, 16 * pitch(chunk * K * tf)),
            "wino_U": (16, pitch(K * C)), "wino_dU": (parts, 16, pitch(K * C)),
            "wino_db": (parts, K)}


def winograd_forward(x: np.ndarray, H: int, W: int, w2: np.ndarray, b: np.ndarray,
                     y: np.ndarray, ws: dict[str, np.ndarray], geo: tuple, OH: int, OW: int,
                     relu: int) -> None:
    """y (N×K×OH×OW, passed flat) = the convolution of x (N×C×(H·W)) with w2 (K × C·9)
    plus b, then ReLU when ``relu``; ``ws``: the buffers of :func:`winograd_workspace`."""
    N, C, K = x.shape[0], x.shape[1], w2.shape[0]
    PT, PL = geo[4], geo[5]
    U, V, M = ws["wino_U"], ws["wino_V"], ws["wino_M"]
    y3 = y.reshape(N, K, OH * OW)
    _winograd_filters(U, w2)
    sgemm = cblas.sgemm()
    if sgemm is None:  # one chunk, numpy's batched matmul
        TH, TW = tiles(OH, OW)
        T = N * TH * TW
        V2, M2 = V[0].reshape(16, -1), M[0].reshape(16, -1)
        _winograd_inputs(V2, x, x, NO_RELU, H, W, PT, PL, TH, TW)
        np.matmul(U[:, :K * C].reshape(16, K, C), V2[:, :C * T].reshape(16, C, T),
                  out=M2[:, :K * T].reshape(16, K, T))
        _winograd_outputs(y3, M2, b, relu, WITH_BIAS, OH, OW, TH, TW)
        return
    chunk = _chunk(N, C, K, H, W, OH, OW, V.shape[0])
    with cblas.one_blas_thread():
        parts = V.shape[0]
        cpu_threads.run_parts(_winograd_forward_part, parts, chunk, sgemm, x, H, W, U, b, y3,
                              V, M, PT, PL, OH, OW, relu)


def winograd_backward(x: np.ndarray, H: int, W: int, w2: np.ndarray, y: np.ndarray,
                      dy: np.ndarray, dw2: np.ndarray, db: np.ndarray, dx: np.ndarray | None,
                      ws: dict[str, np.ndarray], geo: tuple, OH: int, OW: int,
                      relu: int) -> None:
    """dw2 (K × C·9), db (K) and, unless it is None, dx (N×C×(H·W)) from dy (N×K×OH×OW,
    passed flat like y), with the forward pass's input x and output y (its ReLU mask,
    when ``relu``)."""
    N, C, K = x.shape[0], x.shape[1], w2.shape[0]
    PT, PL = geo[4], geo[5]
    U, V, Vb, M = ws["wino_U"], ws["wino_V"], ws["wino_Vb"], ws["wino_M"]
    dU, dbp = ws["wino_dU"], ws["wino_db"]
    y3, dy3 = y.reshape(N, K, OH * OW), dy.reshape(N, K, OH * OW)
    need_dx = dx is not None
    sgemm = cblas.sgemm()
    if sgemm is None:
        _backward_whole(x, H, W, U, y3, dy3, dw2, db, dx, V, Vb, M, dU[0], PT, PL, OH, OW,
                        relu)
        return
    chunk = _chunk(N, C, K, H, W, OH, OW, V.shape[0])
    with cblas.one_blas_thread():
        parts = V.shape[0]
        cpu_threads.run_parts(_winograd_backward_part, parts, chunk, sgemm, x, H, W, U, y3,
                              dy3, x if dx is None else dx, need_dx, V, Vb, M, dU, dbp, PT, PL,
                              OH, OW, relu)
    _winograd_finish_grads(dw2, db, dU, dbp)


def _backward_whole(x: np.ndarray, H: int, W: int, U: np.ndarray, y3: np.ndarray,
                    dy3: np.ndarray, dw2: np.ndarray, db: np.ndarray, dx: np.ndarray | None,
                    V: np.ndarray, Vb: np.ndarray, M: np.ndarray, dU: np.ndarray, PT: int,
                    PL: int, OH: int, OW: int, relu: int) -> None:
    """:func:`winograd_backward` in one chunk with numpy's batched matmul (no CBLAS)."""
    N, C, K = x.shape[0], x.shape[1], y3.shape[1]
    TH, TW = tiles(OH, OW)
    T = N * TH * TW
    dM, V2, Vb2 = M[0].reshape(16, -1), V[0].reshape(16, -1), Vb[0].reshape(16, -1)
    _winograd_grad_tiles(dM, Vb2, dy3, y3, relu, dx is not None, H, W, PT, PL, OH, OW)
    db[:] = dM[5, :K * T].reshape(K, T).sum(axis=1)
    _winograd_inputs(V2, x, x, NO_RELU, H, W, PT, PL, TH, TW)
    np.matmul(dM[:, :K * T].reshape(16, K, T),
              V2[:, :C * T].reshape(16, C, T).transpose(0, 2, 1),
              out=dU[:, :K * C].reshape(16, K, C))
    _winograd_filter_grads(dw2, dU)
    if dx is not None:
        BH, BW = tiles(H, W)
        Tb = N * BH * BW
        np.matmul(U[:, :K * C].reshape(16, K, C)[FLIPPED].transpose(0, 2, 1),
                  Vb2[:, :K * Tb].reshape(16, K, Tb), out=V2[:, :C * Tb].reshape(16, C, Tb))
        _winograd_outputs(dx, V2, db, NO_RELU, NO_BIAS, H, W, BH, BW)


# --- compiled loops over the bodies ---------------------------------------------------
@njit(nogil=True, fastmath=True, cache=True)
def _winograd_filters(U, w2):
    for k in range(w2.shape[0]):
        winograd_rows.filter_tile_row(U, w2, k)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd_inputs(V, x, mask, relu, H, W, PT, PL, TH, TW):
    """V (16 × C·T) from x (N×C×(H·W)): each plane zero-padded once, then a row of tiles
    per call (the row bodies vectorize across tiles; the element bodies are the GPU's)."""
    N, C = x.shape[0], x.shape[1]
    T = N * TH * TW
    P = np.empty((2 * TH + 2, 2 * TW + 2), np.float32)
    for c in range(C):
        for n in range(N):
            winograd_rows.pad_plane(P, x[n, c], mask[n, c], relu, H, W, PT, PL)
            _winograd_plane_inputs(V, c * T + n * TH * TW, P, TH, TW)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd_plane_inputs(V, col0, P, TH, TW):
    """V[:, col0 + th·TW + tw] = the input tiles of the padded plane P (:func:`pad_plane`),
    a row of tiles per call: a function of its own, compiled once for the forward's
    input and dx's (the gradient's) input."""
    for th in range(TH):
        winograd_rows.input_tile_row(V, col0 + th * TW, P, 2 * th, TW)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd_outputs(y, M, b, relu, with_bias, OH, OW, TH, TW):
    N, K = y.shape[0], y.shape[1]
    T = N * TH * TW
    O = np.empty((4, TH * TW), np.float32)
    for k in range(K):
        bias = b[k] if with_bias else np.float32(0.0)
        for n in range(N):
            winograd_rows.output_tile_plane(y[n, k], k * T + n * TH * TW, M, bias, relu, OH, OW,
                                            TH, TW, O)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd_grad_tiles(dM, Vb, dy, y, relu, need_dx, H, W, PT, PL, OH, OW):
    """From one pass over the gradient dy (N×K×(OH·OW), masked by y > 0 when ``relu``):
    dM (16 × K·T, the output gradient's tiles) and, when ``need_dx``, Vb (16 × K·Tb: dx's
    input tiles, dy padded 2 − PT, 2 − PL). Each plane is padded and masked once."""
    N, K = dy.shape[0], dy.shape[1]
    TH, TW = (OH + 1) // 2, (OW + 1) // 2
    BH, BW = (H + 1) // 2, (W + 1) // 2
    T, Tb = N * TH * TW, N * BH * BW
    QT, QL = 2 - PT, 2 - PL  # where dy's plane starts in P
    P = np.empty((max(2 * BH + 2, QT + 2 * TH), max(2 * BW + 2, QL + 2 * TW)), np.float32)
    for k in range(K):
        for n in range(N):
            winograd_rows.pad_plane(P, dy[n, k], y[n, k], relu, OH, OW, QT, QL)
            for th in range(TH):
                winograd_rows.output_grad_tile_row(dM, k * T + (n * TH + th) * TW, P,
                                                   QT + 2 * th, QL, TW)
            if need_dx:
                _winograd_plane_inputs(Vb, k * Tb + n * BH * BW, P, BH, BW)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd_filter_grads(dw2, dU):
    for i in range(dw2.shape[0] * (dw2.shape[1] // 9)):
        winograd.filter_grad_at(i, dw2, dU)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd_forward_part(part, parts, chunk, sgemm, x, H, W, U, b, y, V, M, PT, PL, OH, OW,
                           relu):
    N, C, K = x.shape[0], x.shape[1], y.shape[1]
    TH, TW = (OH + 1) // 2, (OW + 1) // 2
    lo, hi, size = _part_chunks(part, parts, N, chunk)
    for n0 in range(lo, hi, size):
        m = min(hi, n0 + size) - n0
        T = m * TH * TW
        Vc = V[part].reshape(16, V.shape[1] // 16)  # rows a pitch apart (see pitch())
        Mc = M[part].reshape(16, M.shape[1] // 16)
        _winograd_inputs(Vc, x[n0:n0 + m], x[n0:n0 + m], NO_RELU, H, W, PT, PL, TH, TW)
        for xi in range(16):  # M[ξ] (K × T) = U[ξ] (K × C) @ V[ξ] (C × T)
            sgemm(cblas.ROW_MAJOR, cblas.NO_TRANS, cblas.NO_TRANS, K, T, C, np.float32(1.0),
                  U[xi].ctypes, C, Vc[xi].ctypes, T, np.float32(0.0), Mc[xi].ctypes, T)
        _winograd_outputs(y[n0:n0 + m], Mc, b, relu, WITH_BIAS, OH, OW, TH, TW)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd_backward_part(part, parts, chunk, sgemm, x, H, W, U, y, dy, dx, need_dx, V, Vb,
                            M, dU_parts, db_parts, PT, PL, OH, OW, relu):
    N, C, K = x.shape[0], x.shape[1], y.shape[1]
    TH, TW = (OH + 1) // 2, (OW + 1) // 2
    BH, BW = (H + 1) // 2, (W + 1) // 2  # dx's tiles
    dUp, dbp = dU_parts[part], db_parts[part]
    for xi in range(16):
        for j in range(K * C):
            dUp[xi, j] = np.float32(0.0)
    for k in range(K):
        dbp[k] = np.float32(0.0)
    dM = M[part].reshape(16, M.shape[1] // 16)  # rows a pitch apart (see pitch())
    Vc = V[part].reshape(16, V.shape[1] // 16)
    Vbc = Vb[part].reshape(16, Vb.shape[1] // 16)
    lo, hi, size = _part_chunks(part, parts, N, chunk)
    for n0 in range(lo, hi, size):
        m = min(hi, n0 + size) - n0
        T = m * TH * TW
        _winograd_grad_tiles(dM, Vbc, dy[n0:n0 + m], y[n0:n0 + m], relu, need_dx, H, W, PT, PL,
                             OH, OW)
        for k in range(K):  # position 5 of A·g·Aᵀ is the tile's sum
            acc = np.float32(0.0)
            for t in range(k * T, (k + 1) * T):
                acc += dM[5, t]
            dbp[k] += acc
        if need_dx:  # dx = the gradient convolved with the flipped filters
            Tb = m * BH * BW
            for xi in range(16):  # Mb[ξ] (C × Tb) = U[FLIPPED[ξ]]ᵀ @ Vb[ξ] (K × Tb), in V
                sgemm(cblas.ROW_MAJOR, cblas.TRANS, cblas.NO_TRANS, C, Tb, K,
                      np.float32(1.0), U[FLIPPED[xi]].ctypes, C, Vbc[xi].ctypes, Tb,
                      np.float32(0.0), Vc[xi].ctypes, Tb)
            _winograd_outputs(dx[n0:n0 + m], Vc, dbp, NO_RELU, NO_BIAS, H, W, BH, BW)
        _winograd_inputs(Vc, x[n0:n0 + m], x[n0:n0 + m], NO_RELU, H, W, PT, PL, TH, TW)
        for xi in range(16):  # dU[ξ] (K × C) += dM[ξ] (K × T) @ V[ξ]ᵀ
            sgemm(cblas.ROW_MAJOR, cblas.NO_TRANS, cblas.TRANS, K, C, T, np.float32(1.0),
                  dM[xi].ctypes, T, Vc[xi].ctypes, T, np.float32(1.0), dUp[xi].ctypes, C)


@njit(nogil=True, fastmath=True, cache=True)
def _winograd_finish_grads(dw2, db, dU_parts, db_parts):
    """db and dw2 from the parts' sums, added in order; dw2 = Gᵀ·dU·G."""
    parts, K = dU_parts.shape[0], db.shape[0]
    KC = K * (dw2.shape[1] // 9)
    dU = dU_parts[0]
    for p in range(1, parts):
        for xi in range(16):
            for j in range(KC):
                dU[xi, j] += dU_parts[p, xi, j]
    for k in range(K):
        acc = db_parts[0, k]
        for p in range(1, parts):
            acc += db_parts[p, k]
        db[k] = acc
    _winograd_filter_grads(dw2, dU)


kernel_cache.restore(_numba_cache_dir)
