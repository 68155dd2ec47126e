"""HDF5 model files: a trained network with everything needed to use it or train it on.

A model file holds the architecture (one group per layer with its kind, hyperparameters
and float32 weights, and its non-trainable state), the class names and the input
normalization (applied again at predict time), the per-epoch history and, in
checkpoints, the run's settings and two groups the training floor owns: ``optimizer``
and ``training`` (:mod:`numbacnn.training.checkpoint` writes and reads them through the
:class:`CheckpointPart` protocol and this module's ``parts``). The layout
(docs/hdf5.md, "Model files") is plain HDF5 that h5py alone can read.

    save_model("model.h5", net, info)        # atomic: temp file + fsync + rename
    net, info = load_model("model.h5")       # ModelFileError naming the file and the fix

Every problem a user can cause (a missing, truncated or corrupt file, a file that is not
a model, an unwritable path, a full disk) raises :class:`ModelFileError` with one line.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import h5py
import numpy as np

from numbacnn.device import resolve_device
from numbacnn.errors import DataError, ModelFileError, NotAModelError, NumbacnnError
from numbacnn.geometry import VOLUME_AXES, volume
from numbacnn.init import INITIALIZERS
from numbacnn.io.atomic_file import check_writable, hdf5_bytes, replace_atomically
from numbacnn.io.datasets import normalize
from numbacnn.io.hdf5 import (
    SIGNATURE,
    Damaged,
    first_line,
    float_vector,
    group,
    int_attr,
    is_int,
    is_real,
    json_object_attr,
    read_floats,
    shown,
    string_attr,
    strings,
    text,
    write_floats,
)
from numbacnn.io.step_history import StepHistory, read_step_history, write_step_history
from numbacnn.limits import MAX_INT, array_bytes, check_memory, check_regular_file
from numbacnn.network import Network
from numbacnn.version import __version__

FORMAT = "numbacnn-model"
FORMAT_VERSION = 1
HISTORY_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
STATE_GROUP = "state"  # layers/NN_kind/state/KEY: a layer's non-trainable arrays
CHECKPOINT_GROUPS = ("optimizer", "training")  # written and read by the training floor
_LAYER_ATTRS = ("index", "kind", "init")  # layer-group attributes that are not hyperparameters


class CheckpointPart(Protocol):
    """A checkpoint's optimizer or training state: it writes itself into its group
    (``layer_names``: the layers' group names, 00_conv, 01_relu, ..., to name arrays by)."""

    def write(self, group: h5py.Group, layer_names: Sequence[str]) -> None: ...


# Reads a checkpoint part from its group (raising hdf5.Damaged for a structural problem):
# (group, the network read so far, the layers' group names) -> the part
PartReader = Callable[[h5py.Group, Network, Sequence[str]], Any]


@dataclass
class ModelInfo:
    """Everything in a model file besides the weights.

    ``input_shape``: (C, H, W); ``mean``/``std``: float32 (C,) normalization in units of
    pixel value / 255; ``optimizer``/``training``: the checkpoint's parts (see
    :mod:`numbacnn.training.checkpoint`; None in a plain model, and as read by
    :func:`load_model` without ``parts``); ``settings``: the run's options as a plain
    JSON mapping (saved with ``training``); ``history``: {key: float64 (epochs,)} for
    HISTORY_KEYS; ``steps``: the training loss logged within epochs
    (:mod:`numbacnn.io.step_history`; empty for a file that has none).
    """

    spec_text: str
    input_shape: tuple[int, int, int]
    class_names: list[str]
    mean: np.ndarray
    std: np.ndarray
    optimizer: Any = None  # a CheckpointPart: numbacnn.training.checkpoint.OptimizerState
    training: Any = None  # a CheckpointPart: numbacnn.training.checkpoint.TrainingState
    settings: dict[str, Any] = field(default_factory=dict)
    history: dict[str, np.ndarray] = field(default_factory=dict)
    steps: StepHistory = field(default_factory=StepHistory)
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
            raise DataError(f"{where}: images are {volume(images.shape[1:])} ({VOLUME_AXES}) but "
                            f"the model takes {volume(self.input_shape)}; use images of that "
                            "shape")
        return normalize(images, self.mean, self.std)


def best_path(out: str | Path) -> Path:
    """Where the best model on validation is kept beside ``out``: model.h5 → model.best.h5."""
    out = Path(out)
    return out.with_name(f"{out.stem}.best{out.suffix}")


# ----------------------------------------------------------------------------- writing


def save_model(path: str | Path, net: Network, info: ModelInfo) -> None:
    """Write ``net``'s layers and weights and ``info`` to ``path`` atomically.

    The HDF5 file is built in memory, written under a temporary name in the same
    directory, fsynced and renamed over ``path``; on any error (a full disk, Ctrl-C) the
    temporary file is removed and an existing ``path`` is left untouched (OSError
    becomes ModelFileError).
    """
    path = Path(path)
    if net.input_shape is None:
        raise ModelFileError(f"{path}: the network has no input shape; build it before saving")
    _atomic_write(path, lambda fh: fh.write(hdf5_bytes(lambda f: _write_model(f, net, info))))


def copy_model(source: str | Path, target: str | Path) -> None:
    """Copy the model file ``source`` to ``target`` atomically (for the best model)."""
    def copy(fh: BinaryIO) -> None:
        with open(source, "rb") as src:
            shutil.copyfileobj(src, fh)

    _atomic_write(Path(target), copy)


def check_model_writable(path: str | Path, field: str = "out") -> Path:
    """ModelFileError unless a model file can be written at ``path`` (see
    :func:`numbacnn.io.atomic_file.check_writable`)."""
    return check_writable(path, field, ModelFileError, "model.h5")


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    check_model_writable(path)
    replace_atomically(path, write, ModelFileError, "model")


def layer_names(net: Network) -> list[str]:
    """Group names in layer order: 00_conv, 01_relu, ... (zero-padded, so they sort)."""
    width = max(2, len(str(len(net.layers) - 1)))
    return [f"{i:0{width}d}_{layer.kind}" for i, layer in enumerate(net.layers)]


def _write_model(f: h5py.File, net: Network, info: ModelInfo) -> None:
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = np.int64(FORMAT_VERSION)
    f.attrs["numbacnn_version"] = __version__
    f.attrs["spec"] = info.spec_text or net.spec_text or ""
    f.attrs["input_shape"] = np.asarray(net.input_shape, np.int64)
    f.attrs.create("class_names", np.array(info.class_names, dtype=object),
                   dtype=h5py.string_dtype())
    f.attrs["normalization_mean"] = np.asarray(info.mean, np.float32).reshape(-1)
    f.attrs["normalization_std"] = np.asarray(info.std, np.float32).reshape(-1)
    names = layer_names(net)
    layers = f.create_group("layers")
    for index, (name, layer) in enumerate(zip(names, net.layers, strict=True)):
        group_ = layers.create_group(name)
        group_.attrs["index"] = np.int64(index)
        group_.attrs["kind"] = layer.kind
        group_.attrs["init"] = layer.init or ""
        for key, value in layer.hyperparameters().items():
            group_.attrs[key] = value
        for key, value in layer.params.items():
            write_floats(group_, key, value)
        if layer.state:
            state = group_.create_group(STATE_GROUP)
            for key, value in layer.state.items():
                write_floats(state, key, value)
    for name in CHECKPOINT_GROUPS:
        part = getattr(info, name)
        if part is not None:
            part.write(f.create_group(name), names)
    if info.training is not None:
        f["training"].attrs["settings"] = json.dumps(info.settings, sort_keys=True)
    history = f.create_group("history")
    for key in HISTORY_KEYS:
        history.create_dataset(key, data=np.asarray(info.history.get(key, []), np.float64))
    write_step_history(history, info.steps)


# ----------------------------------------------------------------------------- reading


def load_model(path: str | Path, device: str = "auto",
               parts: Mapping[str, PartReader] | None = None) -> tuple[Network, ModelInfo]:
    """Read a model file: the network (weights on ``device``: "auto", "cpu" or "cuda")
    and its ModelInfo.

    ``parts``: readers of the checkpoint groups (CHECKPOINT_GROUPS) to fill
    ``info.optimizer`` and ``info.training`` with (numbacnn.training.checkpoint passes
    them); without a reader a group is left unread. Raises ModelFileError for a missing
    file, a file that is not HDF5, a truncated or corrupt file, a file of another
    format, an attribute of the wrong type or range, weights whose shapes do not fit the
    layers, and non-finite or non-float weights.
    """
    device = resolve_device(device)  # here: an unusable device is no damaged file
    path = Path(path)
    _check_signature(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ModelFileError(f"{path}: not a readable HDF5 file ({first_line(exc)}); it is "
                             "truncated or corrupt: train it again or use another copy") from None
    try:
        with f:
            _check_format(f, path)
            return _read_model(f, path, device, parts or {})
    except Damaged as exc:
        raise ModelFileError(f"{path}: {exc}; the file is damaged or was not written by "
                             "numbacnn: train it again or use another copy") from None
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: cannot read the model ({first_line(exc)}); the file is "
                             "truncated or corrupt: train it again or use another copy") from None


def _check_signature(path: Path) -> None:
    check_regular_file(path, "model file", ModelFileError,
                       "check the path, or save a trained model there")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SIGNATURE))
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc.strerror}); "
                             "check its permissions") from None
    if head != SIGNATURE:
        raise NotAModelError(f"{path}: not an HDF5 file (it does not start with the HDF5 "
                             "signature); give a model file that numbacnn saved")


