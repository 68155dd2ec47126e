"""Tests of ``numbacnn train``, ``evaluate``, ``predict`` and ``inspect`` through Click's
CliRunner: the normal flows, ensembles, resume and Ctrl-C, and every error path (one
``error:`` line, a non-zero exit, no traceback, an existing model file left unchanged)."""

from __future__ import annotations

import errno
import importlib.util
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from helpers import CLASSES, assert_ok, assert_one_error, quadrant_images, run

from numbacnn.io import model_file
from numbacnn.io.dataset_files import load_dataset, save_dataset
from numbacnn.tools.inference import predict_images
from numbacnn.training.checkpoint import load_checkpoint
from numbacnn.training.trainer import Trainer

SPEC = ("input 8x8x1; conv 4 3 pad=1 activation=relu; maxpool 2; fc 8 activation=relu; "
        "dropout 0.25; fc 4; softmax")


def write_npz(path: Path, size: int = 8, label_offset: int = 0, n_train: int = 64) -> Path:
    rng = np.random.default_rng(7)
    x_train, y_train = quadrant_images(n_train, rng, size)
    x_test, y_test = quadrant_images(16, rng, size)
    np.savez(path, x_train=x_train, y_train=y_train + label_offset, x_test=x_test,
             y_test=y_test, class_names=np.array(CLASSES))
    return path


def train_args(data: Path, out: Path, *extra: object) -> list[object]:
    return ["train", SPEC, "--data", data, "--out", out, "--epochs", 2, "--batch-size", 16,
            "--lr", 0.05, *extra]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data.npz, m1.h5 (2 epochs, seed 1) and m2.h5 (1 epoch, seed 2), trained by the CLI."""
    work = tmp_path_factory.mktemp("cli")
    data = write_npz(work / "data.npz")
    first = run(*train_args(data, work / "m1.h5", "--seed", 1, "--device", "cpu"))
    assert_ok(first)
    work.joinpath("train.log").write_text(first.output)
    assert_ok(run(*train_args(data, work / "m2.h5", "--seed", 2, "--epochs", 1)))
    return work


# ----------------------------------------------------------------------------- normal flows


def test_train_prints_epochs_and_writes_checkpoint_and_best(workdir: Path) -> None:
    log = workdir.joinpath("train.log").read_text()
    assert "58 training and 6 validation images of 8x8x1, 4 classes" in log
    assert "epoch 1/2  train loss" in log and "epoch 2/2  train loss" in log
    assert "saved" in log and "test accuracy" in log
    net, info = load_checkpoint(workdir / "m1.h5")
    assert info.training.epoch == 2 and info.settings["seed"] == 1
    assert list(info.class_names) == list(CLASSES)
    assert (workdir / "m1.best.h5").exists()
    assert len(info.history["val_acc"]) == 2


def test_evaluate_prints_accuracy_per_class_and_confusion_matrix(workdir: Path) -> None:
    result = run("evaluate", workdir / "m1.h5")  # data: the one it was trained on
    assert_ok(result)
    net, info = load_checkpoint(workdir / "m1.h5")
    with np.load(workdir / "data.npz") as npz:
        x_test, y_test = npz["x_test"], npz["y_test"]
    predicted = predict_images(net, info, x_test).argmax(axis=1)
    correct = int(np.sum(predicted == y_test))
    assert f"accuracy: {100 * correct / 16:.2f}% ({correct}/16)" in result.output
    assert "bottom right" in result.output and "confusion matrix" in result.output
    rows = result.output.split("true\\pred")[1].strip().splitlines()[1:]
    matrix = np.array([[int(v) for v in row.split()[1:]] for row in rows])
    assert matrix.shape == (4, 4) and matrix.sum() == 16 and np.trace(matrix) == correct


def test_predict_npy_prints_top_k_per_image(workdir: Path) -> None:
    with np.load(workdir / "data.npz") as npz:
        images = npz["x_test"][:5, 0]  # N×H×W, one channel
    np.save(workdir / "five.npy", images)
    result = run("predict", workdir / "m1.h5", workdir / "five.npy", "--top-k", 2)
    assert_ok(result)
    lines = result.output.strip().splitlines()
    assert len(lines) == 5
    net, info = load_checkpoint(workdir / "m1.h5")
    best = predict_images(net, info, images[:, None]).argmax(axis=1)
    for line, k in zip(lines, best, strict=True):
        assert line.split("  ")[1].startswith(CLASSES[k]) and line.count("%") == 2


def test_predict_dataset_file_uses_its_split(workdir: Path, tmp_path: Path) -> None:
    dataset_file = tmp_path / "data.h5"
    save_dataset(load_dataset(workdir / "data.npz"), dataset_file)
    result = run("predict", workdir / "m1.h5", dataset_file, "--data-split", "train",
                 "--limit", 10, "--top-k", 1)
    assert_ok(result)
    lines = result.output.strip().splitlines()
    assert len(lines) == 11 and "(true: top left)" in lines[0]
    assert lines[-1].startswith("accuracy (model): ") and lines[-1].endswith("on 10 images")


def test_predict_with_two_models_averages_their_probabilities(workdir: Path) -> None:
    single = []
    for model in ("m1.h5", "m2.h5"):
        out = workdir / f"proba-{model}.npy"
        assert_ok(run("predict", workdir / model, workdir / "data.npz", "--save-proba", out))
        single.append(np.load(out))
    both = workdir / "proba-both.npy"
    result = run("predict", workdir / "m1.h5", workdir / "m2.h5", workdir / "data.npz",
                 "--save-proba", both)
    assert_ok(result)
    assert "accuracy (ensemble of 2 models)" in result.output and "(true: " in result.output
    assert not np.allclose(single[0], single[1])
    np.testing.assert_allclose(np.load(both), (single[0] + single[1]) / 2, rtol=1e-6)
    scored = run("evaluate", workdir / "m1.h5", workdir / "m2.h5", "--data",
                 workdir / "data.npz", "--ensemble")
    assert_ok(scored)
    mean = np.load(both)
    with np.load(workdir / "data.npz") as npz:
        expected = 100 * np.mean(mean.argmax(axis=1) == npz["y_test"])
    assert f"ensemble accuracy: {expected:.2f}%" in scored.output
    assert "mean of the 2 models" in scored.output


def test_train_with_label_smoothing_and_cosine_schedule(workdir: Path, tmp_path: Path) -> None:
    """--label-smoothing and --lr-policy cosine reach the run, its header and the model
    file's settings; a smoothing of 1 is refused in one line."""
    out = tmp_path / "smooth.h5"
    result = run(*train_args(workdir / "data.npz", out, "--label-smoothing", 0.1,
                             "--lr-policy", "cosine"))
    assert_ok(result)
    assert "lr 0.05 (cosine), label smoothing 0.1, init" in result.output
    info = load_checkpoint(out)[1]
    assert info.settings["label_smoothing"] == 0.1 and info.settings["lr_policy"] == "cosine"
    assert info.history["lr"] == pytest.approx([0.05, 0.025])
    bad = run(*train_args(workdir / "data.npz", tmp_path / "bad.h5", "--label-smoothing", 1))
    assert_one_error(bad, "--label-smoothing", "1")


