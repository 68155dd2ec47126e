"""``numbacnn plot WHAT MODEL -o FILE``: pictures of a model, drawn by numbacnn.tools.plots.

WHAT is ``curves``, ``filters``, ``features``, ``confusion`` or ``bench`` (then MODEL is
a ``numbacnn bench --json`` file); ``curves`` takes several MODELs to overlay their runs.
The picture type follows the suffix of FILE (.png, .svg, .pdf). ``numbacnn plot conv`` (no
MODEL) draws the lecture's convolution figure (numbacnn.tools.conv_figure), as a GIF or a
still. matplotlib (optional extra ``plot``) and numba are imported inside the command so
that other commands start fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from numbacnn_cli.options import (
    batch_option,
    device_option,
    echo_replaced,
    fit_option,
    force_option,
    int_range,
    map_library_errors,
    split_option,
    with_command,
)

from numbacnn.errors import shown_path
from numbacnn.limits import SEEDS
from numbacnn.tools.activation_stats import KIND as ACTIVATIONS
from numbacnn.tools.conv_figure import (  # imports no matplotlib
    DEPTH_BOUNDS,
    FILTER_BOUNDS,
    INPUT_BOUNDS,
    PAD_BOUNDS,
    STRIDE_BOUNDS,
)
from numbacnn.tools.plots import DPI_BOUNDS, KINDS  # imports no matplotlib

_PATH = click.Path(path_type=Path)
BENCH_COMMAND = "numbacnn bench --json --output {file}"  # writes what plot bench reads


class _Size(click.ParamType):
    """WxH in pixels, parsed and checked by numbacnn.tools.plots.parse_size: (width, height)."""

    name = "WxH"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[int, int]:
        from numbacnn.tools.plots import PlotError, parse_size

        if isinstance(value, tuple):
            return value
        try:
            return parse_size(str(value))
        except PlotError as exc:
            self.fail(str(exc), param, ctx)


class _PlotCommand(click.Command):
    """``plot``, handing ``plot conv ...`` to :func:`plot_conv`, which takes no MODEL."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        if args and args[0] == "conv":
            return plot_conv.make_context(f"{info_name or 'plot'} conv", args[1:],
                                          parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)


@click.command("plot", cls=_PlotCommand)
@click.argument("what", type=click.Choice((*KINDS, ACTIVATIONS)))
@click.argument("source", metavar="MODEL", type=_PATH)
@click.argument("more", metavar="[MODEL]...", nargs=-1, type=_PATH)
@click.option("-o", "--output", type=_PATH, required=True,
              help="Picture to write: .png, .svg or .pdf.")
@click.option("--size", type=_Size(), metavar="WxH", help="Picture size in pixels, WxH "
              "(e.g. 800x600) [default: fits the content].")
@click.option("--dpi", type=int_range(DPI_BOUNDS), default=100, show_default=True,
              help="Pixels per inch.")
@click.option("--data", help="Dataset for features, confusion and the test accuracy of "
              "curves [default: the one the model was trained on].")
@split_option("--split", "Split of --data (features, confusion).")
@click.option("--image", default="0", show_default=True,
              help="features: index N into the --split of --data, or an image file "
              "(a picture of any size: .png, .jpg, .bmp, .gif, .webp; or a .npy).")
@fit_option("a features --image picture")
@click.option("--maps", type=click.IntRange(min=1), default=16, show_default=True,
              help="features: activation maps shown per layer; filters: slices shown per "
              "filter.")
@click.option("--layer", type=click.IntRange(min=1), metavar="N", help="filters: the conv "
              "layer to draw, numbered as in numbacnn shapes (#) [default: the first conv].")
@click.option("--rgb", is_flag=True, help="filters: draw a layer with 3 input channels "
              "(RGB) as colour images, each scaled to its own range.")
@click.option("--test-accuracy/--no-test-accuracy", default=True, show_default=True,
              help="curves: score the model on the test split of --data and draw it.")
@click.option("--per-step", is_flag=True, help="curves: draw the training loss logged "
              "within epochs (every few steps), not only per epoch.")
@click.option("--seed", type=int_range(SEEDS), default=0, show_default=True,
              help="features of a SPEC: seed of its untrained (He-initialized) weights.")
