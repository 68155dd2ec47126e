"""The lecture's output-size arithmetic, with the numbers filled in.

A convolution or pooling window of size F, stride S and zero padding P over an
input of W pixels produces (W − F + 2P)/S + 1 outputs; the result must be whole.
Generalised: a window dilated by D covers D·(F − 1) + 1 pixels (F' below), the
padding may differ before and after (P1, P2), and a rounding mode says what a
result that is not whole becomes:

- ``exact`` (the lecture, the default): it must be whole, else ShapeError with fixes;
- ``floor``: ⌊(W − F' + P1 + P2)/S⌋ + 1, as PyTorch and ONNX (windows that would run
  past the end are dropped);
- ``ceil``: ⌈(W − F' + P1 + P2)/S⌉ + 1, as PyTorch's ``ceil_mode``: one more window
  that runs past the end (into zeros), unless it would start in the right padding.

Sizes may differ per axis (height, width): :func:`output_hw`. Volumes are written the
lecture's way in every message, W×H×D (:func:`volume`), although arrays are stored
N×C×H×W. Pure Python: imports no kernel.
"""

from __future__ import annotations

from collections.abc import Sequence

from numbacnn.errors import ShapeError

VOLUME_AXES = "W x H x D"  # the label that goes with a volume() in messages
ROUNDINGS = ("exact", "floor", "ceil")
# How a convolution is computed (numbacnn/layers/conv.py): im2col and one GEMM, Winograd
# F(2×2, 3×3) or F(2×2, 5×5) (3×3 or 5×5 windows, stride 1, no dilation, one group),
# Winograd with larger output tiles on the CPU only (winogradN: N×N tiles; F(4×4, 3×3)
# for 3×3 windows, F(3×3, 5×5) for 5×5 ones), direct (stride 1), space-to-depth (stride
# ≥ 2 as a stride-1 convolution: ``s2d_applies``), or chosen per layer
CONV_ALGORITHMS = ("auto", "im2col", "winograd", "winograd3", "winograd4", "direct", "s2d")
# winogradN → the window it computes, F×F (its tiles N×N; ``layers/conv_algorithm.py``)
LARGER_TILE_WINDOWS = {"winograd3": 5, "winograd4": 3}

# An int for both axes, or one per axis (height, width).
Pair = int | tuple[int, int]
# An int for every side, (height, width), or (top, left, bottom, right).
Pads = int | tuple[int, ...]


def volume(shape: Sequence[int]) -> str:
    """A (C, H, W) shape as the lecture writes a volume, W×H×D: (3, 227, 227) →
    '227x227x3' (ASCII x, as a spec's input line takes it). Anything but three
    numbers is shown as the tuple it is."""
    if len(shape) != 3:
        return str(tuple(shape))
    C, H, W = (int(d) for d in shape)
    return f"{W}x{H}x{C}"


def pair(value: Pair) -> tuple[int, int]:
    """(height, width) of an int (both the same) or of a pair."""
    if isinstance(value, int):
        return (value, value)
    h, w = value
    return (int(h), int(w))


