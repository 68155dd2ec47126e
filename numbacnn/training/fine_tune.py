"""Training that starts from a model's weights (Caffe's ``caffe train --weights``):
``numbacnn train --weights MODEL.h5``, and ``fit()`` of a ``numbacnn.load_model`` network.

The network is the model file's (its layers and weights, e.g. one ``numbacnn import``
wrote); a spec given as well must describe exactly those layers, else the first layer
that differs is named. The model's normalization (mean, std) and class names are kept,
so the data must have its input size and number of classes. Everything else is a new
run: fresh optimizer state (no momentum), the lr schedule from its first epoch, the
history from epoch 1, the seed for the split, shuffling, augmentation and dropout.

    trainer = weights_trainer("imported.h5", TrainSettings(data="mine.npz", epochs=3),
                              out="tuned.h5")
    trainer.run()
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from numbacnn.errors import DataError, TrainingError
from numbacnn.geometry import volume
from numbacnn.io.dataset_files import load_dataset
from numbacnn.io.datasets import Dataset
from numbacnn.io.model_file import ModelInfo, check_model_writable, load_model
from numbacnn.network import Network
from numbacnn.training.settings import TrainSettings
from numbacnn.training.trainer import Trainer


def weights_trainer(weights: str | Path, settings: TrainSettings, spec: str | None = None,
                    out: str | Path | None = None, dataset: Dataset | None = None,
                    device: str = "auto", **callbacks: Any) -> Trainer:
    """A new run of ``settings`` that starts from the network and weights of the model
    file ``weights``; ``spec`` (optional) must describe the same layers. The run's
    ``settings.spec`` becomes the model's spec text."""
    settings = dataclasses.replace(settings).checked()
    if out is not None:
        check_model_writable(Path(out))  # before the model and the data are loaded
    net, info = load_model(weights, device)
    if spec is not None:
        check_same_layers(spec, net, weights)
    net.require_scores()
    settings.spec = info.spec_text or spec_text_of(net)
    if dataset is None:
        dataset = load_dataset(settings.data)
    check_data(net, info, dataset, settings.data, f"the model {weights}")
    net.seed, net.step = settings.seed, 0  # dropout's streams as in a new run
    return Trainer(net, dataset, settings, out=out, weights=info, **callbacks)


def check_same_layers(spec: str, net: Network, weights: str | Path) -> None:
    """TrainingError naming the first layer (or the input) where ``spec`` and the model
    file's network differ."""
    wanted = Network.from_spec(spec, device="cpu")
    where = f"the spec does not describe the network of {weights}"
    if tuple(wanted.input_shape or ()) != tuple(net.input_shape or ()):
        raise TrainingError(f"{where}: its input is {volume(wanted.input_shape or ())} but the "
                            f"model's is {volume(net.input_shape or ())}; leave the spec out "
                            "to train the model's own network", field="spec")
    ours, theirs = ([layer.describe() for layer in n.layers] for n in (wanted, net))
    for index in range(max(len(ours), len(theirs))):
        a = ours[index] if index < len(ours) else "nothing"
        b = theirs[index] if index < len(theirs) else "nothing"
        if a != b:
            raise TrainingError(f"{where}: layer {index + 1} is `{a}` in the spec but `{b}` in "
                                "the model; leave the spec out to train the model's own "
                                "network", field="spec")


def check_data(net: Network, info: ModelInfo, dataset: Dataset, source: str,
               model: str) -> None:
    """DataError unless the dataset's images and classes are those of ``model`` (its
    name in the message: 'the model m.h5')."""
    if tuple(dataset.input_shape) != tuple(net.input_shape or ()):
        raise DataError(f"{source}: images are {volume(dataset.input_shape)} but {model} "
                        f"takes {volume(net.input_shape or ())}; train it on data "
                        "of its input size", field="data")
    K = len(info.class_names)
    top = max(int(dataset.y_train.max(initial=0)), int(dataset.y_test.max(initial=0)))
    if dataset.num_classes != K or top >= K:
        raise DataError(f"{source}: the dataset has {max(dataset.num_classes, top + 1)} "
                        f"classes but {model} has {K}; train it on data with "
                        "its classes", field="data")


def spec_text_of(net: Network) -> str:
    """The spec text of a network whose model file stored none."""
    from numbacnn.spec import format_input

    lines = [f"input {format_input(net.input_shape)}"] if net.input_shape else []
    return "\n".join([*lines, *(layer.describe() for layer in net.layers)]) + "\n"
