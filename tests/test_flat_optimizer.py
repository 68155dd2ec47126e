"""The optimizer's update in one launch (numbacnn/training/flat_buffers.py): parameters,
gradients and slots are views of flat buffers, the results equal the per-parameter
updates of before bit for bit, checkpoints keep their per-parameter format, and the
gradient all-reduce shares the optimizer's gradient buffer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from device_context import dry_cuda

from numbacnn.backends import cpu
from numbacnn.backends import cuda as cuda_backend
from numbacnn.network import Network
from numbacnn.training.distributed import GradientAllreduce, World
from numbacnn.training.flat_buffers import ALIGN, FlatLayout, flat_arrays
from numbacnn.training.optim import SGD, Adam

SPEC = "input 10x10x2; conv 5 3 pad=1; batchnorm; relu; maxpool 2; fc 7; relu; fc 3"


def network(device: str = "cpu") -> Network:
    return Network.from_spec(SPEC, device=device).initialize(seed=3)


def per_parameter_steps(net: Network, name: str, grads: list[dict[str, np.ndarray]],
                        lr: float) -> dict[str, np.ndarray]:
    """Today's update before the flat buffers: one CPU kernel call per parameter, on
    copies of ``net``'s parameters."""
    weights = {key: np.array(w) for key, w, _ in net.parameters()}
    slots = {key: [np.zeros_like(w) for _ in range(1 if name == "sgd" else 2)]
             for key, w in weights.items()}
    for t, step_grads in enumerate(grads, start=1):
        for key, w in weights.items():
            g = step_grads[key].ravel()
            if name == "sgd":
                cpu.sgd_momentum(w.size, w.reshape(-1), slots[key][0].reshape(-1), g,
                                 np.float32(lr), np.float32(0.9), np.float32(5e-4))
            else:
                b1, b2 = 0.9, 0.999
                lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                m, v = slots[key]
                cpu.adam(w.size, w.reshape(-1), m.reshape(-1), v.reshape(-1), g,
                         np.float32(lr_t), np.float32(b1), np.float32(b2), np.float32(1e-8),
                         np.float32(1e-3))
    return weights


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_one_flat_update_equals_the_per_parameter_updates_bit_for_bit(name: str):
    net = network()
    rng = np.random.default_rng(0)
    grads = [{key: rng.standard_normal(w.shape).astype(np.float32)
              for key, w, _ in net.parameters()} for _ in range(3)]
    expected = per_parameter_steps(net, name, grads, 0.05)
    optimizer = SGD() if name == "sgd" else Adam(weight_decay=1e-3)
    for step_grads in grads:
        for key, _, g in net.parameters():
            g[...] = step_grads[key]
        optimizer.step(net, 0.05)
    for key, w, _ in net.parameters():
        np.testing.assert_array_equal(w, expected[key], err_msg=key)


def test_parameters_gradients_and_slots_are_views_of_one_buffer_each():
    net = network()
    optimizer = Adam()
    optimizer.step(net, 0.01)
    w, g = flat_arrays(net, "params"), flat_arrays(net, "grads")
    layout = FlatLayout.of(tuple(p.shape) for _, p, _ in net.parameters())
    assert layout.size == w.size == g.size and all(o % ALIGN == 0 for o in layout.offsets)
    m_flat, v_flat = optimizer._flat[1]
    for (name, p, dp), offset in zip(net.parameters(), layout.offsets, strict=True):
        for flat, view in ((w, p), (g, dp), (m_flat, optimizer.buffers["m"][name]),
                           (v_flat, optimizer.buffers["v"][name])):
            assert view.base is flat or view.base.base is flat, name
            assert np.shares_memory(view, flat[offset:offset + view.size]), name
    before = {name: np.array(p) for name, p, _ in net.parameters()}
    arrays = [a for layer in net.layers for a in (*layer.params.values(),
                                                   *layer.grads.values())]
    g[...] = 1.0
    optimizer.step(net, 0.01)  # nothing rebound: the same views, updated in place
    assert all(a is b for a, b in zip(arrays, [a for layer in net.layers for a in (
        *layer.params.values(), *layer.grads.values())], strict=True))
    assert any(not np.array_equal(before[name], p) for name, p, _ in net.parameters())


