"""Drawing of the convolution figure (:mod:`numbacnn.tools.conv_figure`) with matplotlib.

A panel shows one frame: the padded input (one grid per depth slice, padding grey)
with the receptive field outlined, the filter slices beside it and the bias below them,
the output grid filled up to the current cell, and that cell's arithmetic underneath.
Everything is placed in cell units (one input cell = 1 × 1) on one Axes per panel, so
the layout is the same in every frame of a GIF. Figures are made without pyplot and
rendered by Agg; writes go through the atomic writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from numbacnn.io.atomic_file import replace_atomically
from numbacnn.tools.conv_figure import ConvFrames, arithmetic_lines, frames_shown, signed
from numbacnn.tools.plots import DPI_BOUNDS, FORMATS, PlotError, require_matplotlib
from numbacnn.tools.plots import check_output as check_picture

MAX_GIF_BYTES = 300 * 2**20  # frames × width × height (one byte a pixel) held in memory
TITLE_IN = 0.6  # inches above the panels for the title's two lines

# Colours (matplotlib names or RGB(A) in 0…1)
INPUT_FACE, PAD_FACE, PAD_TEXT = "#eaf2fb", "#d4d4d4", "#7a7a7a"
FILTER_FACE, OUTPUT_FACE, CURRENT_FACE = "#fbe0e0", "#e2f3de", "#ffe8b0"
WINDOW_EDGE, WINDOW_FACE = "#e07000", (1.0, 0.55, 0.0, 0.22)
GRID_EDGE = "#8c8c8c"

LABEL_H = 1.3  # cell units above a grid for its label
SLICE_GAP = 0.8  # cell units between depth slices
COLUMN_GAP = 1.6  # cell units between input, filter and output columns
CHAR_EM = 0.62  # width of a character in em (monospace, and about so for labels)


@dataclass(frozen=True)
class Layout:
    """Where a panel's parts go, in cell units (x right, y down from the top left)."""

    cell_in: float  # inches per cell
    width: float
    height: float
    inputs: tuple[tuple[float, float], ...]  # top left of each depth slice's padded input
    filters: tuple[tuple[float, float], ...]  # top left of each filter slice
    bias: tuple[float, float]
    output: tuple[float, float]
    text_y: float  # top of the arithmetic
    wrap: int  # characters per arithmetic line
    number_pt: float  # font sizes in points
    label_pt: float
    text_pt: float

    def units(self, points: float) -> float:
        return points / (72 * self.cell_in)


def _labels(data: ConvFrames, d: int) -> tuple[str, str]:
    if data.depth == 1:
        return f"input x, pad {data.pad} (grey)", "filter w"
    return f"x[:,:,{d}], pad {data.pad}", f"w[:,:,{d}]"


def layout(data: ConvFrames, max_cell_in: float, text_pt: float) -> Layout:
    """Sizes for ``data``: cells of at most ``max_cell_in`` inches, smaller for big inputs
    (a panel stays within about 9 x 7 inches, cells at least 0.2 inches)."""
    Wp, F, D = data.padded.shape[1], data.filter_size, data.depth
    OH, OW = data.output.shape
    grid_w = 1 + Wp + 2 * COLUMN_GAP + max(F, 3) + OW
    grid_h = 0.6 + D * (LABEL_H + Wp) + (D - 1) * SLICE_GAP + 4
    cell_in = float(np.clip(min(9 / grid_w, 7 / grid_h), 0.2, max_cell_in))
    cell_pt = 72 * cell_in
    number_pt = 0.42 * cell_pt
    label_pt = float(np.clip(0.36 * cell_pt, 7, 10))
    chars = max(len(label) for d in range(D) for label in _labels(data, d)[:1])
    label_units = CHAR_EM * label_pt / cell_pt
    input_w = max(Wp, chars * label_units)
    filter_w = max(F, max(len(_labels(data, d)[1]) for d in range(D)) * label_units,
                   len("bias b") * label_units)
    output_w = max(OW, len("output") * label_units)
    x_input = 0.5
    x_filter = x_input + input_w + COLUMN_GAP
    x_output = x_filter + filter_w + COLUMN_GAP
    width = x_output + output_w + 0.5
    top = 0.3 + LABEL_H
    inputs = tuple((x_input, top + d * (Wp + SLICE_GAP + LABEL_H)) for d in range(D))
    filters = tuple((x_filter, y) for _, y in inputs)
    bias = (x_filter, filters[-1][1] + F + LABEL_H)
    bottom = max(inputs[-1][1] + Wp, bias[1] + 1, top + OH)
    text_units = CHAR_EM * text_pt / cell_pt
    wrap = max(44, int((width - 1.5) / text_units))
    width = max(width, 1.5 + wrap * text_units)
    lines = max(len(arithmetic_lines(data, f, wrap)) for f in data.frames)
    text_y = bottom + 0.8
    height = text_y + lines * 1.35 * text_pt / cell_pt + 0.4
    return Layout(cell_in, width, height, inputs, filters, bias, (x_output, top), text_y, wrap,
                  number_pt, label_pt, text_pt)


