"""The in-memory dataset: images and labels of a train and a test split, checked,
subset, normalized and augmented.

A :class:`Dataset` holds ``uint8`` images in (N, C, H, W) order with pixel values
0-255 and ``int64`` labels in [0, num_classes). Reading and writing datasets is
:mod:`numbacnn.io.dataset_files`. Imports numpy only (no h5py), so the CLI can read
``SPLITS`` at start-up.

Normalization: images are scaled to [0, 1] (divided by 255), then standardized
per channel with the mean and standard deviation of the [0, 1]-scaled training
images (:func:`normalization`, :func:`normalize`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from numbacnn.errors import DataError
from numbacnn.geometry import VOLUME_AXES, volume
from numbacnn.limits import MAX_CLASSES, SEEDS, Bounds

SPLITS = ("train", "test")  # the splits of a dataset (Dataset.split)


@dataclass
class Dataset:
    """Images and labels of a train and a test split.

    ``x_train``: uint8 (N, C, H, W), pixel values 0-255; ``y_train``: int64 (N,);
    ``x_test``: uint8 (M, C, H, W); ``y_test``: int64 (M,); labels index
    ``class_names``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    name: str = "dataset"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        _, c, h, w = self.x_train.shape
        return (int(c), int(h), int(w))

    @property
    def num_classes(self) -> int:
        """Number of classes (length of ``class_names``)."""
        return len(self.class_names)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 images N×C×H×W, int64 labels (N,)) of the split ``name``, one of SPLITS;
        DataError (``field`` "split") for another name."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}: choose one of {', '.join(SPLITS)}",
                            field="split")
        return (self.x_train, self.y_train) if name == "train" else (self.x_test, self.y_test)

    def counts(self, split: str) -> np.ndarray:
        """Images per class in ``split`` ("train" or "test"): int64 (num_classes,)."""
        return np.bincount(self.split(split)[1], minlength=self.num_classes)


def validate(ds: Dataset, where: str) -> Dataset:
    """Check dtypes, shapes and label range; return ``ds`` with int64 labels.

    ``where`` names the source in error messages (a file path, for example).
    """
    if not ds.class_names or not all(isinstance(n, str) for n in ds.class_names):
        raise DataError(f"{where}: class names must be a non-empty list of strings")
    if len(ds.class_names) > MAX_CLASSES:
        raise DataError(f"{where}: {len(ds.class_names)} classes, more than the {MAX_CLASSES} "
                        "numbacnn takes; merge classes or fix the labels")
    for split in ("train", "test"):
        x = getattr(ds, f"x_{split}")
        y = getattr(ds, f"y_{split}")
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise DataError(
                f"{where}: {split} images are {got}, expected uint8 N x C x H x W "
                "(pixel values 0-255); convert them with np.uint8 before importing"
            )
        if 0 in x.shape[1:]:  # HDF5 cannot chunk them, and no layer takes them
            raise DataError(
                f"{where}: {split} images are {volume(x.shape[1:])} ({VOLUME_AXES}); width, "
                "height and depth must each be at least 1"
            )
        if not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype.kind not in "iu":
            got = f"{y.dtype} {y.shape}" if isinstance(y, np.ndarray) else type(y).__name__
            raise DataError(
                f"{where}: {split} labels are {got}, expected integer class indices of shape (N,)"
            )
        if len(y) != len(x):
            raise DataError(
                f"{where}: {split} has {len(x)} images but {len(y)} labels; "
                "give exactly one label per image"
            )
        if len(y) and (y.min() < 0 or y.max() >= ds.num_classes):
            bad = int(y.min()) if y.min() < 0 else int(y.max())
            raise DataError(
                f"{where}: {split} label {bad} is outside [0, {ds.num_classes}) for "
                f"{ds.num_classes} classes; fix the labels or the class names"
            )
        setattr(ds, f"y_{split}", y.astype(np.int64, copy=False))
    if len(ds.x_train) == 0:
        raise DataError(f"{where}: the train split has no images; a dataset needs at least one")
    if ds.x_test.shape[1:] != ds.x_train.shape[1:]:
        raise DataError(
            f"{where}: test images are {volume(ds.x_test.shape[1:])} but train images are "
            f"{volume(ds.x_train.shape[1:])} ({VOLUME_AXES}); both splits need the same image shape"
        )
    return ds


# ----------------------------------------------------------------------------- subsets


TRAIN_PER_CLASS = Bounds(1)  # images of each class in a subset's train split (make_mini)
TEST_PER_CLASS = Bounds(0)  # and in its test split