def test_packing_forgets_the_layers_views_of_the_old_arrays():
    """A conv layer remembers a reshaped view of its weights; once they are views of the
    flat buffer, nothing keeps the old arrays alive."""
    import weakref

    net = network()
    conv = net.layers[0]
    x = np.random.default_rng(0).standard_normal((2, 2, 10, 10)).astype(np.float32)
    net.forward(x)
    old = weakref.ref(conv.params["W"])
    assert any(a is old() for a, _ in conv._views.values())
    flat_arrays(net, "params")
    assert old() is None


def test_a_rebound_array_is_copied_into_its_view():
    """A gradient (or weight) handed in as a new array is copied into the flat buffer,
    which stays the same object: the all-reduce built on it stays valid."""
    net = network()
    g = flat_arrays(net, "grads")
    dense = net.layers[-1]
    new = np.full(dense.grads["b"].shape, 7.0, np.float32)
    dense.grads["b"] = new
    assert flat_arrays(net, "grads") is g
    assert dense.grads["b"] is not new and np.shares_memory(dense.grads["b"], g)
    np.testing.assert_array_equal(dense.grads["b"], new)


def test_state_keeps_its_per_parameter_format_and_loads_back_bit_for_bit():
    net, twin = network(), network()
    optimizer = SGD()
    rng = np.random.default_rng(1)
    for _ in range(2):
        for _, _, g in net.parameters():
            g[...] = rng.standard_normal(g.shape)
        optimizer.step(net, 0.1)
    state = optimizer.state()
    assert set(state) == {"v"}
    assert {k: v.shape for k, v in state["v"].items()} == \
        {name: p.shape for name, p, _ in net.parameters()}
    restored = SGD()
    restored.load_state(state, optimizer.t, "cpu")
    for (_, w, g), (_, w2, g2) in zip(net.parameters(), twin.parameters(), strict=True):
        w2[...] = w
        g[...] = rng.standard_normal(g.shape)
        g2[...] = g
    optimizer.step(net, 0.1)
    restored.step(twin, 0.1)
    for (name, w, _), (_, w2, _) in zip(net.parameters(), twin.parameters(), strict=True):
        np.testing.assert_array_equal(w, w2, err_msg=name)
    for name, v in optimizer.state()["v"].items():
        np.testing.assert_array_equal(v, restored.state()["v"][name], err_msg=name)


@pytest.mark.parametrize("first", ["allreduce", "optimizer"])
def test_the_gradient_allreduce_and_the_optimizer_share_one_buffer(first: str):
    net = network()
    world = World(2, 0, 0, None)
    if first == "allreduce":
        reduce = GradientAllreduce(world, net)
        SGD().step(net, 0.01)
    else:
        SGD().step(net, 0.01)
        reduce = GradientAllreduce(world, net)
    assert reduce.flat is flat_arrays(net, "grads")
    for _, _, g in net.parameters():
        assert np.shares_memory(g, reduce.flat)


@pytest.mark.parametrize("optimizer", [SGD, Adam])
def test_one_update_launch_per_step_on_the_gpu(optimizer: Any):
    """In a dry run on "cuda": the first step packs the buffers, every step then costs
    one launch and no allocation or copy, for 8 parameters."""
    with dry_cuda():
        net = network("cuda")
        opt = optimizer()
        opt.step(net, 0.01)
        assert len(list(net.parameters())) == 8
        for _ in range(2):
            cuda_backend.reset_counters()
            opt.step(net, 0.01)
            assert cuda_backend.reset_counters() == {
                "launches": 1, "h2d_copies": 0, "d2h_copies": 0, "allocations": 0}
