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
from typing import Any, BinaryIO

import h5py
import numpy as np

from numbacnn.errors import DataError, ModelFileError, NumbacnnError, shown_path
from numbacnn.geometry import VOLUME_AXES, volume
from numbacnn.init import INITIALIZERS
from numbacnn.io.atomic_file import hdf5_bytes, replace_atomically
from numbacnn.io.data import normalize
from numbacnn.limits import MAX_INT, array_bytes, check_memory, check_regular_file
from numbacnn.network import Network
from numbacnn.training.optim import OPTIMIZERS, Optimizer
from numbacnn.training.settings import TrainSettings
from numbacnn.version import __version__

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
    def capture(cls, optimizer: Optimizer) -> OptimizerState:
        """Host copy of an optimizer's state (any registered optimizer)."""
        return cls(optimizer.name, optimizer.hyperparameters(), optimizer.t, optimizer.state())

    def restore(self, device: str | None = None) -> Optimizer:
        """A new optimizer of this kind holding these buffers (on ``device``, default the
        current one)."""
        if self.name not in OPTIMIZERS:
            raise ModelFileError(f"optimizer {self.name!r} is unknown: expected one of "
                                 f"{', '.join(OPTIMIZERS)}")
        optimizer = OPTIMIZERS[self.name](**self.hyperparameters)
        optimizer.load_state(self.slots, self.t, device)
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
            raise DataError(f"{where}: images are {volume(images.shape[1:])} ({VOLUME_AXES}) but "
                            f"the model takes {volume(self.input_shape)}; use images of that "
                            "shape")
        return normalize(images, self.mean, self.std)


def best_path(out: str | Path) -> Path:
    """Where the best model on validation is kept beside ``out``: model.h5 → model.best.h5."""
    out = Path(out)
    return out.with_name(f"{out.stem}.best{out.suffix}")


# ----------------------------------------------------------------------------- writing


def check_writable(path: str | Path, field: str = "out") -> Path:
    """Raise ModelFileError unless a model file can be written at ``path`` (checked up front
    by creating and removing a probe file in its directory). ``field`` names the value
    that gave the path (the error's ``field``)."""
    path = Path(path)
    directory = path.parent
    try:
        os.stat(path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, a loop ...
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ModelFileError(f"{shown_path(path)}: cannot write there ({reason}); choose "
                             "another path", field=field) from None
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory; give a file name such as "
                             f"{path / 'model.h5'}", field=field)
    if not directory.is_dir():
        raise ModelFileError(f"{path}: directory {directory} does not exist; create it "
                             f"(mkdir -p {directory}) or choose another path", field=field)
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.probe", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot write in {directory} ({exc.strerror}); "
                             "choose another path", field=field) from None
    return path


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


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    check_writable(path)
    replace_atomically(path, write, ModelFileError, "model")


STATE_GROUP = "state"  # layers/NN_kind/state/KEY: a layer's non-trainable arrays


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
        if layer.state:
            state = group.create_group(STATE_GROUP)
            for key, value in layer.state.items():
                _write_array(state, key, value)
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


# Every attribute and array is checked against this schema before it is used: its
# type (an integer is not a float, a float not a complex), its range, and an array's
# shape and size before it is read, so a tampered file cannot allocate without bound.
_SCHEDULE_TYPES = {"policy": str, "base_lr": float, "step": int, "gamma": float,
                   "patience": int, "lr": float, "best": float, "stale_epochs": int}
_PARTIAL_KEYS = ("loss", "correct", "seen", "seconds")


