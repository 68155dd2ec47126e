"""Optimizers share a base: hyperparameters declared once, buffers saved and restored by
training/checkpoint without knowing the class, a registry that names them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from numbacnn.errors import TrainingError
from numbacnn.network import Network
from numbacnn.training.checkpoint import OptimizerState
from numbacnn.training.optim import OPTIMIZERS, SGD, Adam, Optimizer, register
from numbacnn.training.trainer import TrainSettings

SPEC = "input 6x6x1; conv 2 3; relu; fc 3"


@pytest.fixture
def plain() -> Any:
    """A new optimizer defined in the test: SGD without momentum, one buffer."""

    @register
    class Plain(Optimizer):
        name = "plain-test"
        defaults = {"weight_decay": 0.0}
        slots = ("v",)

        def _update(self, B: Any, n: int, lr: float, w: Any, g: Any, *slots: Any) -> None:
            B.sgd_momentum(n, w, slots[0], g, np.float32(lr), np.float32(0.0),
                           np.float32(self.weight_decay))

    yield Plain
    del OPTIMIZERS["plain-test"]


def trained(optimizer: Optimizer) -> Network:
    net = Network.from_spec(SPEC).initialize(0)
    x = np.random.default_rng(0).standard_normal((4, 1, 6, 6)).astype(np.float32)
    for _ in range(3):
        net.train_step(x, np.array([0, 1, 2, 0]))
        optimizer.step(net, 0.05)
    return net


def test_registry_names_every_optimizer():
    assert OPTIMIZERS["sgd"] is SGD and OPTIMIZERS["adam"] is Adam
    assert SGD().hyperparameters() == {"momentum": 0.9, "weight_decay": 5e-4}
    assert Adam(eps=1e-7).hyperparameters()["eps"] == 1e-7
    with pytest.raises(TrainingError, match="sgd has no hyperparameter beta1"):
        SGD(beta1=0.5)


def test_a_new_optimizer_is_saved_and_restored_without_model_io_knowing_it(plain: Any):
    opt = plain(weight_decay=0.01)
    trained(opt)
    saved = OptimizerState.capture(opt)
    assert saved.name == "plain-test" and saved.hyperparameters == {"weight_decay": 0.01}
    restored = saved.restore()
    assert type(restored) is plain and restored.t == 3
    for key, value in opt.state()["v"].items():
        np.testing.assert_array_equal(restored.state()["v"][key], value)


def test_the_trainer_builds_an_optimizer_by_its_name(plain: Any):
    settings = TrainSettings(optimizer="plain-test", weight_decay=0.02).checked()
    opt = settings.make_optimizer()
    assert type(opt) is plain and opt.hyperparameters() == {"weight_decay": 0.02}
    assert settings.lr == plain.default_lr
    with pytest.raises(TrainingError, match="unknown optimizer 'nope'"):
        TrainSettings(optimizer="nope").checked()