class Panel:
    """One frame drawn on ``axes`` (which it fills with cell units); :meth:`show` moves it
    to frame k: receptive field, filled output cells, arithmetic."""

    def __init__(self, axes: Any, data: ConvFrames, lay: Layout) -> None:
        from matplotlib.collections import PatchCollection
        from matplotlib.patches import Rectangle

        self.data, self.lay, self.axes = data, lay, axes
        axes.set_xlim(0, lay.width)
        axes.set_ylim(lay.height, 0)
        axes.set_axis_off()
        W, P, F = data.input_size, data.pad, data.filter_size
        cells, faces = [], []

        def grid(x0: float, y0: float, values: np.ndarray, face: Any, label: str) -> None:
            rows, columns = values.shape
            axes.text(x0, y0 - 0.3, label, fontsize=lay.label_pt, ha="left", va="bottom")
            for i in range(rows):
                for j in range(columns):
                    padding = face == INPUT_FACE and not (P <= i < P + W and P <= j < P + W)
                    cells.append(Rectangle((x0 + j, y0 + i), 1, 1))
                    faces.append(PAD_FACE if padding else face)
                    axes.text(x0 + j + 0.5, y0 + i + 0.5, signed(int(values[i, j])),
                              fontsize=lay.number_pt, ha="center", va="center",
                              color=PAD_TEXT if padding else "black")

        for d in range(data.depth):
            input_label, filter_label = _labels(data, d)
            grid(*lay.inputs[d], data.padded[d], INPUT_FACE, input_label)
            grid(*lay.filters[d], data.weights[d], FILTER_FACE, filter_label)
        grid(*lay.bias, np.array([[data.bias]]), FILTER_FACE, "bias b")
        axes.add_collection(PatchCollection(cells, facecolors=faces, edgecolors=GRID_EDGE,
                                            linewidths=0.6))
        OH, OW = data.output.shape
        x0, y0 = lay.output
        self.output_label = axes.text(x0, y0 - 0.3, "output", fontsize=lay.label_pt,
                                      ha="left", va="bottom")
        self.output_cells = PatchCollection(
            [Rectangle((x0 + j, y0 + i), 1, 1) for i in range(OH) for j in range(OW)],
            facecolors="white", edgecolors=GRID_EDGE, linewidths=0.6)
        axes.add_collection(self.output_cells)
        self.output_texts = [axes.text(x0 + j + 0.5, y0 + i + 0.5, "", fontsize=lay.number_pt,
                                       ha="center", va="center")
                             for i in range(OH) for j in range(OW)]
        edge = dict(facecolor=WINDOW_FACE, edgecolor=WINDOW_EDGE, linewidth=2.5, zorder=3)
        self.windows = [axes.add_patch(Rectangle(lay.inputs[d], F, F, **edge))
                        for d in range(data.depth)]
        self.current = axes.add_patch(Rectangle(lay.output, 1, 1, **edge))
        for d in range(data.depth):  # the filter is the window's partner in every frame
            axes.add_patch(Rectangle(lay.filters[d], F, F, fill=False, edgecolor=WINDOW_EDGE,
                                     linewidth=2.5, zorder=3))
        self.arithmetic = axes.text(0.5, lay.text_y, "", fontsize=lay.text_pt, ha="left",
                                    va="top", family="monospace", linespacing=1.25)

    def show(self, k: int) -> None:
        data, lay = self.data, self.lay
        frame = data.frames[k]
        for d, window in enumerate(self.windows):
            x0, y0 = lay.inputs[d]
            window.set_xy((x0 + frame.left, y0 + frame.top))
        x0, y0 = lay.output
        self.current.set_xy((x0 + frame.column, y0 + frame.row))
        faces = [CURRENT_FACE if n == k else OUTPUT_FACE if n < k else "white"
                 for n in range(len(data.frames))]
        self.output_cells.set_facecolor(faces)
        for n, text in enumerate(self.output_texts):
            text.set_text(signed(data.frames[n].value) if n <= k else "")
        OH, OW = data.output.shape
        self.output_label.set_text(f"output ({k + 1} of {OH * OW})")
        self.arithmetic.set_text("\n".join(arithmetic_lines(data, frame, lay.wrap)))

    def moving(self) -> list[Any]:
        """The artists :meth:`show` changes; the rest is the same in every frame."""
        return [self.output_cells, *self.output_texts, self.output_label, *self.windows,
                self.current, self.arithmetic]