def load_model(path: str | Path) -> tuple[Network, ModelInfo]:
    """Read a model file: the network (weights on the current device) and its ModelInfo.

    Raises ModelFileError for a missing file, a file that is not HDF5, a truncated or
    corrupt file, a file of another format, an attribute of the wrong type or range,
    weights whose shapes do not fit the layers, and non-finite or non-float weights.
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
    check_regular_file(path, "model file", ModelFileError,
                       "check the path, or save a trained model there")
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
        hint = (" (this is a dataset file: use it as data)" if fmt == "numbacnn-dataset"
                else "")
        raise ModelFileError(f"{path}: format attribute is {_shown(fmt)}, expected {FORMAT!r}"
                             f"{hint}; give a model written by numbacnn train")
    version = f.attrs.get("format_version", 0)
    if not _is_int(version) or int(version) != FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format_version {_shown(version)} is not supported "
                             f"(this numbacnn reads version {FORMAT_VERSION}); upgrade numbacnn "
                             "or train the model again")


def _read_model(f: h5py.File, path: Path) -> tuple[Network, ModelInfo]:
    for name in ("input_shape", "class_names", "normalization_mean", "normalization_std"):
        if name not in f.attrs:
            raise _Damaged(f"root attribute {name} is missing")
    if not isinstance(f.get("layers", getlink=True), h5py.HardLink) or not isinstance(
            f["layers"], h5py.Group):
        raise _Damaged("group layers is missing")
    net, names = _read_network(f, path)
    C = net.input_shape[0]  # type: ignore[index]
    info = ModelInfo(
        spec_text=_string_attr(f.attrs, "spec", ""),
        input_shape=net.input_shape,  # type: ignore[arg-type]
        class_names=_class_names(f.attrs["class_names"]),
        mean=_float_vector(f.attrs, "normalization_mean", C),
        std=_float_vector(f.attrs, "normalization_std", C),
        numbacnn_version=_string_attr(f.attrs, "numbacnn_version", ""),
        path=path,
    )
    if not np.all(info.std > 0):
        raise _Damaged(f"the normalization needs {C} positive stds, got {_numbers(info.std)}")
    if len(info.class_names) != net.num_classes:
        raise _Damaged(f"{len(info.class_names)} class names for {net.num_classes} outputs")
    if "optimizer" in f:
        info.optimizer = _read_optimizer(_group(f, "optimizer"), names, net)
    if "training" in f:
        info.training = _read_training(_group(f, "training"))
        net.step = info.training.step
        net.seed = int(info.training.settings["seed"])
    if "history" in f:
        history = _group(f, "history")
        info.history = {key: _read_array(history[key], None, ndim=1, nan_ok=True)
                        for key in HISTORY_KEYS if key in history}
        lengths = {len(values) for values in info.history.values()}
        if len(lengths) > 1:
            raise _Damaged("the history arrays have different lengths")
    return net, info


def _read_network(f: h5py.File, path: Path) -> tuple[Network, list[str]]:
    from numbacnn.layers import LAYERS
    from numbacnn.spec import SYNTAX

    groups = [_group(f["layers"], name) for name in f["layers"]]
    if not groups:
        raise _Damaged("group layers holds no layers")
    indices = [_int_attr(g.attrs, "index", g.name) for g in groups]
    if sorted(indices) != list(range(len(groups))):
        raise _Damaged(f"the layers' index attributes are {sorted(indices)}, expected "
                       f"0…{len(groups) - 1} once each")
    groups = [g for _, g in sorted(zip(indices, groups, strict=True), key=lambda p: p[0])]
    layers = []
    for group in groups:
        kind = _string_attr(group.attrs, "kind", "")
        if kind not in LAYERS or kind == "softmax":
            raise _Damaged(f"{group.name} has unknown layer kind {_shown(kind)}")
        hyper = {}
        for key, value in group.attrs.items():
            if key in _LAYER_ATTRS:
                continue
            option = SYNTAX[kind].option(key)
            if option is None or option.key in ("init", "activation"):
                raise _Damaged(f"{group.name} has unknown attribute {_shown(key)}")
            hyper[key] = _option_value(option, value, f"{group.name}/@{key}")
        init = _string_attr(group.attrs, "init", "")
        if init and init not in INITIALIZERS:
            raise _Damaged(f"{group.name}/@init is {_shown(init)}, not one of "
                           f"{', '.join(INITIALIZERS)}")
        try:
            layer = LAYERS[kind](**hyper)
        except (TypeError, NumbacnnError) as exc:
            raise _Damaged(f"{group.name}: bad hyperparameters {hyper} ({exc})") from None
        missing = sorted(set(layer.hyperparameters()) - set(hyper))
        if missing:  # numbacnn writes them all: a default would silently replace one
            raise _Damaged(f"{group.name} lacks attribute{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(missing)}")
        layer.init = init or None
        layers.append(layer)
    shape = f.attrs["input_shape"]
    if (not isinstance(shape, np.ndarray) or shape.shape != (3,) or shape.dtype.kind not in "iu"
            or shape.min() < 1 or shape.max() > MAX_INT):
        raise _Damaged(f"input_shape {_shown(shape)} is not three integers (C, H, W) in "
                       f"1…{MAX_INT}")
    input_shape = tuple(int(d) for d in shape)
    try:
        net = Network(layers, input_shape=input_shape,  # type: ignore[arg-type]
                      spec_text=_string_attr(f.attrs, "spec", "") or None)
    except NumbacnnError as exc:
        raise _Damaged(f"the layers do not fit together ({exc})") from None
    names = [group.name.rsplit("/", 1)[-1] for group in groups]
    weights = sum(array_bytes(s, 4) for layer in net.layers for s in layer.param_shapes().values())
    check_memory(2 * weights, f"the weights of {path}", ModelFileError,
                 "use a machine with more memory")
    B = net.backend()
    for group, layer in zip(groups, net.layers, strict=True):
        expected = layer.param_shapes()
        stored = {k for k, v in group.items() if isinstance(v, h5py.Dataset)}
        has_state = STATE_GROUP in group and isinstance(group[STATE_GROUP], h5py.Group)
        if stored != set(expected) or len(group) != len(stored) + has_state:
            raise _Damaged(f"{group.name} holds {sorted(group) or 'no arrays'} but "
                           f"{layer.describe()} needs {sorted(expected) or 'none'}")
        for key, shape in expected.items():
            array = _read_array(group[key], tuple(shape), where=layer.describe())
            layer.params[key] = B.to_device(np.ascontiguousarray(array, np.float32))
            layer.grads[key] = B.zeros(shape)
        _read_state(group, layer, B)
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
        raise _Damaged(f"{state.name} holds {sorted(stored) or 'nothing'} but "
                       f"{layer.describe()} keeps {sorted(expected) or 'no state'}")
    for key, shape in expected.items():
        array = _read_array(state[key], tuple(shape), where=layer.describe())
        layer.state[key] = B.to_device(np.ascontiguousarray(array, np.float32))


def _read_optimizer(group: h5py.Group, names: list[str], net: Network) -> OptimizerState:
    name = _string_attr(group.attrs, "name", "")
    if name not in OPTIMIZERS:
        raise _Damaged(f"optimizer/@name is {_shown(name)}, expected one of "
                       f"{', '.join(OPTIMIZERS)}")
    kind = OPTIMIZERS[name]
    t = _int_attr(group.attrs, "t", "optimizer")
    if t < 0:
        raise _Damaged(f"optimizer/@t is {t}, expected ≥ 0")
    keys = set(group.attrs) - {"name", "t"}
    if keys != set(kind.defaults):
        raise _Damaged(f"optimizer {name} has attributes {sorted(keys)}, expected "
                       f"{sorted(kind.defaults)}")
    hyper = {k: _float_attr(group.attrs, k, "optimizer") for k in kind.defaults}
    shapes = {param: tuple(w.shape) for param, w, _ in net.parameters()}
    slots: dict[str, dict[str, np.ndarray]] = {}
    for slot in group:
        if slot not in kind.slots:
            raise _Damaged(f"optimizer {name} has no slot {_shown(slot)}")
        table = slots.setdefault(slot, {})
        for layer_name in _group(group, slot):
            if layer_name not in names:
                raise _Damaged(f"optimizer/{slot}/{_shown(layer_name)} names no layer")
            layer_group = _group(group[slot], layer_name)
            for key in layer_group:
                param = f"{names.index(layer_name)}.{key}"
                if param not in shapes:
                    raise _Damaged(f"{layer_group.name}/{_shown(key)} names no parameter")
                table[param] = _read_array(layer_group[key], shapes[param],
                                           where="the parameter")
    return OptimizerState(name, hyper, t, slots)


def _read_training(group: h5py.Group) -> TrainingState:
    state = TrainingState()
    for key in ("epoch", "batch", "step", "best_epoch"):
        setattr(state, key, _int_attr(group.attrs, key, "training"))
    state.lr = _float_attr(group.attrs, "lr", "training")
    state.best_accuracy = _float_attr(group.attrs, "best_accuracy", "training")
    for bad, message in (
            (state.epoch < 0 or state.batch < 0 or state.step < 0,
             f"epoch {state.epoch}, batch {state.batch} and step {state.step} must be ≥ 0"),
            (not -1 <= state.best_epoch <= state.epoch,
             f"best_epoch {state.best_epoch} is outside -1…{state.epoch} (the epochs done)"),
            (not state.lr > 0, f"lr {state.lr} is not > 0"),
            (not -1 <= state.best_accuracy <= 1,
             f"best_accuracy {state.best_accuracy} is outside [-1, 1]")):
        if bad:
            raise _Damaged(f"training: {message}")
    for key in ("settings", "rng_states", "schedule", "partial_epoch"):
        value = json.loads(_string_attr(group.attrs, key, ""))
        if not isinstance(value, dict):
            raise _Damaged(f"training/@{key} is {_shown(value)}, not a JSON object")
        setattr(state, key, value)
    try:
        TrainSettings.from_dict(state.settings).checked()
    except NumbacnnError as exc:
        raise _Damaged(f"training/@settings: {exc}") from None
    _check_rng_states(state.rng_states)
    _check_schedule(state.schedule)
    if state.batch and (set(state.partial_epoch) != set(_PARTIAL_KEYS) or not all(
            _is_real(v) and v >= 0 for v in state.partial_epoch.values())):
        raise _Damaged(f"training/@partial_epoch is {_shown(state.partial_epoch)}, expected "
                       f"numbers ≥ 0 for {', '.join(_PARTIAL_KEYS)}")
    return state


def _check_rng_states(states: dict[str, Any]) -> None:
    """shuffle and augment (one PCG64 state each), and after data-parallel training
    augment_ranks (a list of them, one per rank: numbacnn/training/distributed.py)."""
    if set(states) - {"augment_ranks"} != {"shuffle", "augment"}:
        raise _Damaged(f"training/@rng_states has {sorted(states)}, expected augment, shuffle "
                       "(and augment_ranks after training on several ranks)")
    per_rank = states.get("augment_ranks", [])
    if not isinstance(per_rank, list):
        raise _Damaged("training/@rng_states/augment_ranks is not a list of PCG64 states")
    for role, value in [*((r, v) for r, v in states.items() if r != "augment_ranks"),
                        *((f"augment_ranks/{i}", v) for i, v in enumerate(per_rank))]:
        try:
            np.random.default_rng(0).bit_generator.state = value
        except (TypeError, ValueError, KeyError, OverflowError):
            raise _Damaged(f"training/@rng_states/{role} is not a numpy PCG64 state") from None


def _check_schedule(state: dict[str, Any]) -> None:
    from numbacnn.training.schedules import LRSchedule

    if set(state) != set(_SCHEDULE_TYPES):
        raise _Damaged(f"training/@schedule has {sorted(state)}, expected "
                       f"{sorted(_SCHEDULE_TYPES)}")
    for key, kind in _SCHEDULE_TYPES.items():
        value = state[key]
        good = (isinstance(value, str) if kind is str else
                _is_int(value) if kind is int else _is_real(value))
        if not good:
            raise _Damaged(f"training/@schedule/{key} is {_shown(value)}, not a "
                           f"{'string' if kind is str else kind.__name__}")
    if not state["lr"] > 0 or state["stale_epochs"] < 0:
        raise _Damaged(f"training/@schedule: lr {state['lr']} must be > 0 and "
                       f"stale_epochs {state['stale_epochs']} ≥ 0")
    try:
        LRSchedule.from_state(state)
    except NumbacnnError as exc:
        raise _Damaged(f"training/@schedule: {exc}") from None


# --- typed access: every value is checked before it is used ---------------------------


def _group(parent: h5py.Group, name: str) -> h5py.Group:
    item = parent.get(name)
    if not isinstance(item, h5py.Group):
        raise _Damaged(f"{parent.name.rstrip('/')}/{_shown(name)} is not a group")
    return item


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _is_real(value: Any) -> bool:
    """An int or a float that is finite (not complex, not a bool, not NaN)."""
    return (isinstance(value, int | float | np.integer | np.floating)
            and not isinstance(value, bool | np.bool_) and bool(np.isfinite(value)))


def _int_attr(attrs: h5py.AttributeManager, key: str, where: str) -> int:
    value = attrs.get(key)
    if not _is_int(value):
        raise _Damaged(f"{where}/@{key} is {_shown(value)}, not an integer")
    return int(value)  # type: ignore[arg-type]


def _float_attr(attrs: h5py.AttributeManager, key: str, where: str) -> float:
    value = attrs.get(key)
    if not _is_real(value):
        raise _Damaged(f"{where}/@{key} is {_shown(value)}, not a finite number")
    return float(value)  # type: ignore[arg-type]


def _string_attr(attrs: h5py.AttributeManager, key: str, default: str) -> str:
    value = attrs.get(key, default)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise _Damaged(f"attribute {key} is {_shown(value)}, not a string")
    _check_utf8(value, key)
    return value


def _check_utf8(value: str, where: str) -> None:
    """h5py decodes invalid UTF-8 into surrogates, which no output can print."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Damaged(f"attribute {where} is not valid UTF-8 text") from None