@force_option("-o file")
@batch_option
@device_option()
def plot(what: str, source: Path, more: tuple[Path, ...], output: Path,
         size: tuple[int, int] | None, dpi: int, data: str | None,
         split: str, image: str, fit: str, maps: int, layer: int | None, rgb: bool,
         test_accuracy: bool, per_step: bool, seed: int, force: bool,
         batch_size: int, device: str) -> None:
    """Draw WHAT about MODEL into a PNG, SVG or PDF file (-o).

    \b
    curves     training/validation loss and accuracy per epoch, lr changes, test accuracy;
               several MODELs: their runs overlaid, each labelled by what differs
    filters    a conv layer's filters (--layer N) on one scale centred at 0
    features   one image (--image), its activation maps after each conv and pool layer
               (one colour scale per layer) and its class probabilities; MODEL may
               be a SPEC (preset, file, text): its untrained network (He init, --seed)
    confusion  the confusion matrix on --data's --split, with per-class accuracy
    bench      per-layer forward/backward times; MODEL is a numbacnn bench --json file
    activations  histograms of each layer's outputs and their gradients on one batch
               (--batch-size images of --data's --split), with mean, std, dead ReLUs

    numbacnn plot conv [OPTIONS] -o FILE draws the lecture's convolution figure
    instead (no MODEL); see numbacnn plot conv --help.
    """
    from numbacnn.tools import plots

    plots.check_output(output)
    target = _plan_picture(output, [source, *more, data, image], force)
    if more and what != "curves":
        raise click.UsageError(f"plot {what} takes one MODEL; only curves overlays several")
    plots.require_matplotlib()
    if more:
        from numbacnn_cli.compare import runs_curves

        figure = runs_curves((source, *more), data=data, test_accuracy=test_accuracy,
                             per_step=per_step, batch_size=batch_size, device=device)
        source = f"{len(more) + 1} runs"  # type: ignore[assignment]
    elif what == "bench":
        figure = _bench(source)
    else:
        from numbacnn.io.model_file import load_model

        quick = what == "filters" or (what == "curves" and not test_accuracy)
        from numbacnn_cli.spec_models import is_spec, untrained_model

        untrained = what == "features" and is_spec(source)
        net, info = (untrained_model(str(source), seed, device) if untrained
                     else load_model(source, "cpu" if quick else device))  # quick: no GPU
        draw = {"curves": _curves, "filters": _filters, "features": _features,
                "confusion": _confusion, ACTIVATIONS: _activations}[what]
        figure = draw(net, info, source=source, data=data, split=split, image=image, fit=fit,
                      maps=maps, layer=layer, rgb=rgb, test_accuracy=test_accuracy,
                      per_step=per_step, untrained_seed=seed if untrained else None,
                      batch_size=batch_size)
    width, height = plots.save_figure(figure, output, size, dpi)
    echo_replaced(target)
    click.echo(f"wrote {shown_path(output)}: {what} of {shown_path(source)}, "
               f"{width}x{height} pixels")


@click.command("conv")
@click.option("--input", "input_size", type=int_range(INPUT_BOUNDS), default=7,
              show_default=True, help="Input width = height W, in cells.")
@click.option("--filter", "filter_size", type=int_range(FILTER_BOUNDS), default=3,
              show_default=True, help="Filter width = height F, at most W + 2·pad.")
@click.option("--stride", type=int_range(STRIDE_BOUNDS), default=2, show_default=True,
              help="Stride S.")
@click.option("--pad", type=int_range(PAD_BOUNDS), default=1, show_default=True,
              help="Zero padding P on every side (drawn grey).")
@click.option("--depth", type=int_range(DEPTH_BOUNDS), default=1, show_default=True,
              help="Input depth D (1 to 3): D input and filter slices, one below another.")
@click.option("--bias", type=click.IntRange(-9, 9), default=1, show_default=True,
              help="The filter's bias b.")
@click.option("--seed", type=int_range(SEEDS), default=0, show_default=True,
              help="Seed of the input values (0…2) and weights (−1…1).")
@click.option("-o", "--output", type=_PATH, required=True,
              help="Animated .gif (one frame per output cell), or a still .png, .svg or "
              ".pdf holding a grid of frames (16 at most).")
@click.option("--dpi", type=int_range(DPI_BOUNDS), default=100, show_default=True,
              help="Pixels per inch.")
@click.option("--frame-ms", type=click.IntRange(20, 10000), default=800, show_default=True,
              help="GIF: milliseconds per frame (the last is held three times as long).")
