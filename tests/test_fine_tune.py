"""Training that starts from a model's weights: ``numbacnn train --weights MODEL.h5``
(or MODEL.h5 as SPEC), and ``fit()`` of a ``numbacnn.load_model`` network
(numbacnn/training/fine_tune.py).

The run starts from the model's weights (not drawn afresh), keeps its normalization
and class names, and is otherwise new (one epoch of history, fresh optimizer); a spec
that describes other layers, data of another size or class count, and --weights with
--resume are each one ``error:`` line, exit 2. An ONNX graph imported with
``numbacnn import`` trains further the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import CLASSES, assert_ok, assert_one_error, quadrant_images, run

import numbacnn
from numbacnn.device import to_host
from numbacnn.io.model_file import load_model

SPEC = "input 8x8x1; conv 4 3 pad=1 activation=relu; maxpool 2; fc 4; softmax"
TINY_LR = "1e-9"  # a step that moves no weight visibly: what the run started from shows


def write_npz(path: Path, size: int = 8, classes: int = 4, seed: int = 7,
              names: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    x_train, y_train = quadrant_images(48, rng, size, classes)
    x_test, y_test = quadrant_images(16, rng, size, classes)
    extra = {"class_names": np.array(CLASSES)} if names and classes == 4 else {}
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, **extra)
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data.npz and base.h5 (SPEC trained 2 epochs on it)."""
    work = tmp_path_factory.mktemp("fine")
    data = write_npz(work / "data.npz")
    assert_ok(run("train", SPEC, "--data", data, "--out", work / "base.h5", "--epochs", 2,
                  "--batch-size", 16, "--lr", 0.05, "--device", "cpu"))
    return work


def weights_of(path: Path) -> list[np.ndarray]:
    net, _ = load_model(path, "cpu")
    return [to_host(a) for layer in net.layers for a in layer.params.values()]


def assert_started_from(tuned: Path, base: Path) -> None:
    """``tuned`` (trained with TINY_LR) holds ``base``'s weights, normalization and class
    names, and a history of its own run only."""
    for a, b in zip(weights_of(tuned), weights_of(base), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    (_, info), (_, before) = load_model(tuned, "cpu"), load_model(base, "cpu")
    np.testing.assert_array_equal(info.mean, before.mean)
    np.testing.assert_array_equal(info.std, before.std)
    assert info.class_names == before.class_names == CLASSES
    assert len(info.history["train_loss"]) == 1


@pytest.mark.parametrize("form", ["--weights", "model as SPEC", "--weights with its SPEC"])
def test_train_starts_from_the_weights(form: str, work: Path, tmp_path: Path) -> None:
    base = work / "base.h5"
    other = write_npz(tmp_path / "other.npz", seed=3, names=False)  # other images, no names
    args = {"--weights": ["--weights", base], "model as SPEC": [base],
            "--weights with its SPEC": [SPEC, "--weights", base]}[form]
    out = tmp_path / "tuned.h5"
    output = assert_ok(run("train", *args, "--data", other, "--out", out, "--epochs", 1,
                           "--lr", TINY_LR, "--weight-decay", 0, "--device", "cpu"))
    assert f"training the weights of {base} on {other}" in output
    assert_started_from(out, base)
    assert_ok(run("evaluate", out, "--data", other))


def test_a_spec_with_other_layers_is_refused(work: Path, tmp_path: Path) -> None:
    other = SPEC.replace("conv 4 3", "conv 5 3")
    out = tmp_path / "t.h5"
    assert_one_error(run("train", other, "--weights", work / "base.h5", "--data",
                         work / "data.npz", "--out", out),
                     "does not describe the network of", "layer 1 is `conv 5 3",
                     "but `conv 4 3")
    longer = SPEC.replace("; softmax", "; relu; softmax")
    assert_one_error(run("train", longer, "--weights", work / "base.h5", "--data",
                         work / "data.npz", "--out", out), "layer 5 is `relu` in the spec but "
                     "`nothing` in the model")
    assert not out.exists()


@pytest.mark.parametrize("size, classes, fragment", [
    (16, 4, "images are 16x16x1 but the model"),
    (8, 5, "the dataset has 5 classes but the model"),
])
def test_data_that_does_not_fit_the_model_is_refused(size: int, classes: int, fragment: str,
                                                     work: Path, tmp_path: Path) -> None:
    data = write_npz(tmp_path / "d.npz", size=size, classes=classes)
    assert_one_error(run("train", "--weights", work / "base.h5", "--data", data, "--out",
                         tmp_path / "t.h5"), fragment)
    assert not (tmp_path / "t.h5").exists()


def test_weights_and_resume_together_are_refused(work: Path, tmp_path: Path) -> None:
    assert_one_error(run("train", "--weights", work / "base.h5", "--resume", work / "base.h5"),
                     "--resume", "--weights")


def test_fit_of_a_loaded_model_continues_from_its_weights(work: Path, tmp_path: Path) -> None:
    base = work / "base.h5"
    net = numbacnn.load_model(base, device="cpu")
    other = write_npz(tmp_path / "other.npz", seed=3, names=False)
    net.fit(str(other), epochs=1, lr=float(TINY_LR), weight_decay=0.0, verbose=0)
    net.save(tmp_path / "tuned.h5")
    assert_started_from(tmp_path / "tuned.h5", base)
    with pytest.raises(numbacnn.errors.DataError, match="5 classes but the loaded model"):
        net.fit(str(write_npz(tmp_path / "five.npz", classes=5)), epochs=1, verbose=0)
    fresh = numbacnn.Network.from_spec(SPEC, device="cpu")  # a new network: drawn afresh
    fresh.fit(str(other), epochs=1, lr=float(TINY_LR), weight_decay=0.0, verbose=0)
    assert max(float(np.abs(a - b).max()) for a, b in zip(
        [to_host(p) for layer in fresh.layers for p in layer.params.values()],
        weights_of(base), strict=True)) > 0.01


def test_an_imported_onnx_graph_trains_further(work: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="needs the onnx package")
    from onnx_graphs import GraphBuilder

    g = GraphBuilder(1, 8, 8, opset=17, seed=2)
    g.normalize(mean=[100], std=[60]).conv(3, 3).op("Relu").op("Flatten").gemm(4, trans_b=True)
    imported = tmp_path / "imported.h5"
    assert_ok(run("import", g.save(tmp_path / "m.onnx"), imported))
    tuned = tmp_path / "tuned.h5"
    assert_ok(run("train", "--weights", imported, "--data", work / "data.npz", "--out", tuned,
                  "--epochs", 3, "--batch-size", 8, "--lr", 0.05, "--device", "cpu"))
    (_, before), (_, after) = load_model(imported, "cpu"), load_model(tuned, "cpu")
    np.testing.assert_array_equal(after.mean, before.mean)
    assert after.class_names == before.class_names == ["0", "1", "2", "3"]
    assert after.history["train_loss"][-1] < after.history["train_loss"][0]
