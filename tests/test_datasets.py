"""Tests of numbacnn.io.datasets: the in-memory dataset's subsets, normalization and
augmentation (no numba, no GPU)."""

from __future__ import annotations

import numpy as np
import pytest
from dataset_samples import assert_same, small_dataset

from numbacnn.errors import DataError
from numbacnn.io import datasets


def test_make_mini() -> None:
    ds = small_dataset(n_train=400, n_test=100)
    mini = datasets.make_mini(ds, train_per_class=7, test_per_class=3, seed=5)
    assert mini.name == "small-mini" and list(mini.counts("train")) == [7] * 4
    assert list(mini.counts("test")) == [3] * 4
    assert_same(mini, datasets.make_mini(ds, 7, 3, seed=5))
    assert not np.array_equal(mini.x_train, datasets.make_mini(ds, 7, 3, seed=6).x_train)
    with pytest.raises(DataError, match=r"has 25 images of class 0.*lower test_per_class$"):
        datasets.make_mini(ds, 7, 26)
    with pytest.raises(DataError, match="^train_per_class must be ≥ 1, got -1$") as bad:
        datasets.make_mini(ds, -1, 3)
    assert bad.value.field == "train_per_class"
    with pytest.raises(DataError, match="^test_per_class must be ≥ 0, got -2$"):
        datasets.make_mini(ds, 7, -2)


# ----------------------------------------------------------------------------- arrays


def test_normalization_and_normalize() -> None:
    x = np.zeros((2, 2, 2, 2), dtype=np.uint8)
    x[:, 0] = [[0, 255], [0, 255]]  # channel 0: half 0, half 1 -> mean 0.5, std 0.5
    x[:, 1] = 51  # constant channel: mean 0.2, std set to 1
    mean, std = datasets.normalization(x)
    assert mean.dtype == std.dtype == np.float32 and mean.shape == (2,)
    np.testing.assert_allclose(mean, [0.5, 0.2], rtol=1e-6)
    np.testing.assert_allclose(std, [0.5, 1.0], rtol=1e-6)
    out = datasets.normalize(x, mean, std)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == x.shape
    np.testing.assert_allclose(out[:, 0], np.where(x[:, 0] == 255, 1.0, -1.0), atol=1e-6)
    np.testing.assert_allclose(out[:, 1], 0.0, atol=1e-6)
    with pytest.raises(DataError, match="images have 2 channels but the normalization has 3"):
        datasets.normalize(x, np.zeros(3), np.ones(3))


def test_normalize_matches_reference() -> None:
    ds = small_dataset(c=3)
    mean, std = datasets.normalization(ds.x_train)
    ref = ds.x_train / 255.0
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3)), rtol=1e-5)
    out = datasets.normalize(ds.x_train, mean, std)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1.0, atol=1e-5)

def test_augment_crop_and_flip() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((64, 2, 5, 7)).astype(np.float32)
    keep = x.copy()
    same = datasets.augment(x, rng)
    assert same is not x and np.array_equal(same, x)
    pad = 2
    out = datasets.augment(x, rng, crop_pad=pad, flip=True)
    assert out.shape == x.shape and out.dtype == np.float32 and np.array_equal(x, keep)
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    offsets, flips = set(), set()
    for i in range(len(x)):
        crops = {
            (dy, dx): padded[i, :, dy : dy + 5, dx : dx + 7]
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
        }
        found = [
            (dy, dx, f)
            for (dy, dx), crop in crops.items()
            for f in (False, True)
            if np.array_equal(out[i], crop[..., ::-1] if f else crop)
        ]
        assert found, f"image {i} is not a padded crop of the input"
        offsets.add(found[0][:2])
        flips.add(found[0][2])
    assert len(offsets) > 5 and flips == {False, True}
