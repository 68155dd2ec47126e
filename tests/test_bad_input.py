"""Bad input is either converted correctly or refused with a clear NumbacnnError.

Never a silent wrong result, and never a crash (or an out-of-bounds read) inside a
kernel: wrong ranks, channel counts and spatial sizes, float64, integer and
non-contiguous arrays, bad labels, backward without (or after a different) forward,
and device selection where no GPU is present.
"""

from __future__ import annotations

from collections.abc import Callable

import numeric_checks as checks
import numpy as np
import pytest
import reference as ref

import numbacnn.device
from numbacnn import to_host
from numbacnn.errors import DeviceError, NumbacnnError, ShapeError
from numbacnn.layers import (
    ELU,
    LRN,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    LeakyReLU,
    Maxout,
    MaxPool2D,
    ReLU,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
)
from numbacnn.network import Network

INPUT = (4, 6, 6)  # (C, H, W) every layer below is built for

LAYERS: dict[str, Callable[[], Layer]] = {
    "conv": lambda: Conv2D(3, 3, stride=1, pad=1),
    "maxpool": lambda: MaxPool2D(2),
    "avgpool": lambda: AvgPool2D(2),
    "lrn": LRN,
    "batchnorm": BatchNorm,
    "fc": lambda: Dense(5),
    "flatten": Flatten,
    "relu": ReLU,
    "leaky": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "elu": ELU,
    "maxout": lambda: Maxout(2),
    "dropout": lambda: Dropout(0.5),
}


def built(name: str) -> Layer:
    layer = LAYERS[name]()
    layer.build(INPUT)
    layer.init_params(np.random.default_rng(0), "he")
    if isinstance(layer, Dropout):
        layer.seed = 17
    return layer


def forward_backward(layer: Layer, x, dy=None) -> tuple[np.ndarray, np.ndarray]:
    """Host copies of y and dx (dy defaults to a fixed ramp shaped like y)."""
    y = to_host(layer.forward(x, training=True)).copy()
    if dy is None:
        dy = np.linspace(-1, 1, y.size, dtype=np.float32).reshape(y.shape)
    return y, to_host(layer.backward(dy)).copy()


def sample(rng: np.random.Generator, N: int = 2) -> np.ndarray:
    return rng.standard_normal((N, *INPUT)).astype(np.float32)


# --- shapes -----------------------------------------------------------------------------------


BAD_SHAPES = {
    "rank-3": (4, 6, 6),
    "rank-5": (1, 2, 4, 6, 6),
    "rank-2": (2, 144),
    "channels": (2, 3, 6, 6),
    "height": (2, 4, 5, 6),
    "width": (2, 4, 6, 8),
    "transposed": (2, 6, 6, 4),
}


@pytest.mark.parametrize("shape", BAD_SHAPES.values(), ids=BAD_SHAPES.keys())
@pytest.mark.parametrize("name", LAYERS)
def test_wrong_input_shape_raises_shape_error(name: str, shape: tuple[int, ...],
                                              rng: np.random.Generator):
    """A wrong rank, channel count or spatial size is refused, naming the expected shape."""
    layer = built(name)
    with pytest.raises(ShapeError, match=r"\(4, 6, 6\)"):
        layer.forward(rng.standard_normal(shape).astype(np.float32))


def test_network_refuses_wrong_image_size(rng: np.random.Generator):
    """A network built for 8×8 images refuses a 7×8 batch at its first layer."""
    net = Network([Conv2D(2, 3), ReLU(), Dense(3)], input_shape=(1, 8, 8)).initialize()
    with pytest.raises(ShapeError):
        net.forward(rng.standard_normal((2, 1, 7, 8)).astype(np.float32))


