"""Networks whose spec ends in a volume, not class scores (the lecture's worked example,
``input 32x32x3; conv 10 5 stride=1 pad=2``): they run forward and backward from a given
gradient, draw and time; classifying, training and scoring them is refused with one line
that names the volume and the layers to add."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reference as ref
from helpers import assert_ok, assert_one_error, quadrant_images, run

import numbacnn
from numbacnn.device import to_device, to_host
from numbacnn.errors import ShapeError
from numbacnn.io.model_file import ModelInfo, save_model
from numbacnn.tools import activation_stats, layer_pictures
from numbacnn.training.profiler import STAND_IN_LOSS, format_profile, profile_spec

SMALL = "input 7x7x1; conv 1 3 stride=2"  # the lecture's 7x7 input, stride 2 → 3x3x1
LECTURE = 'this network ends in a 32x32x10 volume, not class scores: add "fc 10; softmax" ' \
    "to classify"
SMALL_ERROR = "ends in a 3x3x1 volume, not class scores"


def lecture_net() -> numbacnn.Network:
    return numbacnn.Network.from_spec("lecture-example").initialize(seed=0)


# ----------------------------------------------------------------------------- the library


def test_lecture_example_forward_matches_the_reference_convolution() -> None:
    net = lecture_net()
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    y = to_host(net.forward(x, training=False))
    assert y.shape == (2, 10, 32, 32)  # N×K×H×W: 10 maps of 32x32
    conv = net.layers[0]
    expected = ref.conv2d_forward(x, to_host(conv.params["W"]), to_host(conv.params["b"]),
                                  stride=1, pad=2)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    assert not net.ends_in_scores


def test_backward_from_a_given_output_gradient() -> None:
    net = numbacnn.Network.from_spec(SMALL).initialize(seed=3)
    x = np.random.default_rng(2).standard_normal((4, 1, 7, 7)).astype(np.float32)
    y = to_host(net.forward(x, training=True))
    assert y.shape == (4, 1, 3, 3)
    dy = np.random.default_rng(5).standard_normal(y.shape).astype(np.float32)
    net.backward(to_device(dy))
    conv = net.layers[0]
    _, dw, db = ref.conv2d_backward(x, to_host(conv.params["W"]), dy, stride=2)
    np.testing.assert_allclose(to_host(conv.grads["W"]), dw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(to_host(conv.grads["b"]), db, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("call", ["predict_proba", "num_classes", "train_step", "backward",
                                  "fit", "activation_stats"])
def test_classifying_and_training_are_refused_with_one_message(call: str) -> None:
    net = lecture_net()
    x = np.zeros((2, 3, 32, 32), np.float32)
    labels = np.zeros(2, np.int64)
    actions = {
        "predict_proba": lambda: net.predict_proba(x),
        "num_classes": lambda: net.num_classes,
        "train_step": lambda: net.train_step(x, labels),
        "backward": lambda: net.backward(),
        "fit": lambda: net.fit((np.zeros((4, 3, 32, 32), np.uint8), np.arange(4)),
                               epochs=1, verbose=0),
        "activation_stats": lambda: activation_stats.layer_statistics(net, x, labels),
    }
    with pytest.raises(ShapeError) as caught:
        actions[call]()
    assert str(caught.value) == LECTURE


def test_fit_of_a_network_without_an_input_shape_is_refused_once_built() -> None:
    net = numbacnn.Network([numbacnn.layers.Conv2D(2, 3)])
    with pytest.raises(ShapeError, match="ends in a 6x6x2 volume, not class scores"):
        net.fit((np.zeros((8, 1, 8, 8), np.uint8), np.arange(8) % 2), epochs=1, verbose=0)


def test_a_classifier_still_classifies() -> None:
    net = numbacnn.Network.from_spec(SMALL + "; fc 3; softmax").initialize(seed=0)
    assert net.ends_in_scores and net.num_classes == 3
    proba = net.predict_proba(np.zeros((2, 1, 7, 7), np.float32))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


# ----------------------------------------------------------------------------- the CLI


def test_train_refuses_before_loading_data(tmp_path: Path) -> None:
    out = tmp_path / "m.h5"
    assert_one_error(run("train", SMALL, "--data", tmp_path / "missing.h5", "--out", out),
                     SMALL_ERROR, '"fc 10; softmax"')
    assert_one_error(run("train", "lecture-example", "--out", out), LECTURE)
    assert not out.exists()


def test_evaluate_refuses_a_spec_and_a_model_file_of_one(tmp_path: Path) -> None:
    net = lecture_net()
    info = ModelInfo(spec_text=net.spec_text, input_shape=net.input_shape,
                     class_names=[str(k) for k in range(10)], mean=np.zeros(3, np.float32),
                     std=np.ones(3, np.float32))
    save_model(tmp_path / "volume.h5", net, info)  # written by hand: train writes none
    assert_one_error(run("evaluate", tmp_path / "volume.h5"), LECTURE)
    assert_one_error(run("evaluate", "lecture-example"), LECTURE)
    assert_one_error(run("evaluate", SMALL), SMALL_ERROR)
    assert_one_error(run("evaluate", "fmnist"), "fmnist: is a spec, not a model file",
                     "numbacnn train fmnist")


def test_plot_features_of_an_untrained_spec(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    x_train, y_train = quadrant_images(8, np.random.default_rng(0))
    data = tmp_path / "quadrants.npz"
    np.savez(data, x_train=x_train, y_train=y_train, x_test=x_train, y_test=y_train,
             class_names=np.array(["a", "b", "c", "d"]))
    drawn: list[dict] = []
    real = layer_pictures.features_figure

    def spy(image, maps, max_maps=16, **kwargs):  # type: ignore[no-untyped-def]
        drawn.append({"maps": maps, **kwargs})
        return real(image, maps, max_maps, **kwargs)

    monkeypatch.setattr(layer_pictures, "features_figure", spy)
    spec = "input 8x8x1; conv 4 3 pad=1"
    for seed in (0, 0, 1):
        out = tmp_path / f"f{seed}.png"
        said = assert_ok(run("plot", "features", spec, "--image", 2, "--data", data,
                             "--seed", seed, "-o", out))
        assert out.stat().st_size > 0 and f"features of {spec}" in said
    maps = [d["maps"] for d in drawn]
    assert [label for label, _ in maps[0]] == ["layer 1: conv 4 3 stride=1 pad=1"]
    assert maps[0][0][1].shape == (4, 8, 8)
    assert drawn[0].get("probabilities") is None  # a volume: no class probabilities
    np.testing.assert_array_equal(maps[0][0][1], maps[1][0][1])  # the seed draws the weights
    assert not np.array_equal(maps[0][0][1], maps[2][0][1])
    assert_one_error(run("plot", "features", spec, "--image", 2, "-o", tmp_path / "g.png"),
                     "a spec has no dataset of its own")


def test_bench_times_a_volume_network_with_a_stand_in_loss() -> None:
    profile = profile_spec(SMALL, batch=4, iterations=1, warmup=1)
    assert profile["loss_name"] == STAND_IN_LOSS
    assert [row["output_shape"] for row in profile["layers"]] == ["3x3x1"]
    assert profile["layers"][0]["backward_ms"] > 0
    text = format_profile(profile)
    assert STAND_IN_LOSS in text and "stand-in loss, the" in text
    said = assert_ok(run("bench", SMALL, "--batch", 4, "--iterations", 1, "--warmup", 1))
    assert STAND_IN_LOSS in said and "images/s" in said
