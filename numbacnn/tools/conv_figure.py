"""The lecture's convolution figure: a filter sliding over a zero-padded input, each
output cell filled in with its arithmetic (``numbacnn plot conv``).

:func:`conv_frames` computes the numbers, one :class:`Frame` per output cell in the
order they are computed (row by row): the window of the padded input, its products
with the filter and their sum plus the bias. Small integers as in the CS231n demo
(input 0…2, weights −1…1), seeded. Sizes are checked by :func:`numbacnn.geometry.output_size`
(the message ``numbacnn shapes`` gives) and bounded so that no request can hang.

:func:`numbacnn.tools.conv_drawing.save_conv_figure` draws them with matplotlib's Agg
(no pyplot): an animated GIF, one frame per output cell (Pillow), or for .png/.svg/.pdf
one still image holding a grid of frames. Imports no matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from numbacnn.geometry import formula, output_size
from numbacnn.limits import SEEDS, Bounds
from numbacnn.tools.plots import PlotError

INPUT_BOUNDS = Bounds(1, 32)  # input width = height W, in cells
FILTER_BOUNDS = Bounds(1, None)  # filter width = height F; ≤ W + 2P by the geometry
STRIDE_BOUNDS = Bounds(1, None)
PAD_BOUNDS = Bounds(0, 8)
DEPTH_BOUNDS = Bounds(1, 3)  # input depth D = filter depth: slices drawn one below another
MAX_FRAMES = 256  # output cells, one frame each
INPUT_VALUES = (0, 2)  # input cells: integers in [0, 2] as in the CS231n demo
WEIGHT_VALUES = (-1, 1)  # filter weights: integers in [-1, 1]
MAX_TERMS = 54  # products written out in a cell's arithmetic; more are summed per slice


@dataclass(frozen=True)
class Frame:
    """One output cell being computed: out[row, column] = Σ window·weights + bias."""

    row: int
    column: int
    top: int  # the window's first row and column on the padded input
    left: int
    window: np.ndarray  # (D, F, F) int64: the padded input under the filter
    products: np.ndarray  # (D, F, F) int64: window · weights, element by element
    value: int  # products.sum() + bias


@dataclass(frozen=True)
class ConvFrames:
    """The numbers of the figure: a (D, W, W) input, padded by P zeros on every side to
    (D, W + 2P, W + 2P), one (D, F, F) filter with a bias, stride S; the (OH, OW) output
    and one frame per output cell, row by row."""

    input_size: int
    filter_size: int
    stride: int
    pad: int
    padded: np.ndarray  # (D, W + 2P, W + 2P) int64, zeros in the padding
    weights: np.ndarray  # (D, F, F) int64
    bias: int
    output: np.ndarray  # (OH, OW) int64
    frames: tuple[Frame, ...]

    @property
    def depth(self) -> int:
        return int(self.padded.shape[0])

    def layer(self) -> str:
        """The figure's layer in spec words, as ``numbacnn shapes`` names it."""
        return f"conv 1 {self.filter_size} stride={self.stride} pad={self.pad}"

    def title(self) -> str:
        """Sizes, then the output-size formula with the numbers in (two lines)."""
        W, F, S, P, D = self.input_size, self.filter_size, self.stride, self.pad, self.depth
        OH, OW = self.output.shape
        return (f"input {W}x{W}x{D} + pad {P} = {W + 2 * P}x{W + 2 * P}x{D}, filter "
                f"{F}x{F}x{D}, stride {S}, bias {signed(self.bias)}\noutput size "
                f"(W − F + 2P)/S + 1 = {formula(W, F, S, P)}, so {OW}x{OH}")