@pytest.mark.parametrize("name", LAYERS)
def test_wrong_gradient_shape_raises_shape_error(name: str, rng: np.random.Generator):
    """A gradient whose size does not fit the output shape is refused."""
    layer = built(name)
    y = layer.forward(sample(rng))
    with pytest.raises(ShapeError):
        layer.backward(np.ones((y.shape[0], y.size // y.shape[0] + 1), np.float32))


# --- dtypes and memory layout -----------------------------------------------------------------


@pytest.mark.parametrize("name", LAYERS)
def test_float64_is_converted_to_float32(name: str, rng: np.random.Generator):
    """float64 x and dy give exactly the float32 result."""
    x = sample(rng)
    y32, dx32 = forward_backward(built(name), x)
    layer = built(name)
    y = to_host(layer.forward(x.astype(np.float64))).copy()
    dx = to_host(layer.backward(np.linspace(-1, 1, y.size).reshape(y.shape))).copy()
    assert y.dtype == np.float32 and dx.dtype == np.float32
    np.testing.assert_array_equal(y, y32)
    np.testing.assert_array_equal(dx, dx32)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, np.bool_])
@pytest.mark.parametrize("name", ["conv", "maxpool", "fc", "relu", "lrn", "dropout"])
def test_integer_input_raises_clear_shape_error(name: str, dtype, rng: np.random.Generator):
    """Integer images are refused with a hint to convert (not silently cast or truncated)."""
    x = rng.integers(0, 2 if dtype is np.bool_ else 255, (2, *INPUT)).astype(dtype)
    with pytest.raises(ShapeError, match="float32"):
        built(name).forward(x)


NON_CONTIGUOUS = {
    "reversed-width": lambda a: a[:, :, :, ::-1],
    "every-other-sample": lambda a: np.repeat(a, 2, axis=0)[::2],
    "fortran-order": np.asfortranarray,
    "transposed-view": lambda a: np.ascontiguousarray(a.transpose(0, 1, 3, 2)).transpose(
        0, 1, 3, 2),
}


@pytest.mark.parametrize("view", NON_CONTIGUOUS, ids=NON_CONTIGUOUS.keys())
@pytest.mark.parametrize("name", LAYERS)
def test_non_contiguous_arrays_are_converted(name: str, view: str, rng: np.random.Generator):
    """Strided x and dy give the same result as their contiguous copies."""
    x = sample(rng)
    strided = NON_CONTIGUOUS[view](x)
    if view != "every-other-sample":
        x = np.ascontiguousarray(strided)  # the values the view shows
    assert not strided.flags.c_contiguous
    y_expected, dx_expected = forward_backward(built(name), x)
    layer = built(name)
    y = to_host(layer.forward(strided)).copy()
    dy = np.linspace(-1, 1, y.size, dtype=np.float32).reshape(y.shape)
    dx = to_host(layer.backward(np.asfortranarray(dy))).copy()
    np.testing.assert_array_equal(y, y_expected)
    np.testing.assert_array_equal(dx, dx_expected)


# --- labels and logits ------------------------------------------------------------------------


def loss_layer(K: int = 5) -> SoftmaxCrossEntropy:
    loss = SoftmaxCrossEntropy()
    loss.build((K, 1, 1))
    return loss


BAD_LABELS = {
    "negative": np.array([0, -1, 2]),
    "equal-to-K": np.array([0, 5, 2]),
    "far-too-large": np.array([0, 1, 1 << 40]),
    "float": np.array([0.0, 1.0, 2.0]),
    "bool": np.array([True, False, True]),
    "too-few": np.array([0, 1]),
    "too-many": np.array([0, 1, 2, 3]),
    "2-d": np.array([[0], [1], [2]]),
    "one-hot": np.eye(5, dtype=np.int64)[[0, 1, 2]],
}


@pytest.mark.parametrize("labels", BAD_LABELS.values(), ids=BAD_LABELS.keys())
def test_bad_labels_raise_shape_error(labels: np.ndarray, rng: np.random.Generator):
    """Labels out of 0…K−1, of a non-integer dtype or of the wrong shape are refused."""
    with pytest.raises(ShapeError, match="labels"):
        loss_layer().forward(rng.standard_normal((3, 5)).astype(np.float32), labels)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64])
def test_any_integer_labels_give_the_reference_loss(dtype, rng: np.random.Generator):
    """uint8 and int32 labels are converted: the same loss as int64 labels."""
    logits = rng.standard_normal((3, 5)).astype(np.float32)
    labels = np.array([4, 0, 2])
    value = loss_layer().forward(logits, labels.astype(dtype))
    assert value == pytest.approx(ref.softmax_cross_entropy_forward(logits, labels), rel=1e-5)


@pytest.mark.parametrize("shape", [(3, 4), (3, 6), (3, 5, 2, 1), (15,), (3, 1, 5, 1)])
def test_logits_of_the_wrong_shape_raise_shape_error(shape: tuple[int, ...],
                                                     rng: np.random.Generator):
    """Logits must be N×K or N×K×1×1 for the K the loss was built with."""
    with pytest.raises(ShapeError):
        loss_layer(5).forward(rng.standard_normal(shape).astype(np.float32), np.zeros(3, int))