def _check_format(f: h5py.File, path: Path) -> None:
    fmt = text(f.attrs.get("format", ""))
    if fmt != FORMAT:
        hint = (" (this is a dataset file: use it as data)" if fmt == "numbacnn-dataset"
                else "")
        raise NotAModelError(f"{path}: format attribute is {shown(fmt)}, expected {FORMAT!r}"
                             f"{hint}; give a model file that numbacnn saved")
    version = f.attrs.get("format_version", 0)
    if not is_int(version) or int(version) != FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format_version {shown(version)} is not supported "
                             f"(this numbacnn reads version {FORMAT_VERSION}); upgrade numbacnn "
                             "or train the model again")


def _read_model(f: h5py.File, path: Path, device: str,
                parts: Mapping[str, PartReader]) -> tuple[Network, ModelInfo]:
    for name in ("input_shape", "class_names", "normalization_mean", "normalization_std"):
        if name not in f.attrs:
            raise Damaged(f"root attribute {name} is missing")
    if not isinstance(f.get("layers", getlink=True), h5py.HardLink) or not isinstance(
            f["layers"], h5py.Group):
        raise Damaged("group layers is missing")
    net, names = _read_network(f, path, device)
    C = net.input_shape[0]  # type: ignore[index]
    info = ModelInfo(
        spec_text=string_attr(f.attrs, "spec", ""),
        input_shape=net.input_shape,  # type: ignore[arg-type]
        class_names=strings(f.attrs["class_names"], "class_names"),
        mean=float_vector(f.attrs, "normalization_mean", C),
        std=float_vector(f.attrs, "normalization_std", C),
        numbacnn_version=string_attr(f.attrs, "numbacnn_version", ""),
        path=path,
    )
    if not np.all(info.std > 0):
        raise Damaged(f"the normalization needs {C} positive stds, got {_numbers(info.std)}")
    if net.ends_in_scores and len(info.class_names) != net.num_classes:  # a volume: no K
        raise Damaged(f"{len(info.class_names)} class names for {net.num_classes} outputs")
    if "training" in f:
        info.settings = json_object_attr(group(f, "training").attrs, "settings", "training")
    for name in CHECKPOINT_GROUPS:
        if name in f and name in parts:
            setattr(info, name, parts[name](group(f, name), net, names))
    if "history" in f:
        history = group(f, "history")
        info.history = {key: read_floats(history[key], None, ndim=1, nan_ok=True)
                        for key in HISTORY_KEYS if key in history}
        lengths = {len(values) for values in info.history.values()}
        if len(lengths) > 1:
            raise Damaged("the history arrays have different lengths")
        info.steps = read_step_history(history)
    return net, info