def check_sizes(input_size: int, filter_size: int, stride: int, pad: int,
                depth: int = 1) -> tuple[int, int]:
    """(OH, OW) of the figure, or PlotError (``field`` the size at fault) for a size out of
    its bounds, ShapeError (the geometry's message, as ``numbacnn shapes`` gives it) for an
    impossible geometry, PlotError for more than MAX_FRAMES output cells."""
    for name, value, bounds in (("input_size", input_size, INPUT_BOUNDS),
                                ("filter_size", filter_size, FILTER_BOUNDS),
                                ("stride", stride, STRIDE_BOUNDS), ("pad", pad, PAD_BOUNDS),
                                ("depth", depth, DEPTH_BOUNDS)):
        bounds.check(name, value, PlotError)
    side = output_size(input_size, filter_size, stride, pad,
                       f"conv 1 {filter_size} stride={stride} pad={pad}")
    if side * side > MAX_FRAMES:
        raise PlotError(f"conv 1 {filter_size} stride={stride} pad={pad} over a "
                        f"{input_size}x{input_size} input has {side}x{side} = {side * side} "
                        f"output cells, one frame each; at most {MAX_FRAMES} frames: use a "
                        "larger stride or a smaller input")
    return side, side


def conv_frames(input_size: int, filter_size: int, stride: int = 1, pad: int = 0,
                depth: int = 1, seed: int = 0, bias: int = 1) -> ConvFrames:
    """The figure's numbers for a W = ``input_size`` square input of ``depth`` slices, an
    F = ``filter_size`` filter, stride S and zero padding P (see :func:`check_sizes`);
    input and weights drawn by numpy's generator from ``seed``."""
    OH, OW = check_sizes(input_size, filter_size, stride, pad, depth)
    SEEDS.check("seed", seed, PlotError)
    rng = np.random.default_rng(seed)
    W, F, S, P = input_size, filter_size, stride, pad
    x = rng.integers(INPUT_VALUES[0], INPUT_VALUES[1] + 1, size=(depth, W, W), dtype=np.int64)
    weights = rng.integers(WEIGHT_VALUES[0], WEIGHT_VALUES[1] + 1, size=(depth, F, F),
                           dtype=np.int64)
    padded = np.zeros((depth, W + 2 * P, W + 2 * P), np.int64)
    padded[:, P:P + W, P:P + W] = x
    frames = []
    output = np.zeros((OH, OW), np.int64)
    for i in range(OH):
        for j in range(OW):
            window = padded[:, i * S:i * S + F, j * S:j * S + F].copy()
            products = window * weights
            output[i, j] = int(products.sum()) + bias
            frames.append(Frame(i, j, i * S, j * S, window, products, int(output[i, j])))
    return ConvFrames(W, F, S, P, padded, weights, int(bias), output, tuple(frames))


def _number(v: int) -> str:
    """A factor as the lecture writes it: negative ones in brackets with a true minus."""
    return f"(−{-v})" if v < 0 else str(v)


def signed(v: int) -> str:
    """An integer with a true minus sign, as the figure's cells show it."""
    return f"−{-v}" if v < 0 else str(v)


def arithmetic_lines(data: ConvFrames, frame: Frame, width: int = 80) -> list[str]:
    """``out[i,j] = x·w + x·w + … + b = value`` as lines of at most about ``width``
    characters, each depth slice starting a new line; when the window has more than
    MAX_TERMS products each slice is given as its sum."""
    head = f"out[{frame.row},{frame.column}] = "
    D = data.depth
    if frame.products.size > MAX_TERMS:
        slices = [[f"{signed(int(frame.products[d].sum()))} (Σ of the {frame.products[d].size} "
                   f"products x·w of slice {d})"] for d in range(D)]
    else:
        slices = [[f"{_number(int(x))}·{_number(int(w))}"
                   for x, w in zip(frame.window[d].ravel(), data.weights[d].ravel(),
                                   strict=True)] for d in range(D)]
    slices[-1].append(f"{_number(data.bias)} (bias b)")
    lines: list[str] = []
    for terms in slices:
        line = ""
        for term in terms:
            piece = term if not line and not lines else f"+ {term}"
            if line and len(line) + 1 + len(piece) > width - len(head):
                lines.append(line)
                line = f"+ {term}"
            else:
                line = f"{line} {piece}" if line else piece
        lines.append(line)
    lines[-1] += f" = {signed(frame.value)}"
    indent = " " * len(head)
    return [(head if n == 0 else indent) + line for n, line in enumerate(lines)]


def frames_shown(count: int, most: int = 16) -> list[int]:
    """Indices of the frames a still image shows: all of ``count`` up to ``most``, else
    ``most`` of them evenly spaced, the first and the last among them."""
    if count <= most:
        return list(range(count))
    return sorted({round(k * (count - 1) / (most - 1)) for k in range(most)})