def make_mini(
    ds: Dataset, train_per_class: int = 600, test_per_class: int = 100, seed: int = 0
) -> Dataset:
    """A stratified random subset: ``train_per_class`` / ``test_per_class`` images of
    each class, drawn without replacement with ``np.random.default_rng(seed)``,
    kept in their original order. Named ``<name>-mini``.
    """
    for name, value, bounds in (("train_per_class", train_per_class, TRAIN_PER_CLASS),
                                ("test_per_class", test_per_class, TEST_PER_CLASS),
                                ("seed", seed, SEEDS)):
        bounds.check(name, value, DataError)
    rng = np.random.default_rng(seed)
    picked = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        y = getattr(ds, f"y_{split}")
        chosen = []
        for c in range(ds.num_classes):
            members = np.flatnonzero(y == c)
            if len(members) < per_class:
                raise DataError(
                    f"{ds.name}: {split} split has {len(members)} images of class {c} "
                    f"({ds.class_names[c]}), fewer than {per_class}; lower {split}_per_class",
                    field=f"{split}_per_class")
            chosen.append(rng.choice(members, per_class, replace=False))
        idx = np.sort(np.concatenate(chosen))
        picked[f"x_{split}"] = np.ascontiguousarray(getattr(ds, f"x_{split}")[idx])
        picked[f"y_{split}"] = y[idx].astype(np.int64)
    return Dataset(class_names=list(ds.class_names), name=f"{ds.name}-mini", **picked)


# ----------------------------------------------------------------------------- arrays


def normalization(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of the [0, 1]-scaled training images.

    ``x_train``: uint8 (N, C, H, W), pixel values 0-255. Returns two float32 (C,)
    arrays in units of pixel value / 255. A constant channel gets std 1.
    Computed exactly from a 256-bin histogram per channel (no float copy).
    """
    _check_images(x_train, "x_train")
    values = np.arange(256, dtype=np.float64) / 255.0
    mean = np.empty(x_train.shape[1], dtype=np.float64)
    std = np.empty_like(mean)
    for c in range(x_train.shape[1]):
        hist = np.bincount(x_train[:, c].ravel(), minlength=256).astype(np.float64)
        total = hist.sum()
        mean[c] = hist @ values / total
        std[c] = np.sqrt(hist @ (values - mean[c]) ** 2 / total)
    std[std == 0] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def normalize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x / 255 - mean) / std`` per channel: uint8 (N, C, H, W) -> contiguous float32."""
    _check_images(x, "images")
    mean = np.asarray(mean, dtype=np.float32).reshape(-1)
    std = np.asarray(std, dtype=np.float32).reshape(-1)
    if len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise DataError(
            f"images have {x.shape[1]} channels but the normalization has {len(mean)}; "
            "use a dataset with the image shape the network was trained on"
        )
    scale = (1.0 / (255.0 * std)).reshape(1, -1, 1, 1)
    shift = (mean / std).reshape(1, -1, 1, 1)
    out = x.astype(np.float32, order="C")
    out *= scale
    out -= shift
    return out


def _check_images(x: np.ndarray, what: str) -> None:
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(f"{what} are {got}, expected uint8 N x C x H x W")
def augment(
    xb: np.ndarray, rng: np.random.Generator, crop_pad: int = 0, flip: bool = False
) -> np.ndarray:
    """Random crop and horizontal flip of a float32 (N, C, H, W) batch; returns a new array.

    Crop: pad each image with ``crop_pad`` zero pixels on every side (zero is the
    training mean after :func:`normalize`) and cut an H x W window at a random
    offset. Flip: mirror each image left-right with probability 1/2.
    """
    if xb.ndim != 4:
        raise DataError(f"augment needs an N x C x H x W batch, got shape {xb.shape}")
    if crop_pad < 0:
        raise DataError(f"crop padding is {crop_pad}; it must be 0 or more")
    n, c, h, w = xb.shape
    if crop_pad == 0:
        out = np.array(xb, dtype=np.float32, order="C", copy=True)
    else:
        p = crop_pad
        padded = np.zeros((n, c, h + 2 * p, w + 2 * p), dtype=np.float32)
        padded[:, :, p : p + h, p : p + w] = xb
        windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))
        dy = rng.integers(0, 2 * p + 1, size=n)
        dx = rng.integers(0, 2 * p + 1, size=n)
        out = windows[np.arange(n), :, dy, dx]  # (N, C, H, W), a copy
    if flip:
        mirror = rng.random(n) < 0.5
        out[mirror] = out[mirror, :, :, ::-1]
    return out