# --- order of calls ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", LAYERS)
def test_backward_before_forward_raises(name: str):
    """backward on a layer that never ran forward is a clear error, not a KeyError."""
    layer = built(name)
    N = 2
    with pytest.raises(NumbacnnError, match="forward"):
        layer.backward(np.ones((N, *layer.output_shape), np.float32))


def test_loss_backward_before_forward_raises():
    """The loss needs forward(logits, labels) before backward()."""
    with pytest.raises(NumbacnnError, match="forward"):
        loss_layer().backward()


@pytest.mark.parametrize("backward_N", [1, 4])
@pytest.mark.parametrize("name", LAYERS)
def test_backward_of_another_batch_size_raises(name: str, backward_N: int,
                                               rng: np.random.Generator):
    """A gradient for a batch other than the last forward's is refused (the saved
    activations would be read out of bounds or belong to other samples)."""
    layer = built(name)
    layer.forward(sample(rng, N=2))
    with pytest.raises(NumbacnnError, match="forward"):
        layer.backward(np.ones((backward_N, *layer.output_shape), np.float32))


def test_conv_backward_twice_after_one_forward_raises(rng: np.random.Generator):
    """Conv2D's backward consumes the saved columns: a second backward needs a new forward."""
    layer = built("conv")
    forward_backward(layer, sample(rng))
    with pytest.raises(NumbacnnError, match="forward"):
        layer.backward(np.ones((2, *layer.output_shape), np.float32))


def test_probabilities_between_forward_and_backward_keep_the_gradient(
        rng: np.random.Generator):
    """Evaluating class probabilities (another batch) between the loss's forward and
    backward must not change the gradient of the batch that was trained on."""
    logits = rng.standard_normal((3, 5)).astype(np.float32)
    labels = np.array([1, 4, 0])
    loss = loss_layer()
    loss.forward(logits, labels)
    other = rng.standard_normal((7, 5)).astype(np.float32)
    checks.assert_close(to_host(loss.probabilities(other)),
                        np.exp(other) / np.exp(other).sum(axis=1, keepdims=True))
    dlogits = to_host(loss.backward()).reshape(3, 5)
    checks.assert_close(dlogits, ref.softmax_cross_entropy_backward(logits, labels))


# --- device selection -------------------------------------------------------------------------


def test_unknown_device_raises_device_error():
    """resolve_device("bogus") names the device and the valid choices."""
    with pytest.raises(DeviceError, match="bogus.*auto, cpu, cuda"):
        numbacnn.device.resolve_device("bogus")


def test_unknown_device_in_environment_is_refused_by_the_cli(monkeypatch: pytest.MonkeyPatch):
    """NUMBACNN_DEVICE=tpu (the CLI's --device default) is refused with the option's error,
    exit 2 and no traceback."""
    from click.testing import CliRunner
    from numbacnn_cli.main import cli

    monkeypatch.setenv("NUMBACNN_DEVICE", "tpu")
    result = CliRunner().invoke(cli, ["bench", "--iterations", "1"])
    assert result.exit_code == 2, result.output
    assert "--device" in result.output and "tpu" in result.output
    assert "Traceback" not in result.output


def test_cuda_without_a_gpu_raises_device_error(monkeypatch: pytest.MonkeyPatch,
                                                real_cuda_check: None):
    """With no usable GPU (simulated by numba.cuda.is_available() → False) asking for
    cuda says why and suggests the CPU; "auto" picks the CPU."""
    from numba import cuda

    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError,
                       match="^device 'cuda' was asked for but .*; use device 'cpu'$") as bad:
        numbacnn.device.resolve_device("cuda")
    assert bad.value.field == "device"
    assert numbacnn.device.resolve_device("auto") == "cpu"


def test_cuda_on_this_machine_raises_device_error_when_no_gpu(real_cuda_check: None):
    """The real check, on a machine without an NVIDIA GPU (skipped where one is present)."""
    reason = numbacnn.device.cuda_unavailable_reason()
    if reason is None:
        pytest.skip("a CUDA GPU is available here")
    with pytest.raises(DeviceError, match="cuda") as info:
        numbacnn.device.resolve_device("cuda")
    assert reason in str(info.value)
