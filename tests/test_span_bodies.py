"""Span bodies give the same result however a plane is cut (no GPU needed).

The CPU calls each span body once per plane with the whole plane; the GPU calls it once
per element (``hi = lo + 1``). Here the bodies' Python source is run both ways and with
random cuts of every plane, and each result must equal the CPU driver's, element for
element: a body that reads or writes outside its span, or misses part of it, fails.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from numbacnn.backends import cpu
from numbacnn.geometry import output_hw
from numbacnn.kernels import batchnorm, conv, loss, lrn, maxout, pool


def run_cut(body: Callable, n: int, L: int, args: tuple, cut: str,
            rng: np.random.Generator) -> None:
    """Call ``body(t, lo, hi, *args)`` over n planes of L elements, cut as ``cut`` says."""
    for t in range(n):
        if cut == "element":
            edges = list(range(L + 1))
        else:
            inner = sorted(rng.choice(np.arange(1, L), size=min(L - 1, 3), replace=False)) \
                if L > 1 else []
            edges = [0, *inner, L]
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            body.py_func(t, int(lo), int(hi), *args)


def cases(rng: np.random.Generator) -> list[tuple[str, Callable, Callable, int, int, list]]:
    """(name, body, CPU driver, n, L, arguments with outputs first)."""
    N, C, H, W = 2, 3, 7, 6
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    out = []
    # (size, stride, pad top, left, bottom, right, dilation, rounding): the first is the
    # drivers' constant 3x3 "same" path; the fifth a stride-1 same-size plane (the shifted
    # copy) dilated and padded unequally; the last has windows past the end (ceil)
    for F, S, P, D, rounding in (((3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "floor"),
                                 ((3, 3), (2, 2), (0, 0, 0, 0), (1, 1), "floor"),
                                 ((2, 2), (2, 2), (1, 1, 1, 1), (1, 1), "floor"),
                                 ((5, 5), (3, 3), (2, 2, 2, 2), (1, 1), "floor"),
                                 ((3, 2), (1, 1), (2, 1, 2, 0), (2, 1), "floor"),
                                 ((2, 3), (2, 2), (0, 1, 0, 1), (1, 2), "ceil")):
        OH, OW = output_hw(H, W, F, S, P, dilation=D, rounding=rounding)
        geo = (*F, *S, *P[:2], *D)
        cols = np.zeros((C * F[0] * F[1], N * OH * OW), np.float32)
        out.append((f"im2col {geo}", conv.im2col_at, cpu.im2col, cols.shape[0] * N, OH * OW,
                    [cols, x.reshape(N, C, H * W), H, W, geo, OH, OW]))
        dcols = rng.standard_normal(cols.shape).astype(np.float32)
        out.append((f"col2im {geo}", conv.col2im_at, cpu.col2im, N * C, H * W,
                    [np.zeros((N, C, H * W), np.float32), dcols, H, W, geo, OH, OW]))
    K, Pn = 4, 5
    gemm_out = rng.standard_normal((K, N * Pn)).astype(np.float32)
    bias = rng.standard_normal(K).astype(np.float32)
    for relu in (0, 1):
        out.append((f"gemm_to_nchw relu={relu}", conv.gemm_to_nchw_at, cpu.gemm_to_nchw, N * K,
                    Pn, [np.zeros(N * K * Pn, np.float32), gemm_out, bias, K, Pn, relu]))
        dy = rng.standard_normal(N * K * Pn).astype(np.float32)
        y = rng.standard_normal(N * K * Pn).astype(np.float32)
        out.append((f"nchw_to_gemm relu={relu}", conv.nchw_to_gemm_at, cpu.nchw_to_gemm, K * N,
                    Pn, [np.zeros((K, N * Pn), np.float32), dy, y, K, Pn, relu]))
    # (2, 2) and (3, 2) run the CPU drivers' constant-F, S paths; (2, 3) leaves gaps between
    # windows; then padded, ceil-rounded (windows past the edge) and rectangular windows
    # (FH, FW, SH, SW, PH, PW, OH, OW): H×W = 7×6
    geometries = [(F, F, S, S, 0, 0, (H - F) // S + 1, (W - F) // S + 1)
                  for F, S in ((2, 2), (3, 2), (3, 1), (2, 3), (3, 3))]
    geometries += [(3, 3, 2, 2, 1, 1, 4, 4), (2, 2, 2, 2, 0, 0, 4, 3), (3, 2, 2, 1, 1, 0, 4, 5),
                   (2, 3, 3, 2, 1, 1, 3, 4)]
    for FH, FW, SH, SW, PH, PW, OH, OW in geometries:
        window = (FH, FW, SH, SW, PH, PW)
        y = np.zeros((N, C, OH, OW), np.float32)
        argmax = np.zeros(y.shape, np.int32)
        cpu.max_pool_forward(N * C, OH * OW, y, argmax, x, *window)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        shown = "F{}x{}S{}x{}P{}x{}".format(*window)
        out.append((f"max_pool_forward {shown}", pool.max_pool_forward_at, cpu.max_pool_forward,
                    N * C, OH * OW, [np.zeros_like(y), np.zeros_like(argmax), x, *window]))
        out.append((f"max_pool_backward {shown}", pool.max_pool_backward_at,
                    cpu.max_pool_backward, N * C, H * W, [np.zeros_like(x), dy, argmax, *window]))
        for count_pad in (1, 0):
            out.append((f"avg_pool_forward {shown} count_pad={count_pad}",
                        pool.avg_pool_forward_at, cpu.avg_pool_forward, N * C, OH * OW,
                        [np.zeros_like(y), x, *window, count_pad]))
            out.append((f"avg_pool_backward {shown} count_pad={count_pad}",
                        pool.avg_pool_backward_at, cpu.avg_pool_backward, N * C, H * W,
                        [np.zeros_like(x), dy, *window, count_pad]))
    rows = x.reshape(N, C, H * W)
    scale = np.zeros_like(rows)
    y = np.zeros_like(rows)
    a, b, k = np.float32(1e-2), np.float32(0.75), np.float32(2.0)
    cpu.lrn_forward(N * C, H * W, y, scale, rows, 3, a, b, k)
    out.append(("lrn_forward", lrn.lrn_forward_at, cpu.lrn_forward, N * C, H * W,
                [np.zeros_like(rows), np.zeros_like(rows), rows, 3, a, b, k]))
    dy = rng.standard_normal(rows.shape).astype(np.float32)
    out.append(("lrn_backward", lrn.lrn_backward_at, cpu.lrn_backward, N * C, H * W,
                [np.zeros_like(rows), dy, rows, y, scale, 3, a, b]))
    x6 = rng.standard_normal((N, 6, H * W)).astype(np.float32)
    out.append(("maxout_forward", maxout.maxout_forward_at, cpu.maxout_forward, N * 3, H * W,
                [np.zeros((N, 3, H * W), np.float32), np.zeros((N, 3, H * W), np.int32), x6, 2]))
    which = rng.integers(0, 2, (N, 3, H * W)).astype(np.int32)
    out.append(("maxout_backward", maxout.maxout_backward_at, cpu.maxout_backward, N * 6, H * W,
                [np.zeros_like(x6), rng.standard_normal((N, 3, H * W)).astype(np.float32),
                 which, 2]))
    mean = rng.standard_normal(C).astype(np.float32)
    inv_std = rng.uniform(0.5, 2.0, C).astype(np.float32)
    gamma, beta, dgamma, dbeta = rng.standard_normal((4, C)).astype(np.float32)
    y_bn = rng.standard_normal(rows.shape).astype(np.float32)  # masks dy when relu = 1
    for relu in (0, 1):  # 1: the ReLU after it fused in
        out.append((f"batchnorm_forward relu={relu}", batchnorm.batchnorm_forward_at,
                    cpu.batchnorm_forward, N * C, H * W,
                    [np.zeros_like(rows), rows, mean, inv_std, gamma, beta, relu]))
        out.append((f"batchnorm_backward relu={relu}", batchnorm.batchnorm_backward_at,
                    cpu.batchnorm_backward, N * C, H * W,
                    [np.zeros_like(rows), dy, rows, y_bn, mean, inv_std, gamma, dgamma, dbeta,
                     np.float32(1 / (N * H * W)), relu]))
    return out


OUTPUTS = {"max_pool_forward": 2, "lrn_forward": 2, "maxout_forward": 2}  # else 1


@pytest.mark.parametrize("cut", ["element", "random"])
def test_span_bodies_match_whole_planes(cut: str):
    rng = np.random.default_rng(7)
    for name, body, driver, n, L, args in cases(rng):
        outputs = OUTPUTS.get(name.split()[0], 1)
        want = [a.copy() for a in args[:outputs]]
        driver(n, L, *want, *args[outputs:])
        got = [np.full_like(a, np.nan if a.dtype.kind == "f" else -7) for a in args[:outputs]]
        run_cut(body, n, L, (*got, *args[outputs:]), cut, rng)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=2e-6, atol=1e-6, err_msg=f"{name} cut={cut}")


def test_a_body_that_skips_its_span_is_caught():
    """The comparison fails when one element per plane is left unwritten."""
    rng = np.random.default_rng(1)
    name, body, driver, n, L, args = cases(rng)[0]

    def lazy(t, lo, hi, *rest):  # forgets the last element of each plane
        if hi < L or lo == hi - 1 == L - 1:
            body.py_func(t, lo, min(hi, L - 1), *rest)

    lazy.py_func = lazy
    want = args[0].copy()
    driver(n, L, want, *args[1:])
    got = np.full_like(args[0], np.nan)
    run_cut(lazy, n, L, (got, *args[1:]), "random", rng)
    assert not np.allclose(np.nan_to_num(got, nan=123.0), want)


@pytest.mark.parametrize("P", [1, 5, 42])
@pytest.mark.parametrize("step", [1, 3, 7, 256])
def test_channel_sums_cut_into_strided_spans_add_up(P: int, step: int):
    """BatchNorm's per-channel sums: the GPU's threads tid = 0 … step − 1 each sum the
    positions tid, tid + step, … of N·P; their partial sums add up to the whole (the CPU's
    single step-1 span), which equals numpy's."""
    rng = np.random.default_rng(P * step)
    N, C = 5, 3
    a = rng.standard_normal((N, C, P)).astype(np.float32)
    b = rng.standard_normal((N, C, P)).astype(np.float32)
    sa, sb = np.float32(0.25), np.float32(-0.5)
    mask = rng.standard_normal((N, C, P)).astype(np.float32)  # a fused ReLU's output
    body = batchnorm.channel_sums_span.py_func
    for masked in (0, 1):
        for c in range(C):
            u = a[:, c].astype(np.float64) - sa
            if masked:
                u = np.where(mask[:, c] > 0, u, 0.0)
            want = (u.sum(), (u * (b[:, c].astype(np.float64) - sb)).sum())
            whole = body(c, 0, N * P, 1, a, sa, b, sb, mask, masked)
            parts = np.sum([body(c, tid, N * P, step, a, sa, b, sb, mask, masked)
                            for tid in range(step)], axis=0)
            where = f"c={c} masked={masked}"
            np.testing.assert_allclose(whole, want, rtol=1e-5, atol=1e-5, err_msg=f"whole {where}")
            np.testing.assert_allclose(parts, want, rtol=1e-5, atol=1e-5, err_msg=f"parts {where}")


