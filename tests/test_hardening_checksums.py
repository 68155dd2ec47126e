"""Issue 24: a flipped bit inside a weight array is caught by its Fletcher-32 checksum
and reported as one line naming the array (docs/hdf5.md); files without checksums
still load."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import CLASSES, assert_one_error, quadrants, run

from numbacnn.device import to_host
from numbacnn.errors import ModelFileError
from numbacnn.io.datasets import Dataset
from numbacnn.network import Network
from numbacnn.training.checkpoint import load_checkpoint
from numbacnn.training.trainer import Trainer, TrainSettings

BN_SPEC = "input 8x8x1; conv 3 3 pad=1; batchnorm; relu; maxpool 2; fc 4; softmax"
ARRAY_GROUPS = ("layers", "optimizer")  # weights, running statistics, optimizer slots


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch Adam checkpoint of a network with batchnorm (running statistics)."""
    x_train, y_train = quadrants(48)
    x_test, y_test = quadrants(8, seed=8)
    dataset = Dataset(x_train, y_train, x_test, y_test, list(CLASSES), "quadrants")
    out = tmp_path_factory.mktemp("checksums") / "bn.h5"
    settings = TrainSettings(spec=BN_SPEC, data="quadrants", epochs=1, batch_size=16,
                             lr=0.01, optimizer="adam")
    Trainer(Network.from_spec(BN_SPEC, device="cpu"), dataset, settings, out=out).run()
    return out


def weight_arrays(path: Path) -> dict[str, bool]:
    """Every array under layers/ and optimizer/: whether it has a Fletcher-32 checksum."""
    found: dict[str, bool] = {}
    with h5py.File(path, "r") as f:
        for name in ARRAY_GROUPS:
            f[name].visititems(lambda key, item, name=name: found.__setitem__(
                f"{name}/{key}", item.fletcher32) if isinstance(item, h5py.Dataset) else None)
    return found


def flip_one_bit(path: Path, dataset: str) -> None:
    """Flip one bit in the middle of ``dataset``'s stored data (not its checksum)."""
    with h5py.File(path, "r") as f:
        chunk = f[dataset].id.get_chunk_info(0)
    position = chunk.byte_offset + (chunk.size - 4) // 2  # the last 4 bytes: the checksum
    with open(path, "r+b") as fh:
        fh.seek(position)
        byte = fh.read(1)[0]
        fh.seek(position)
        fh.write(bytes([byte ^ 0x10]))


def test_every_weight_array_is_written_with_a_checksum(checkpoint: Path) -> None:
    arrays = weight_arrays(checkpoint)
    assert {"layers/00_conv/W", "layers/01_batchnorm/state/mean", "optimizer/m/04_fc/W",
            "optimizer/v/01_batchnorm/gamma"} <= set(arrays)
    assert all(arrays.values()), arrays


FLIPPED = {
    "conv weights": ("layers/00_conv/W", "layer 1 (conv) weights"),
    "conv biases": ("layers/00_conv/b", "layer 1 (conv) biases"),
    "batchnorm gamma": ("layers/01_batchnorm/gamma", "layer 2 (batchnorm) gamma"),
    "running mean": ("layers/01_batchnorm/state/mean",
                     "layer 2 (batchnorm) running statistic mean"),
    "fc weights": ("layers/04_fc/W", "layer 5 (fc) weights"),
    "adam m": ("optimizer/m/00_conv/W", "optimizer m of layer 1 (conv) weights"),
    "adam v": ("optimizer/v/04_fc/b", "optimizer v of layer 5 (fc) biases"),
}


@pytest.mark.parametrize("dataset, label", FLIPPED.values(), ids=FLIPPED.keys())
def test_a_flipped_bit_names_the_array(dataset: str, label: str, checkpoint: Path,
                                       tmp_path: Path) -> None:
    path = tmp_path / "model.h5"
    shutil.copy(checkpoint, path)
    flip_one_bit(path, dataset)
    message = (f"{path}: {label} ({dataset}): checksum mismatch — the file is damaged; "
               "retrain or restore a copy")
    with pytest.raises(ModelFileError) as caught:
        load_checkpoint(path)
    assert str(caught.value) == message
    assert assert_one_error(run("inspect", path)) == f"error: {message}"
    if dataset.startswith("layers/"):  # predict reads the weights, not the optimizer
        images = tmp_path / "in.npy"
        np.save(images, quadrants(2)[0])
        assert_one_error(run("predict", path, images), "checksum mismatch")


def test_files_without_checksums_still_load(checkpoint: Path, tmp_path: Path) -> None:
    path = tmp_path / "old.h5"
    shutil.copy(checkpoint, path)
    with h5py.File(path, "r+") as f:
        for name in weight_arrays(checkpoint):
            data = f[name][()]
            del f[name]
            f.create_dataset(name, data=data)  # contiguous, no filter: as older writers
    assert not any(weight_arrays(path).values())
    net, info = load_checkpoint(path)
    reference, reference_info = load_checkpoint(checkpoint)
    for layer, same in zip(net.layers, reference.layers, strict=True):
        for key in layer.params:
            np.testing.assert_array_equal(to_host(layer.params[key]),
                                          to_host(same.params[key]))
        for key in layer.state:
            np.testing.assert_array_equal(to_host(layer.state[key]), to_host(same.state[key]))
    assert info.optimizer.slots.keys() == reference_info.optimizer.slots.keys()
