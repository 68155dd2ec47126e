"""Non-trainable state beside params/grads: saved and loaded with the model, on the
network's device, never touched by an optimizer; files without it keep loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import numbacnn.layers
from numbacnn.errors import ModelFileError
from numbacnn.io.model_file import ModelInfo, load_model, save_model
from numbacnn.layers import Layer
from numbacnn.layers.syntax import LayerSyntax
from numbacnn.network import Network
from numbacnn.training.optim import SGD

SPEC = "input 4x4x1; counter; fc 3"


class Counter(Layer):
    """Passes x through and counts, in its state, the images it has trained on."""

    syntax = LayerSyntax("counter")

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"seen": (1,)}

    def initial_state(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.full(shape, 7.0, np.float32)

    def forward(self, x: Any, training: bool = True) -> Any:
        x = self._check_input(x)
        if training:
            self.state["seen"][0] += x.shape[0]
        return x

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        return self._check_gradient(dy) if need_dx else None


@pytest.fixture(autouse=True)
def counter_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registered for the test only (the layer's spec keyword and model files work)."""
    monkeypatch.setitem(numbacnn.layers.LAYERS, "counter", Counter)


def info(net: Network) -> ModelInfo:
    C = net.input_shape[0]
    return ModelInfo(spec_text=SPEC, input_shape=net.input_shape, class_names=["a", "b", "c"],
                     mean=np.zeros(C, np.float32), std=np.ones(C, np.float32))


def trained() -> Network:
    net = Network.from_spec(SPEC).initialize(0)
    x = np.ones((5, 1, 4, 4), np.float32)
    opt = SGD(weight_decay=0.5)
    for _ in range(2):
        net.train_step(x, np.array([0, 1, 2, 0, 1]))
        opt.step(net, 0.1)
    return net


def test_state_starts_initial_and_the_optimizer_never_sees_it():
    net = trained()
    assert net.layers[0].state["seen"][0] == 7.0 + 10  # initial 7, two batches of 5
    assert all(not name.startswith("0.") for name, _, _ in net.parameters())


def test_state_is_saved_and_loaded(tmp_path: Path):
    net = trained()
    save_model(tmp_path / "m.h5", net, info(net))
    loaded, _ = load_model(tmp_path / "m.h5")
    assert loaded.layers[0].state["seen"][0] == 17.0


def test_a_file_without_state_loads_the_initial_state(tmp_path: Path):
    net = trained()
    save_model(tmp_path / "m.h5", net, info(net))
    with h5py.File(tmp_path / "m.h5", "r+") as f:
        del f["layers/00_counter/state"]
    loaded, _ = load_model(tmp_path / "m.h5")
    assert loaded.layers[0].state["seen"][0] == 7.0


def test_state_of_the_wrong_shape_is_refused(tmp_path: Path):
    net = trained()
    save_model(tmp_path / "m.h5", net, info(net))
    with h5py.File(tmp_path / "m.h5", "r+") as f:
        del f["layers/00_counter/state/seen"]
        f["layers/00_counter/state"].create_dataset("seen", data=np.zeros(3, np.float32))
    with pytest.raises(ModelFileError, match="counter"):
        load_model(tmp_path / "m.h5")
