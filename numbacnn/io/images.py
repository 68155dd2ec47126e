"""Images to predict on, from the files a user has: a uint8 batch N×C×H×W.

``numbacnn predict``, ``evaluate`` and ``plot features`` take an INPUT that may be a
dataset (by name, .h5 or dataset .npz: its test or train split, with labels), a .npy or
.npz array of images (N×C×H×W, N×H×W, N×H×W×C, or one image), or a picture file
(PNG, JPEG, BMP, GIF, WebP; Pillow) of any size, fitted to the model's input the way
``numbacnn data import-folder`` fits it (:mod:`numbacnn.io.image_files`). Pixels stay
raw uint8 0–255: the model's own normalization applies later.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from numbacnn.errors import DataError
from numbacnn.geometry import VOLUME_AXES, volume
from numbacnn.io.dataset_files import load_dataset
from numbacnn.io.image_files import DEFAULT_FIT, PICTURE_SUFFIXES, read_picture
from numbacnn.io.numpy_files import read_npy, read_npz
from numbacnn.limits import check_regular_file, exists

IMAGE_SUFFIXES = PICTURE_SUFFIXES
DATASET_SUFFIXES = (".h5", ".hdf5")


def is_picture(source: str | Path) -> bool:
    """Whether ``source`` is named as a picture file (.png, .jpg, ...)."""
    return Path(source).suffix.lower() in IMAGE_SUFFIXES


def load_picture(source: str | Path, input_shape: tuple[int, int, int],
                 fit: str = DEFAULT_FIT) -> tuple[np.ndarray, tuple[int, int]]:
    """(uint8 1×C×H×W, the file's own (width, height)) of one picture file of any size,
    fitted to ``input_shape`` (C, H, W) by ``fit`` (image_files.FITS)."""
    pixels, size = read_picture(source, input_shape, fit)
    return pixels[None], size


def load_images(source: str, input_shape: tuple[int, int, int], split: str = "test",
                fit: str = DEFAULT_FIT) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 images N×C×H×W, int64 labels or None) from ``source`` (see the module doc);
    DataError naming the file and the fix when it does not fit ``input_shape``."""
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return load_picture(path, input_shape, fit)[0], None
    if suffix == ".npy":
        return _as_batch(_read_npy(path), input_shape, str(path)), None
    if suffix == ".npz":
        single = _npz_images(path)
        if single is not None:
            return _as_batch(single, input_shape, str(path)), None
    elif _is_file(path) and suffix not in DATASET_SUFFIXES:
        raise DataError(f"{path}: unknown input type {suffix or '(no suffix)'}; give a .npy, "
                        ".npz, .h5 dataset or a picture (.png, .jpg, .bmp, .gif, .webp)")
    return load_dataset(source).split(split)


def _read_npy(path: Path) -> np.ndarray:
    if not exists(path):
        raise DataError(f"{path}: no such file; check the path")
    return read_npy(path)


def _npz_images(path: Path) -> np.ndarray | None:
    """The images of a .npz that is not a dataset (its `images` or only array), or None
    for a dataset .npz (x_train, y_train, x_test, y_test)."""

    check_regular_file(path, "file", DataError, "check the path")  # "no such file"
    arrays = read_npz(path)
    keys = list(arrays)
    if "x_test" in keys or "x_train" in keys:
        return None
    if "images" in keys:
        return arrays["images"]
    if len(keys) == 1:
        return arrays[keys[0]]
    raise DataError(f"{path}: holds arrays {', '.join(keys) or 'none'}; give one array, one "
                    "named images, or a dataset's x_train/y_train/x_test/y_test")


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the OS
        return False


def _as_batch(images: np.ndarray, input_shape: tuple[int, int, int], where: str) -> np.ndarray:
    """uint8 images as N×C×H×W: N×H×W and H×W (one channel), C×H×W and H×W×C (one
    image), N×H×W×C (channels last) are rearranged; anything else is refused."""
    C, H, W = input_shape
    if images.dtype != np.uint8:
        raise DataError(f"{where}: images are {images.dtype}; give raw uint8 pixels 0-255 "
                        "(the model normalizes them itself)")
    shape = tuple(images.shape)
    if shape == (H, W) and C == 1:
        images = images[None, None]
    elif shape == (C, H, W):
        images = images[None]
    elif shape == (H, W, C):
        images = images.transpose(2, 0, 1)[None]
    elif len(shape) == 3 and shape[1:] == (H, W) and C == 1:
        images = images[:, None]
    elif len(shape) == 4 and shape[1:] != (C, H, W) and shape[1:] == (H, W, C):
        images = images.transpose(0, 3, 1, 2)
    elif len(shape) != 4 or shape[1:] != (C, H, W):
        raise DataError(f"{where}: images have shape {shape} but the model takes "
                        f"{volume(input_shape)} ({VOLUME_AXES}) images: give an array of shape "
                        f"(N, {C}, {H}, {W}), (N, {H}, {W}, {C})"
                        + (f", (N, {H}, {W})" if C == 1 else "") + " or one image")
    return np.ascontiguousarray(images)
