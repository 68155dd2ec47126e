"""Runs compared: labels from what differs (numbacnn.tools.compare), the per-step loss log
(numbacnn.io.step_history) through the model file and a resume, ``plot curves`` with
several files, ``numbacnn compare``, and ``evaluate`` scoring several models each on its
own unless ``--ensemble``."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import assert_ok as ok
from helpers import run

from numbacnn.io.datasets import Dataset
from numbacnn.io.model_file import ModelInfo, load_model, save_model
from numbacnn.io.step_history import StepHistory
from numbacnn.network import Network
from numbacnn.tools.compare import compare_runs, differences, run_labels
from numbacnn.tools.scoring import score_dataset
from numbacnn.training import trainer as trainer_module
from numbacnn.training.checkpoint import load_checkpoint
from numbacnn.training.trainer import Interrupted, Trainer, TrainSettings

SPEC = "input 8x8x1; conv 3 3 pad=1 activation={act}; maxpool 2; fc 4"
ACTIVATIONS = ("relu", "tanh", "sigmoid")




def quadrants(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N×1×8×8 images; class k is bright in quadrant k."""
    rng = np.random.default_rng(seed)
    y = np.arange(n, dtype=np.int64) % 4
    x = rng.integers(0, 80, (n, 1, 8, 8)).astype(np.uint8)
    for i, k in enumerate(y):
        x[i, 0, 4 * (k // 2):4 * (k // 2) + 4, 4 * (k % 2):4 * (k % 2) + 4] += 150
    return x, y


def info_of(spec: str = SPEC.format(act="relu"), **settings: object) -> ModelInfo:
    """A ModelInfo with canonical spec text and stored settings (no weights needed)."""
    values = {"lr": 0.02, "init": "he", "epochs": 2, "spec": spec, "data": "d.npz"}
    values.update(settings)
    return ModelInfo(spec_text=Network.from_spec(spec).spec_text or "", input_shape=(1, 8, 8),
                     class_names=list("abcd"), mean=np.zeros(1, np.float32),
                     std=np.ones(1, np.float32), settings=values)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data.npz and relu.h5, tanh.h5, sigmoid.h5: SPEC with each activation, trained 2
    epochs by the library on the same data and settings, on the CPU."""
    work = tmp_path_factory.mktemp("compare")
    x, y = quadrants(60, 1)
    x_test, y_test = quadrants(20, 2)
    np.savez(work / "data.npz", x_train=x, y_train=y, x_test=x_test, y_test=y_test,
             class_names=np.array(list("abcd")))
    dataset = Dataset(x, y, x_test, y_test, list("abcd"))
    for act in ACTIVATIONS:
        settings = TrainSettings(spec=SPEC.format(act=act), data=str(work / "data.npz"),
                                 epochs=2, batch_size=16, lr=0.05)
        Trainer.from_settings(settings, out=work / f"{act}.h5", dataset=dataset,
                              device="cpu").run()
    return work


# ----------------------------------------------------------------------------- labels


def test_runs_differing_only_in_activation_are_labelled_by_it() -> None:
    infos = [info_of(SPEC.format(act=act)) for act in ACTIVATIONS]
    assert run_labels(infos, ["a.h5", "b.h5", "c.h5"]) == [
        "activation=relu", "activation=tanh", "activation=sigmoid"]


def test_labels_name_differing_settings_and_layers_or_fall_back_to_the_file() -> None:
    infos = [info_of(), info_of(init="xavier", lr=0.1)]
    assert differences(infos) == [{"init": "he", "lr": "0.02"}, {"init": "xavier", "lr": "0.1"}]
    assert run_labels(infos, ["a.h5", "b.h5"]) == ["init=he, lr=0.02", "init=xavier, lr=0.1"]
    assert run_labels([info_of(), info_of()], ["x/a.h5", "b.h5"]) == ["a.h5", "b.h5"]
    wider = SPEC.format(act="relu").replace("conv 3", "conv 5")
    assert run_labels([info_of(), info_of(wider)], ["a", "b"]) == [
        "conv 3 3 stride=1 pad=1", "conv 5 3 stride=1 pad=1"]
    dropout = "input 8x8x1; conv 3 3 pad=1 activation=relu; maxpool 2; dropout 0.5; fc 4"
    assert run_labels([info_of(), info_of(dropout)], ["a", "b"]) == [
        "without dropout 0.5", "dropout 0.5"]
    assert run_labels([info_of(), info_of(), info_of(lr=0.1)], ["a", "b", "c"]) == [
        "lr=0.02 (a)", "lr=0.02 (b)", "lr=0.1"]


# ----------------------------------------------------------------------------- per-step log


def test_per_step_history_round_trips_and_old_files_have_none(work: Path,
                                                              tmp_path: Path) -> None:
    net, info = load_model(work / "relu.h5")
    steps = info.steps  # 54 training images, batch 16: 4 steps an epoch, 2 epochs
    assert steps.every == 1 and steps.step == list(range(1, 9))
    np.testing.assert_allclose(steps.epoch, np.arange(1, 9) / 4)
    # every batch but the last has 16 images: the epoch's mean is their weighted mean
    weights = np.array([16, 16, 16, 6])
    for epoch in (0, 1):
        mean = np.average(steps.loss[4 * epoch:4 * epoch + 4], weights=weights)
        assert mean == pytest.approx(info.history["train_loss"][epoch], rel=1e-9)
    info.steps = StepHistory(3, [3, 6], [0.5, 1.0], [2.5, 1.25], 0.75, 32.0, 2)
    save_model(tmp_path / "m.h5", net, info)
    assert load_model(tmp_path / "m.h5")[1].steps == info.steps
    with h5py.File(tmp_path / "m.h5", "a") as f:
        del f["history/steps"]
    old = load_model(tmp_path / "m.h5")[1]
    assert old.steps == StepHistory() and len(old.steps) == 0
    assert len(old.history["train_loss"]) == 2


def test_per_step_history_survives_ctrl_c_and_resume(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A point every 2 steps; stopped after step 3 of epoch 2 (a step pending): the
    resumed run logs the very points of an uninterrupted one."""
    monkeypatch.setattr(trainer_module, "points_every", lambda total_steps: 2)
    x, y = quadrants(80, 3)
    dataset = Dataset(x, y, x[:8], y[:8], list("abcd"))
    settings = TrainSettings(spec=SPEC.format(act="relu"), epochs=2, batch_size=12, lr=0.05,
                             seed=5)
    straight, stopped = tmp_path / "straight.h5", tmp_path / "stopped.h5"
    Trainer(Network.from_spec(settings.spec), dataset, settings, out=straight).run()

    def stop_at_batch_3(progress) -> None:
        if progress.epoch == 2 and progress.batch == 3:
            trainer.request_stop()

    trainer = Trainer(Network.from_spec(settings.spec), dataset, settings, out=stopped,
                      on_batch=stop_at_batch_3)
    with pytest.raises(Interrupted):
        trainer.run()
    pending = load_checkpoint(stopped)[1].steps
    assert pending.step == [2, 4, 6, 8] and pending.pending_steps == 1
    Trainer.from_checkpoint(stopped, dataset=dataset).run()
    expected, resumed = load_checkpoint(straight)[1].steps, load_checkpoint(stopped)[1].steps
    assert expected.step == [2, 4, 6, 8, 10, 12]  # 72 training images: 6 steps an epoch
    assert resumed == expected


def test_a_gpu_run_logs_the_mean_loss_of_each_progress_interval() -> None:
    """On a GPU the loss sums are read only at progress updates: a point is then the mean
    of its interval (here the whole epoch, as the reads are made that rare on the CPU)."""
    x, y = quadrants(80, 3)
    settings = TrainSettings(spec=SPEC.format(act="relu"), epochs=2, batch_size=12, lr=0.05)
    trainer = Trainer(Network.from_spec(settings.spec), Dataset(x, y, x[:8], y[:8],
                                                                list("abcd")), settings)
    trainer.progress_seconds = 1e9  # as if every step took no time: one read per epoch
    trainer.run()
    assert trainer.steps.every == 1 and trainer.steps.step == [6, 12]
    assert trainer.steps.epoch == [1.0, 2.0]
    np.testing.assert_allclose(trainer.steps.loss, trainer.history["train_loss"], rtol=1e-12)


# ----------------------------------------------------------------------------- plot curves


def test_plot_curves_of_three_runs_draws_a_line_per_run_labelled_by_what_differs(
        work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    from numbacnn.tools import run_curves

    figures = []
    original = run_curves.runs_figure
    monkeypatch.setattr(run_curves, "runs_figure",
                        lambda *a, **k: figures.append(original(*a, **k)) or figures[-1])
    files = [work / f"{act}.h5" for act in ACTIVATIONS]
    for per_step in ((), ("--per-step",)):
        out = tmp_path / "cmp.png"
        text = ok(run("plot", "curves", *files, "-o", out, *per_step, "--device", "cpu"))
        assert "curves of 3 runs" in text and out.read_bytes()[:4] == b"\x89PNG"
    for figure, per_step in zip(figures, (False, True), strict=True):
        loss_axes, acc_axes = figure.axes
        legend = [t.get_text() for t in figure.legends[0].get_texts()]
        assert [text.split(" (test")[0] for text in legend] == [
            f"activation={act}" for act in ACTIVATIONS]
        assert all("(test " in text for text in legend)
        for axes in (loss_axes, acc_axes):
            drawn = [line for line in axes.get_lines() if len(line.get_xdata())]
            solid = [line for line in drawn if line.get_linestyle() == "-"]
            dashed = [line for line in drawn if line.get_linestyle() == "--"]
            assert len(solid) == len(dashed) == 3
            assert len({line.get_color() for line in solid}) == 3
        lengths = {len(line.get_xdata()) for line in loss_axes.get_lines()
                   if line.get_linestyle() == "-" and len(line.get_xdata())}
        assert lengths == ({8} if per_step else {2})  # 8 logged steps or 2 epochs


def test_plot_refuses_several_models_for_other_pictures(work: Path, tmp_path: Path) -> None:
    result = run("plot", "filters", work / "relu.h5", work / "tanh.h5", "-o", tmp_path / "f.png")
    assert result.exit_code == 2 and "only curves overlays several" in result.output


# ----------------------------------------------------------------------------- compare


def test_compare_prints_one_row_per_run_with_what_differs(work: Path) -> None:
    files = [work / f"{act}.h5" for act in ACTIVATIONS]
    text = ok(run("compare", *files, "--device", "cpu"))
    assert "they differ in: activation" in text
    rows = [line for line in text.splitlines() if line.startswith("activation=")]
    assert len(rows) == 3
    loaded = [load_model(f) for f in files]
    for row, act, file, (net, info) in zip(rows, ACTIVATIONS, files, loaded, strict=True):
        accuracy = score_dataset([(net, info)], _dataset(work), "test").accuracy
        assert row.split()[0] == f"activation={act}" and str(file) in row
        assert f"{100 * accuracy:.2f}%" in row
        assert f"{info.history['train_loss'][-1]:.4f}" in row
    assert "computed on the test split of" in text
    library = compare_runs([(f, *m) for f, m in zip(files, loaded, strict=True)],
                           test_accuracy=False)
    assert [r.differences for r in library] == [{"activation": a} for a in ACTIVATIONS]
    assert all(r.epochs == 2 and r.test_accuracy is None for r in library)


def test_compare_shows_several_differing_settings_as_columns(work: Path,
                                                             tmp_path: Path) -> None:
    import json
    import shutil

    faster = tmp_path / "faster.h5"
    shutil.copy(work / "tanh.h5", faster)
    with h5py.File(faster, "a") as f:  # as if trained with another lr
        settings = json.loads(f["training"].attrs["settings"])
        f["training"].attrs["settings"] = json.dumps({**settings, "lr": 0.1})
    text = ok(run("compare", work / "relu.h5", faster, "--no-test-accuracy"))
    assert "they differ in: activation, lr" in text
    header, _, first, second = text.splitlines()[1:5]
    assert header.split()[:3] == ["file", "activation", "lr"]
    assert first.split()[1:3] == ["relu", "0.05"] and second.split()[1:3] == ["tanh", "0.1"]


def _dataset(work: Path) -> Dataset:
    from numbacnn.io.dataset_files import load_dataset

    return load_dataset(work / "data.npz")


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_scores_each_model_unless_asked_for_the_ensemble(work: Path) -> None:
    a, b = work / "relu.h5", work / "tanh.h5"
    each = ok(run("evaluate", a, b, "--device", "cpu"))
    assert "ensemble" not in each and "mean of the" not in each
    assert each.count("confusion matrix") == 2
    for path in (a, b):
        accuracy = score_dataset([load_model(path)], _dataset(work), "test").accuracy
        assert f"{path}: accuracy {100 * accuracy:.2f}%" in each
    both = ok(run("evaluate", a, b, "--ensemble", "--device", "cpu"))
    assert "ensemble accuracy: " in both and both.count("confusion matrix") == 1