@force_option("-o file")
def plot_conv(input_size: int, filter_size: int, stride: int, pad: int, depth: int,
              bias: int, seed: int, output: Path, dpi: int, frame_ms: int, force: bool) -> None:
    """Draw the lecture's convolution figure into -o: the filter sliding over the
    zero-padded input, each output cell filled in with its arithmetic.

    Output size (W − F + 2P)/S + 1 per side; sizes that do not fit get the message
    numbacnn shapes gives. At most 256 output cells (one GIF frame each), input ≤ 32,
    pad ≤ 8, depth ≤ 3.
    """
    from numbacnn.tools import conv_drawing, conv_figure, plots

    conv_drawing.check_output(output)
    target = _plan_picture(output, [], force)
    data = conv_figure.conv_frames(input_size, filter_size, stride, pad, depth, seed, bias)
    plots.require_matplotlib()
    width, height, frames = conv_drawing.save_conv_figure(data, output, dpi, frame_ms)
    echo_replaced(target)
    OH, OW = data.output.shape
    click.echo(f"wrote {shown_path(output)}: convolution of a "
               f"{input_size}x{input_size}x{depth} input (pad {pad}) by a "
               f"{filter_size}x{filter_size}x{depth} filter, stride {stride}"
               f" → {OW}x{OH}, {frames} frames, {width}x{height} pixels")


plot_conv = map_library_errors(plot_conv)


def _plan_picture(output: Path, inputs: list[Any], force: bool) -> Any:
    """The writing policy (numbacnn.io.output_policy) for -o: never an input, never a
    device, FIFO or socket; an existing picture is replaced, a model or dataset only
    with --force."""
    from numbacnn.io.output_policy import REPLACE, plan_output
    from numbacnn.tools.plots import PlotError

    return plan_output(output, inputs=[i for i in inputs if i is not None], existing=REPLACE,
                       force=force, what="picture", field="output", error=PlotError,
                       example="plot.png")


def _bench(source: Path) -> Any:
    from numbacnn.tools import plots
    from numbacnn.training.bench_result import BenchResultError, read_bench_result

    try:
        result = read_bench_result(source)
    except BenchResultError as exc:
        file = "FILE" if source.exists() else source
        raise with_command(exc, "write one with " + BENCH_COMMAND.format(file=file)) from None
    try:
        return plots.bench_figure(result, where=str(source))
    except plots.PlotError as exc:  # no per-layer times
        raise with_command(exc, "write one with " + BENCH_COMMAND.format(file="FILE")
                           + " (with --layers, the default)") from None


def _dataset_source(info: Any, data: str | None) -> str:
    from numbacnn.tools.scoring import trained_on

    return data or trained_on(info)


def _curves(net: Any, info: Any, *, source: Path, data: str | None, test_accuracy: bool,
            per_step: bool, batch_size: int, **_: Any) -> Any:
    from numbacnn.tools import plots

    accuracy = None
    if per_step and not len(info.steps):
        click.echo(f"note: {source} has no per-step loss log (written before numbacnn kept "
                   "one); drawn per epoch", err=True)
    if test_accuracy and len(info.history.get("train_loss", ())):
        accuracy = _test_accuracy(net, info, data, batch_size)
    try:
        return plots.curves_figure(info.history, accuracy, title=f"{source.name}",
                                   where=str(source), steps=info.steps if per_step else None)
    except plots.PlotError as exc:  # no training history
        raise with_command(exc, "numbacnn train writes one every epoch") from None


def _test_accuracy(net: Any, info: Any, data: str | None, batch_size: int) -> float | None:
    """Accuracy on the test split of --data (or the training data), None when unknown."""
    from numbacnn.errors import DataError
    from numbacnn.io.dataset_files import load_dataset
    from numbacnn.tools.scoring import score_dataset

    if data is None and not info.settings.get("data"):
        return None
    source = _dataset_source(info, data)
    try:
        dataset = load_dataset(source)
    except DataError as exc:
        if data is not None:
            raise
        click.echo(f"note: no test accuracy drawn ({exc})", err=True)
        return None
    if len(dataset.y_test) == 0:
        return None
    return score_dataset([(net, info)], dataset, "test", batch_size, where=source).accuracy


def _filters(net: Any, info: Any, *, source: Path, layer: int | None, maps: int, rgb: bool,
             **_: Any) -> Any:
    from numbacnn.tools import layer_pictures

    number, conv, weights = layer_pictures.conv_filters(net, layer, where=str(source))
    return layer_pictures.filters_figure(weights, max_slices=maps, rgb=rgb,
                                         title=f"{source.name}: layer {number}, "
                                         f"{conv.describe()}")


