"""Training runs side by side: what differs between them, and one row of results each.

The one place that derives "what differs": :func:`differences` compares the runs' stored
settings (``training/@settings``) and specs (the canonical spec text), and
:func:`run_labels` turns that into a short label per run (``activation=tanh``,
``init=xavier``, ``lr=0.1``; the differing layer lines when the specs differ in more
than their activations; the file name when nothing differs). ``numbacnn compare``
prints :func:`compare_runs`' rows; ``numbacnn plot curves A.h5 B.h5 ...`` labels its
lines with the same labels.

    runs = [(path, *load_model(path)) for path in paths]
    labels = run_labels([info for _, _, info in runs], [path for path, _, _ in runs])
    rows = compare_runs(runs)          # label, test accuracy, final losses, epochs, time
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from numbacnn.errors import DataError
from numbacnn.io.dataset_files import load_dataset
from numbacnn.io.datasets import Dataset
from numbacnn.io.model_file import ModelInfo
from numbacnn.layers.syntax import ACTIVATIONS
from numbacnn.network import Network
from numbacnn.tools.scoring import EVAL_BATCH, score_dataset, trained_on

ACTIVATION = "activation"  # the name of a difference in the activation layers alone
LAYERS = "layers"  # the name of a difference in other layer lines


def _shown(value: object) -> str:
    """A setting's value as the CLI takes it: 0.1, sgd, on/off, all (a None limit)."""
    if value is None:
        return "all"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _spec_lines(info: ModelInfo) -> list[str]:
    return [line.strip() for line in info.spec_text.strip().splitlines() if line.strip()]


def _setting_differences(infos: Sequence[ModelInfo]) -> list[dict[str, str]]:
    """Per run, {setting: value} of the settings that are not the same in every run
    (the spec is compared as layers). Runs without stored settings (a model saved by the
    library) have none; the keys compared are those every run with settings stores."""
    stored = [info.settings for info in infos if info.settings]
    if not stored:
        return [{} for _ in infos]
    keys = sorted(set.intersection(*(set(s) for s in stored)) - {"spec"})
    differing = [key for key in keys if len({_shown(s[key]) for s in stored}) > 1]
    return [{key: _shown(info.settings[key]) for key in differing} if info.settings else {}
            for info in infos]


def _layer_differences(infos: Sequence[ModelInfo]) -> list[dict[str, str]]:
    """Per run, {"activation": kind} when the specs differ only in activation layers (the
    same kind within a run), else {"layers": its differing layer lines}; {} when every
    spec is the same."""
    specs = [_spec_lines(info) for info in infos]
    if len({tuple(s) for s in specs}) <= 1:
        return [{} for _ in specs]
    if len({len(s) for s in specs}) == 1:
        positions = [i for i in range(len(specs[0])) if len({s[i] for s in specs}) > 1]
        lines = [{s[i] for i in positions} for s in specs]  # e.g. {"tanh"}: one per run
        if all(len(k) == 1 and next(iter(k)).split()[0] in ACTIVATIONS for k in lines):
            return [{ACTIVATION: next(iter(k))} for k in lines]
        return [{LAYERS: "; ".join(s[i] for i in positions)} for s in specs]
    common = Counter(specs[0])
    for s in specs[1:]:
        common &= Counter(s)
    result = []
    for s in specs:
        own = Counter(s) - common
        if own:
            result.append({LAYERS: "; ".join(line for line in s if own.pop(line, 0))})
        else:  # its layers are in every other run: say what it lacks
            others = Counter(line for t in specs if t is not s for line in t) - common
            result.append({LAYERS: "without " + "; ".join(others)})
    return result


def differences(infos: Sequence[ModelInfo]) -> list[dict[str, str]]:
    """Per run, what differs between the runs: {setting or "activation"/"layers": value
    shown}, the layers first, then the settings in name order; all {} for one run."""
    if len(infos) < 2:
        return [{} for _ in infos]
    return [{**layers, **settings} for layers, settings in
            zip(_layer_differences(infos), _setting_differences(infos), strict=True)]


def label(difference: dict[str, str]) -> str:
    """``activation=tanh, lr=0.1``: a run's differences as one label ('' for none)."""
    return ", ".join(value if key == LAYERS else f"{key}={value}"
                     for key, value in difference.items())


def run_labels(infos: Sequence[ModelInfo], paths: Sequence[str | Path]) -> list[str]:
    """A label per run saying what sets it apart (:func:`differences`); the file name
    when nothing does, and the file name added where two labels would be the same."""
    labels = [label(d) for d in differences(infos)]
    names = [Path(p).name for p in paths]
    counts = Counter(labels)
    return [name if not text else f"{text} ({name})" if counts[text] > 1 else text
            for text, name in zip(labels, names, strict=True)]


@dataclass
class RunRow:
    """One run in a comparison. Losses are mean cross-entropy of the last finished epoch
    (NaN when unknown: no history, no validation split); ``test_accuracy`` (0…1) is
    computed on ``test_source``'s test split with the last epoch's weights (None when
    there is none: ``note`` says why); ``seconds``: the epochs' wall-clock time summed."""

    path: Path
    label: str
    differences: dict[str, str]
    epochs: int
    train_loss: float
    val_loss: float
    seconds: float
    test_accuracy: float | None = None
    test_source: str = ""
    note: str = ""
    settings: dict[str, object] = field(default_factory=dict)


def _last(info: ModelInfo, key: str) -> float:
    values = info.history.get(key, ())
    return float(values[-1]) if len(values) else math.nan


def compare_runs(runs: Sequence[tuple[str | Path, Network, ModelInfo]],
                 data: str | None = None, batch_size: int = EVAL_BATCH,
                 test_accuracy: bool = True) -> list[RunRow]:
    """One :class:`RunRow` per run (path, network, info), in order. The test accuracy is
    scored as ``numbacnn evaluate`` does, on the test split of ``data`` (default: the
    dataset each run was trained on, loaded once per source); a dataset that cannot be
    loaded, or has no test images, leaves it None with a ``note``."""
    infos = [info for _, _, info in runs]
    labels = run_labels(infos, [path for path, _, _ in runs])
    datasets: dict[str, Dataset | str] = {}  # source → dataset, or why it cannot be used
    rows = []
    for (path, net, info), text, difference in zip(runs, labels, differences(infos),
                                                   strict=True):
        history = info.history.get("seconds", ())
        row = RunRow(Path(path), text, difference, len(info.history.get("train_loss", ())),
                     _last(info, "train_loss"), _last(info, "val_loss"),
                     float(sum(history)), settings=dict(info.settings))
        if test_accuracy:
            _score_test(row, net, info, data, datasets, batch_size)
        rows.append(row)
    return rows


def _score_test(row: RunRow, net: Network, info: ModelInfo, data: str | None,
                datasets: dict[str, Dataset | str], batch_size: int) -> None:
    try:
        source = data or trained_on(info)
    except DataError:
        row.note = "the file does not say what data it was trained on"
        return
    if source not in datasets:
        try:
            datasets[source] = load_dataset(source)
        except DataError as exc:
            if data is not None:
                raise  # the dataset asked for must be there
            datasets[source] = str(exc)
    dataset = datasets[source]
    if isinstance(dataset, str):
        row.note = dataset
    elif len(dataset.y_test) == 0:
        row.note = f"{source} has no test images"
    else:
        row.test_source = source
        row.test_accuracy = score_dataset([(net, info)], dataset, "test", batch_size,
                                          where=source).accuracy