def _figure(width_in: float, height_in: float) -> Any:
    figure_module = require_matplotlib()
    return figure_module.Figure(figsize=(width_in, height_in))


def _panel_axes(figure: Any, left_in: float, top_in: float, lay: Layout) -> Any:
    """An Axes of the panel's size with its top left corner ``left_in``, ``top_in`` inches
    from the figure's top left."""
    fw, fh = figure.get_size_inches()
    w, h = lay.width * lay.cell_in, lay.height * lay.cell_in
    return figure.add_axes((left_in / fw, 1 - (top_in + h) / fh, w / fw, h / fh))


def _title(figure: Any, data: ConvFrames, note: str = "") -> None:
    figure.text(0.5, 1 - 0.12 / figure.get_size_inches()[1], data.title() + note,
                ha="center", va="top", fontsize=10.5, linespacing=1.4)


def _title_width_in(data: ConvFrames, note: str = "") -> float:
    longest = max(len(line) for line in (data.title() + note).splitlines())
    return 0.4 + longest * 0.55 * 10.5 / 72


def animation_frames(data: ConvFrames, dpi: int = 100) -> tuple[list[Any], tuple[int, int]]:
    """Every frame as a Pillow palette image (one palette for all), and (width, height)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    DPI_BOUNDS.check("dpi", dpi, PlotError)
    lay = layout(data, 0.42, 10)
    panel_w, panel_h = lay.width * lay.cell_in, lay.height * lay.cell_in
    width_in = max(panel_w, _title_width_in(data))
    height_in = TITLE_IN + panel_h
    pixels = round(width_in * dpi) * round(height_in * dpi)
    if pixels * len(data.frames) > MAX_GIF_BYTES:
        raise PlotError(f"the GIF would hold {len(data.frames)} frames of {pixels} pixels "
                        f"({pixels * len(data.frames) / 2**20:.0f} MiB); at most "
                        f"{MAX_GIF_BYTES // 2**20} MiB: lower dpi or draw fewer frames (a "
                        "larger stride or a smaller input)", field="dpi")
    figure = _figure(width_in, height_in)
    figure.set_facecolor("white")
    canvas = FigureCanvasAgg(figure)
    _title(figure, data)
    panel = Panel(_panel_axes(figure, (width_in - panel_w) / 2, TITLE_IN, lay), data, lay)

    # blitting: the unchanging part (every input cell and its number) is drawn once
    moving = panel.moving()
    for artist in moving:
        artist.set_animated(True)
    canvas.draw()
    background = canvas.copy_from_bbox(figure.bbox)

    def render(k: int) -> Any:
        panel.show(k)
        canvas.restore_region(background)
        for artist in moving:
            figure.draw_artist(artist)
        return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())

    # the last frame holds every colour a frame has: its palette serves all of them
    palette = render(len(data.frames) - 1).quantize(255, Image.Quantize.MEDIANCUT,
                                                   dither=Image.Dither.NONE)
    images = [render(k).quantize(palette=palette, dither=Image.Dither.NONE)
              for k in range(len(data.frames))]
    return images, images[0].size


def save_gif(data: ConvFrames, path: Path, dpi: int, frame_ms: int) -> tuple[int, int, int]:
    """An animated GIF (looping, ``frame_ms`` ms a frame, the last three times as long)
    written atomically; returns (width, height, frames)."""
    images, (width, height) = animation_frames(data, dpi)
    durations = [frame_ms] * (len(images) - 1) + [3 * frame_ms]

    def write(target: Any) -> None:
        images[0].save(target, format="GIF", save_all=True, append_images=images[1:],
                       duration=durations, loop=0)

    replace_atomically(path, write, PlotError, "picture")
    return width, height, len(images)


def still_figure(data: ConvFrames, shown: list[int]) -> Any:
    """One Figure with the frames ``shown`` (indices) as a grid of panels, row by row:
    as many columns as the output has when every frame is shown (at most 4)."""
    lay = layout(data, 0.3, 9)
    count = len(shown)
    OW = data.output.shape[1]
    columns = min(count, OW if count == len(data.frames) and OW <= 4 else 4)
    rows = -(-count // columns)
    gap = 0.4
    panel_w, panel_h = lay.width * lay.cell_in, lay.height * lay.cell_in
    note = ("" if count == len(data.frames) else
            f"\nframes {', '.join(str(k + 1) for k in shown)} of {len(data.frames)} shown; "
            "write a .gif for every step")
    margin = 0.15  # inches around the grid, so the panels' frames are not cut
    grid_w = columns * panel_w + (columns - 1) * gap
    width_in = max(grid_w + 2 * margin, _title_width_in(data, note))
    title_in = TITLE_IN + (0.25 if note else 0)
    figure = _figure(width_in, title_in + rows * panel_h + (rows - 1) * gap + margin)
    figure.set_facecolor("white")
    _title(figure, data, note)
    left0 = (width_in - grid_w) / 2
    for n, k in enumerate(shown):
        r, c = divmod(n, columns)
        axes = _panel_axes(figure, left0 + c * (panel_w + gap), title_in + r * (panel_h + gap),
                           lay)
        Panel(axes, data, lay).show(k)
        axes.add_patch(_border(axes))
    return figure


def _border(axes: Any) -> Any:
    """A thin grey frame around a panel of a still image, to tell the panels apart."""
    from matplotlib.patches import Rectangle

    return Rectangle((0, 0), 1, 1, transform=axes.transAxes, fill=False,
                     edgecolor="#bbbbbb", linewidth=1, clip_on=False)


def save_still(data: ConvFrames, path: Path, dpi: int, shown: list[int]) -> tuple[int, int, int]:
    """A PNG, SVG or PDF of :func:`still_figure`, written atomically; returns (width,
    height, frames shown)."""
    from numbacnn.tools.plots import save_figure

    width, height = save_figure(still_figure(data, shown), path, None, dpi)
    return width, height, len(shown)


def check_output(path: str | Path) -> Path:
    """``path`` if the figure can be written there: .gif (animation), .png, .svg or .pdf
    (still) in an existing directory; PlotError (``field`` "output") if not."""
    return check_picture(path, {".gif": "gif", **FORMATS})


def save_conv_figure(data: ConvFrames, path: str | Path, dpi: int = 100,
                     frame_ms: int = 800) -> tuple[int, int, int]:
    """Write the figure to ``path`` atomically: an animated GIF (one frame per output
    cell, ``frame_ms`` milliseconds each, the last held three times as long) or a still
    PNG, SVG or PDF of a grid of frames. Returns (width, height, frames) in pixels."""
    path = check_output(path)
    if path.suffix.lower() == ".gif":
        return save_gif(data, path, dpi, frame_ms)
    return save_still(data, path, dpi, frames_shown(len(data.frames)))