def _class_names(value: Any) -> list[str]:
    names = np.asarray(value).reshape(-1)
    if names.dtype.kind not in "OSU" or not all(isinstance(n, str | bytes) for n in names):
        raise _Damaged(f"class_names is {_shown(value)}, not strings")
    texts = [_text(n) for n in names]
    for text in texts:
        _check_utf8(text, "class_names")
    return texts


def _float_vector(attrs: h5py.AttributeManager, key: str, length: int) -> np.ndarray:
    value = np.asarray(attrs[key])
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf
        as_float32 = value.astype(np.float32).reshape(-1) if value.dtype.kind == "f" else value
    if value.dtype.kind != "f" or value.size != length or not np.all(np.isfinite(as_float32)):
        raise _Damaged(f"{key} is {_shown(value)}, expected {length} finite float32"
                       f"{'' if length == 1 else 's'}")
    return as_float32


def _option_value(option: Any, value: Any, where: str) -> Any:
    """A stored hyperparameter, checked as its spec option: an integer option takes
    only an integer (a stored stride of 1.5 is refused, not read as 1)."""
    if option.kind is int and not _is_int(value):
        raise _Damaged(f"{where} is {_shown(value)}, not an integer")
    if option.kind is float and not _is_real(value):
        raise _Damaged(f"{where} is {_shown(value)}, not a finite number")
    value = value.item() if isinstance(value, np.generic) else value
    try:
        return option.convert(repr(value))
    except ValueError as exc:
        raise _Damaged(f"{where}: {exc}") from None


