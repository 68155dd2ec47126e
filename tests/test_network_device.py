"""The device belongs to the network: resolved once, at construction; another network on
another device does not move it, and arrays of another device are refused rather than
copied behind the user's back. There is no process-wide current device."""

from __future__ import annotations

import numpy as np
import pytest
from device_context import dry_cuda

import numbacnn
import numbacnn.device
from numbacnn.backends import cuda as cuda_backend
from numbacnn.errors import DeviceError
from numbacnn.network import Network
from numbacnn.training.optim import SGD
from numbacnn.training.staging import BatchStaging

SPEC = "input 6x6x1; conv 2 3; relu; maxpool 2; fc 3"


def test_network_keeps_its_device_beside_a_cuda_network():
    net = Network.from_spec(SPEC).initialize(0)  # "auto": the CPU in the tests
    assert net.device == "cpu"
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32)
    with dry_cuda():
        other = Network.from_spec(SPEC, device="cuda").initialize(0)
        loss = net.train_step(x, np.array([0, 2]))  # still numpy arrays and CPU kernels
        SGD().step(net, 0.1)
    assert other.device == "cuda" and not other.backend().on_host
    assert isinstance(other.layers[0].params["W"], cuda_backend.DryArray)
    assert np.isfinite(loss)
    assert all(isinstance(w, np.ndarray) and not isinstance(w, cuda_backend.DryArray)
               for _, w, _ in net.parameters())
    assert net.backend().on_host and net.backend().name == "cpu"


def test_explicit_device_wins_over_auto():
    with dry_cuda():
        net = Network.from_spec(SPEC, device="cpu").initialize(0)
        moved = Network.from_spec(SPEC, device="cuda").initialize(0, device="cpu")
    for each in (net, moved):
        assert each.device == "cpu" and all(layer.device == "cpu" for layer in each.layers)
        assert isinstance(each.layers[0].params["W"], np.ndarray)


def test_the_device_is_resolved_at_construction():
    """An unusable device is refused when the network is built, not at its first step."""
    with pytest.raises(DeviceError, match="device 'cuda' was asked for") as bad:
        Network.from_spec(SPEC, device="cuda")
    assert bad.value.field == "device"
    with pytest.raises(DeviceError, match="tpu"):
        Network.from_spec(SPEC, device="tpu")


def test_buffers_follow_the_device_they_are_given():
    """Optimizer state and staging buffers go where they are told (the network's device)."""
    net = Network.from_spec(SPEC).initialize(0)
    optimizer = SGD()
    optimizer.load_state({"v": {"0.W": np.ones((2, 1, 3, 3))}}, 3, net.device)
    assert isinstance(optimizer.buffers["v"]["0.W"], np.ndarray) and optimizer.t == 3
    with dry_cuda():
        optimizer.load_state({"v": {"0.W": np.ones((2, 1, 3, 3))}}, 3, "cuda")
        assert isinstance(optimizer.buffers["v"]["0.W"], cuda_backend.DryArray)
        staging = BatchStaging((4, 1, 6, 6), device="cuda")
        assert staging.on_device and isinstance(staging.upload(2), cuda_backend.DryArray)
    assert not BatchStaging((4, 1, 6, 6), device="cpu").on_device


def test_no_current_device_is_left_in_the_library():
    for name in ("_current", "set_device", "get_device"):
        assert not hasattr(numbacnn.device, name) and not hasattr(numbacnn, name)


def test_a_device_array_given_to_a_cpu_network_is_an_error():
    net = Network.from_spec(SPEC).initialize(0)
    on_gpu = np.zeros((2, 1, 6, 6), np.float32).view(cuda_backend.DryArray)  # has copy_to_host
    with pytest.raises(DeviceError, match="runs on the CPU; copy it with numbacnn.to_host"):
        net.forward(on_gpu)
