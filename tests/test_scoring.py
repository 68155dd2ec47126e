"""Tests of numbacnn.tools.scoring (accuracy, per-class accuracy, confusion matrix, ensembles)
and of what the CLI took from the library with it: the bounds of numbers
(numbacnn.limits.Bounds), the training settings' checks (numbacnn.training.settings), the
dataset splits, the device description, and the CLI's mapping of library errors to
its options."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from helpers import CLASSES, SPEC, quadrants, run

import numbacnn.device
from numbacnn.errors import DataError, ModelFileError, TrainingError
from numbacnn.io.datasets import Dataset
from numbacnn.io.model_file import ModelInfo
from numbacnn.limits import SEEDS, Bounds
from numbacnn.network import Network
from numbacnn.tools.inference import predict_images
from numbacnn.tools.scoring import (
    accuracy,
    check_labels,
    confusion_matrix,
    per_class_accuracy,
    score_dataset,
    score_models,
    trained_on,
)
from numbacnn.training.settings import BOUNDS, CHOICES, TrainSettings


def model(seed: int, classes: list[str] = CLASSES) -> tuple[Network, ModelInfo]:
    net = Network.from_spec(SPEC).initialize(seed)
    info = ModelInfo(SPEC, (1, 8, 8), list(classes), np.full(1, 0.3, np.float32),
                     np.full(1, 0.2, np.float32), path=Path(f"m{seed}.h5"))
    return net, info


# ----------------------------------------------------------------------------- scores


def test_accuracy_counts_the_rows_whose_largest_score_is_the_label() -> None:
    proba = np.array([[0.1, 0.9], [0.8, 0.2], [0.4, 0.6], [0.3, 0.7]], np.float32)
    assert accuracy(proba, np.array([1, 0, 0, 0])) == 0.5
    assert accuracy(proba, np.array([1, 0, 1, 1])) == 1.0
    assert math.isnan(accuracy(np.zeros((0, 2), np.float32), np.zeros(0, np.int64)))


def test_confusion_matrix_rows_are_true_classes_columns_predictions() -> None:
    matrix = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    assert matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


def test_per_class_accuracy_is_the_diagonal_over_the_row_sums() -> None:
    matrix = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 2]])
    per_class = per_class_accuracy(matrix)
    np.testing.assert_allclose(per_class[[0, 2]], [0.5, 2 / 3])
    assert math.isnan(per_class[1])  # a class without images


def test_check_labels_refuses_a_class_the_model_does_not_have() -> None:
    check_labels(np.array([0, 3, 1]), 4, "here")
    check_labels(np.zeros(0, np.int64), 4, "here")
    with pytest.raises(DataError, match=r"^here: labels go up to 4 but the model has 4 classes "
                                        r"\(0…3\)"):
        check_labels(np.array([0, 4]), 4, "here")


def test_trained_on_reads_the_settings_or_names_the_field() -> None:
    _, info = model(0)
    info.settings = {"data": "fashion-mnist"}
    assert trained_on(info) == "fashion-mnist"
    info.settings = {}
    with pytest.raises(DataError, match="m0.h5: does not say what data it was trained on") as bad:
        trained_on(info)
    assert bad.value.field == "data"


def test_score_of_one_model_matches_its_predictions() -> None:
    net, info = model(1)
    x, y = quadrants(24, seed=3)
    score = score_models([(net, info)], x, y, batch_size=5)
    proba = predict_images(net, info, x, batch_size=5)
    np.testing.assert_array_equal(score.proba, proba)
    # In one batch of 24 the BLAS kernel may block the products differently (AVX-512
    # kernels do): the same figures but for the last bits.
    np.testing.assert_allclose(predict_images(net, info, x), proba, rtol=1e-5, atol=1e-7)
    predicted = proba.argmax(axis=1)
    assert score.correct == int(np.sum(predicted == y))
    assert score.accuracy == score.model_accuracies[0] == np.mean(predicted == y)
    np.testing.assert_array_equal(score.matrix, confusion_matrix(y, predicted, 4))
    assert score.matrix.sum() == 24 and np.trace(score.matrix) == score.correct


def test_an_ensemble_averages_probabilities_and_scores_each_model() -> None:
    models = [model(1), model(2), model(3)]
    x, y = quadrants(20, seed=4)
    each = [predict_images(net, info, x) for net, info in models]
    score = score_models(models, x, y)
    np.testing.assert_allclose(score.proba, np.mean(each, axis=0), rtol=1e-6)
    assert score.proba.dtype == np.float32
    assert score.model_accuracies == [np.mean(p.argmax(axis=1) == y) for p in each]
    assert score.accuracy == np.mean(np.mean(each, axis=0).argmax(axis=1) == y)


def test_score_refuses_no_images_other_labels_and_other_tasks() -> None:
    x, y = quadrants(8)
    with pytest.raises(DataError, match="^set: has no images to score"):
        score_models([model(1)], x[:0], y[:0], where="set")
    with pytest.raises(DataError, match="labels go up to 4"):
        score_models([model(1)], x, np.where(y == 3, 4, y))
    with pytest.raises(ModelFileError, match="classes or input shape differ"):
        score_models([model(1), model(2, [*CLASSES[:3], "other"])], x, y)


def test_score_dataset_takes_the_split_and_checks_the_classes() -> None:
    x_train, y_train = quadrants(16)
    x_test, y_test = quadrants(8, seed=9)
    dataset = Dataset(x_train, y_train, x_test, y_test, list(CLASSES), "quads")
    train = score_dataset([model(1)], dataset, "train")
    assert len(train.labels) == 16 and np.array_equal(train.labels, y_train)
    assert len(score_dataset([model(1)], dataset).labels) == 8  # the test split
    with pytest.raises(DataError, match=r"^quads \(test split\): has no images"):
        score_dataset([model(1)], Dataset(x_train, y_train, x_test[:0], y_test[:0],
                                          list(CLASSES), "quads"))
    three = Dataset(x_train, y_train % 3, x_test, y_test % 3, CLASSES[:3], "three")
    with pytest.raises(DataError, match="^here: has 3 classes but the model has 4"):
        score_dataset([model(1)], three, where="here")
    with pytest.raises(DataError, match="unknown split 'val'") as bad:
        score_dataset([model(1)], dataset, "val")
    assert bad.value.field == "split"


# ----------------------------------------------------------------------------- bounds


@pytest.mark.parametrize("bounds, text, inside, outside", [
    (Bounds(1), "≥ 1", [1, 2, 10**30], [0, -1, 0.5, math.nan]),
    (Bounds(0, math.inf, low_open=True, high_open=True), "> 0 and finite", [1e-30, 5.0],
     [0, -1, math.inf, math.nan]),
    (Bounds(0, 1, high_open=True), "in [0, 1)", [0, 0.5], [1, -0.1, math.nan]),
    (Bounds(0, 1, low_open=True), "in (0, 1]", [1, 0.5], [0, 1.5, math.nan]),
    (SEEDS, "in [0, 9223372036854775807]", [0, 2**63 - 1], [-1, 2**63]),
    (Bounds(high=3), "≤ 3", [3, -10], [4, math.nan]),
])
def test_bounds(bounds: Bounds, text: str, inside: list[float], outside: list[float]) -> None:
    assert bounds.text() == text
    assert all(x in bounds for x in inside)
    assert not any(x in bounds for x in outside)
    bounds.check("x", inside[0], TrainingError)
    with pytest.raises(TrainingError) as bad:
        bounds.check("x", outside[0], TrainingError)
    assert str(bad.value) == f"x must be {text}, got {outside[0]}"
    assert bad.value.field == "x"


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "epochs must be ≥ 1, got 0"),
    ("batch_size", -3, "batch_size must be ≥ 1, got -3"),
    ("lr", math.nan, "lr must be > 0 and finite, got nan"),
    ("momentum", 1.0, r"momentum must be in \[0, 1\), got 1.0"),
    ("weight_decay", math.inf, "weight_decay must be ≥ 0 and finite, got inf"),
    ("lr_step", 0, "lr_step must be ≥ 1, got 0"),
    ("patience", 0, "patience must be ≥ 1, got 0"),
    ("seed", 2**63, "seed must be in"),
    ("limit", 0, "limit must be ≥ 1, got 0"),
    ("optimizer", "rmsprop", "unknown optimizer 'rmsprop': choose one of sgd, adam"),
    ("init", "glorot", "unknown init 'glorot': choose one of"),
    ("lr_policy", "exponential", "unknown lr_policy 'exponential'"),
    ("label_smoothing", 1.0, r"label_smoothing must be in \[0, 1\), got 1.0"),
    ("batch_size", 2.0, "batch_size must be an integer, got 2.0"),
])
def test_settings_name_the_field_in_library_terms(field: str, value: object,
                                                  message: str) -> None:
    with pytest.raises(TrainingError, match=f"^{message}") as bad:
        TrainSettings(**{field: value}).checked()
    assert bad.value.field == field
    assert "--" not in str(bad.value)


def test_every_setting_has_a_type_and_choices_or_bounds() -> None:
    from dataclasses import fields

    from numbacnn.training.settings import TYPES

    names = {f.name for f in fields(TrainSettings)}
    assert set(TYPES) == names
    numbers = {n for n in names if TYPES[n] in (int, float)}
    assert set(BOUNDS) == numbers
    assert set(CHOICES) == {"optimizer", "lr_policy", "init", "conv_algo"}


# ----------------------------------------------------------------------------- devices


def test_describe_cpu() -> None:
    cpu = numbacnn.device.describe_cpu()
    assert cpu.cores >= 1 and cpu.threads >= 1 and cpu.name
    assert (cpu.simd, cpu.float32_lanes) in {("AVX-512", 16), ("AVX2", 8), ("AVX", 8),
                                             ("NEON", 4), ("SSE", 4)}


def test_describe_gpus_without_a_gpu_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(numbacnn.device, "cuda_unavailable_reason", lambda: "none here")
    assert numbacnn.device.describe_gpus() == []


def test_describe_gpus_in_the_cuda_simulator_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """numba's simulator device has no name, id or SM count and infinite memory: it is
    described, not a traceback (``numbacnn devices`` with NUMBA_ENABLE_CUDASIM=1)."""
    from types import SimpleNamespace

    from numba import cuda

    device = SimpleNamespace(compute_capability=(5, 2), uuid="fake")

    class FakeGpu:
        def __enter__(self) -> None:
            pass

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(numbacnn.device, "cuda_unavailable_reason", lambda: None)
    monkeypatch.setattr(cuda, "gpus", [FakeGpu()], raising=False)
    monkeypatch.setattr(cuda, "current_context", lambda: SimpleNamespace(
        device=device, get_memory_info=lambda: (float("inf"), float("inf"))), raising=False)
    (gpu,) = numbacnn.device.describe_gpus()
    assert (gpu.index, gpu.compute_capability, gpu.memory_bytes, gpu.free_bytes,
            gpu.multiprocessors) == (0, (5, 2), 0, 0, 0)
    assert "simulator" in gpu.name


def test_describe_gpus_reads_every_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """numba.cuda stood in for: what each GPU's context reports becomes its description."""
    from types import SimpleNamespace

    from numba import cuda

    current: dict[str, SimpleNamespace] = {}

    class FakeGpu:
        def __init__(self, index: int, name: str | bytes) -> None:
            self.device = SimpleNamespace(id=index, name=name, compute_capability=(9, index),
                                          MULTIPROCESSOR_COUNT=132)

        def __enter__(self) -> None:
            current["device"] = self.device

        def __exit__(self, *exc: object) -> None:
            current.clear()

    def context() -> SimpleNamespace:
        d = current["device"]
        return SimpleNamespace(device=d, get_memory_info=lambda: ((1 + d.id) * 2**30, 80 * 2**30))

    monkeypatch.setattr(numbacnn.device, "cuda_unavailable_reason", lambda: None)
    monkeypatch.setattr(cuda, "gpus", [FakeGpu(0, b"NVIDIA H100"), FakeGpu(1, "NVIDIA H200")],
                        raising=False)
    monkeypatch.setattr(cuda, "current_context", context, raising=False)
    described = numbacnn.device.describe_gpus()
    assert [(g.index, g.name, g.compute_capability, g.free_bytes, g.memory_bytes,
             g.multiprocessors) for g in described] == [
        (0, "NVIDIA H100", (9, 0), 2**30, 80 * 2**30, 132),
        (1, "NVIDIA H200", (9, 1), 2 * 2**30, 80 * 2**30, 132)]


# ----------------------------------------------------------------------------- the CLI


def test_a_library_error_about_a_given_option_is_reported_as_that_option(tmp_path: Path
                                                                        ) -> None:
    result = run("train", SPEC, "--data", tmp_path / "none.npz", "--out", tmp_path / "m.h5",
                 "--momentum", "nan")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: Invalid value for '--momentum': momentum must be in "
                                     "[0, 1), got nan; see cli train --help")
    assert list(tmp_path.iterdir()) == []


def test_a_library_error_about_an_option_not_given_keeps_the_library_terms(
        tmp_path: Path) -> None:
    """A model that does not say what it was trained on: without --data the library's
    words and the option that gives it (issue 24); with an empty --data the error is the
    option's."""
    from numbacnn.io.model_file import save_model

    net, info = model(1)
    save_model(tmp_path / "m.h5", net, info)
    result = run("evaluate", tmp_path / "m.h5")
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {tmp_path / 'm.h5'}: does not say what data it "
                                     "was trained on; name the dataset to use; give it with --data")
    result = run("evaluate", tmp_path / "m.h5", "--data", "")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: Invalid value for '--data': ")
