"""Diagnostics that teach: the initial loss beside ln K in ``numbacnn train``'s header,
the defaults that put it there (small weights before the softmax, LeCun before a
Maxout), the one-line warning of all-zero weights, and ``numbacnn plot activations``
with its per-layer statistics checked on networks whose answer is known."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from numbacnn_cli.main import cli

from numbacnn.device import to_host
from numbacnn.io.dataset_files import load_dataset
from numbacnn.io.datasets import normalization, normalize
from numbacnn.layers import Conv2D, Dense, ReLU
from numbacnn.network import Network
from numbacnn.training.diagnostics import (
    InitialLoss,
    initial_loss,
    symmetry_warning,
    zero_initialized,
)

MAXOUT = "input 28x28x1; conv 16 3 pad=same; maxout 2; maxpool 2; fc 10; softmax"
SMALL = "input 28x28x1; conv 4 3 pad=1 activation=relu; maxpool 2; fc 10; softmax"
LN10 = math.log(10)


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def mini() -> tuple[np.ndarray, np.ndarray]:
    """The first 256 normalized training images of the bundled Fashion-MNIST mini set."""
    data = load_dataset("fashion-mnist-mini")
    mean, std = normalization(data.x_train)
    return normalize(data.x_train[:256], mean, std), data.y_train[:256]


def start_loss(spec: str, seed: int, mini: tuple[np.ndarray, np.ndarray],
               init: str = "he") -> float:
    net = Network.from_spec(spec).initialize(seed, init)
    return initial_loss(net, *mini).loss


def inits(net: Network, init: str) -> list[str]:
    return [layer.initializer(init) for layer in net.layers if "W" in layer.param_shapes()]


# ----------------------------------------------------------------- the initial loss


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_fmnist_starts_near_ln_k(seed: int, mini: tuple[np.ndarray, np.ndarray]) -> None:
    # with He on the layer feeding the softmax it started at 4.66 (seed 0), 3.07, 3.67
    assert start_loss("fmnist", seed, mini) == pytest.approx(LN10, rel=0.05)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_maxout_net_starts_near_ln_k(seed: int,
                                             mini: tuple[np.ndarray, np.ndarray]) -> None:
    # He before the Maxout and the softmax: 5.63 (seed 0), 3.86, 3.62
    assert start_loss(MAXOUT, seed, mini) == pytest.approx(LN10, rel=0.12)


def test_defaults_follow_the_next_layer_and_a_layers_own_init_wins() -> None:
    assert inits(Network.from_spec(MAXOUT), "he") == ["lecun", "normal"]
    own = Network.from_spec("input 28x28x1; conv 16 3 init=he; maxout 2; fc 10 init=he")
    assert inits(own, "he") == ["he", "he"]
    fmnist = Network.from_spec("fmnist")
    assert inits(fmnist, "he") == ["he", "he", "he", "normal"]
    assert inits(fmnist, "xavier") == ["xavier", "xavier", "xavier", "normal"]
    assert inits(fmnist, "zeros") == ["zeros"] * 4
    # the drawn weights are the chosen ones: N(0, 0.01²) before the softmax
    W = to_host(fmnist.initialize(0).layers[-1].params["W"])
    assert 0.009 < W.std() < 0.011
    # a network that does not end in class scores has no softmax to look after
    conv_only = Network.from_spec("lecture-example")
    assert conv_only.layers[0].initializer("he") == "he"


def test_initial_loss_line_and_advice() -> None:
    near = InitialLoss(2.31, 10, 256)
    assert near.line() == ("initial loss 2.31 on the first 256 training images, before any "
                           "update (ln 10 = 2.30: logits near zero, as expected)")
    assert near.advice() is None
    far = InitialLoss(4.66, 10, 256)
    assert far.far and "far above it" in far.line() and "2.0 × ln 10" in far.advice()
    assert "somewhat large" in InitialLoss(2.88, 10, 256).line()
    assert InitialLoss(2.88, 10, 256).advice() is None
    assert InitialLoss(float("nan"), 10, 256).far
    assert "overflows" in InitialLoss(float("nan"), 10, 256).advice()


def train(tmp_path: Path, spec: str, *extra: object) -> Result:
    return run("train", spec, "--data", "fashion-mnist-mini", "--limit", 128, "--epochs", 1,
               "--batch-size", 32, "--out", tmp_path / "m.h5", "--force", *extra)


def test_header_shows_the_initial_loss_beside_ln_k(tmp_path: Path) -> None:
    result = train(tmp_path, SMALL)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[2].startswith("initial loss ") and "ln 10 = 2.30: logits near zero" in lines[2]
    shown = float(lines[2].split()[2])
    assert shown == pytest.approx(LN10, rel=0.05)
    assert "init he, fc 10 normal" in lines[1]
    assert "warning" not in result.output and "note:" not in result.output


def test_header_explains_a_loss_far_from_ln_k(tmp_path: Path) -> None:
    result = train(tmp_path, "input 28x28x1; conv 4 3; fc 10 init=he; softmax", "--lr", 0.001)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "confidently wrong" in notes[0], result.output
    assert "far above it" in result.output


# ----------------------------------------------------------------- all-zero weights


def test_init_zeros_warns_with_one_line(tmp_path: Path) -> None:
    result = train(tmp_path, SMALL, "--init", "zeros")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.output
    assert "symmetry" in warnings[0] and "same gradient" in warnings[0]
    assert "conv 4 3 stride=1 pad=1, fc 10 start with all-zero weights" in warnings[0]


def test_a_spec_init_zeros_warns_and_names_that_layer_only() -> None:
    net = Network.from_spec("input 28x28x1; conv 4 3 init=zeros; relu; fc 10")
    zeros = zero_initialized(net, "he")
    assert [layer.describe() for layer in zeros] == ["conv 4 3 stride=1 pad=0"]
    assert symmetry_warning(net, "he").startswith("conv 4 3 stride=1 pad=0 starts with all-zero")
    assert symmetry_warning(Network.from_spec("fmnist"), "he") is None


# ----------------------------------------------------------------- plot activations


def test_dead_share_of_a_constructed_relu_layer() -> None:
    """fc 4 on two images, then relu: unit 0 is positive on image 0 only (alive), unit 1
    negative on both (dead), unit 2 has bias −1 and no weights (dead), unit 3 outputs
    exactly 0 (dead): 3 of 4 dead. Unit-free checks: mean, std and the gradients."""
    from numbacnn.tools.activation_stats import dead_share, layer_statistics

    net = Network([Dense(4), ReLU(), Dense(2)], input_shape=(2, 1, 1)).initialize(0)
    W = np.array([[1, 1], [-1, -1], [0, 0], [0, 0]], np.float32)
    net.layers[0].params["W"][...] = W
    net.layers[0].params["b"][...] = np.array([0, -5, -1, 0], np.float32)
    x = np.array([[1, 2], [-1, -2]], np.float32).reshape(2, 2, 1, 1)
    stats = layer_statistics(net, x, np.array([0, 1]))
    assert [s.label for s in stats] == ["layer 1: fc 4", "layer 2: relu", "layer 3: fc 2"]
    fc, relu, out = stats
    assert fc.dead is None and out.dead is None
    assert relu.dead == 0.75
    expected = np.maximum(x.reshape(2, 2) @ W.T + [0, -5, -1, 0], 0)
    assert relu.values.reshape(2, 4) == pytest.approx(expected)
    assert relu.mean == pytest.approx(expected.mean()) and relu.std == pytest.approx(expected.std())
    # the gradient of the mean loss w.r.t. the logits: (softmax − one-hot) / N
    logits = out.values.reshape(2, 2).astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert out.gradients.reshape(2, 2) == pytest.approx((p - np.eye(2)) / 2, abs=1e-6)
    assert dead_share(np.zeros((3, 5))) == 1.0 and dead_share(np.eye(3)) == 0.0


def test_a_fused_relu_counts_with_its_conv() -> None:
    from numbacnn.tools.activation_stats import layer_statistics

    net = Network([Conv2D(2, 1), ReLU(), Dense(2)], input_shape=(1, 2, 2)).initialize(0)
    assert net.layers[1].fused
    net.layers[0].params["W"][...] = np.array([1, -1], np.float32).reshape(2, 1, 1, 1)
    net.layers[0].params["b"][...] = 0
    x = np.abs(np.random.default_rng(0).standard_normal((3, 1, 2, 2))).astype(np.float32) + 0.1
    stats = layer_statistics(net, x, np.array([0, 1, 0]))
    assert [s.label for s in stats] == ["layer 1: conv 2 1 stride=1 pad=0 + relu", "layer 3: fc 2"]
    assert stats[0].dead == 0.5  # the −1 filter's 4 outputs are 0 on every image


def test_plot_activations_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    model = tmp_path / "m.h5"
    assert train(tmp_path, SMALL).exit_code == 0
    picture = tmp_path / "act.png"
    result = run("plot", "activations", model, "-o", picture, "--batch-size", 16)
    assert result.exit_code == 0, result.output
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert imread(picture)[..., :3].std() > 0.05
    lines = result.output.splitlines()
    assert lines[0].startswith("layer 1: conv 4 3 stride=1 pad=1 + relu: outputs mean ")
    assert "dead " in lines[0] and "dead" not in lines[1]
    assert lines[-1].startswith(f"wrote {picture}: activations of {model}")


def test_plot_activations_without_labels_is_one_error_line(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    assert train(tmp_path, SMALL).exit_code == 0
    images = tmp_path / "two.npy"
    np.save(images, np.zeros((2, 1, 28, 28), np.uint8))
    result = run("plot", "activations", tmp_path / "m.h5", "-o", tmp_path / "a.png",
                 "--data", images)
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "has no labels, and the gradients need them" in errors[0]
    assert not (tmp_path / "a.png").exists()
