"""Tests of numbacnn.io.model_file and numbacnn.training.checkpoint: HDF5 model files and
checkpoints (save, load, validate, atomic writes), prediction with the stored
normalization (numbacnn.tools.inference), ensembles, and an h5py-only numpy forward pass
that must predict what numbacnn predicts."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import CLASSES, quadrant_dataset
from layer_cases import LAYER_CASES, POOL_OPTION_CASES

from numbacnn.errors import DataError, ModelFileError, NotAModelError
from numbacnn.io.atomic_file import WriteError, check_writable
from numbacnn.io.datasets import Dataset
from numbacnn.io.model_file import (
    ModelInfo,
    best_path,
    check_model_writable,
    load_model,
    save_model,
)
from numbacnn.layers import (
    ELU,
    LRN,
    AvgPool2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    LeakyReLU,
    Maxout,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Tanh,
)
from numbacnn.network import Network
from numbacnn.tools.inference import ensemble_proba, predict_images
from numbacnn.training.checkpoint import OptimizerState, load_checkpoint
from numbacnn.training.trainer import Trainer, TrainSettings


def tiny_network() -> Network:
    return Network([Conv2D(4, 3, pad=1, init="xavier"), ReLU(), MaxPool2D(2), Dense(8), ReLU(),
                    Dropout(0.25), Dense(4)], input_shape=(1, 8, 8), spec_text="tiny")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset]:
    """A checkpoint of the tiny network after 2 epochs on the quadrant data."""
    out = tmp_path_factory.mktemp("trained") / "tiny.h5"
    dataset = quadrant_dataset()
    settings = TrainSettings(spec="tiny", epochs=2, batch_size=16, lr=0.05, seed=3)
    Trainer(tiny_network(), dataset, settings, out=out).run()
    return out, dataset


def read_bytes(path: Path) -> bytes:
    return path.read_bytes()


# ----------------------------------------------------------------------------- round trip


def test_save_load_round_trip_gives_identical_outputs(trained, tmp_path: Path) -> None:
    path, dataset = trained
    net, info = load_checkpoint(path)
    proba = predict_images(net, info, dataset.x_test)
    copy = tmp_path / "copy.h5"
    save_model(copy, net, info)
    net2, info2 = load_checkpoint(copy)
    np.testing.assert_array_equal(predict_images(net2, info2, dataset.x_test), proba)
    for (name, w, _), (name2, w2, _) in zip(net.parameters(), net2.parameters(), strict=True):
        assert name == name2 and w.dtype == np.float32
        np.testing.assert_array_equal(w, w2)
    assert [layer.describe() for layer in net2.layers] == [layer.describe() for layer in net.layers]
    assert net2.layers[0].init == "xavier" and net2.layers[3].init is None
    assert info2.class_names == CLASSES and info2.input_shape == (1, 8, 8)
    np.testing.assert_array_equal(info2.mean, info.mean)
    np.testing.assert_array_equal(info2.std, info.std)
    assert info2.training == info.training and info2.training.epoch == 2
    assert info2.settings == info.settings and info2.settings["seed"] == 3
    assert info2.optimizer.name == "sgd" and info2.optimizer.t == info.optimizer.t > 0
    for slot, table in info.optimizer.slots.items():
        for key, value in table.items():
            np.testing.assert_array_equal(info2.optimizer.slots[slot][key], value)
    for key, values in info.history.items():
        np.testing.assert_array_equal(info2.history[key], values)
    assert net2.step == net.step == info.training.step


def test_plain_load_reads_the_model_and_settings_but_not_the_checkpoint_parts(trained) -> None:
    net, info = load_model(trained[0], device="cpu")
    assert info.training is None and info.optimizer is None
    assert info.settings["seed"] == 3 and info.settings["spec"] == "tiny"
    assert net.device == "cpu" and net.step == 0
    assert load_checkpoint(trained[0])[0].step > 0


def test_an_unusable_device_is_a_device_error_not_a_damaged_file(trained) -> None:
    from numbacnn.device import cuda_unavailable_reason
    from numbacnn.errors import DeviceError

    if cuda_unavailable_reason() is None:
        pytest.skip("a GPU is usable here")
    with pytest.raises(DeviceError, match="device 'cuda' was asked for"):
        load_model(trained[0], device="cuda")


def assert_round_trips(net: Network, path: Path) -> None:
    """Saved and loaded, ``net`` has the same layers (options, init) and predicts the same
    probabilities from the same images."""
    C = net.input_shape[0]
    info = ModelInfo("", net.input_shape, ["a", "b", "c"],
                     np.linspace(0.4, 0.5, C).astype(np.float32),
                     np.linspace(0.2, 0.3, C).astype(np.float32))
    images = np.random.default_rng(1).integers(0, 256, (5, *net.input_shape)).astype(np.uint8)
    save_model(path, net, info)
    loaded, loaded_info = load_model(path)
    assert [layer.describe() for layer in loaded.layers] == [layer.describe()
                                                             for layer in net.layers]
    assert [layer.init for layer in loaded.layers] == [layer.init for layer in net.layers]
    assert loaded_info.training is None and loaded_info.optimizer is None
    np.testing.assert_array_equal(predict_images(loaded, loaded_info, images),
                                  predict_images(net, info, images))


def test_every_layer_kind_round_trips(tmp_path: Path) -> None:
    layers = [Conv2D(4, 3, stride=1, pad=1, init="normal"), LeakyReLU(0.2), LRN(3, 2e-4, 0.5, 1.5),
              AvgPool2D(2), Conv2D(6, 1), ELU(0.5), Maxout(3), MaxPool2D(2, 1), Sigmoid(),
              Flatten(), Dense(5, init="xavier"), Tanh(), Dropout(0.1), Dense(3)]
    net = Network(layers, input_shape=(2, 6, 6)).initialize(9, "he")
    assert_round_trips(net, tmp_path / "all.h5")


@pytest.mark.parametrize("kind", [*LAYER_CASES, *POOL_OPTION_CASES])
def test_each_layer_kind_round_trips(kind: str, tmp_path: Path) -> None:
    """tests/layer_cases.py's tiny classifier of each kind, after one training pass (which
    moves what a layer keeps besides its parameters, e.g. running statistics), and of
    pooling with each of its options (a rectangular window is stored as two numbers)."""
    case = LAYER_CASES.get(kind) or POOL_OPTION_CASES[kind]
    net = Network.from_spec(case.network_spec()).initialize(9, "he")
    net.forward(case.draw(np.random.default_rng(2)), training=True)
    assert_round_trips(net, tmp_path / f"{kind}.h5")


def test_trained_model_beats_chance_with_stored_normalization(trained) -> None:
    path, dataset = trained
    net, info = load_model(path)
    assert info.mean.shape == (1,) and 0 < info.mean[0] < 1
    proba = predict_images(net, info, dataset.x_test)
    assert proba.shape == (32, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert np.mean(proba.argmax(axis=1) == dataset.y_test) > 0.5


def test_predict_checks_image_shape_and_dtype(trained) -> None:
    net, info = load_model(trained[0])
    with pytest.raises(DataError, match=r"are 6x6x1 \(W x H x D\) .* takes 8x8x1"):
        predict_images(net, info, np.zeros((2, 1, 6, 6), np.uint8))
    with pytest.raises(DataError, match="raw uint8"):
        predict_images(net, info, np.zeros((2, 1, 8, 8), np.float32))


def test_ensemble_is_the_mean_of_the_models_probabilities(trained, tmp_path: Path) -> None:
    path, dataset = trained
    other = tmp_path / "other.h5"
    settings = TrainSettings(spec="tiny", epochs=1, batch_size=16, lr=0.05, seed=4)
    Trainer(tiny_network(), dataset, settings, out=other).run()
    models = [load_model(path), load_model(other)]
    singles = [predict_images(net, info, dataset.x_test) for net, info in models]
    assert not np.allclose(singles[0], singles[1])
    np.testing.assert_allclose(ensemble_proba(models, dataset.x_test),
                               (singles[0] + singles[1]) / 2, rtol=1e-6)


# ----------------------------------------------------------------------------- h5py only


def numpy_forward(path: Path, images: np.ndarray) -> np.ndarray:
    """Class probabilities from the file alone: h5py for the weights, numpy for the math."""
    with h5py.File(path, "r") as f:
        mean = f.attrs["normalization_mean"].reshape(1, -1, 1, 1)
        std = f.attrs["normalization_std"].reshape(1, -1, 1, 1)
        groups = sorted(f["layers"].values(), key=lambda g: g.attrs["index"])
        layers = [(g.attrs["kind"], dict(g.attrs), {k: g[k][()] for k in g}) for g in groups]
    x = (images.astype(np.float64) / 255 - mean) / std
    for kind, attrs, weights in layers:
        if kind == "conv":
            W, b = weights["W"].astype(np.float64), weights["b"].astype(np.float64)
            F, S, P = int(attrs["size"]), int(attrs["stride"]), int(attrs["pad"])
            xp = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))
            OH = (xp.shape[2] - F) // S + 1
            OW = (xp.shape[3] - F) // S + 1
            y = np.zeros((x.shape[0], W.shape[0], OH, OW))
            for i in range(F):
                for j in range(F):
                    window = xp[:, :, i:i + S * OH:S, j:j + S * OW:S]  # N, C, OH, OW
                    y += np.einsum("nchw,kc->nkhw", window, W[:, :, i, j])
            x = y + b.reshape(1, -1, 1, 1)
        elif kind == "relu":
            x = np.maximum(x, 0)
        elif kind == "maxpool":
            F, S = int(attrs["size"]), int(attrs["stride"])
            OH, OW = (x.shape[2] - F) // S + 1, (x.shape[3] - F) // S + 1
            y = np.full((*x.shape[:2], OH, OW), -np.inf)
            for i in range(F):
                for j in range(F):
                    y = np.maximum(y, x[:, :, i:i + S * OH:S, j:j + S * OW:S])
            x = y
        elif kind == "fc":
            x = x.reshape(len(x), -1) @ weights["W"].astype(np.float64).T + weights["b"]
            x = x.reshape(*x.shape, 1, 1)
        elif kind != "dropout":  # dropout is the identity at test time
            raise AssertionError(f"numpy_forward does not know layer kind {kind}")
    logits = x.reshape(len(x), -1)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_h5py_only_numpy_forward_pass_matches(trained) -> None:
    path, dataset = trained
    net, info = load_model(path)
    expected = predict_images(net, info, dataset.x_test)
    got = numpy_forward(path, dataset.x_test)
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    np.testing.assert_allclose(got, expected, atol=1e-5)


# ----------------------------------------------------------------------------- atomic


def test_save_killed_midway_leaves_old_file_and_no_temp(trained, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    net, info = load_checkpoint(trained[0])
    target = tmp_path / "model.h5"
    save_model(target, net, info)
    before = read_bytes(target)

    def disk_full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(OptimizerState, "write", disk_full)  # after the layers
    with pytest.raises(ModelFileError, match="No space left.*existing file is unchanged"):
        save_model(target, net, info)
    assert read_bytes(target) == before
    assert os.listdir(tmp_path) == ["model.h5"]

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(OptimizerState, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_model(target, net, info)
    assert read_bytes(target) == before
    assert os.listdir(tmp_path) == ["model.h5"]
    load_model(target)


def test_check_writable_refuses_missing_directory_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist; create it"):
        check_model_writable(tmp_path / "nowhere" / "model.h5")
    with pytest.raises(ModelFileError, match="is a directory; .* such as .*model.h5"):
        check_model_writable(tmp_path)
    assert check_model_writable(tmp_path / "ok.h5") == tmp_path / "ok.h5"
    assert os.listdir(tmp_path) == []


def test_check_writable_of_other_files_raises_a_write_error(tmp_path: Path) -> None:
    with pytest.raises(WriteError, match="does not exist; create it") as missing:
        check_writable(tmp_path / "nowhere" / "bench.json", "output")
    assert not isinstance(missing.value, ModelFileError) and missing.value.field == "output"
    with pytest.raises(WriteError, match="is a directory"):
        check_writable(tmp_path)
    assert check_writable(tmp_path / "p.npy") == tmp_path / "p.npy"


def test_best_path_sits_beside_the_checkpoint() -> None:
    assert best_path("runs/model.h5") == Path("runs/model.best.h5")
    assert best_path("model") == Path("model.best")


# ----------------------------------------------------------------------------- damaged files


def test_load_missing_directory_and_not_hdf5(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"missing\.h5: no such model file"):
        load_model(tmp_path / "missing.h5")
    with pytest.raises(ModelFileError, match="is a directory"):
        load_model(tmp_path)
    text = tmp_path / "notes.h5"
    text.write_text("not a model\n")
    with pytest.raises(NotAModelError, match=r"notes\.h5: not an HDF5 file") as bad:
        load_model(text)
    assert "numbacnn train" not in str(bad.value)  # the CLI adds the command that fixes it


def test_load_truncated_file(trained, tmp_path: Path) -> None:
    data = read_bytes(trained[0])
    half = tmp_path / "half.h5"
    half.write_bytes(data[:len(data) // 2])
    with pytest.raises(ModelFileError, match=r"half\.h5: .*truncated or corrupt"):
        load_model(half)


def test_load_corrupt_weights_detected_by_checksum(trained, tmp_path: Path) -> None:
    path = tmp_path / "corrupt.h5"
    path.write_bytes(read_bytes(trained[0]))
    with h5py.File(path, "r") as f:
        offset = f["layers/03_fc/W"].id.get_chunk_info(0).byte_offset  # fc weights' 1st chunk
    with open(path, "r+b") as fh:
        fh.seek(offset + 16)
        fh.write(b"\xff\x00\xff\x00")
    with pytest.raises(ModelFileError, match=r"corrupt\.h5: layer 4 \(fc\) weights "
                                             r"\(layers/03_fc/W\): checksum mismatch — the "
                                             "file is damaged; retrain or restore a copy$"):
        load_model(path)


def test_load_refuses_other_formats_and_versions(trained, tmp_path: Path) -> None:
    path = tmp_path / "dataset.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "numbacnn-dataset"
    with pytest.raises(ModelFileError,
                       match="expected 'numbacnn-model' .*this is a dataset file: use it as data"):
        load_model(path)
    path = tmp_path / "future.h5"
    path.write_bytes(read_bytes(trained[0]))
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 7
    with pytest.raises(ModelFileError, match="format_version 7 is not supported"):
        load_model(path)


def test_load_refuses_weights_of_the_wrong_shape(trained, tmp_path: Path) -> None:
    path = tmp_path / "edited.h5"
    path.write_bytes(read_bytes(trained[0]))
    with h5py.File(path, "r+") as f:
        del f["layers/00_conv/W"]
        f["layers/00_conv"].create_dataset("W", data=np.zeros((4, 1, 5, 5), np.float32))
    with pytest.raises(ModelFileError, match=r"00_conv/W has shape \(4, 1, 5, 5\) but conv 4 3 "
                                             r".*needs \(4, 1, 3, 3\)"):
        load_model(path)
    with h5py.File(path, "r+") as f:
        del f["layers/00_conv/W"]
    with pytest.raises(ModelFileError, match="00_conv holds .*needs"):
        load_model(path)


def test_model_info_normalize_uses_stored_statistics() -> None:
    info = ModelInfo("", (1, 2, 2), ["a"], np.array([0.5], np.float32),
                     np.array([0.25], np.float32))
    x = np.array([[[[0, 255], [51, 102]]]], np.uint8)
    np.testing.assert_allclose(info.normalize(x), (x / 255 - 0.5) / 0.25, rtol=1e-6)