def _features(net: Any, info: Any, *, source: Path, data: str | None, split: str, image: str,
              maps: int, untrained_seed: int | None, fit: str, **_: Any) -> Any:
    from numbacnn.errors import DataError
    from numbacnn.io.images import is_picture, load_images, load_picture
    from numbacnn.limits import exists
    from numbacnn.tools import layer_pictures

    name = source.name if untrained_seed is None else str(source)
    index = image.isascii() and image.isdigit()  # not "²" or "①", which int() refuses
    if not index and not exists(Path(image)):
        raise DataError(f"--image {image}: neither an image index (0, 1, 2, ...) nor an "
                        "existing file; give an index into --data's --split, or a picture "
                        "or .npy file")
    if index:
        if untrained_seed is not None and data is None:
            raise DataError(f"--image {image}: a spec has no dataset of its own; give --data "
                            "DATASET, or an image file as --image", field="data")
        where = _dataset_source(info, data)
        images, labels = load_images(where, info.input_shape, split)
        n = int(image)
        if n >= len(images):
            raise DataError(f"--image {n}: {where} ({split} split) has {len(images)} images "
                            f"(0…{len(images) - 1}); give a smaller index")
        picked, shown_as = images[n:n + 1], f"{where} ({split} split)"
        label = ("" if labels is None or not info.class_names
                 else f", true class {info.class_names[int(labels[n])]}")
        title = f"{name}: image {n} of {where} ({split}){label}"
    else:
        if is_picture(image):  # any size, fitted to the model's input with a note
            from numbacnn_cli.model import picture_note

            picked = picture_note(image, *load_picture(image, info.input_shape, fit), fit)
        else:
            picked = load_images(image, info.input_shape, split)[0][:1]
        if len(picked) == 0:
            raise DataError(f"--image {image}: holds no image; give a file with one")
        title, shown_as = f"{name}: {Path(image).name}", image
    if untrained_seed is not None:
        from numbacnn_cli.spec_models import normalize_by_image

        normalize_by_image(info, picked[0])
        title += f"\nuntrained: He-initialized weights, seed {untrained_seed}"
    x = info.normalize(picked, shown_as)  # 1×C×H×W float32
    volumes = layer_pictures.activation_maps(net, x)
    if not net.ends_in_scores:  # a network that ends in a volume: its maps are the picture
        return layer_pictures.features_figure(picked[0], volumes, maps, title=title)
    proba = net.predict_proba(x)[0]
    names = info.class_names or [str(k) for k in range(len(proba))]
    title += f", predicted {names[int(proba.argmax())]} ({100 * proba.max():.1f}%)"
    return layer_pictures.features_figure(picked[0], volumes, maps, title=title,
                                          probabilities=proba, class_names=names)


def _confusion(net: Any, info: Any, *, source: Path, data: str | None, split: str,
               batch_size: int, **_: Any) -> Any:
    from numbacnn.io.dataset_files import load_dataset
    from numbacnn.tools import plots
    from numbacnn.tools.scoring import score_dataset

    where = _dataset_source(info, data)
    score = score_dataset([(net, info)], load_dataset(where), split, batch_size, where=where)
    return plots.confusion_figure(score.matrix, info.class_names,
                                  title=f"{source.name} on {where} ({split} split): accuracy "
                                  f"{100 * score.accuracy:.2f}% ({score.correct}"
                                  f"/{len(score.labels)})")


def _activations(net: Any, info: Any, *, source: Path, data: str | None, split: str,
                 batch_size: int, **_: Any) -> Any:
    from numbacnn.errors import DataError
    from numbacnn.io.images import load_images
    from numbacnn.tools import activation_stats

    where = _dataset_source(info, data)
    images, labels = load_images(where, info.input_shape, split)
    if labels is None:
        raise DataError(f"{where}: has no labels, and the gradients need them; give a "
                        "labelled dataset (a name, .h5, .npz or IDX directory)", field="data")
    if len(images) == 0:
        raise DataError(f"{where}: its {split} split has no images; choose another --split")
    n = min(batch_size, len(images))
    x = info.normalize(images[:n], where)
    stats = activation_stats.layer_statistics(net, x, labels[:n])
    for line in activation_stats.summary_lines(stats):
        click.echo(line)
    return activation_stats.activations_figure(
        stats, title=f"{source.name}: activations and gradients on {n} images of {where} "
        f"({split} split)")


COMMANDS = [plot]
