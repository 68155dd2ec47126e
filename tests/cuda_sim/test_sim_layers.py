"""The CUDA backend in numba's CUDA simulator: every layer against the float64 reference
(each kind's case of tests/layer_cases.py, and a few more geometries).

Run by tests/test_cuda_simulator.py in a subprocess with NUMBA_ENABLE_CUDASIM=1 and
NUMBACNN_DEVICE=cuda (the variable must be set before numba is imported); without it
these tests skip themselves. The simulator runs each CUDA thread as a Python thread,
so the shapes are tiny. Also checks that device "cuda" resolves, that to_device and
to_host round-trip, and that activations stay device arrays from layer to layer.
"""

from __future__ import annotations

import os

import numeric_checks as checks
import numpy as np
import pytest
import reference as ref
import reference_optim as ref_optim
from layer_cases import POOL_OPTION_CASES, REFERENCE_CASES, LayerCase

import numbacnn
import numbacnn.device
from numbacnn import to_host
from numbacnn.device import is_device_array
from numbacnn.layers import (
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    MaxPool2D,
    ReLU,
    SoftmaxCrossEntropy,
)
from numbacnn.network import Network
from numbacnn.training.optim import SGD, Adam

pytestmark = pytest.mark.skipif(
    not os.environ.get("NUMBA_ENABLE_CUDASIM"),
    reason="needs NUMBA_ENABLE_CUDASIM=1 before numba is imported; "
           "tests/test_cuda_simulator.py runs these in a subprocess")

DEVICE = "cuda"  # read by the autouse fixture of tests/conftest.py


def to_device(a: np.ndarray) -> object:
    """``numbacnn.to_device`` onto this module's device (a lone layer's is set to it)."""
    return numbacnn.to_device(a, DEVICE)


def device_run(layer: Layer, x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                      dict[str, np.ndarray]]:
    """Forward and backward on device arrays; outputs must be device arrays too."""
    y = layer.forward(to_device(x), training=True)
    assert is_device_array(y), f"{layer.describe()}: forward returned {type(y).__name__}"
    y = to_host(y).copy()
    dx = layer.backward(to_device(dy))
    assert is_device_array(dx), f"{layer.describe()}: backward returned {type(dx).__name__}"
    return y, to_host(dx).copy(), {k: to_host(g).copy() for k, g in layer.grads.items()}


# Geometries beyond tests/layer_cases.py's one case per kind (those come first, named
# "case-<kind>"; their shapes are the simulator's).
VARIANTS: dict[str, LayerCase] = {
    "conv-f3-s2": LayerCase("conv 2 3 stride=2", (1, 2, 5, 7)),
    "conv-ceil-rectangular": LayerCase("conv 3 3x5 stride=2x3 pad=0x1 round=ceil", (2, 3, 8, 10)),
    "conv-groups-dilated-same": LayerCase("conv 6 3 pad=same groups=3 dilation=2", (2, 3, 7, 6)),
    "conv-3x3-same-groups": LayerCase("conv 4 3 pad=1 groups=2", (2, 4, 5, 5)),
    "conv-f3-p1": LayerCase("conv 3 3 stride=1 pad=1", (2, 2, 5, 4)),
    "conv-winograd-p1": LayerCase("conv 3 3 pad=1 algo=winograd", (2, 3, 5, 4)),
    "conv-winograd-p0": LayerCase("conv 2 3 algo=winograd", (1, 2, 5, 6)),
    "conv-direct-same": LayerCase("conv 3 3 pad=same algo=direct", (2, 2, 5, 4)),
    "conv-direct-groups-dilated": LayerCase("conv 4 3 pad=2,2,0,2 groups=2 dilation=2x2 "
                                            "algo=direct", (2, 2, 5, 6)),
    "conv-winograd5-p2": LayerCase("conv 3 5 pad=2 algo=winograd", (2, 2, 5, 4),
                                   atol_scale=5e-5),
    "conv-winograd5-p0": LayerCase("conv 2 5 algo=winograd", (1, 2, 7, 6),
                                   atol_scale=5e-5),
    "conv-s2d-winograd": LayerCase("conv 3 5 stride=2 pad=1 algo=s2d", (2, 2, 9, 7)),
    "conv-s2d-im2col": LayerCase("conv 2 4x5 stride=3x2 pad=1 round=ceil algo=s2d",
                                 (1, 2, 8, 9)),
    "maxpool-f2": LayerCase("maxpool 2", (2, 2, 4, 6), "distinct"),
    "batchnorm-fc": LayerCase("batchnorm momentum=0.5", (6, 3, 1, 1)),
}
CASES = {**{f"case-{kind}": case for kind, case in REFERENCE_CASES.items()}, **VARIANTS,
         **POOL_OPTION_CASES}


