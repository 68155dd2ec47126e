"""HDF5 model files: a trained network with everything needed to use it or train it on.

A model file holds the architecture (one group per layer with its kind, hyperparameters
and float32 weights), the class names and the input normalization (applied again at
predict time), and, for checkpoints, the optimizer state, the training state (epoch,
step, RNG states, settings) and the per-epoch history. The layout (docs/hdf5.md,
"Model files") is plain HDF5 that h5py alone can read.

    save_model("model.h5", net, info)        # atomic: temp file + fsync + rename
    net, info = load_model("model.h5")       # ModelFileError naming the file and the fix
    probabilities = predict_images(net, info, images_uint8)

Every problem a user can cause (a missing, truncated or corrupt file, a file that is not
a model, an unwritable path, a full disk) raises :class:`ModelFileError` with one line.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from numbacnn import __version__
from numbacnn.atomic_file import replace_atomically
from numbacnn.data import normalize
from numbacnn.errors import DataError, ModelFileError, NumbacnnError
from numbacnn.network import Network
from numbacnn.optim import SGD, Adam

FORMAT = "numbacnn-model"
FORMAT_VERSION = 1
HISTORY_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
_LAYER_ATTRS = ("index", "kind", "init")  # layer-group attributes that are not hyperparameters
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass
class OptimizerState:
    """An optimizer's name, hyperparameters, update count ``t`` and buffers.

    ``slots``: {slot: {parameter name: host float32 array}}, slot "v" for SGD momentum,
    "m" and "v" for Adam's moments; parameter names as in ``Network.parameters()``
    ("0.W", "0.b", ...).
    """

    name: str
    hyperparameters: dict[str, float]
    t: int = 0
    slots: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def capture(cls, optimizer: SGD) -> OptimizerState:
        """Host copy of an SGD or Adam optimizer's state."""
        if isinstance(optimizer, Adam):
            hyper = {"beta1": optimizer.beta1, "beta2": optimizer.beta2, "eps": optimizer.eps,
                     "weight_decay": optimizer.weight_decay}
        else:
            hyper = {"momentum": optimizer.momentum, "weight_decay": optimizer.weight_decay}
        return cls(optimizer.name, hyper, optimizer.t, optimizer.state())

    def restore(self) -> SGD:
        """A new optimizer of this kind holding these buffers (on the current device)."""
        kinds = {"sgd": SGD, "adam": Adam}
        if self.name not in kinds:
            raise ModelFileError(f"optimizer {self.name!r} is unknown: expected sgd or adam")
        optimizer = kinds[self.name](**self.hyperparameters)
        optimizer.load_state(self.slots, self.t)
        return optimizer


@dataclass
class TrainingState:
    """Where training stands, enough to resume it exactly.

    ``epoch``: finished epochs; ``batch``: batches finished in the unfinished epoch (0
    at an epoch boundary, > 0 after an interrupt); ``step``: ``Network.step`` (training
    forward passes, seeds dropout); ``lr``: rate of the coming epoch;
    ``best_accuracy``/``best_epoch``: best monitored accuracy (0…1) and its epoch (−1
    before any); ``settings``: the run's options; ``rng_states``: numpy
    ``bit_generator.state`` dicts by role; ``schedule``: the lr schedule's state;
    ``partial_epoch``: running sums of the unfinished epoch.
    """

    epoch: int = 0
    batch: int = 0
    step: int = 0
    lr: float = 0.0
    best_accuracy: float = -1.0
    best_epoch: int = -1
    settings: dict[str, Any] = field(default_factory=dict)
    rng_states: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    partial_epoch: dict[str, float] = field(default_factory=dict)


@dataclass
class ModelInfo:
    """Everything in a model file besides the weights.

    ``input_shape``: (C, H, W); ``mean``/``std``: float32 (C,) normalization in units of
    pixel value / 255; ``history``: {key: float64 (epochs,)} for HISTORY_KEYS.
    """

    spec_text: str
    input_shape: tuple[int, int, int]
    class_names: list[str]
    mean: np.ndarray
    std: np.ndarray
    optimizer: OptimizerState | None = None
    training: TrainingState | None = None
    history: dict[str, np.ndarray] = field(default_factory=dict)
    numbacnn_version: str = __version__
    path: Path | None = None

    def normalize(self, images: np.ndarray, where: str = "images") -> np.ndarray:
        """uint8 N×C×H×W pixels → float32 network input, after checking the image shape."""
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            got = (f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray)
                   else type(images).__name__)
            raise DataError(f"{where}: images are {got}; expected raw uint8 pixels 0-255, "
                            "N x C x H x W (the model normalizes them itself)")
        if tuple(images.shape[1:]) != tuple(self.input_shape):
            raise DataError(f"{where}: images are {_chw(images.shape[1:])} (C x H x W) but the "
                            f"model takes {_chw(self.input_shape)}; use images of that shape")
        return normalize(images, self.mean, self.std)