def test_inspect_shows_architecture_settings_and_history(workdir: Path) -> None:
    result = run("inspect", workdir / "m1.h5")
    assert_ok(result)
    out = result.output
    assert "input: 8x8x1" in out and "classes (4): top left" in out
    assert "8x8x4" in out and "4x4x4" in out  # the shapes table's conv and pool outputs
    assert "conv 4 3" in out  # the spec
    assert "training: 2 of 2 epochs done" in out and "optimizer: sgd (momentum 0.9" in out
    history = out.split("history:")[1].strip().splitlines()
    assert len(history) == 3 and history[1].split()[0] == "1"


def test_resume_continues_and_refuses_changed_settings(workdir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.h5"
    copy.write_bytes((workdir / "m2.h5").read_bytes())
    changed = run("train", "--resume", copy, "--lr", 0.5)
    assert_one_error(changed, "Invalid value for '--lr': lr 0.5 differs from the checkpoint's "
                     "0.05")
    result = run("train", "--resume", copy, "--epochs", 2)
    assert_ok(result)
    assert "resuming" in result.output and "epoch 2/2" in result.output
    assert "epoch 1/2" not in result.output
    assert load_checkpoint(copy)[1].training.epoch == 2
    done = run("train", "--resume", copy, "--epochs", 2)
    assert_one_error(done, "already trained 2 of 2 epochs")


def test_ctrl_c_saves_a_checkpoint_and_exits_130(workdir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    train_batch = Trainer._train_batch
    calls = []

    def press_ctrl_c_on_second_batch(self, *args):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return train_batch(self, *args)

    monkeypatch.setattr(Trainer, "_train_batch", press_ctrl_c_on_second_batch)
    out = tmp_path / "stopped.h5"
    result = run(*train_args(workdir / "data.npz", out))
    assert result.exit_code == 130, result.output
    assert "interrupted at epoch 1, batch 2; checkpoint saved to" in result.output
    assert f"numbacnn train --resume {out}" in result.output
    assert "Traceback" not in result.output
    state = load_checkpoint(out)[1].training
    assert (state.epoch, state.batch) == (0, 2)


# ----------------------------------------------------------------------------- errors


def test_missing_corrupt_and_truncated_models(workdir: Path, tmp_path: Path) -> None:
    assert_one_error(run("evaluate", tmp_path / "nope.h5"), "nope.h5: no such model file")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x00garbage" * 100)
    assert_one_error(run("predict", junk, workdir / "data.npz"), "junk.h5: not an HDF5 file",
                     "give a model file that numbacnn saved; numbacnn train writes one")
    data = (workdir / "m1.h5").read_bytes()
    half = tmp_path / "half.h5"
    half.write_bytes(data[:len(data) // 2])
    assert_one_error(run("inspect", half), "half.h5", "truncated or corrupt")
    dataset_file = tmp_path / "data.h5"
    save_dataset(load_dataset(workdir / "data.npz"), dataset_file)
    assert_one_error(run("evaluate", dataset_file), "expected 'numbacnn-model'",
                     "this is a dataset file")


def test_dataset_that_does_not_fit_the_spec(tmp_path: Path) -> None:
    small = write_npz(tmp_path / "six.npz", size=6)
    result = run(*train_args(small, tmp_path / "m.h5"))
    assert_one_error(result, "images are 6x6x1 (W x H x D) but the network takes 8x8x1")
    shifted = write_npz(tmp_path / "shifted.npz", label_offset=2)  # labels 2…5, 4 outputs
    np.savez(shifted, **{k: v for k, v in np.load(shifted).items() if k != "class_names"})
    assert_one_error(run(*train_args(shifted, tmp_path / "m.h5")), "labels go up to 5")
    assert not (tmp_path / "m.h5").exists()


def test_nan_loss_stops_with_the_step_and_leaves_the_model(workdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.h5"
    out.write_bytes((workdir / "m2.h5").read_bytes())
    before = out.read_bytes()
    result = run(*train_args(workdir / "data.npz", out, "--lr", 1e30, "--force"))
    assert_one_error(result, "loss became", "at epoch 1, batch", "(step ",
                     "lower the learning rate")
    assert out.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.h5"]


def test_unwritable_out_is_refused_before_training(workdir: Path, tmp_path: Path) -> None:
    data = workdir / "data.npz"
    missing = run(*train_args(data, tmp_path / "no" / "such" / "m.h5"))
    assert_one_error(missing, "does not exist; create it")
    assert "epoch" not in missing.output
    directory = run(*train_args(data, tmp_path))
    assert_one_error(directory, "is a directory")
    assert "epoch" not in directory.output


def test_full_disk_keeps_the_existing_model(workdir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "model.h5"
    out.write_bytes((workdir / "m2.h5").read_bytes())
    before = out.read_bytes()

    def disk_full(f, net, info):
        f.attrs["partial"] = 1
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model_file, "_write_model", disk_full)
    result = run(*train_args(workdir / "data.npz", out, "--epochs", 1, "--force"))
    assert_one_error(result, "model.h5: cannot write the model (No space left on device)",
                     "existing file is unchanged")
    assert out.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.h5"]


def test_predict_input_errors(workdir: Path, tmp_path: Path) -> None:
    model = workdir / "m1.h5"
    np.save(tmp_path / "wrong.npy", np.zeros((3, 5, 5), np.uint8))
    assert_one_error(run("predict", model, tmp_path / "wrong.npy"),
                     "images have shape (3, 5, 5) but the model takes 8x8x1 (W x H x D)")
    np.save(tmp_path / "float.npy", np.zeros((3, 8, 8), np.float32))
    assert_one_error(run("predict", model, tmp_path / "float.npy"), "raw uint8")
    assert_one_error(run("predict", model, tmp_path / "absent.npy"), "no such file")
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_error(run("predict", model, tmp_path / "notes.txt"), "unknown input type .txt")
    assert run("predict", model).exit_code == 2  # no INPUT: a usage error


@pytest.mark.skipif(importlib.util.find_spec("PIL") is not None, reason="Pillow is installed")
def test_predict_png_without_pillow_says_how_to_install(workdir: Path, tmp_path: Path) -> None:
    image = tmp_path / "shirt.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert_one_error(run("predict", workdir / "m1.h5", image), "pip install pillow")


@pytest.mark.skipif(importlib.util.find_spec("PIL") is None, reason="Pillow is not installed")
def test_predict_png_with_pillow(workdir: Path, tmp_path: Path) -> None:
    from PIL import Image

    with np.load(workdir / "data.npz") as npz:
        pixels = npz["x_test"][3, 0]
    Image.fromarray(pixels, mode="L").save(tmp_path / "one.png")
    result = run("predict", workdir / "m1.h5", tmp_path / "one.png")
    assert_ok(result)
    net, info = load_checkpoint(workdir / "m1.h5")
    k = predict_images(net, info, pixels[None, None]).argmax()
    assert result.output.split("  ")[1].startswith(CLASSES[k])