def _read_array(dataset: Any, shape: tuple[int, ...] | None, where: str = "",
                ndim: int | None = None, nan_ok: bool = False) -> np.ndarray:
    """A float array, checked for type, shape and size before it is read and for
    NaN and infinity after (``nan_ok``: NaN means "none", as in the history's
    validation columns when there is no validation split)."""
    if not isinstance(dataset, h5py.Dataset):
        raise _Damaged(f"{getattr(dataset, 'name', dataset)} is not an array")
    name = dataset.name
    if dataset.dtype.kind != "f":
        raise _Damaged(f"{name} holds {dataset.dtype} values, expected float32")
    if shape is not None and tuple(dataset.shape) != shape:
        raise _Damaged(f"{name} has shape {tuple(dataset.shape)} but {where or 'it'} needs "
                       f"{shape}")
    if ndim is not None and len(dataset.shape) != ndim:
        raise _Damaged(f"{name} has shape {tuple(dataset.shape)}, expected {ndim} dimension")
    check_memory(array_bytes(dataset.shape, dataset.dtype.itemsize), name, ModelFileError,
                 "the file is damaged: use another copy")
    array = dataset[()]
    if not np.all(np.isfinite(array) | (nan_ok & np.isnan(array))):
        raise _Damaged(f"{name} holds {'infinite' if nan_ok else 'NaN or infinite'} values")
    return array