# The GPU's one-element bodies (kernels/conv.py, kernels/pool.py): body, number of
# elements from the span case's arguments
ELEMENT_BODIES = {
    "im2col": (conv.im2col_taps_at, lambda args: args[1].shape[0] * args[1].shape[1]
               * args[5] * args[6]),
    "col2im": (conv.col2im_gather_at, lambda args: args[0].size),
    "max_pool_forward": (pool.max_pool_forward_element_at, lambda args: args[0].size),
    "max_pool_backward": (pool.max_pool_backward_element_at, lambda args: args[0].size),
}


def test_element_bodies_equal_the_cpu_drivers():
    """The GPU's element bodies, called once per element as the GPU does, give the CPU
    driver's result bit for bit (the gathers sum in the CPU's order) on every geometry of
    the span cases (padding, strides, dilation, rectangular windows, ceil; pooling windows
    that overlap, tile or leave gaps)."""
    rng = np.random.default_rng(11)
    checked = 0
    for name, _, driver, n, L, args in cases(rng):
        kind = name.split()[0]
        if kind not in ELEMENT_BODIES:
            continue
        body, count = ELEMENT_BODIES[kind]
        outputs = OUTPUTS.get(kind, 1)
        want = [a.copy() for a in args[:outputs]]
        driver(n, L, *want, *args[outputs:])
        got = [np.full_like(a, np.nan if a.dtype.kind == "f" else -7) for a in args[:outputs]]
        for i in range(count(args)):
            body.py_func(i, *got, *args[outputs:])
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w, err_msg=name)
        checked += 1
    assert checked == 30  # 22 convolution and pooling cases, 8 padded or clipped pooling


