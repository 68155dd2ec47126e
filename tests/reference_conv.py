"""Naive float64 numpy reference of the convolution (tests/reference.py has the other
layers): a direct sum over the FH×FW filter taps, one einsum per tap and group, on the
input zero-padded as far as the windows reach; no im2col, no gather-form backward.

Options as the spec writes them: stride and dilation one number or (height, width),
pad one, (height, width) or (top, left, bottom, right), groups G, rounding exact,
floor or ceil (the output count worked out here, not by numbacnn.geometry).
"""

from __future__ import annotations

import numpy as np


def _out_size(size: int, window: int, stride: int, pad: int, pad_end: int | None = None,
              rounding: str = "exact") -> int:
    """Windows over ``size`` padded by ``pad`` before and ``pad_end`` after: exact must
    tile; floor: those that fit; ceil: one more running past the end when they do not
    tile, dropped again if it would start in the end padding (PyTorch's ceil_mode)."""
    span = size + pad + (pad if pad_end is None else pad_end) - window
    assert span >= 0, "reference: the window is larger than the padded input"
    if rounding == "exact":
        assert span % stride == 0, "reference: the window does not tile the input"
    count = span // stride + 1
    if rounding == "ceil" and span % stride:
        count += 1
        if (count - 1) * stride >= size + pad:
            count -= 1
    return count


def _pair(value: int | tuple) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def _sides(pad: int | tuple) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of a spec's pad: one number, HxW or four sides."""
    if isinstance(pad, int):
        return (pad,) * 4
    return (*pad, *pad) if len(pad) == 2 else tuple(pad)  # type: ignore[return-value]


def _conv_layout(x: np.ndarray, w: np.ndarray, stride: int | tuple, pad: int | tuple,
                 dilation: int | tuple, rounding: str) -> tuple:
    """The window geometry and the input zero-padded far enough for every window (a
    ceil window runs past the declared padding): (xp, (SH, SW), (DH, DW), OH, OW, top,
    left)."""
    N, C, H, W = x.shape
    FH, FW = w.shape[2:]
    (SH, SW), (DH, DW) = _pair(stride), _pair(dilation)
    top, left, bottom, right = _sides(pad)
    OH = _out_size(H, DH * (FH - 1) + 1, SH, top, bottom, rounding)
    OW = _out_size(W, DW * (FW - 1) + 1, SW, left, right, rounding)
    bottom = max(bottom, (OH - 1) * SH + DH * (FH - 1) + 1 - H - top)
    right = max(right, (OW - 1) * SW + DW * (FW - 1) + 1 - W - left)
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    return xp, (SH, SW), (DH, DW), OH, OW, top, left


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int | tuple = 1,
                   pad: int | tuple = 0, groups: int = 1, dilation: int | tuple = 1,
                   rounding: str = "exact") -> np.ndarray:
    """y[n, k, oy, ox] = b[k] + Σ_{c, fy, fx} w[k, c, fy, fx] ·
    xpad[n, g·C/G + c, oy·SH + fy·DH, ox·SW + fx·DW], g = k // (K/G) the filter's group;
    stride and dilation one number or (H, W), pad one, (H, W) or (top, left, bottom,
    right)."""
    x, w, b = (np.asarray(a, np.float64) for a in (x, w, b))
    N, C, H, W = x.shape
    K, Cg, FH, FW = w.shape
    assert C == Cg * groups and K % groups == 0
    xp, (SH, SW), (DH, DW), OH, OW, _, _ = _conv_layout(x, w, stride, pad, dilation, rounding)
    y = np.zeros((N, K, OH, OW))
    Kg = K // groups
    for g in range(groups):
        xg, wg = xp[:, g * Cg:(g + 1) * Cg], w[g * Kg:(g + 1) * Kg]
        for fy in range(FH):
            for fx in range(FW):
                taps = xg[:, :, fy * DH:fy * DH + SH * OH:SH, fx * DW:fx * DW + SW * OW:SW]
                y[:, g * Kg:(g + 1) * Kg] += np.einsum("nchw,kc->nkhw", taps, wg[:, :, fy, fx])
    return y + b[None, :, None, None]


def conv2d_backward(x: np.ndarray, w: np.ndarray, dy: np.ndarray, stride: int | tuple = 1,
                    pad: int | tuple = 0, groups: int = 1, dilation: int | tuple = 1,
                    rounding: str = "exact") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dw, db): each filter tap scatters its share of dy back to the padded input."""
    x, w, dy = (np.asarray(a, np.float64) for a in (x, w, dy))
    N, C, H, W = x.shape
    K, Cg, FH, FW = w.shape
    xp, (SH, SW), (DH, DW), OH, OW, top, left = _conv_layout(x, w, stride, pad, dilation,
                                                            rounding)
    assert dy.shape[2:] == (OH, OW)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    Kg = K // groups
    for g in range(groups):
        ks, cs = slice(g * Kg, (g + 1) * Kg), slice(g * Cg, (g + 1) * Cg)
        for fy in range(FH):
            for fx in range(FW):
                rows = slice(fy * DH, fy * DH + SH * OH, SH)
                cols = slice(fx * DW, fx * DW + SW * OW, SW)
                dw[ks, :, fy, fx] = np.einsum("nkhw,nchw->kc", dy[:, ks], xp[:, cs, rows, cols])
                dxp[:, cs, rows, cols] += np.einsum("nkhw,kc->nchw", dy[:, ks], w[ks, :, fy, fx])
    dx = dxp[:, :, top:top + H, left:left + W]
    return dx, dw, dy.sum(axis=(0, 2, 3))