def _chw(shape: Sequence[int]) -> str:
    return " x ".join(str(int(d)) for d in shape)


def best_path(out: str | Path) -> Path:
    """Where the best model on validation is kept beside ``out``: model.h5 → model.best.h5."""
    out = Path(out)
    return out.with_name(f"{out.stem}.best{out.suffix}")


# ----------------------------------------------------------------------------- writing


def check_writable(path: str | Path, option: str = "--out") -> Path:
    """Raise ModelFileError unless a model file can be written at ``path`` (checked up front
    by creating and removing a probe file in its directory)."""
    path = Path(path)
    directory = path.parent
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory; give {option} a file name such as "
                             f"{path / 'model.h5'}")
    if not directory.is_dir():
        raise ModelFileError(f"{path}: directory {directory} does not exist; create it "
                             f"(mkdir -p {directory}) or choose another {option}")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.probe", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot write in {directory} ({exc.strerror}); "
                             f"choose another {option}") from None
    return path


def save_model(path: str | Path, net: Network, info: ModelInfo) -> None:
    """Write ``net``'s layers and weights and ``info`` to ``path`` atomically.

    The file is written under a temporary name in the same directory, fsynced and renamed
    over ``path``; on any error the temporary file is removed and an existing ``path`` is
    left untouched (OSError, e.g. a full disk, becomes ModelFileError).
    """
    _atomic_write(Path(path), lambda tmp: _write_model(tmp, net, info))


def copy_model(source: str | Path, target: str | Path) -> None:
    """Copy the model file ``source`` to ``target`` atomically (for the best model)."""
    _atomic_write(Path(target), lambda tmp: shutil.copyfile(source, tmp))


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    check_writable(path)
    replace_atomically(path, write, ModelFileError, "model")


def _layer_names(net: Network) -> list[str]:
    """Group names in layer order: 00_conv, 01_relu, ... (zero-padded, so they sort)."""
    width = max(2, len(str(len(net.layers) - 1)))
    return [f"{i:0{width}d}_{layer.kind}" for i, layer in enumerate(net.layers)]


def _param_group(names: list[str], param: str) -> tuple[str, str]:
    """"3.W" → ("03_fc", "W")."""
    index, key = param.split(".", 1)
    return names[int(index)], key


def _write_array(group: h5py.Group, name: str, array: Any) -> None:
    from numbacnn.device import to_host

    data = np.ascontiguousarray(to_host(array), dtype=np.float32)
    group.create_dataset(name, data=data, fletcher32=True)


def _write_model(path: Path, net: Network, info: ModelInfo) -> None:
    if net.input_shape is None:
        raise ModelFileError(f"{path}: the network has no input shape; build it before saving")
    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = np.int64(FORMAT_VERSION)
        f.attrs["numbacnn_version"] = __version__
        f.attrs["spec"] = info.spec_text or net.spec_text or ""
        f.attrs["input_shape"] = np.asarray(net.input_shape, np.int64)
        f.attrs.create("class_names", np.array(info.class_names, dtype=object),
                       dtype=h5py.string_dtype())
        f.attrs["normalization_mean"] = np.asarray(info.mean, np.float32).reshape(-1)
        f.attrs["normalization_std"] = np.asarray(info.std, np.float32).reshape(-1)
        names = _layer_names(net)
        layers = f.create_group("layers")
        for index, (name, layer) in enumerate(zip(names, net.layers, strict=True)):
            group = layers.create_group(name)
            group.attrs["index"] = np.int64(index)
            group.attrs["kind"] = layer.kind
            group.attrs["init"] = layer.init or ""
            for key, value in layer.hyperparameters().items():
                group.attrs[key] = value
            for key, value in layer.params.items():
                _write_array(group, key, value)
        if info.optimizer is not None:
            _write_optimizer(f.create_group("optimizer"), info.optimizer, names)
        if info.training is not None:
            _write_training(f.create_group("training"), info.training)
        history = f.create_group("history")
        for key in HISTORY_KEYS:
            history.create_dataset(key, data=np.asarray(info.history.get(key, []), np.float64))


def _write_optimizer(group: h5py.Group, state: OptimizerState, names: list[str]) -> None:
    group.attrs["name"] = state.name
    group.attrs["t"] = np.int64(state.t)
    for key, value in state.hyperparameters.items():
        group.attrs[key] = float(value)
    for slot, table in state.slots.items():
        slot_group = group.create_group(slot)
        for param, array in table.items():
            layer_name, key = _param_group(names, param)
            _write_array(slot_group.require_group(layer_name), key, array)