@pytest.mark.parametrize("window", [(2, 2, 2, 2), (2, 1, 3, 2), (1, 2, 2, 3), (3, 3, 3, 3)])
def test_tiles_backward_body_equals_the_gather_body(window: tuple[int, int, int, int]):
    """The CPU's backward body for windows that do not overlap (its 2×2 stride 2 driver),
    with the window as numbers rather than the driver's constants: the same dx as the
    gather span body where windows tile, leave gaps between them (S > F) and leave rows
    and columns at the end (7×8 planes); every element is written (dx starts as NaN)."""
    FH, FW, SH, SW = window
    rng = np.random.default_rng(13)
    N, C, H, W = 2, 3, 7, 8
    OH, OW = (H - FH) // SH + 1, (W - FW) // SW + 1
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    y = np.zeros((N, C, OH, OW), np.float32)
    argmax = np.zeros(y.shape, np.int32)
    cpu.max_pool_forward(N * C, OH * OW, y, argmax, x, FH, FW, SH, SW, 0, 0)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    want = np.full_like(x, np.nan)
    got = np.full_like(x, np.nan)
    for t in range(N * C):
        pool.max_pool_backward_at.py_func(t, 0, H * W, want, dy, argmax, FH, FW, SH, SW, 0, 0)
        pool.max_pool_backward_tiles_plane.py_func(t, got, dy, argmax, FH, FW, SH, SW)
    np.testing.assert_array_equal(got, want)
    assert np.count_nonzero(got) == N * C * OH * OW  # one winner per window