@pytest.mark.parametrize("name", CASES)
def test_layer_on_cuda_matches_reference(name: str, rng: np.random.Generator):
    """y, dx, dW and db from the CUDA kernels equal the reference to float32 tolerance."""
    case = CASES[name]
    shape = case.shape
    layer = case.make()
    layer.device = DEVICE  # a lone layer runs on the CPU unless told
    layer.build(shape[1:])
    layer.init_params(rng, "he")
    params = {}
    for key, value in layer.param_shapes().items():
        params[key] = (0.5 * rng.standard_normal(value)).astype(np.float32)
        layer.params[key] = to_device(params[key])
    x = case.draw(rng)
    tol = {"rtol": case.rtol, "atol_scale": case.atol_scale}
    mask = None
    draw_mask = ref.REFERENCES[layer.kind].mask  # what the layer draws per step (dropout)
    if draw_mask is not None:
        layer.seed = 31337
        mask = draw_mask(layer, shape)
    dy = rng.standard_normal((shape[0], *layer.output_shape)).astype(np.float32)
    y, dx, grads = device_run(layer, x, dy)
    checks.assert_close(y, ref.reference_forward(layer, x, params, mask), what=f"{name}: y",
                        **tol)
    expected_dx, expected_grads = ref.reference_backward(layer, x, dy, params, mask)
    checks.assert_close(dx, expected_dx, what=f"{name}: dx", **tol)
    assert set(grads) == set(expected_grads)
    for key, expected in expected_grads.items():
        checks.assert_close(grads[key], expected, what=f"{name}: d{key}", **tol)


def test_batchnorm_on_cuda_running_statistics_and_inference(rng: np.random.Generator):
    """Two training steps move the running statistics as the reference does (the
    block-per-channel sums), then inference normalizes with them."""
    shape = (3, 2, 5, 3)
    layer = BatchNorm(momentum=0.6)
    layer.device = DEVICE
    layer.build(shape[1:])
    layer.init_params(rng)
    mean, var = np.zeros(2), np.ones(2)
    for _ in range(2):
        x = (rng.standard_normal(shape) + 2.0).astype(np.float32)
        layer.forward(to_device(x), training=True)
        mean, var = ref.batchnorm_running(mean, var, x, 0.6)
    checks.assert_close(to_host(layer.state["mean"]), mean, what="running mean")
    checks.assert_close(to_host(layer.state["var"]), var, what="running var")
    x = rng.standard_normal(shape).astype(np.float32)
    y = layer.forward(to_device(x), training=False)
    checks.assert_close(to_host(y), ref.batchnorm_forward(x, np.ones(2), np.zeros(2), layer.eps,
                                                          mean, var), what="inference y")


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_loss_on_cuda_matches_reference(smoothing: float, rng: np.random.Generator):
    """The softmax cross-entropy kernels give the reference loss and dlogits, with and
    without label smoothing."""
    logits = rng.standard_normal((3, 4)).astype(np.float32)
    labels = np.array([3, 0, 1])
    loss = SoftmaxCrossEntropy()
    loss.device = DEVICE
    loss.label_smoothing = smoothing
    loss.build((4, 1, 1))
    value = loss.forward(to_device(logits.reshape(3, 4, 1, 1)), labels)
    assert value == pytest.approx(ref.softmax_cross_entropy_forward(logits, labels, smoothing),
                                  rel=1e-5)
    dlogits = loss.backward()
    assert is_device_array(dlogits)
    checks.assert_close(to_host(dlogits).reshape(3, 4),
                        ref.softmax_cross_entropy_backward(logits, labels, smoothing))