def _shown(value: Any, limit: int = 60) -> str:
    """A value for a message: repr, control characters escaped, at most ``limit`` chars."""
    if isinstance(value, np.generic):
        value = value.item()
    elif isinstance(value, np.ndarray):
        value = (value.tolist() if value.size <= 8
                 else f"<{value.dtype} array of shape {value.shape}>")
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _numbers(values: np.ndarray) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# ----------------------------------------------------------------------------- using


def predict_images(net: Network, info: ModelInfo, images: np.ndarray, batch_size: int = 256,
                   where: str = "images") -> np.ndarray:
    """Class probabilities float32 N×K for raw uint8 images N×C×H×W (normalized with the
    model's stored mean and std). ModelFileError when the weights overflow to NaN."""
    x = info.normalize(images, where)
    with np.errstate(over="ignore", invalid="ignore"):  # checked below, not warned about
        proba = net.predict_proba(x, batch_size)
    if not np.all(np.isfinite(proba)):
        raise ModelFileError(f"{info.path or 'the model'}: its class probabilities for {where} "
                             "are NaN or infinite (its weights overflow on these images); "
                             "train it again with a lower learning rate")
    return proba


def ensemble_proba(models: Sequence[tuple[Network, ModelInfo]], images: np.ndarray,
                   batch_size: int = 256, where: str = "images",
                   each: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
    """The mean of the models' class probabilities (float32 N×K): an ensemble.

    The models must share input shape and class names. ``each`` is called with every
    model's own probabilities (float32 N×K), e.g. to score it alone.
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
        proba = predict_images(net, info, images, batch_size, where)
        if each is not None:
            each(proba)
        total += proba
    return (total / len(models)).astype(np.float32)