def _read_network(f: h5py.File, path: Path, device: str) -> tuple[Network, list[str]]:
    from numbacnn.layers import LAYERS
    from numbacnn.spec import SYNTAX

    groups = [group(f["layers"], name) for name in f["layers"]]
    if not groups:
        raise Damaged("group layers holds no layers")
    indices = [int_attr(g.attrs, "index", g.name) for g in groups]
    if sorted(indices) != list(range(len(groups))):
        raise Damaged(f"the layers' index attributes are {sorted(indices)}, expected "
                       f"0…{len(groups) - 1} once each")
    groups = [g for _, g in sorted(zip(indices, groups, strict=True), key=lambda p: p[0])]
    layers = []
    for layer_group in groups:
        kind = string_attr(layer_group.attrs, "kind", "")
        if kind not in LAYERS or kind == "softmax":
            raise Damaged(f"{layer_group.name} has unknown layer kind {shown(kind)}")
        hyper = {}
        for key, value in layer_group.attrs.items():
            if key in _LAYER_ATTRS:
                continue
            option = SYNTAX[kind].option(key)
            if option is None or option.key in ("init", "activation"):
                raise Damaged(f"{layer_group.name} has unknown attribute {shown(key)}")
            hyper[key] = _option_value(option, value, f"{layer_group.name}/@{key}")
        init = string_attr(layer_group.attrs, "init", "")
        if init and init not in INITIALIZERS:
            raise Damaged(f"{layer_group.name}/@init is {shown(init)}, not one of "
                          f"{', '.join(INITIALIZERS)}")
        try:
            layer = LAYERS[kind](**hyper)
        except (TypeError, NumbacnnError) as exc:
            raise Damaged(f"{layer_group.name}: bad hyperparameters {hyper} ({exc})") from None
        missing = sorted(set(layer.hyperparameters()) - set(hyper)
                         - {o.key for o in SYNTAX[kind].options if o.quiet_default})
        if missing:  # numbacnn writes them all: a default would silently replace one
            raise Damaged(f"{layer_group.name} lacks attribute{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(missing)}")
        layer.init = init or None
        layers.append(layer)
    shape = f.attrs["input_shape"]
    if (not isinstance(shape, np.ndarray) or shape.shape != (3,) or shape.dtype.kind not in "iu"
            or shape.min() < 1 or shape.max() > MAX_INT):
        raise Damaged(f"input_shape {shown(shape)} is not three integers (C, H, W) in "
                       f"1…{MAX_INT}")
    input_shape = tuple(int(d) for d in shape)
    try:
        net = Network(layers, input_shape=input_shape,  # type: ignore[arg-type]
                      spec_text=string_attr(f.attrs, "spec", "") or None,
                      device=device)
    except NumbacnnError as exc:
        raise Damaged(f"the layers do not fit together ({exc})") from None
    names = [g.name.rsplit("/", 1)[-1] for g in groups]
    weights = sum(array_bytes(s, 4) for layer in net.layers for s in layer.param_shapes().values())
    check_memory(2 * weights, f"the weights of {path}", ModelFileError,
                 "use a machine with more memory")
    B = net.backend()
    for layer_group, layer in zip(groups, net.layers, strict=True):
        expected = layer.param_shapes()
        stored = {k for k, v in layer_group.items() if isinstance(v, h5py.Dataset)}
        has_state = (STATE_GROUP in layer_group
                     and isinstance(layer_group[STATE_GROUP], h5py.Group))
        if stored != set(expected) or len(layer_group) != len(stored) + has_state:
            raise Damaged(f"{layer_group.name} holds {sorted(layer_group) or 'no arrays'} but "
                          f"{layer.describe()} needs {sorted(expected) or 'none'}")
        for key, shape in expected.items():
            array = read_floats(layer_group[key], tuple(shape), where=layer.describe())
            layer.params[key] = B.to_device(np.ascontiguousarray(array, np.float32))
            layer.grads[key] = B.zeros(shape)
        _read_state(layer_group, layer, B)
    return net, names