def test_network_train_step_on_cuda_matches_reference(rng: np.random.Generator):
    """A tiny network (its ReLUs fused into the convolution and the batch normalization)
    trains one step like the reference chain: same loss and parameter gradients."""
    net = Network([Conv2D(2, 3, pad=1), ReLU(), BatchNorm(), ReLU(), MaxPool2D(2), Dropout(0.5),
                   Flatten(), Dense(3)], input_shape=(1, 4, 4)).initialize(seed=5)
    assert net.layers[0].fused_relu and net.layers[2].fused_relu
    params = [{k: to_host(v).astype(np.float64) for k, v in layer.params.items()}
              for layer in net.layers]
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    labels = np.array([2, 0])
    loss = net.train_step(to_device(x), labels)
    expected_loss, expected_grads = ref.reference_network_step(net.layers, params, x, labels)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    for name, _, g in net.parameters():
        index, key = name.split(".")
        checks.assert_close(to_host(g), expected_grads[int(index)][key], what=f"d{name}")


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_optimizer_on_cuda_matches_reference(optimizer: str, rng: np.random.Generator):
    """Two updates of a one-layer network's weights equal the reference updates."""
    net = Network([Dense(2)], input_shape=(3, 1, 1)).initialize(seed=2)
    dense = net.layers[0]
    w = {k: to_host(v).astype(np.float64) for k, v in dense.params.items()}
    m = {k: np.zeros_like(a) for k, a in w.items()}
    v = {k: np.zeros_like(a) for k, a in w.items()}
    opt = SGD(momentum=0.9, weight_decay=0.01) if optimizer == "sgd" else Adam(weight_decay=0.01)
    for t in (1, 2):
        grads = {k: rng.standard_normal(a.shape).astype(np.float32) for k, a in w.items()}
        for key, g in grads.items():
            dense.grads[key] = to_device(g)
        opt.step(net, 0.1)
        for key in w:
            if optimizer == "sgd":
                w[key], v[key] = ref_optim.sgd_momentum_update(w[key], v[key], grads[key], 0.1, 0.9,
                                                               0.01)
            else:
                w[key], m[key], v[key] = ref_optim.adam_update(w[key], m[key], v[key], grads[key],
                                                               0.1, t, weight_decay=0.01)
            checks.assert_close(to_host(dense.params[key]), w[key], what=f"{key}, step {t}")


def test_device_cuda_selects_the_cuda_backend():
    """Where numba.cuda is available (here: simulated) device "cuda" resolves, and "auto"
    picks it for a network."""
    assert numbacnn.device.resolve_device("cuda") == "cuda"
    assert numbacnn.device.resolve_device("auto") == "cuda"
    B = numbacnn.device.backend("cuda")
    assert B.name == "cuda" and not B.on_host
    assert Network([Dense(2)], input_shape=(3, 1, 1)).device == "cuda"


def test_to_device_to_host_round_trip(rng: np.random.Generator):
    """Host → device → host keeps values; float64 becomes float32, integers stay integers,
    strided arrays arrive contiguous; a device array is passed through as is."""
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    d = to_device(x)
    assert is_device_array(d) and not isinstance(d, np.ndarray)
    np.testing.assert_array_equal(to_host(d), x)
    assert to_device(d) is d
    wide = to_host(to_device(x.astype(np.float64)))
    assert wide.dtype == np.float32
    np.testing.assert_array_equal(wide, x)
    labels = to_host(to_device(np.arange(5, dtype=np.int64)))
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, np.arange(5))
    np.testing.assert_array_equal(to_host(to_device(x[:, ::-1, ::2])), x[:, ::-1, ::2])


def test_activations_stay_on_the_device(rng: np.random.Generator,
                                        monkeypatch: pytest.MonkeyPatch):
    """From a device input, every layer's output and gradient is a device array and no
    host↔device copy happens during the forward and backward passes."""
    from numba import cuda

    net = Network([Conv2D(2, 3, pad=1), ReLU(), MaxPool2D(2), Dropout(0.5), Flatten(),
                   Dense(3)], input_shape=(1, 4, 4)).initialize(seed=0)
    x = to_device(rng.standard_normal((2, 1, 4, 4)).astype(np.float32))
    dlogits = to_device(rng.standard_normal((2, 3, 1, 1)).astype(np.float32))

    def no_copy(*args, **kwargs):
        raise AssertionError("host↔device copy during the passes")

    with monkeypatch.context() as mp:
        mp.setattr(cuda, "to_device", no_copy)
        mp.setattr(type(x), "copy_to_host", no_copy)
        a = x
        for layer in net.layers:
            a = layer.forward(a, training=True)
            assert is_device_array(a), f"{layer.describe()} returned {type(a).__name__}"
        dy = dlogits
        for index in range(len(net.layers) - 1, -1, -1):
            dy = net.layers[index].backward(dy)
            assert is_device_array(dy), f"layer {index} returned {type(dy).__name__}"
    assert to_host(dy).shape == (2, 1, 4, 4)


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (False, True), (True, False),
                                              (True, True)])