REORDER_ELEMENT_BODIES = {"gemm_to_nchw": conv.gemm_to_nchw_element_at,
                          "nchw_to_gemm": conv.nchw_to_gemm_element_at}


def test_reorder_element_bodies_equal_the_cpu_drivers():
    """The GEMM reorders' element bodies, called per (image, channel, position) as the
    GPU's 3-D grid does (q = n·P), give the CPU drivers' result bit for bit."""
    rng = np.random.default_rng(12)
    checked = 0
    for name, _, driver, n, L, args in cases(rng):
        body = REORDER_ELEMENT_BODIES.get(name.split()[0])
        if body is None:
            continue
        want = args[0].copy()
        driver(n, L, want, *args[1:])
        got = np.full_like(args[0], np.nan)
        K, P = args[-3], args[-2]
        for img, k, p in itertools.product(range(n // K), range(K), range(P)):
            body.py_func(img * P, k, p, got, *args[1:])
        np.testing.assert_array_equal(got, want, err_msg=name)
        checked += 1
    assert checked == 4  # both reorders, with and without the fused ReLU


@pytest.mark.parametrize("step", [1, 3, 256])
def test_softmax_row_spans_combine_to_the_row_body(step: int):
    """The GPU's softmax forward: threads tid = 0 … step − 1 of a block each take columns
    tid, tid + step, … of a row; the block's max, then its Σ exp, combined between the
    three spans, give the one-row body's probabilities and loss."""
    rng = np.random.default_rng(step)
    N, K = 3, 10
    logits = (rng.standard_normal((N, K)) * 4).astype(np.float32)
    labels = rng.integers(0, K, N).astype(np.int64)
    want_p, want_l = np.zeros((N, K), np.float32), np.zeros(N, np.float32)
    for n in range(N):
        loss.softmax_cross_entropy_forward_at.py_func(n, want_p, want_l, logits, labels)
    probs, losses = np.full((N, K), np.nan, np.float32), np.full(N, np.nan, np.float32)
    for n in range(N):
        m = max(loss.row_max_span.py_func(n, tid, step, logits) for tid in range(step))
        total = np.float32(sum(loss.softmax_exp_span.py_func(n, tid, step, probs, logits, m)
                               for tid in range(step)))
        for tid in range(step):
            loss.softmax_finish_span.py_func(n, tid, step, probs, losses, logits, labels, m,
                                             total)
    np.testing.assert_allclose(probs, want_p, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(losses, want_l, rtol=1e-5, atol=1e-6)
