"""BatchNorm: training and inference against the float64 reference and PyTorch, the
running statistics, non-trainable state through optimizers and model files, the spec."""

from __future__ import annotations

import numeric_checks as checks
import numpy as np
import pytest
import reference as ref

from numbacnn import to_device, to_host
from numbacnn.errors import NumbacnnError
from numbacnn.io.model_file import ModelInfo, load_model, save_model
from numbacnn.layers import BatchNorm, ReLU
from numbacnn.network import Network
from numbacnn.training.optim import SGD


def built(shape: tuple[int, int, int, int], rng: np.random.Generator, **options) -> BatchNorm:
    """A BatchNorm for N×C×H×W inputs of ``shape`` with random γ and β."""
    layer = BatchNorm(**options)
    layer.build(shape[1:])
    layer.init_params(rng)
    C = shape[1]
    layer.params["gamma"] = to_device(rng.uniform(0.5, 2.0, C).astype(np.float32))
    layer.params["beta"] = to_device(rng.standard_normal(C).astype(np.float32))
    return layer


SHAPES = {"conv": (4, 3, 5, 6), "fc": (16, 7, 1, 1), "wide-plane": (2, 2, 33, 31)}


@pytest.mark.parametrize("where", SHAPES)
def test_training_steps_match_reference_and_move_running_statistics(where: str,
                                                                   rng: np.random.Generator):
    """Three training steps: y, dx, dγ, dβ from the batch statistics, and the running mean
    and unbiased variance moved by momentum·r + (1 − momentum)·batch."""
    shape = SHAPES[where]
    layer = built(shape, rng, momentum=0.8)
    gamma, beta = (to_host(layer.params[k]).copy() for k in ("gamma", "beta"))
    mean, var = np.zeros(shape[1]), np.ones(shape[1])
    for step in range(3):
        x = (2.0 * rng.standard_normal(shape) + rng.uniform(-3, 3, (1, shape[1], 1, 1)))
        x = x.astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        y = to_host(layer.forward(to_device(x), training=True)).copy()
        dx = to_host(layer.backward(to_device(dy))).copy()
        checks.assert_close(y, ref.batchnorm_forward(x, gamma, beta, layer.eps), what="y")
        expected_dx, dgamma, dbeta = ref.batchnorm_backward(x, dy, gamma, layer.eps)
        checks.assert_close(dx, expected_dx, what="dx")
        checks.assert_close(to_host(layer.grads["gamma"]), dgamma, what="dgamma")
        checks.assert_close(to_host(layer.grads["beta"]), dbeta, what="dbeta")
        mean, var = ref.batchnorm_running(mean, var, x, 0.8)
        checks.assert_close(to_host(layer.state["mean"]), mean, what=f"step {step}: running mean")
        checks.assert_close(to_host(layer.state["var"]), var, what=f"step {step}: running var")


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("where", SHAPES)
def test_fused_relu_equals_batchnorm_then_relu(where: str, training: bool,
                                                           rng: np.random.Generator):
    """With the ReLU after it fused in, y, dx, dγ and dβ equal those of BatchNorm followed
    by a separate ReLU, in training and inference: the same zeros, and the rest within
    float32 rounding (the fused loops are other loops for LLVM to vectorize)."""
    shape = SHAPES[where]
    x = (rng.standard_normal(shape) + 0.3).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    runs = []
    for fuse in (True, False):
        bn, relu = BatchNorm(), ReLU()
        bn.build(shape[1:])
        relu.build(shape[1:])
        bn.init_params(rng)
        relu.fused = bn.fuse_next(relu, fuse)  # as Network.build asks
        assert bn.fused_relu == relu.fused == fuse
        bn.params["gamma"] = to_device(np.linspace(0.5, 2.0, shape[1], dtype=np.float32))
        bn.params["beta"] = to_device(np.linspace(-0.5, 0.5, shape[1], dtype=np.float32))
        y = to_host(relu.forward(bn.forward(to_device(x), training), training)).copy()
        dx = to_host(bn.backward(relu.backward(to_device(dy)))).copy()
        runs.append((y, dx, *(to_host(bn.grads[k]).copy() for k in ("gamma", "beta"))))
    assert np.mean(runs[0][0] == 0) > 0.2  # the ReLU cut a good share
    np.testing.assert_array_equal(runs[0][0] == 0, runs[1][0] == 0)
    for fused, plain, what in zip(*runs, ("y", "dx", "dgamma", "dbeta"), strict=False):
        np.testing.assert_allclose(fused, plain, rtol=1e-6, atol=1e-6, err_msg=what)