def pads4(value: Pads) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of an int (every side), of (height, width) (top and
    bottom, left and right) or of the four sides."""
    if isinstance(value, int):
        return (value,) * 4
    sides = tuple(int(v) for v in value)
    if len(sides) == 2:
        return (sides[0], sides[1], sides[0], sides[1])
    if len(sides) == 4:
        return sides  # type: ignore[return-value]
    raise ValueError(f"padding is one number, height x width or top,left,bottom,right; "
                     f"got {len(sides)} numbers")


def windows_inside(H: int, W: int, OH: int, OW: int, FH: int, FW: int, SH: int, SW: int,
                   PH: int, PW: int) -> bool:
    """True when every one of OH×OW windows (FH×FW, stride SH×SW, padding PH×PW) lies
    inside the H×W input: no padding, no window clipped by a ceil rounding."""
    return PH == 0 and PW == 0 and (OH - 1) * SH + FH <= H and (OW - 1) * SW + FW <= W


def winograd_applies(F: Pair, S: Pair, dilation: Pair = 1, groups: int = 1) -> bool:
    """Whether a convolution with an F window, stride S, ``dilation`` and ``groups`` can
    run as Winograd F(2×2, 3×3) or F(2×2, 5×5): a 3×3 or 5×5 window, stride 1, dilation
    1, one group (any padding)."""
    return (pair(F) in ((3, 3), (5, 5)) and pair(S) == (1, 1) and pair(dilation) == (1, 1)
            and groups == 1)


def larger_tiles_apply(algo: str, F: Pair, S: Pair, dilation: Pair = 1,
                       groups: int = 1) -> bool:
    """Whether such a convolution can run as ``algo`` ("winograd3" or "winograd4",
    :data:`LARGER_TILE_WINDOWS`): its window, stride 1, dilation 1, one group."""
    size = LARGER_TILE_WINDOWS[algo]
    return pair(F) == (size, size) and winograd_applies(F, S, dilation, groups)


def direct_applies(F: Pair, S: Pair, pad: Pads, dilation: Pair = 1) -> bool:
    """Whether a convolution with an F window, stride S, padding ``pad`` (one number, per
    axis or per side) and ``dilation`` can run as the direct convolution
    (``kernels/direct_conv.py``): stride 1 and an output as wide as the input, i.e. left
    and right padding that add up to the window's reach (F' − 1, ``pad=same`` and the
    like); any window, padding on top and bottom, dilation and groups."""
    _, PL, _, PR = pads4(pad)
    return pair(S) == (1, 1) and PL + PR == effective_size(pair(F)[1], pair(dilation)[1]) - 1


def s2d_applies(S: Pair, dilation: Pair = 1, groups: int = 1) -> bool:
    """Whether a convolution with stride S, ``dilation`` and ``groups`` can run as its
    space-to-depth rearrangement (``kernels/space_to_depth.py``): a stride of 2 or more
    on some axis, dilation 1, one group (any window, any padding)."""
    return max(pair(S)) >= 2 and pair(dilation) == (1, 1) and groups == 1


def space_to_depth_shape(C: int, F: Pair, S: Pair, OH: int, OW: int) -> tuple[int, ...]:
    """(C', H', W', FH', FW') of the stride-1 convolution that a stride-S convolution with
    an F window over C channels and an OH×OW output becomes: C·SH·SW channels, a
    ⌈FH/SH⌉×⌈FW/SW⌉ window, no padding, an input just large enough for OH×OW."""
    (FH, FW), (SH, SW) = pair(F), pair(S)
    FHs, FWs = -(-FH // SH), -(-FW // SW)
    return (C * SH * SW, OH + FHs - 1, OW + FWs - 1, FHs, FWs)


def effective_size(F: int, dilation: int = 1) -> int:
    """The pixels a window of F taps D apart covers: D·(F − 1) + 1."""
    return dilation * (F - 1) + 1


def _padded_extent(W: int, F: int, P: int, pad_end: int | None, dilation: int) -> int:
    """W − F' + P1 + P2: what the strides divide."""
    return W - effective_size(F, dilation) + P + (P if pad_end is None else pad_end)


def _result(W: int, F: int, S: int, P: int, pad_end: int | None, dilation: int,
            rounding: str) -> int:
    extent = _padded_extent(W, F, P, pad_end, dilation)
    if rounding == "ceil":
        out = -(-extent // S) + 1
        if (out - 1) * S >= W + P:  # the last window would start in the right padding
            out -= 1
        return out
    return extent // S + 1


def formula(W: int, F: int, S: int, P: int, *, pad_end: int | None = None, dilation: int = 1,
            rounding: str = "exact") -> str:
    """'(W − F + 2·P)/S + 1 = result' with the numbers in (2 decimals when not whole);
    ⌊…⌋ or ⌈…⌉ around the division when rounding floor or ceil, F' = D·(F − 1) + 1 for
    a dilated window and 'P1 + P2' for unequal padding."""
    Fe = effective_size(F, dilation)
    pads = f"2·{P}" if pad_end is None or pad_end == P else f"{P} + {pad_end}"
    inner = f"{W} − {Fe} + {pads}"
    if rounding == "exact":
        value = _padded_extent(W, F, P, pad_end, dilation) / S + 1
        shown = str(int(value)) if value == int(value) else f"{value:.2f}"
        return f"({inner})/{S} + 1 = {shown}"
    left, right = ("⌊", "⌋") if rounding == "floor" else ("⌈", "⌉")
    out = _result(W, F, S, P, pad_end, dilation, rounding)
    text = f"{left}({inner})/{S}{right} + 1"
    if rounding == "ceil" and out != -(-_padded_extent(W, F, P, pad_end, dilation) // S) + 1:
        return f"{text} − 1 = {out} (the last window would start in the padding)"
    return f"{text} = {out}"


def _fits(W: int, F: int, S: int, P: int, pad_end: int | None = None, dilation: int = 1) -> bool:
    extent = _padded_extent(W, F, P, pad_end, dilation)
    return extent >= 0 and extent % S == 0


def suggest(W: int, F: int, S: int, P: int, *, pad_end: int | None = None,
            dilation: int = 1) -> str:
    """The nearest pad and the nearest stride that make the size come out whole, and
    rounding down."""
    options = []
    Fe = effective_size(F, dilation)
    if pad_end is None or pad_end == P:
        pads = [p for p in range(0, Fe + 1) if _fits(W, F, S, p, None, dilation)]
        if pads:
            p = min(pads, key=lambda q: (abs(q - P), q))
            options.append(f"pad={p} gives {formula(W, F, S, p, dilation=dilation)}")
    strides = [s for s in range(1, max(S, 1) + 2 * Fe)
               if s != S and _fits(W, F, s, P, pad_end, dilation)]
    if strides:
        s = min(strides, key=lambda q: (abs(q - S), q))
        options.append(f"stride={s} gives "
                       f"{formula(W, F, s, P, pad_end=pad_end, dilation=dilation)}")
    options.append(f"round=floor gives "
                   f"{formula(W, F, S, P, pad_end=pad_end, dilation=dilation, rounding='floor')}")
    return "; ".join(options)


def output_size(W: int, F: int, S: int, P: int, what: str = "layer", *,
                pad_end: int | None = None, dilation: int = 1, rounding: str = "exact",
                window: str | None = None) -> int:
    """Outputs of a window of F taps D = ``dilation`` apart, stride S, over W pixels
    padded by P before and ``pad_end`` after (P when None): (W − F' + P1 + P2)/S + 1,
    rounded as ``rounding`` says (module docstring). ShapeError showing the arithmetic
    and a fix when it is not whole under ``exact``, or the window (named ``window`` in
    the message, FxF by default) does not fit."""
    P2 = P if pad_end is None else pad_end
    if F < 1 or S < 1 or P < 0 or P2 < 0 or dilation < 1:
        raise ShapeError(f"{what}: size, stride and dilation must be ≥ 1 and pad ≥ 0 "
                         f"(got F={F}, S={S}, P={P if P2 == P else (P, P2)}, D={dilation})")
    if rounding not in ROUNDINGS:
        raise ShapeError(f"{what}: rounding must be one of {', '.join(ROUNDINGS)}, "
                         f"got {rounding!r}")
    Fe = effective_size(F, dilation)
    if Fe > W + P + P2:
        shape = window or f"{F}x{F}"
        covers = shape if dilation == 1 else f"{shape} dilated by {dilation} ({Fe} pixels)"
        pads = f"2·{P}" if P2 == P else f"{P} + {P2}"
        raise ShapeError(
            f"{what}: the {covers} window is larger than its padded input {W + P + P2} "
            f"({W} + {pads}); use a smaller size or pad ≥ {(Fe - W + 1) // 2}")
    if rounding == "exact" and _padded_extent(W, F, P, pad_end, dilation) % S:
        shown = formula(W, F, S, P, pad_end=pad_end, dilation=dilation)
        raise ShapeError(f"{what}: output size {shown} is not whole; try "
                         f"{suggest(W, F, S, P, pad_end=pad_end, dilation=dilation)}")
    return _result(W, F, S, P, pad_end, dilation, rounding)


def output_hw(H: int, W: int, F: Pair, S: Pair, P: Pads, what: str = "layer", *,
              dilation: Pair = 1, rounding: str = "exact") -> tuple[int, int]:
    """(OH, OW) of a window over an H×W plane, :func:`output_size` per axis: F, S and
    ``dilation`` an int or (height, width), P as :func:`pads4` takes it."""
    (FH, FW), (SH, SW), (DH, DW) = pair(F), pair(S), pair(dilation)
    top, left, bottom, right = pads4(P)
    window = f"{FH}x{FW}"  # as the spec writes a size: rows x columns
    OH = output_size(H, FH, SH, top, f"{what} (height)", pad_end=bottom, dilation=DH,
                     rounding=rounding, window=window)
    OW = output_size(W, FW, SW, left, f"{what} (width)", pad_end=right, dilation=DW,
                     rounding=rounding, window=window)
    return OH, OW


def window_arithmetic(input_shape: tuple[int, int, int], F: Pair, S: Pair, P: Pads, *,
                      dilation: Pair = 1, rounding: str = "exact") -> str:
    """The lecture's (W − F + 2P)/S + 1 for a sliding window over (C, H, W), with the
    numbers in: one formula when both axes have the same numbers, width and height
    apart otherwise; a dilated window's F' = D·(F − 1) + 1 worked out in front."""
    _, H, W = input_shape
    (FH, FW), (SH, SW), (DH, DW) = pair(F), pair(S), pair(dilation)
    top, left, bottom, right = pads4(P)
    width = formula(W, FW, SW, left, pad_end=right, dilation=DW, rounding=rounding)
    height = formula(H, FH, SH, top, pad_end=bottom, dilation=DH, rounding=rounding)
    axes = {"height": (FH, DH), "width": (FW, DW)}
    same = axes["height"] == axes["width"]
    dilated = [f"{'' if same else name + ' '}F' = {D}·({F1} − 1) + 1 = {effective_size(F1, D)}"
               for name, (F1, D) in list(axes.items())[same:] if D != 1]
    text = width if width == height else f"width {width}, height {height}"
    return f"{', '.join(dilated)}; {text}" if dilated else text