def _write_training(group: h5py.Group, state: TrainingState) -> None:
    for key in ("epoch", "batch", "step", "best_epoch"):
        group.attrs[key] = np.int64(getattr(state, key))
    group.attrs["lr"] = float(state.lr)
    group.attrs["best_accuracy"] = float(state.best_accuracy)
    for key in ("settings", "rng_states", "schedule", "partial_epoch"):
        group.attrs[key] = json.dumps(getattr(state, key), sort_keys=True)


# ----------------------------------------------------------------------------- reading


class _Damaged(Exception):
    """Internal: a structural problem found while reading, turned into ModelFileError."""


def load_model(path: str | Path) -> tuple[Network, ModelInfo]:
    """Read a model file: the network (weights on the current device) and its ModelInfo.

    Raises ModelFileError for a missing file, a file that is not HDF5, a truncated or
    corrupt file, a file of another format, or weights whose shapes do not fit the layers.
    """
    path = Path(path)
    _check_signature(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ModelFileError(f"{path}: not a readable HDF5 file ({_first_line(exc)}); it is "
                             "truncated or corrupt: train it again or use another copy") from None
    try:
        with f:
            _check_format(f, path)
            return _read_model(f, path)
    except _Damaged as exc:
        raise ModelFileError(f"{path}: {exc}; the file is damaged or was not written by "
                             "numbacnn: train it again or use another copy") from None
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: cannot read the model ({_first_line(exc)}); the file is "
                             "truncated or corrupt: train it again or use another copy") from None


def _check_signature(path: Path) -> None:
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file; check the path, or train one with "
                             f"numbacnn train --out {path}")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory, not a model file; give the .h5 file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_HDF5_SIGNATURE))
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc.strerror}); "
                             "check its permissions") from None
    if head != _HDF5_SIGNATURE:
        raise ModelFileError(f"{path}: not an HDF5 file (it does not start with the HDF5 "
                             "signature); give a model written by numbacnn train")


def _check_format(f: h5py.File, path: Path) -> None:
    fmt = _text(f.attrs.get("format", ""))
    if fmt != FORMAT:
        hint = (" (this is a dataset file: pass it with --data)" if fmt == "numbacnn-dataset"
                else "")
        raise ModelFileError(f"{path}: format attribute is {fmt!r}, expected {FORMAT!r}{hint}; "
                             "give a model written by numbacnn train")
    version = int(f.attrs.get("format_version", 0))
    if version != FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format_version {version} is not supported (this "
                             f"numbacnn reads version {FORMAT_VERSION}); upgrade numbacnn or "
                             "train the model again")


def _read_model(f: h5py.File, path: Path) -> tuple[Network, ModelInfo]:
    for name in ("input_shape", "class_names", "normalization_mean", "normalization_std"):
        if name not in f.attrs:
            raise _Damaged(f"root attribute {name} is missing")
    if "layers" not in f:
        raise _Damaged("group layers is missing")
    net, names = _read_network(f, path)
    info = ModelInfo(
        spec_text=_text(f.attrs.get("spec", "")),
        input_shape=net.input_shape,  # type: ignore[arg-type]
        class_names=[_text(n) for n in np.asarray(f.attrs["class_names"]).reshape(-1)],
        mean=np.asarray(f.attrs["normalization_mean"], np.float32).reshape(-1),
        std=np.asarray(f.attrs["normalization_std"], np.float32).reshape(-1),
        numbacnn_version=_text(f.attrs.get("numbacnn_version", "")),
        path=path,
    )
    C = info.input_shape[0]
    if len(info.mean) != C or len(info.std) != C or not np.all(info.std > 0):
        raise _Damaged(f"the normalization needs {C} means and {C} positive stds")
    if len(info.class_names) != net.num_classes:
        raise _Damaged(f"{len(info.class_names)} class names for {net.num_classes} outputs")
    if "optimizer" in f:
        info.optimizer = _read_optimizer(f["optimizer"], names, net)
    if "training" in f:
        info.training = _read_training(f["training"])
        net.step = info.training.step
        net.seed = int(info.training.settings.get("seed", 0))
    if "history" in f:
        info.history = {key: np.asarray(f["history"][key][()], np.float64)
                        for key in HISTORY_KEYS if key in f["history"]}
    return net, info


