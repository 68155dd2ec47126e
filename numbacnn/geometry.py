"""The lecture's output-size arithmetic, with the numbers filled in.

A convolution or pooling window of size F, stride S and zero padding P over an
input of W pixels produces (W − F + 2P)/S + 1 outputs; the result must be whole,
unless the layer rounds it (``round=floor|ceil``, as PyTorch's and ONNX's pooling do).
Volumes are written the lecture's way in every message, W×H×D (:func:`volume`),
although arrays are stored N×C×H×W. Pure Python: imports no kernel.
"""

from __future__ import annotations

from collections.abc import Sequence

from numbacnn.errors import ShapeError

VOLUME_AXES = "W x H x D"  # the label that goes with a volume() in messages


def volume(shape: Sequence[int]) -> str:
    """A (C, H, W) shape as the lecture writes a volume, W×H×D: (3, 227, 227) →
    '227x227x3' (ASCII x, as a spec's input line takes it). Anything but three
    numbers is shown as the tuple it is."""
    if len(shape) != 3:
        return str(tuple(shape))
    C, H, W = (int(d) for d in shape)
    return f"{W}x{H}x{C}"


ROUNDINGS = ("exact", "floor", "ceil")  # how a window count that is not whole is taken


def formula(W: int, F: int, S: int, P: int, rounding: str = "exact") -> str:
    """'(W − F + 2·P)/S + 1 = result' with the numbers in (2 decimals when not whole);
    rounded, '⌊(W − F + 2·P)/S⌋ + 1' or '⌈…⌉ + 1', with PyTorch's '− 1' where a ceil's
    last window would start in the right padding (see :func:`output_size`)."""
    text = f"({W} − {F} + 2·{P})/{S}"
    if rounding == "exact":
        value = (W - F + 2 * P) / S + 1
        shown = str(int(value)) if value == int(value) else f"{value:.2f}"
        return f"{text} + 1 = {shown}"
    if rounding == "floor":
        return f"⌊{text}⌋ + 1 = {(W - F + 2 * P) // S + 1}"
    count = -(-(W - F + 2 * P) // S) + 1
    if (count - 1) * S >= W + P:  # the last window would start in the right padding
        return f"⌈{text}⌉ + 1 − 1 = {count - 1} (the last would start in the padding)"
    return f"⌈{text}⌉ + 1 = {count}"


def _fits(W: int, F: int, S: int, P: int) -> bool:
    return W + 2 * P >= F and (W - F + 2 * P) % S == 0


def suggest(W: int, F: int, S: int, P: int) -> str:
    """The nearest pad and the nearest stride that make the size come out whole."""
    options = []
    pads = [p for p in range(0, F + 1) if _fits(W, F, S, p)]
    if pads:
        p = min(pads, key=lambda q: (abs(q - P), q))
        options.append(f"pad={p} gives {formula(W, F, S, p)}")
    strides = [s for s in range(1, max(S, 1) + 2 * F) if s != S and _fits(W, F, s, P)]
    if strides:
        s = min(strides, key=lambda q: (abs(q - S), q))
        options.append(f"stride={s} gives {formula(W, F, s, P)}")
    return "; ".join(options) if options else "change the filter size"


def output_size(W: int, F: int, S: int, P: int, what: str = "layer",
                rounding: str = "exact") -> int:
    """(W − F + 2P)/S + 1, or ShapeError showing the arithmetic and a fix when not whole.

    ``rounding`` "floor" takes ⌊(W − F + 2P)/S⌋ + 1 (the windows that fit; PyTorch's and
    ONNX's default), "ceil" ⌈(W − F + 2P)/S⌉ + 1 less one where that last window would
    start in the right padding (PyTorch's and ONNX's ``ceil_mode``: every window starts
    inside the input or the left padding)."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")
    if F < 1 or S < 1 or P < 0:
        raise ShapeError(f"{what}: size and stride must be ≥ 1 and pad ≥ 0 "
                         f"(got F={F}, S={S}, P={P})")
    if F > W + 2 * P:
        raise ShapeError(
            f"{what}: the {F}x{F} window is larger than its padded input {W + 2 * P} "
            f"({W} + 2·{P}); use a smaller size or pad ≥ {(F - W + 1) // 2}")
    if rounding == "floor":
        return (W - F + 2 * P) // S + 1
    if rounding == "ceil":
        count = -(-(W - F + 2 * P) // S) + 1
        return count - 1 if (count - 1) * S >= W + P else count
    if (W - F + 2 * P) % S:
        raise ShapeError(f"{what}: output size {formula(W, F, S, P)} is not whole; "
                         f"try {suggest(W, F, S, P)}; or round=floor gives "
                         f"{formula(W, F, S, P, 'floor')}")
    return (W - F + 2 * P) // S + 1


def window_arithmetic(input_shape: tuple[int, int, int], F: int | tuple[int, int],
                      S: int | tuple[int, int], P: int | tuple[int, int],
                      rounding: str = "exact") -> str:
    """The lecture's (W − F + 2P)/S + 1 for a sliding window over (C, H, W), with the
    numbers in: one formula for a square input and window, width and height apart
    otherwise. F, S and P are one number or one per axis (h, w)."""
    _, H, W = input_shape
    (FH, FW), (SH, SW), (PH, PW) = (v if isinstance(v, tuple) else (v, v) for v in (F, S, P))
    width = formula(W, FW, SW, PW, rounding)
    if (H, FH, SH, PH) == (W, FW, SW, PW):
        return width
    return f"width {width}, height {formula(H, FH, SH, PH, rounding)}"
