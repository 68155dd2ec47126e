"""``numbacnn data``: import, subset and inspect datasets (HDF5 layout in docs/hdf5.md;
the importers of CIFAR-10/100 and of picture folders in docs/data.md).

SOURCE arguments take what :func:`numbacnn.io.dataset_files.load_dataset` takes:
``fashion-mnist-mini``, ``fashion-mnist``, ``fashion-mnist:DIR``, a directory of
IDX files, a ``.h5`` dataset file or a ``.npz`` file. numbacnn.io.dataset_files (numpy,
h5py) is imported inside the commands so that other subcommands start fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from numbacnn_cli.options import echo_replaced, fit_option, force_option, int_range

from numbacnn.errors import printable, shown_path
from numbacnn.geometry import VOLUME_AXES, volume
from numbacnn.limits import SEEDS

_PATH = click.Path(path_type=Path)
_OUT = click.Path(dir_okay=False, path_type=Path)
_OUT_SUFFIXES = (".h5", ".hdf5")


def _check_out(out: Path, *sources: str | Path, force: bool = False) -> Any:
    """Refuse an OUT that is not .h5 (load_dataset would read a .npz name as zip), that
    is one of the sources (it would be overwritten while being read), or that exists
    (without --force): numbacnn.io.output_policy; returns its OutputTarget."""
    from numbacnn.errors import DataError
    from numbacnn.io.output_policy import REFUSE, plan_output

    if out.suffix.lower() not in _OUT_SUFFIXES:
        example = out.with_suffix(".h5") if out.name else "data.h5"  # "" has no name
        raise DataError(f"{shown_path(out)}: a dataset file is HDF5 and must be named .h5 or "
                        f".hdf5; choose another OUT, e.g. {shown_path(example)}")
    return plan_output(out, inputs=sources, existing=REFUSE, force=force, what="dataset",
                       field="out", error=DataError, example="data.h5")


def _write(ds: Any, target: Any, **save_options: Any) -> None:
    """Save dataset ``ds`` to ``target`` (an OutputTarget of :func:`_check_out`;
    ``save_options`` as save_dataset takes them) and say what was written, and what it
    replaced."""
    from numbacnn.io.dataset_files import save_dataset

    save_dataset(ds, target.path, **save_options)
    echo_replaced(target)
    click.echo(f"wrote {shown_path(target.given)}: {_summary(ds)}")


def _idx_files(directory: Path) -> list[Path]:
    """The files of an IDX directory that import-idx may read (train-*, t10k-*): OUT
    must not be one."""
    try:
        return [p for p in directory.iterdir() if p.name.startswith(("train-", "t10k-"))]
    except OSError:
        return []


@click.group("data")
def data() -> None:
    """Import, subset and inspect datasets (HDF5 dataset files)."""


@data.command("import-idx")
@click.argument("directory", type=_PATH)
@click.argument("out", type=_OUT)
@click.option("--name", default=None, help="Dataset name (default: from the directory).")
@force_option("OUT")
def import_idx_command(directory: Path, out: Path, name: str | None, force: bool) -> None:
    """Convert the four IDX files in DIRECTORY (MNIST layout) to the HDF5 file OUT."""
    from numbacnn.io.dataset_files import import_idx

    target = _check_out(out, *_idx_files(directory), force=force)
    ds = import_idx(directory, name=name)
    _write(ds, target)


@data.command("import-npz")
@click.argument("file", type=_PATH)
@click.argument("out", type=_OUT)
@click.option("--name", default=None, help="Dataset name (default: the file's stem).")
@force_option("OUT")
def import_npz_command(file: Path, out: Path, name: str | None, force: bool) -> None:
    """Convert FILE.npz (x_train, y_train, x_test, y_test) to the HDF5 file OUT."""
    from numbacnn.io.dataset_files import import_npz

    target = _check_out(out, file, force=force)
    ds = import_npz(file, name=name)
    _write(ds, target)


@click.command("import-cifar10")
@click.argument("source", type=_PATH)
@click.argument("out", type=_OUT)
@click.option("--labels", type=click.Choice(["fine", "coarse"]), default="fine",
              show_default=True, help="CIFAR-100 only: its 100 fine or 20 coarse classes.")
@click.option("--name", default=None, help="Dataset name (default: cifar10, cifar100-fine ...).")
@force_option("OUT")
def import_cifar_command(source: Path, out: Path, labels: str, name: str | None,
                         force: bool) -> None:
    """Convert CIFAR-10 or CIFAR-100 (SOURCE: the official .tar.gz, binary or python
    version, or its extracted folder) to the HDF5 file OUT. The python version's pickles
    are read without running anything they name (docs/data.md)."""
    from numbacnn.io.cifar import import_cifar

    target = _check_out(out, source, force=force)
    ds = import_cifar(source, labels=labels, name=name)
    _write(ds, target)


data.add_command(import_cifar_command)
data.add_command(import_cifar_command, "import-cifar100")


def _size(text: str) -> tuple[int, int]:
    from numbacnn.io.image_folder import IMAGE_SIDE

    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise click.BadParameter(f"{text!r} is not WxH, e.g. 32x32")
    size = int(parts[0]), int(parts[1])
    if not all(side in IMAGE_SIDE for side in size):
        raise click.BadParameter(f"{text}: each side must be {IMAGE_SIDE.text()} pixels")
    return size


@data.command("import-folder")
@click.argument("directory", type=_PATH)
@click.argument("out", type=_OUT)
@click.option("--size", "size_text", required=True, metavar="WxH",
              help="Width x height every picture is fitted to, e.g. 32x32.")
@click.option("--channels", type=click.Choice(["1", "3"]), default="3", show_default=True,
              help="1: grey, 3: RGB.")
@fit_option("a picture")
@click.option("--test-split", type=click.FloatRange(0, 0.9), default=0.2, show_default=True,
              help="Share of each class held out as the test split when DIRECTORY has no "
              "test/ (or val/) folder.")
@click.option("--seed", type=int_range(SEEDS), default=0, show_default=True,
              help="Seed of that split.")
@click.option("--strict", is_flag=True, help="Refuse the import at the first unreadable "
              "picture instead of skipping it.")
@click.option("--name", default=None, help="Dataset name (default: the folder's name).")
@force_option("OUT")
def import_folder_command(directory: Path, out: Path, size_text: str, channels: str, fit: str,
                          test_split: float, seed: int, strict: bool, name: str | None,
                          force: bool) -> None:
    """Convert a folder of pictures, one subfolder per class (DIRECTORY/cat/1.png, or
    DIRECTORY/train/cat/... and DIRECTORY/test/cat/...), to the HDF5 file OUT.

    PNG, JPEG, BMP, GIF and WebP (Pillow) of any size are fitted to --size the way
    numbacnn predict fits a picture. Unreadable pictures are listed and skipped.
    """
    from tqdm import tqdm

    from numbacnn.io.image_files import describe_fit, require_pillow
    from numbacnn.io.image_folder import import_folder

    size = _size(size_text)
    target = _check_out(out, directory, force=force)
    require_pillow("numbacnn data import-folder")
    bars: list[tqdm] = []

    def progress(done: int, total: int) -> None:  # a bar on stderr for large folders
        if not bars:
            bars.append(tqdm(total=total, unit="picture", disable=total < 500, leave=False))
        bars[0].update(done - bars[0].n)

    try:
        result = import_folder(directory, target.path, size, int(channels), test_split, seed, fit,
                               strict, name, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    for _, reason in result.skipped:
        click.echo(f"skipped {reason}", err=True)
    echo_replaced(target)
    W, H = size
    click.echo(f"wrote {shown_path(out)}: {result.train} train + {result.test} test images of "
               f"{W}x{H}x{channels} ({VOLUME_AXES}), {len(result.class_names)} classes; "
               f"test split: {result.test_from}; pictures {describe_fit(fit)} to {W}x{H}")
    if result.skipped:
        total = result.train + result.test + len(result.skipped)
        click.echo(f"skipped {len(result.skipped)} of {total} pictures that could not be read "
                   "(listed above)")


@data.command("make-mini")
@click.argument("source")
@click.argument("out", type=_OUT)
@click.option("--train-per-class", type=click.IntRange(min=1), default=600, show_default=True,
              help="Train images per class.")
@click.option("--test-per-class", type=click.IntRange(min=0), default=100, show_default=True,
              help="Test images per class.")
@click.option("--seed", type=int_range(SEEDS), default=0, show_default=True,
              help="Seed of the random subset.")
@click.option("--level", type=click.IntRange(0, 9), default=9, show_default=True,
              help="gzip level (0-9) of the images.")
@force_option("OUT")
def make_mini_command(
    source: str, out: Path, train_per_class: int, test_per_class: int, seed: int, level: int,
    force: bool,
) -> None:
    """Write a stratified random subset of SOURCE to the HDF5 file OUT.

    The bundled set was made with: numbacnn data make-mini fashion-mnist
    data/fashion-mnist-mini.h5
    """
    from numbacnn.io.dataset_files import load_dataset
    from numbacnn.io.datasets import make_mini

    source_files = _idx_files(Path(source)) if Path(source).is_dir() else []
    target = _check_out(out, source, *source_files, force=force)
    mini = make_mini(load_dataset(source), train_per_class, test_per_class, seed)
    _write(mini, target, compression=level)


@data.command("info")
@click.argument("source")
def info_command(source: str) -> None:
    """Print the name, shapes and per-class counts of SOURCE."""
    from numbacnn.io.dataset_files import load_dataset

    ds = load_dataset(source)
    names = [printable(name) for name in ds.class_names]  # a file's text, escaped
    click.echo(f"name:        {printable(ds.name)}")
    click.echo(f"input shape: {volume(ds.input_shape)} ({VOLUME_AXES}), uint8")
    click.echo(f"train:       {len(ds.x_train)} images")
    click.echo(f"test:        {len(ds.x_test)} images")
    click.echo(f"classes:     {ds.num_classes}")
    width = max(len("class"), *(len(n) for n in names))
    click.echo(f"  {'#':>3}  {'class':<{width}}  {'train':>6}  {'test':>6}")
    train, test = ds.counts("train"), ds.counts("test")
    for i, name in enumerate(names):
        click.echo(f"  {i:>3}  {name:<{width}}  {train[i]:>6}  {test[i]:>6}")


def _summary(ds) -> str:
    return (
        f"{printable(ds.name)}, {len(ds.x_train)} train + {len(ds.x_test)} test images of "
        f"{volume(ds.input_shape)} ({VOLUME_AXES}), {ds.num_classes} classes"
    )


COMMANDS = [data]