def test_inference_uses_running_statistics_and_moves_nothing(rng: np.random.Generator):
    """training=False: y from the running statistics, which stay as they are; backward is
    then the linear map's gradient, dx = γ/√(var + ε)·dy (numerically checked)."""
    shape = (3, 4, 3, 5)
    layer = built(shape, rng, eps=1e-3)
    mean = rng.standard_normal(4).astype(np.float32)
    var = rng.uniform(0.2, 3.0, 4).astype(np.float32)
    layer.state["mean"], layer.state["var"] = to_device(mean), to_device(var)
    gamma, beta = (to_host(layer.params[k]).astype(np.float64) for k in ("gamma", "beta"))
    x = rng.standard_normal(shape).astype(np.float32)
    y = to_host(layer.forward(to_device(x), training=False)).copy()
    checks.assert_close(y, ref.batchnorm_forward(x, gamma, beta, 1e-3, mean, var), what="y")
    np.testing.assert_array_equal(to_host(layer.state["mean"]), mean)
    np.testing.assert_array_equal(to_host(layer.state["var"]), var)
    dy = rng.standard_normal(shape)
    dx = to_host(layer.backward(to_device(dy.astype(np.float32))))

    def loss(a: np.ndarray) -> float:
        return float(np.sum(ref.batchnorm_forward(a, gamma, beta, 1e-3, mean, var) * dy))

    checks.assert_close(dx, checks.numerical_gradient(loss, x.astype(np.float64)), what="dx")


def test_large_mean_keeps_an_accurate_variance(rng: np.random.Generator):
    """Values 1000 ± 0.01: a one-pass Σx² − (Σx)²/M in float32 would lose the variance;
    the two-pass sums keep it."""
    shape = (8, 2, 16, 16)
    layer = built(shape, rng)
    x = (1000.0 + 0.01 * rng.standard_normal(shape)).astype(np.float32)
    layer.forward(to_device(x), training=True)
    batch_var = x.astype(np.float64).var(axis=(0, 2, 3), ddof=1)
    expected = 0.9 + 0.1 * batch_var
    checks.assert_close(to_host(layer.state["var"]), expected, rtol=1e-3, what="running var")


def test_one_value_per_channel_normalizes_like_inference(rng: np.random.Generator):
    """A batch of 1 after a fully connected layer has no variance: it is normalized with
    the running statistics, which do not move (PyTorch refuses such a batch)."""
    layer = built((1, 5, 1, 1), rng)
    x = rng.standard_normal((1, 5, 1, 1)).astype(np.float32)
    y = to_host(layer.forward(to_device(x), training=True)).copy()
    expected = layer.forward(to_device(x), training=False)
    np.testing.assert_array_equal(y, to_host(expected))
    np.testing.assert_array_equal(to_host(layer.state["mean"]), np.zeros(5, np.float32))
    np.testing.assert_array_equal(to_host(layer.state["var"]), np.ones(5, np.float32))


def test_starts_as_identity_on_normalized_inputs():
    """γ = 1, β = 0, running mean 0 and variance 1 after initialize."""
    net = Network.from_spec("input 4x4x3; conv 2 3; batchnorm; fc 3").initialize(seed=0)
    bn = net.layers[1]
    for key, value in (("gamma", 1.0), ("beta", 0.0)):
        np.testing.assert_array_equal(to_host(bn.params[key]), np.full(2, value, np.float32))
    np.testing.assert_array_equal(to_host(bn.state["mean"]), np.zeros(2, np.float32))
    np.testing.assert_array_equal(to_host(bn.state["var"]), np.ones(2, np.float32))


SPEC = "input 8x8x2; conv 4 3 pad=1; batchnorm momentum=0.7; relu; maxpool 2; fc 6; batchnorm; fc 3"


def trained(rng: np.random.Generator, steps: int = 3) -> Network:
    net = Network.from_spec(SPEC).initialize(seed=1)
    opt = SGD(momentum=0.9, weight_decay=0.01)
    for _ in range(steps):
        x = rng.standard_normal((8, 2, 8, 8)).astype(np.float32)
        net.train_step(to_device(x), rng.integers(0, 3, 8))
        opt.step(net, 0.1)
    return net


