"""The device belongs to the network: a later set_device does not move it, and arrays of
another device are refused rather than copied behind the user's back."""

from __future__ import annotations

import numpy as np
import pytest

import numbacnn.device
from numbacnn.backends import cuda as cuda_backend
from numbacnn.errors import DeviceError
from numbacnn.network import Network
from numbacnn.training.optim import SGD

SPEC = "input 6x6x1; conv 2 3; relu; maxpool 2; fc 3"


def test_network_keeps_its_device_after_set_device(monkeypatch: pytest.MonkeyPatch):
    net = Network.from_spec(SPEC).initialize(0)  # on the CPU (the test's device)
    assert net.device == "cpu"
    monkeypatch.setattr(numbacnn.device, "_current", "cuda")  # as set_device("cuda") would
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32)
    loss = net.train_step(x, np.array([0, 2]))  # still numpy arrays and CPU kernels
    SGD().step(net, 0.1)
    assert np.isfinite(loss)
    assert all(isinstance(w, np.ndarray) for _, w, _ in net.parameters())
    assert net.backend().name == "cpu"


def test_explicit_device_wins_over_the_current_choice(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(numbacnn.device, "_current", "cuda")
    net = Network.from_spec(SPEC).initialize(0, device="cpu")
    assert net.device == "cpu" and all(layer.device == "cpu" for layer in net.layers)
    assert isinstance(net.layers[0].params["W"], np.ndarray)


def test_a_device_array_given_to_a_cpu_network_is_an_error():
    net = Network.from_spec(SPEC).initialize(0)
    on_gpu = np.zeros((2, 1, 6, 6), np.float32).view(cuda_backend.DryArray)  # has copy_to_host
    with pytest.raises(DeviceError, match="runs on the CPU; copy it with numbacnn.to_host"):
        net.forward(on_gpu)
