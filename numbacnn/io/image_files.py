"""One picture file (PNG, JPEG, BMP, GIF, WebP) read with Pillow and fitted to a model's
input: uint8 C×H×W.

Shared by ``numbacnn predict`` / ``plot features`` (:mod:`numbacnn.io.images`) and the
image-folder importer (:mod:`numbacnn.io.image_folder`), so an image is resized the same
way when a dataset is imported and when a model is later asked about it.

Resizing keeps the aspect ratio (:data:`FITS`): ``crop`` scales the image until it
covers W×H and cuts the centre (torchvision's Resize + CenterCrop), ``pad`` scales it
until it fits inside W×H and fills the borders with black. An image already W×H is not
resampled. Resampling is bicubic with Pillow's antialiasing when shrinking.

Refused with :class:`numbacnn.errors.DataError`, one line each: a path that is not a
regular file (a FIFO is never opened), a file Pillow cannot identify, a truncated or
corrupt image, and a decompression bomb: more than ``Image.MAX_IMAGE_PIXELS`` pixels
(about 89 million), which Pillow would otherwise only warn about on stderr. Pillow is
optional (the ``images`` extra): :func:`require_pillow` says how to install it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from numbacnn.errors import DataError, shown_path
from numbacnn.limits import check_regular_file

FITS = ("crop", "pad")  # how an image of another aspect ratio is fitted (module doc)
DEFAULT_FIT = "crop"
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
MODES = {1: "L", 3: "RGB"}  # channels → Pillow mode
INSTALL_HINT = "pip install 'numbacnn[images]' (or pip install pillow)"


def require_pillow(what: str) -> Any:
    """The ``PIL.Image`` module, or DataError saying that ``what`` needs Pillow."""
    try:
        from PIL import Image
    except ImportError:
        raise DataError(f"{what} needs Pillow: {INSTALL_HINT}") from None
    return Image


def check_fit(fit: str) -> str:
    if fit not in FITS:
        raise DataError(f"unknown fit {fit!r}: choose one of {', '.join(FITS)}", field="fit")
    return fit


def read_picture(path: str | Path, shape: tuple[int, int, int],
                 fit: str = DEFAULT_FIT) -> tuple[np.ndarray, tuple[int, int]]:
    """(uint8 C×H×W pixels, the file's own (width, height)) of the picture at ``path``,
    converted to grey (C = 1) or RGB (C = 3) and fitted to H×W by ``fit`` (FITS)."""
    path = Path(path)
    C, H, W = shape
    if C not in MODES:
        raise DataError(f"{shown_path(path)}: pictures have 1 (grey) or 3 (RGB) channels, "
                        f"not {C}; give {C}-channel images as a .npy array")
    check_fit(fit)
    Image = require_pillow(f"{shown_path(path)}: reading a picture")
    check_regular_file(path, "picture file", DataError)
    with warnings.catch_warnings():
        # Over MAX_IMAGE_PIXELS Pillow only warns (on stderr); over twice that it raises.
        # Both are the same refusal here, said in one line.
        warnings.simplefilter("ignore", UserWarning)  # e.g. palette transparency notes
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                size = image.size
                image.draft(MODES[C], _draft_size(image.size, (W, H), fit))  # JPEG: decode smaller
                pixels = _fitted(image.convert(MODES[C]), (W, H), fit, Image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise DataError(f"{shown_path(path)}: declares more than {Image.MAX_IMAGE_PIXELS:,} "
                            "pixels, too many to decode safely (a decompression bomb?); "
                            "shrink the picture first") from None
        except Image.UnidentifiedImageError:
            raise DataError(f"{shown_path(path)}: not a picture Pillow can read; give a PNG, "
                            "JPEG, BMP, GIF or WebP file") from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated, corrupt
            reason = " ".join(str(exc).split())[:120] or type(exc).__name__
            raise DataError(f"{shown_path(path)}: cannot read the picture ({reason}); the file "
                            "is truncated or corrupt") from None
    array = np.asarray(pixels, dtype=np.uint8)
    array = array[None] if C == 1 else array.transpose(2, 0, 1)
    return np.ascontiguousarray(array), size


def _draft_size(size: tuple[int, int], target: tuple[int, int], fit: str) -> tuple[int, int]:
    """The smallest size JPEG draft mode may decode to and still cover what ``fit`` needs:
    draft scales both sides by the same power of two, never below this size."""
    (w, h), (W, H) = size, target
    scale = max(W / w, H / h) if fit == "crop" else min(W / w, H / h)
    return max(1, int(np.ceil(w * scale))), max(1, int(np.ceil(h * scale)))


def _fitted(image: Any, target: tuple[int, int], fit: str, Image: Any) -> Any:
    """``image`` fitted to ``target`` (width, height), keeping its aspect ratio."""
    if image.size == target:
        return image
    from PIL import ImageOps

    if fit == "crop":
        return ImageOps.fit(image, target, method=Image.Resampling.BICUBIC)
    return ImageOps.pad(image, target, method=Image.Resampling.BICUBIC, color=0)


def describe_fit(fit: str) -> str:
    """Words for a note line: how an image of another size was fitted."""
    return ("scaled to cover and centre-cropped" if check_fit(fit) == "crop"
            else "scaled to fit and padded with black")
