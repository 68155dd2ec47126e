"""Tests of numbacnn.training.trainer and numbacnn.training.schedules: exact resume (after
whole epochs and after Ctrl-C inside an epoch), determinism, the validation split, NaN
detection that keeps the last good checkpoint, lr policies, metrics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from helpers import small_dataset

from numbacnn.errors import DataError, TrainingError
from numbacnn.io.datasets import normalize
from numbacnn.layers import Conv2D, Dense, Dropout, MaxPool2D, ReLU
from numbacnn.network import Network
from numbacnn.training.checkpoint import load_checkpoint
from numbacnn.training.schedules import LRSchedule
from numbacnn.training.trainer import (
    Interrupted,
    Trainer,
    TrainSettings,
    check_fits,
    evaluate,
)


def small_network() -> Network:
    return Network([Conv2D(4, 3, pad=1), ReLU(), MaxPool2D(2), Dense(8), ReLU(), Dropout(0.5),
                    Dense(4)], input_shape=(1, 8, 8), spec_text="small")


def settings(**changes: object) -> TrainSettings:
    values = dict(spec="small", epochs=2, batch_size=12, lr=0.05, seed=11, augment=True)
    values.update(changes)
    return TrainSettings(**values)  # type: ignore[arg-type]


def weights(net: Network) -> dict[str, np.ndarray]:
    return {name: np.array(w) for name, w, _ in net.parameters()}


def assert_same_run(a: Path, b: Path) -> None:
    """Two checkpoints hold bit-identical weights, optimizer buffers and training state."""
    net_a, info_a = load_checkpoint(a)
    net_b, info_b = load_checkpoint(b)
    for name, w in weights(net_a).items():
        np.testing.assert_array_equal(weights(net_b)[name], w, err_msg=name)
    for slot, table in info_a.optimizer.slots.items():
        for name, v in table.items():
            np.testing.assert_array_equal(info_b.optimizer.slots[slot][name], v)
    assert info_a.training.rng_states == info_b.training.rng_states
    assert (info_a.training.step, info_a.training.epoch) == (info_b.training.step,
                                                             info_b.training.epoch)
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        np.testing.assert_array_equal(info_a.history[key], info_b.history[key], err_msg=key)
    assert info_a.steps == info_b.steps and len(info_a.steps) > 0  # the per-step loss log


def test_resume_after_an_epoch_is_bit_identical(tmp_path: Path) -> None:
    dataset = small_dataset()
    straight, split = tmp_path / "straight.h5", tmp_path / "split.h5"
    Trainer(small_network(), dataset, settings(epochs=2), out=straight).run()
    Trainer(small_network(), dataset, settings(epochs=1), out=split).run()
    assert load_checkpoint(split)[1].training.epoch == 1
    Trainer.from_checkpoint(split, epochs=2, dataset=dataset).run()
    assert_same_run(straight, split)


def test_ctrl_c_inside_an_epoch_saves_and_resumes_exactly(tmp_path: Path) -> None:
    dataset = small_dataset()
    straight, stopped = tmp_path / "straight.h5", tmp_path / "stopped.h5"
    Trainer(small_network(), dataset, settings(optimizer="adam", lr=0.01), out=straight).run()

    def stop_at_batch_3(progress) -> None:
        if progress.epoch == 2 and progress.batch == 3:
            trainer.request_stop()

    trainer = Trainer(small_network(), dataset, settings(optimizer="adam", lr=0.01), out=stopped,
                      on_batch=stop_at_batch_3)
    with pytest.raises(Interrupted, match="epoch 2, batch 3; checkpoint saved to .*stopped.h5$"
                       ) as stop:
        trainer.run()
    assert stop.value.checkpoint == stopped
    state = load_checkpoint(stopped)[1].training
    assert (state.epoch, state.batch) == (1, 3)
    Trainer.from_checkpoint(stopped, dataset=dataset).run()
    assert_same_run(straight, stopped)


def test_label_smoothing_and_cosine_resume_exactly(tmp_path: Path) -> None:
    """A run with label smoothing and the cosine schedule, stopped inside its second
    epoch, resumes (settings from the checkpoint) to the weights of the straight run;
    the smoothing changes the run, and the trainer hands it to the loss layer."""
    dataset = small_dataset()
    straight, stopped, plain = tmp_path / "straight.h5", tmp_path / "stopped.h5", tmp_path / "p.h5"
    smooth = settings(epochs=3, label_smoothing=0.2, lr_policy="cosine")
    run = Trainer(small_network(), dataset, smooth, out=straight)
    assert run.net.loss.label_smoothing == 0.2
    run.run()
    assert run.history["lr"] == pytest.approx([0.05, 0.0375, 0.0125])

    def stop_at_batch_2(progress) -> None:
        if progress.epoch == 2 and progress.batch == 2:
            trainer.request_stop()

    trainer = Trainer(small_network(), dataset, smooth, out=stopped, on_batch=stop_at_batch_2)
    with pytest.raises(Interrupted):
        trainer.run()
    resumed = Trainer.from_checkpoint(stopped, dataset=dataset)
    assert resumed.net.loss.label_smoothing == 0.2
    resumed.run()
    assert_same_run(straight, stopped)
    Trainer(small_network(), dataset, settings(epochs=3, lr_policy="cosine"), out=plain).run()
    assert not np.array_equal(weights(load_checkpoint(plain)[0])["0.W"],
                              weights(load_checkpoint(straight)[0])["0.W"])


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    dataset = small_dataset()
    runs = []
    for seed in (5, 5, 6):
        net = small_network()
        Trainer(net, dataset, settings(epochs=1, seed=seed)).run()
        runs.append(weights(net))
    for name in runs[0]:
        np.testing.assert_array_equal(runs[0][name], runs[1][name])
    assert not np.array_equal(runs[0]["0.W"], runs[2]["0.W"])


def test_validation_split_is_disjoint_deterministic_and_limited() -> None:
    dataset = small_dataset(n_train=80)
    dataset.x_train[:, 0, 0, 0] = np.arange(80)  # tag each image with its index
    a = Trainer(small_network(), dataset, settings(val_split=0.25, limit=60))
    b = Trainer(small_network(), dataset, settings(val_split=0.25, limit=60))
    assert (len(a.y_fit), len(a.y_val)) == (45, 15)
    np.testing.assert_array_equal(a.x_val, b.x_val)

    def tags(x: np.ndarray) -> list[int]:
        return list(np.rint((x[:, 0, 0, 0] * a.std[0] + a.mean[0]) * 255).astype(int))

    assert sorted(tags(a.x_val) + tags(a.x_fit)) == list(range(60))
    c = Trainer(small_network(), dataset, settings(val_split=0.25, limit=60, seed=12))
    assert not np.array_equal(a.x_val, c.x_val)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "model.h5"
    saved = []

    def explode(record) -> None:  # once epoch 1 is saved, make epoch 2 diverge
        saved.append(out.read_bytes())
        trainer.schedule.lr = 1e30

    trainer = Trainer(small_network(), small_dataset(), settings(epochs=3, augment=False),
                      out=out, on_epoch=explode)
    with pytest.raises(TrainingError, match=r"loss became (nan|inf) at epoch 2, batch \d+/6 "
                                            r"\(step \d+\).*last good checkpoint .*model.h5 "
                                            r"\(epoch 1\) is kept; lower the learning rate"):
        trainer.run()
    assert len(saved) == 1 and out.read_bytes() == saved[0]
    net, info = load_checkpoint(out)
    assert info.training.epoch == 1
    assert all(np.isfinite(w).all() for w in weights(net).values())


def test_huge_learning_rate_from_the_start_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "model.h5"
    trainer = Trainer(small_network(), small_dataset(), settings(lr=1e30, augment=False), out=out)
    with pytest.raises(TrainingError, match="epoch 1.*no checkpoint was written"):
        trainer.run()
    assert not out.exists()


def test_data_that_does_not_fit_the_network() -> None:
    net = small_network()
    wrong_shape = small_dataset()
    wrong_shape.x_train = wrong_shape.x_train[:, :, :6, :6]
    with pytest.raises(DataError, match=r"images are 6x6x1 \(W x H x D\) .* network takes 8x8x1"):
        check_fits(net, wrong_shape, "data.npz")
    wide = small_dataset(classes=6)
    with pytest.raises(DataError, match=r"labels go up to 5 but the network has 4 outputs"):
        check_fits(net, wide, "data.npz")
    with pytest.raises(TrainingError, match=r"^val_split must be in \[0, 1\), got 1.0$") as bad:
        Trainer(net, small_dataset(), settings(val_split=1.0))
    assert bad.value.field == "val_split"


def test_test_accuracy_scores_the_test_split_with_the_runs_normalization() -> None:
    dataset = small_dataset()
    trainer = Trainer(small_network(), dataset, settings(epochs=1, augment=False))
    trainer.run()
    x = normalize(dataset.x_test, trainer.mean, trainer.std)
    assert trainer.test_accuracy() == evaluate(trainer.net, x, dataset.y_test)[1]
    dataset.x_test, dataset.y_test = dataset.x_test[:0], dataset.y_test[:0]
    assert trainer.test_accuracy() is None


def test_evaluate() -> None:
    net = small_network().initialize(0)
    x = np.random.default_rng(0).standard_normal((10, 1, 8, 8)).astype(np.float32)
    labels = np.arange(10) % 4
    loss, accuracy, proba = evaluate(net, x, labels, batch_size=3)
    np.testing.assert_allclose(proba, net.predict_proba(x), rtol=1e-6)
    picked = proba[np.arange(10), labels].astype(np.float64)
    assert loss == pytest.approx(-np.log(picked).mean())
    assert accuracy == np.mean(proba.argmax(axis=1) == labels)


# ----------------------------------------------------------------------------- lr policies


def test_constant_policy_keeps_the_rate() -> None:
    schedule = LRSchedule("constant", 0.1)
    assert [schedule.end_epoch(e, 0.5) for e in range(1, 5)] == [0.1] * 4


def test_step_policy_multiplies_by_gamma_every_step_epochs() -> None:
    schedule = LRSchedule("step", 0.1, step=2, gamma=0.5)
    rates = [schedule.lr] + [schedule.end_epoch(e, 0.5) for e in range(1, 6)]
    assert rates == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_plateau_policy_divides_by_ten_after_patience_stale_epochs() -> None:
    schedule = LRSchedule("plateau", 0.1, patience=2)
    accuracies = [0.5, 0.6, 0.6, 0.55, 0.7, 0.69, 0.7, 0.65]
    rates = [schedule.end_epoch(e + 1, a) for e, a in enumerate(accuracies)]
    assert rates == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001])
    restored = LRSchedule.from_state(schedule.state())
    assert restored == schedule and restored.end_epoch(9, 0.6) == schedule.end_epoch(9, 0.6)


def test_cosine_policy_anneals_over_the_epochs_and_stretches_on_resume() -> None:
    schedule = LRSchedule("cosine", 0.1, epochs=4)
    rates = [schedule.lr] + [schedule.end_epoch(e, 0.5) for e in range(1, 6)]
    half = [0.1 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert rates == pytest.approx([*half, half[3], half[3]])  # past the end: the last rate
    assert TrainSettings(lr_policy="cosine", epochs=15, lr=0.05).schedule().epochs == 15
    schedule = LRSchedule("cosine", 0.1, epochs=4)
    schedule.end_epoch(1, 0.5)
    schedule.set_epochs(4, 1)  # the same total: the same rate
    assert schedule.lr == pytest.approx(half[1])
    schedule.set_epochs(8, 1)  # 4 more epochs: the rest follows the longer curve
    assert schedule.lr == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 8)))
    step = LRSchedule("step", 0.1, step=1, gamma=0.5)
    step.end_epoch(1, 0.5)
    step.set_epochs(9, 1)  # other policies keep their rate
    assert step.lr == pytest.approx(0.05)
    with pytest.raises(TrainingError, match="^epochs must be ≥ 1, got 0$"):
        LRSchedule("cosine", 0.1, epochs=0)


def test_bad_policy_options_are_refused() -> None:
    with pytest.raises(TrainingError, match="unknown lr policy 'exponential'"):
        LRSchedule("exponential", 0.1)
    with pytest.raises(TrainingError, match=r"^gamma must be in \(0, 1\], got 2.0$"):
        TrainSettings(lr_policy="step", gamma=2.0).checked()
    with pytest.raises(TrainingError, match="^lr must be > 0 and finite, got 0.0$"):
        TrainSettings(lr=0.0).checked()
    with pytest.raises(TrainingError, match="^base_lr must be > 0 and finite, got inf$"):
        LRSchedule("constant", math.inf)
    with pytest.raises(TrainingError, match="^step must be ≥ 1, got 0$"):
        LRSchedule("step", 0.1, step=0)
    assert TrainSettings(optimizer="adam").checked().lr == 0.001
    assert math.isclose(TrainSettings().checked().lr, 0.02)