def test_numba_sgemm_with_split_k_matches_numpy(trans_a: bool, trans_b: bool,
                                                rng: np.random.Generator,
                                                monkeypatch: pytest.MonkeyPatch):
    """The numba SGEMM, K cut into slices (split-K, then sum_splits), edges included."""
    from numbacnn.backends import cuda as B
    from numbacnn.backends import gemm_choice, sgemm

    monkeypatch.setattr(sgemm, "MIN_SPLIT_K", 8)  # 37 = 8 + 8 + 8 + 8 + 5: five slices
    monkeypatch.setattr(gemm_choice, "_gemm_impl", ["numba"])
    M, N, K = 5, 7, 37
    assert sgemm.split_count(M, N, K) > 1
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(np.float32)
    out = B.empty((M, N))
    B.gemm(to_device(a), to_device(b), out, trans_a=trans_a, trans_b=trans_b)
    want = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)
    np.testing.assert_allclose(to_host(out), want, rtol=1e-5, atol=1e-5)


def test_batch_stats_sum_losses_and_correct_predictions(rng: np.random.Generator):
    """The device-side loss and accuracy sums equal numpy's, and accumulate."""
    from numbacnn.backends import cuda as B

    N, K = 300, 10  # more rows than the block's 256 threads
    logits = rng.standard_normal((N, K)).astype(np.float32)
    losses = rng.random(N).astype(np.float32)
    labels = rng.integers(0, K, N)
    labels[:50] = logits[:50].argmax(axis=1)
    stats = B.zeros((2,))
    for _ in range(2):
        B.batch_stats(N, stats, to_device(losses), to_device(logits), to_device(labels))
    got = to_host(stats)
    np.testing.assert_allclose(got[0], 2 * losses.astype(np.float64).sum(), rtol=1e-5)
    assert got[1] == 2 * np.count_nonzero(logits.argmax(axis=1) == labels)


def test_row_sum_reduces_long_rows(rng: np.random.Generator):
    from numbacnn.backends import cuda as B

    m = rng.standard_normal((3, 1000)).astype(np.float32)
    out = B.empty((3,))
    B.row_sum(3, out, to_device(m))
    np.testing.assert_allclose(to_host(out), m.astype(np.float64).sum(axis=1), rtol=1e-5,
                               atol=1e-5)


def test_repeated_launches_see_their_own_arguments(rng: np.random.Generator):
    """A kernel launched again with other arrays and sizes (on a GPU: the fast path that
    packs the arguments itself after numba's first launch) computes on those."""
    from numbacnn.backends import cuda as B

    for n in (5, 300, 7):
        x = rng.standard_normal(n).astype(np.float32)
        y = B.empty((n,))
        B.leaky_relu_forward(n, y, to_device(x), np.float32(0.25))
        np.testing.assert_array_equal(to_host(y), np.where(x > 0, x, np.float32(0.25) * x))


@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "0",
                    reason="cuBLAS runs on a real GPU only (gpu-check.sh)")
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (False, True), (True, False),
                                              (True, True)])
def test_cublas_fp32_and_tf32(trans_a: bool, trans_b: bool, rng: np.random.Generator):
    """cuBLAS through CuPy on numba arrays: FP32 at float32 accuracy; TF32 when asked,
    visibly less exact (10-bit mantissas) and labelled tf32."""
    from numbacnn.backends import cuda as B

    if B.cublas.unavailable_reason() is not None:
        pytest.skip(B.cublas.unavailable_reason())
    M, N, K = 300, 200, 1000
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(np.float32)
    want = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)
    saved = B.gemm_name()
    try:
        B.set_gemm("cublas")
        errors = {}
        for tf32 in (False, True):
            B.set_tf32(tf32)
            out = B.empty((M, N))
            B.gemm(to_device(a), to_device(b), out, trans_a=trans_a, trans_b=trans_b)
            errors[B.tf32_label()] = np.abs(to_host(out) - want).max() / np.abs(want).max()
    finally:
        B.set_tf32(False)
        B.set_gemm(saved)
    assert errors["fp32"] < 1e-6, errors
    assert 1e-5 < errors["tf32"] < 1e-2, errors