def _read_network(f: h5py.File, path: Path) -> tuple[Network, list[str]]:
    from numbacnn.layers import LAYERS

    groups = sorted(f["layers"].values(), key=lambda g: int(g.attrs.get("index", -1)))
    layers = []
    for group in groups:
        kind = _text(group.attrs.get("kind", ""))
        if kind not in LAYERS:
            raise _Damaged(f"{group.name} has unknown layer kind {kind!r}")
        hyper = {k: _plain(v) for k, v in group.attrs.items() if k not in _LAYER_ATTRS}
        try:
            layer = LAYERS[kind](**hyper)
        except (TypeError, NumbacnnError) as exc:
            raise _Damaged(f"{group.name}: bad hyperparameters {hyper} ({exc})") from None
        layer.init = _text(group.attrs.get("init", "")) or None
        layers.append(layer)
    input_shape = tuple(int(d) for d in np.asarray(f.attrs["input_shape"]).reshape(-1))
    if len(input_shape) != 3:
        raise _Damaged(f"input_shape {input_shape} is not (C, H, W)")
    try:
        net = Network(layers, input_shape=input_shape,  # type: ignore[arg-type]
                      spec_text=_text(f.attrs.get("spec", "")) or None)
    except NumbacnnError as exc:
        raise _Damaged(f"the layers do not fit together ({exc})") from None
    names = [group.name.rsplit("/", 1)[-1] for group in groups]
    B = net.backend()
    for group, layer in zip(groups, net.layers, strict=True):
        expected = layer.param_shapes()
        stored = {k for k, v in group.items() if isinstance(v, h5py.Dataset)}
        if stored != set(expected):
            raise _Damaged(f"{group.name} holds {sorted(stored) or 'no arrays'} but "
                           f"{layer.describe()} needs {sorted(expected) or 'none'}")
        for key, shape in expected.items():
            array = group[key][()]
            if array.shape != tuple(shape):
                raise _Damaged(f"{group.name}/{key} has shape {array.shape} but "
                               f"{layer.describe()} needs {tuple(shape)}")
            layer.params[key] = B.to_device(np.ascontiguousarray(array, np.float32))
            layer.grads[key] = B.zeros(shape)
    return net, names


def _read_optimizer(group: h5py.Group, names: list[str], net: Network) -> OptimizerState:
    shapes = {name: tuple(w.shape) for name, w, _ in net.parameters()}
    slots: dict[str, dict[str, np.ndarray]] = {}
    for slot, slot_group in group.items():
        table = slots.setdefault(slot, {})
        for layer_name, layer_group in slot_group.items():
            if layer_name not in names:
                raise _Damaged(f"{layer_group.name} names no layer")
            for key, dataset in layer_group.items():
                param = f"{names.index(layer_name)}.{key}"
                array = np.asarray(dataset[()], np.float32)
                if shapes.get(param) != array.shape:
                    raise _Damaged(f"{dataset.name} has shape {array.shape} but the parameter "
                                   f"has {shapes.get(param)}")
                table[param] = array
    hyper = {k: float(v) for k, v in group.attrs.items() if k not in ("name", "t")}
    return OptimizerState(_text(group.attrs["name"]), hyper, int(group.attrs["t"]), slots)


def _read_training(group: h5py.Group) -> TrainingState:
    state = TrainingState()
    for key in ("epoch", "batch", "step", "best_epoch"):
        setattr(state, key, int(group.attrs[key]))
    state.lr = float(group.attrs["lr"])
    state.best_accuracy = float(group.attrs["best_accuracy"])
    for key in ("settings", "rng_states", "schedule", "partial_epoch"):
        setattr(state, key, json.loads(_text(group.attrs[key])))
    return state


def _plain(value: Any) -> Any:
    """An HDF5 attribute value as a Python int, float or str."""
    if isinstance(value, np.generic):
        return value.item()
    return _text(value)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# ----------------------------------------------------------------------------- using


def predict_images(net: Network, info: ModelInfo, images: np.ndarray, batch_size: int = 256,
                   where: str = "images") -> np.ndarray:
    """Class probabilities float32 N×K for raw uint8 images N×C×H×W (normalized with the
    model's stored mean and std)."""
    return net.predict_proba(info.normalize(images, where), batch_size)


def ensemble_proba(models: Sequence[tuple[Network, ModelInfo]], images: np.ndarray,
                   batch_size: int = 256, where: str = "images") -> np.ndarray:
    """The mean of the models' class probabilities (float32 N×K): an ensemble.

    The models must share input shape and class names.
    """
    if not models:
        raise ModelFileError("an ensemble needs at least one model")
    first = models[0][1]
    for _, info in models[1:]:
        if info.class_names != first.class_names or info.input_shape != first.input_shape:
            raise ModelFileError(f"{info.path}: its classes or input shape differ from "
                                 f"{first.path}'s; ensemble only models of the same task")
    total = np.zeros((len(images), len(first.class_names)), np.float64)
    for net, info in models:
        total += predict_images(net, info, images, batch_size, where)
    return (total / len(models)).astype(np.float32)