def _read_state(group: h5py.Group, layer: Any, B: Any) -> None:
    """A layer's non-trainable arrays from ``group/state``; a file written before the
    layer had state (or by an older numbacnn) keeps the initial values."""
    expected = layer.state_shapes()
    state = group.get(STATE_GROUP)
    if state is None:
        for key, shape in expected.items():
            layer.state[key] = B.to_device(layer.initial_state(key, shape))
        return
    stored = set(state)
    if stored != set(expected) or not all(isinstance(state[k], h5py.Dataset) for k in state):
        raise Damaged(f"{state.name} holds {sorted(stored) or 'nothing'} but "
                       f"{layer.describe()} keeps {sorted(expected) or 'no state'}")
    for key, shape in expected.items():
        array = read_floats(state[key], tuple(shape), where=layer.describe())
        layer.state[key] = B.to_device(np.ascontiguousarray(array, np.float32))




def _option_value(option: Any, value: Any, where: str) -> Any:
    """A stored hyperparameter, checked as its spec option: an integer option takes
    only an integer (a stored stride of 1.5 is refused, not read as 1); a pair option
    also two (a rectangular window, stored as h, w); a text option its words."""
    written = None  # the value as a spec writes it, where repr() is not that
    if option.pair and np.ndim(value) == 1 and len(value) == 2 and all(map(is_int, value)):
        written = "x".join(str(int(v)) for v in value)
    elif option.kind is str:
        written = text(value)
    if written is not None:
        try:
            return option.convert(written)
        except ValueError as exc:
            raise Damaged(f"{where}: {exc}") from None
    if option.kind is int and not is_int(value):
        raise Damaged(f"{where} is {shown(value)}, not an integer")
    if option.kind is float and not is_real(value):
        raise Damaged(f"{where} is {shown(value)}, not a finite number")
    value = value.item() if isinstance(value, np.generic) else value
    try:
        return option.convert(repr(value))
    except ValueError as exc:
        raise Damaged(f"{where}: {exc}") from None


def _numbers(values: np.ndarray) -> str:
    return ", ".join(f"{v:g}" for v in values)
