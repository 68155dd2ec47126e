"""Tests of the notebook API (numbacnn/api.py): numbacnn.Network's fit, evaluate, predict
and save, its History and Evaluation, numbacnn.load_model, and the README's Python
example run as a program."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hostile import CLASSES, SPEC, quadrants

import numbacnn
import numbacnn.network
from numbacnn.api import Evaluation, History
from numbacnn.errors import DataError, TrainingError
from numbacnn.io.datasets import Dataset
from numbacnn.io.model_file import ModelInfo
from numbacnn.tools.scoring import score_dataset, score_models

ROOT = Path(__file__).resolve().parents[1]


def arrays(n: int = 64, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    return quadrants(n, seed)


def fitted(epochs: int = 2, **settings) -> tuple[numbacnn.Network, History]:
    net = numbacnn.Network.from_spec(SPEC)
    history = net.fit(arrays(), epochs=epochs, batch_size=16, lr=0.05, verbose=0, **settings)
    return net, history


def test_the_package_exports_the_notebook_network_and_from_spec_keeps_the_class() -> None:
    assert numbacnn.Network is numbacnn.api.Network
    assert issubclass(numbacnn.Network, numbacnn.network.Network)
    assert type(numbacnn.Network.from_spec(SPEC)) is numbacnn.Network
    assert type(numbacnn.network.Network.from_spec(SPEC)) is numbacnn.network.Network


def test_fit_returns_a_history_with_one_entry_per_epoch() -> None:
    net, history = fitted(epochs=3)
    assert history.epochs == 3
    assert set(history.history) == {"train_loss", "train_acc", "val_loss", "val_acc", "lr",
                                    "seconds"}
    assert all(len(values) == 3 for values in history.history.values())
    assert all(0 <= acc <= 1 for acc in history.train_acc + history.val_acc)
    text = repr(history)
    assert text.startswith("History of 3 epochs") and len(text.splitlines()) == 5
    assert history._repr_html_().count("<tr>") == 4  # the head and three epochs
    assert isinstance(net.info, ModelInfo) and net.info.training.epoch == 3


def test_fit_trains_the_network_itself_and_the_same_seed_gives_the_same_run() -> None:
    net, first = fitted(seed=3)
    weights = net.layers[0].params["W"].copy()
    again, second = fitted(seed=3)
    np.testing.assert_array_equal(again.layers[0].params["W"], weights)
    assert first.train_loss == second.train_loss and first.val_acc == second.val_acc
    other, _ = fitted(seed=4)
    assert not np.array_equal(other.layers[0].params["W"], weights)


def test_fit_takes_label_smoothing_and_the_cosine_schedule_and_records_them() -> None:
    net, history = fitted(epochs=2, label_smoothing=0.1, lr_policy="cosine")
    assert net.loss.label_smoothing == 0.1
    assert net.info.settings["label_smoothing"] == 0.1
    assert history.lr == pytest.approx([0.05, 0.025])
    plain, _ = fitted(epochs=2, lr_policy="cosine")
    assert plain.loss.label_smoothing == 0.0
    assert not np.array_equal(plain.layers[0].params["W"], net.layers[0].params["W"])


def test_fit_builds_a_network_without_input_shape_from_the_data() -> None:
    from numbacnn.layers import Dense, ReLU

    net = numbacnn.Network([Dense(8), ReLU(), Dense(4)])
    x, y = arrays()
    history = net.fit((x[:, 0], y), epochs=1, batch_size=16, verbose=0)  # N×H×W
    assert net.input_shape == (1, 8, 8) and history.epochs == 1
    assert net.info.spec_text.startswith("input 8x8x1\nfc 8")


def test_float_images_in_0_1_train_as_their_8_bit_pixels() -> None:
    x, y = arrays()
    net = numbacnn.Network.from_spec(SPEC)
    as_bytes = net.fit((x, y), epochs=1, batch_size=16, verbose=0)
    as_floats = net.fit((x / 255.0, y), epochs=1, batch_size=16, verbose=0)
    assert as_bytes.train_loss == as_floats.train_loss


def test_evaluate_matches_the_scoring_tool_on_the_same_data() -> None:
    net, _ = fitted()
    x, y = arrays(40, seed=11)
    dataset = Dataset(x, y, x, y, list(CLASSES), "quadrants")
    result = net.evaluate(dataset)
    expected = score_dataset([(net, net.info)], dataset, "test")
    assert isinstance(result, Evaluation) and result.images == 40
    assert result.accuracy == expected.accuracy
    picked = expected.proba[np.arange(40), y]
    assert result.loss == pytest.approx(float(-np.log(picked).mean()), rel=1e-6)
    on_arrays = net.evaluate((x, y))
    assert on_arrays.accuracy == score_models([(net, net.info)], x, y).accuracy
    assert re.fullmatch(r"arrays: accuracy \d+\.\d\d% \(\d+/40 images right\), loss \d\.\d{4}",
                        repr(on_arrays))
    assert repr(result).startswith("quadrants, test split: accuracy ")


def test_evaluate_on_the_test_split_of_four_arrays() -> None:
    net, _ = fitted()
    x, y = arrays(32, seed=1)
    test_x, test_y = arrays(24, seed=2)
    result = net.evaluate((x, y, test_x, test_y))
    assert result.images == 24
    assert result.accuracy == score_models([(net, net.info)], test_x, test_y).accuracy


def test_save_and_load_model_give_back_the_notebook_network(tmp_path: Path) -> None:
    net, _ = fitted()
    net.save(tmp_path / "m.h5")
    loaded = numbacnn.load_model(tmp_path / "m.h5")
    assert type(loaded) is numbacnn.Network
    x, y = arrays(20, seed=5)
    assert loaded.evaluate((x, y)).accuracy == net.evaluate((x, y)).accuracy
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))


@pytest.mark.parametrize(("data", "message"), [
    (42, "data is a int: give a dataset name"),
    ((np.zeros((4, 8, 8), np.uint8),), "data is a tuple of 1"),
    ("no-such-dataset.h5", "no such dataset file"),
    ((np.zeros((4, 8, 8), np.int32), np.zeros(4, np.int64)), "x is int32: give uint8"),
    ((np.full((4, 8, 8), 3.0), np.zeros(4, np.int64)), "float images must be pixel values 0…1"),
    ((np.zeros((4, 8, 8), np.uint8), np.zeros(4)), "labels must be integer class indices"),
    ((np.zeros((4, 8, 8), np.uint8), np.full(4, -1)), "holds the label -1"),
    ((np.zeros((4, 8, 8), np.uint8), np.zeros(3, np.int64)), "4 images but 3 labels"),
    ((np.zeros((4, 9, 9), np.uint8), np.zeros(4, np.int64)), "images are 9x9x1"),
])
def test_bad_data_gives_one_library_error(data, message: str) -> None:
    net = numbacnn.Network.from_spec(SPEC)
    with pytest.raises(DataError, match=re.escape(message)):
        net.fit(data, epochs=1, verbose=0)


def test_bad_settings_and_untrained_networks_give_training_errors() -> None:
    net = numbacnn.Network.from_spec(SPEC)
    with pytest.raises(TrainingError, match="no setting 'val_split'; use validation_split"):
        net.fit(arrays(), val_split=0.2)
    with pytest.raises(TrainingError, match="batch_size must be ≥ 1, got 0"):
        net.fit(arrays(), batch_size=0)
    with pytest.raises(TrainingError, match="verbose must be 0, 1 or 2"):
        net.fit(arrays(), verbose=3)
    with pytest.raises(TrainingError, match="has not been trained"):
        net.evaluate(arrays())


def test_verbose_prints_one_line_per_epoch_and_0_prints_nothing(capsys) -> None:
    net = numbacnn.Network.from_spec(SPEC)
    net.fit(arrays(), epochs=2, batch_size=16, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["epoch", "1/2"], ["epoch", "2/2"]]
    net.fit(arrays(), epochs=2, batch_size=16, verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def readme_python_example() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_example_prints_the_same_result_twice(tmp_path: Path) -> None:
    code = readme_python_example()
    assert "fashion-mnist-mini" in code and "seed=" in code and 'device="auto"' in code
    # on the CPU, where the same seed gives the same numbers (the library reads no
    # NUMBACNN_DEVICE: the network owns its device)
    code = code.replace('device="auto"', 'device="cpu"')
    outputs = []
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=tmp_path, timeout=600, env={"NUMBACNN_DEVICE": "cpu",
                                                             **_environment()})
        assert run.returncode == 0, run.stderr[-2000:]
        outputs.append(run.stdout.strip().splitlines()[-1])
    assert re.search(r"accuracy \d+\.\d\d%", outputs[0]), outputs[0]
    assert outputs[0] == outputs[1]
    assert not math.isnan(float(re.search(r"loss (\S+)", outputs[0]).group(1)))


def _environment() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "NUMBACNN_DEVICE"}


def test_a_failed_fit_leaves_no_stale_normalization_but_bad_settings_change_nothing() -> None:
    net, _ = fitted()
    with pytest.raises(TrainingError, match="lr must be"):
        net.fit(arrays(), lr=-1.0, verbose=0)
    assert net.info is not None  # refused before anything was touched
    with pytest.raises(TrainingError, match="loss became|weights became|validation loss"):
        net.fit(arrays(), epochs=1, batch_size=16, lr=1e30, verbose=0)
    assert net.info is None