def test_optimizer_updates_gamma_beta_but_never_the_running_statistics(rng: np.random.Generator):
    """The optimizer's step (with weight decay) moves γ and β; the running statistics are
    what the forward passes made them, untouched by the update."""
    net = Network.from_spec(SPEC).initialize(seed=1)
    x = rng.standard_normal((8, 2, 8, 8)).astype(np.float32)
    net.train_step(to_device(x), rng.integers(0, 3, 8))
    bn = net.layers[1]
    state = {k: to_host(v).copy() for k, v in bn.state.items()}
    gamma = to_host(bn.params["gamma"]).copy()
    assert "1.mean" not in {name for name, _, _ in net.parameters()}
    SGD(momentum=0.9, weight_decay=0.5).step(net, 0.1)
    assert not np.array_equal(to_host(bn.params["gamma"]), gamma)
    for key, before in state.items():
        np.testing.assert_array_equal(to_host(bn.state[key]), before, err_msg=key)


def test_model_file_keeps_the_running_statistics(tmp_path, rng: np.random.Generator):
    """Saved and loaded, a trained BatchNorm network predicts the same scores (inference
    uses the running statistics, so losing them would change every prediction)."""
    net = trained(rng)
    x = rng.standard_normal((5, 2, 8, 8)).astype(np.float32)
    before = to_host(net.predict_proba(to_device(x))).copy()
    info = ModelInfo(spec_text=SPEC, input_shape=net.input_shape, class_names=["a", "b", "c"],
                     mean=np.zeros(2, np.float32), std=np.ones(2, np.float32))
    save_model(tmp_path / "bn.h5", net, info)
    loaded, _ = load_model(tmp_path / "bn.h5")
    for a, b in zip(net.layers, loaded.layers, strict=True):
        for key in a.state:
            np.testing.assert_array_equal(to_host(b.state[key]), to_host(a.state[key]))
    np.testing.assert_array_equal(to_host(loaded.predict_proba(to_device(x))), before)
    assert loaded.layers[1].momentum == pytest.approx(0.7)


@pytest.mark.parametrize("text, words", [
    ("batchnorm momentum=1", "momentum"), ("batchnorm momentum=-0.1", "momentum"),
    ("batchnorm eps=0", "eps"), ("batchnorm 0.9", "batchnorm"),
    ("batchnorm gamma=2", "gamma"),
])
def test_spec_refuses_bad_options(text: str, words: str):
    with pytest.raises(NumbacnnError, match=words):
        Network.from_spec(f"input 4x4x1; {text}; fc 2")


def test_spec_round_trip():
    layer = Network.from_spec("input 4x4x1; batchnorm momentum=0.5 eps=0.001; fc 2").layers[0]
    assert layer.describe() == "batchnorm momentum=0.5 eps=0.001"
    assert Network.from_spec(f"input 4x4x1; {layer.describe()}; fc 2").layers[0].eps == 1e-3


# --- PyTorch (installed for the benchmarks; skipped without it) ---------------------------


@pytest.mark.parametrize("where", ["conv", "fc"])
def test_matches_pytorch_in_both_modes(where: str, rng: np.random.Generator):
    """Against torch.nn.BatchNorm2d (momentum 0.1 = 1 − 0.9): three training steps (y, dx,
    dγ, dβ, running statistics), then inference."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (benchmarks only)")
    shape = SHAPES[where]
    layer = built(shape, rng)
    twin = layer.torch_module()
    with torch.no_grad():
        twin.weight.copy_(torch.from_numpy(to_host(layer.params["gamma"]).copy()))
        twin.bias.copy_(torch.from_numpy(to_host(layer.params["beta"]).copy()))
    twin.train()
    for _ in range(3):
        x = (3.0 * rng.standard_normal(shape) + 1.5).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        y = to_host(layer.forward(to_device(x), training=True)).copy()
        dx = to_host(layer.backward(to_device(dy))).copy()
        xt = torch.from_numpy(x).requires_grad_()
        twin.zero_grad()
        yt = twin(xt)
        yt.backward(torch.from_numpy(dy))
        checks.assert_close(y, yt.detach().numpy(), what="y")
        checks.assert_close(dx, xt.grad.numpy(), what="dx")
        checks.assert_close(to_host(layer.grads["gamma"]), twin.weight.grad.numpy(), what="dgamma")
        checks.assert_close(to_host(layer.grads["beta"]), twin.bias.grad.numpy(), what="dbeta")
        checks.assert_close(to_host(layer.state["mean"]), twin.running_mean.numpy(), what="mean")
        checks.assert_close(to_host(layer.state["var"]), twin.running_var.numpy(), what="var")
    twin.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).numpy()
    checks.assert_close(to_host(layer.forward(to_device(x), training=False)), expected,
                        what="inference y")
