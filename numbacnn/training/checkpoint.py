"""Checkpoints: the optimizer and training state a model file carries to resume a run.

A checkpoint is a model file (:mod:`numbacnn.io.model_file`) with two more groups,
``optimizer`` (:class:`OptimizerState`) and ``training`` (:class:`TrainingState`, beside
the run's settings that the model file keeps); layout in docs/hdf5.md, "Model files".
Both are written and read here through the model file's part protocol and the typed
readers of :mod:`numbacnn.io.hdf5`, checked against the training floor's own tables:
the optimizer registry, :class:`~numbacnn.training.settings.TrainSettings` and the
fields of :class:`~numbacnn.training.schedules.LRSchedule`.

    net, info = load_checkpoint("model.h5")   # info.optimizer, info.training filled in
"""

from __future__ import annotations

import json
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from numbacnn.errors import ModelFileError, NumbacnnError
from numbacnn.io.hdf5 import (
    Damaged,
    float_attr,
    group,
    int_attr,
    is_int,
    is_real,
    json_object_attr,
    read_floats,
    shown,
    string_attr,
    write_floats,
)
from numbacnn.io.model_file import ModelInfo, array_label, load_model
from numbacnn.network import Network
from numbacnn.training.optim import OPTIMIZERS, Optimizer
from numbacnn.training.schedules import LRSchedule
from numbacnn.training.settings import TrainSettings

PARTIAL_KEYS = ("loss", "correct", "seen", "seconds")  # sums of an unfinished epoch


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

    def restore(self, device: str = "auto") -> Optimizer:
        """A new optimizer of this kind holding these buffers, on ``device`` (that of the
        network it will update, ``net.device``)."""
        if self.name not in OPTIMIZERS:
            raise ModelFileError(f"optimizer {self.name!r} is unknown: expected one of "
                                 f"{', '.join(OPTIMIZERS)}")
        optimizer = OPTIMIZERS[self.name](**self.hyperparameters)
        optimizer.load_state(self.slots, self.t, device)
        return optimizer

    def write(self, group_: h5py.Group, layer_names: Sequence[str]) -> None:
        """Into the model file's ``optimizer`` group: slot/LAYER_GROUP/KEY arrays."""
        group_.attrs["name"] = self.name
        group_.attrs["t"] = np.int64(self.t)
        for key, value in self.hyperparameters.items():
            group_.attrs[key] = float(value)
        for slot, table in self.slots.items():
            slot_group = group_.create_group(slot)
            for param, array in table.items():
                index, key = param.split(".", 1)  # "3.W" → ("03_fc", "W")
                write_floats(slot_group.require_group(layer_names[int(index)]), key, array)

    @classmethod
    def read(cls, group_: h5py.Group, net: Network, layer_names: Sequence[str]) -> OptimizerState:
        """From the model file's ``optimizer`` group, checked against the registry."""
        name = string_attr(group_.attrs, "name", "")
        if name not in OPTIMIZERS:
            raise Damaged(f"optimizer/@name is {shown(name)}, expected one of "
                          f"{', '.join(OPTIMIZERS)}")
        kind = OPTIMIZERS[name]
        t = int_attr(group_.attrs, "t", "optimizer")
        if t < 0:
            raise Damaged(f"optimizer/@t is {t}, expected ≥ 0")
        keys = set(group_.attrs) - {"name", "t"}
        if keys != set(kind.defaults):
            raise Damaged(f"optimizer {name} has attributes {sorted(keys)}, expected "
                          f"{sorted(kind.defaults)}")
        hyper = {k: float_attr(group_.attrs, k, "optimizer") for k in kind.defaults}
        shapes = {param: tuple(w.shape) for param, w, _ in net.parameters()}
        slots: dict[str, dict[str, np.ndarray]] = {}
        for slot in group_:
            if slot not in kind.slots:
                raise Damaged(f"optimizer {name} has no slot {shown(slot)}")
            table = slots.setdefault(slot, {})
            for layer_name in group(group_, slot):
                if layer_name not in layer_names:
                    raise Damaged(f"optimizer/{slot}/{shown(layer_name)} names no layer")
                layer_group = group(group_[slot], layer_name)
                for key in layer_group:
                    param = f"{list(layer_names).index(layer_name)}.{key}"
                    if param not in shapes:
                        raise Damaged(f"{layer_group.name}/{shown(key)} names no parameter")
                    index = list(layer_names).index(layer_name)
                    label = f"optimizer {slot} of {array_label(index, net.layers[index].kind, key)}"
                    table[param] = read_floats(layer_group[key], shapes[param],
                                               where="the parameter", label=label)
        return cls(name, hyper, t, slots)


@dataclass
class TrainingState:
    """Where training stands, enough to resume it exactly (the run's settings are
    ``ModelInfo.settings``).

    ``epoch``: finished epochs; ``batch``: batches finished in the unfinished epoch (0
    at an epoch boundary, > 0 after an interrupt); ``step``: ``Network.step`` (training
    forward passes, seeds dropout); ``lr``: rate of the coming epoch;
    ``best_accuracy``/``best_epoch``: best monitored accuracy (0…1) and its epoch (−1
    before any); ``rng_states``: numpy ``bit_generator.state`` dicts by role;
    ``schedule``: the lr schedule's state (``LRSchedule.state()``); ``partial_epoch``:
    running sums of the unfinished epoch (PARTIAL_KEYS).
    """

    epoch: int = 0
    batch: int = 0
    step: int = 0
    lr: float = 0.0
    best_accuracy: float = -1.0
    best_epoch: int = -1
    rng_states: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    partial_epoch: dict[str, float] = field(default_factory=dict)

    def write(self, group_: h5py.Group, layer_names: Sequence[str]) -> None:
        """Into the model file's ``training`` group: numbers and JSON attributes."""
        for key in ("epoch", "batch", "step", "best_epoch"):
            group_.attrs[key] = np.int64(getattr(self, key))
        group_.attrs["lr"] = float(self.lr)
        group_.attrs["best_accuracy"] = float(self.best_accuracy)
        for key in ("rng_states", "schedule", "partial_epoch"):
            group_.attrs[key] = json.dumps(getattr(self, key), sort_keys=True)

    @classmethod
    def read(cls, group_: h5py.Group, net: Network, layer_names: Sequence[str]) -> TrainingState:
        """From the model file's ``training`` group, every value checked; sets the
        network's ``step`` and ``seed`` to go on as the run did."""
        state = cls()
        for key in ("epoch", "batch", "step", "best_epoch"):
            setattr(state, key, int_attr(group_.attrs, key, "training"))
        state.lr = float_attr(group_.attrs, "lr", "training")
        state.best_accuracy = float_attr(group_.attrs, "best_accuracy", "training")
        for bad, message in (
                (state.epoch < 0 or state.batch < 0 or state.step < 0,
                 f"epoch {state.epoch}, batch {state.batch} and step {state.step} must be ≥ 0"),
                (not -1 <= state.best_epoch <= state.epoch,
                 f"best_epoch {state.best_epoch} is outside -1…{state.epoch} (the epochs done)"),
                (not state.lr > 0, f"lr {state.lr} is not > 0"),
                (not -1 <= state.best_accuracy <= 1,
                 f"best_accuracy {state.best_accuracy} is outside [-1, 1]")):
            if bad:
                raise Damaged(f"training: {message}")
        settings = json_object_attr(group_.attrs, "settings", "training")
        for key in ("rng_states", "schedule", "partial_epoch"):
            setattr(state, key, json_object_attr(group_.attrs, key, "training"))
        try:
            seed = TrainSettings.from_dict(settings).checked().seed
        except NumbacnnError as exc:
            raise Damaged(f"training/@settings: {exc}") from None
        _check_rng_states(state.rng_states)
        _check_schedule(state.schedule)
        if state.batch and (set(state.partial_epoch) != set(PARTIAL_KEYS) or not all(
                is_real(v) and v >= 0 for v in state.partial_epoch.values())):
            raise Damaged(f"training/@partial_epoch is {shown(state.partial_epoch)}, expected "
                          f"numbers ≥ 0 for {', '.join(PARTIAL_KEYS)}")
        net.step, net.seed = state.step, int(seed)
        return state


def load_checkpoint(path: str | Path, device: str = "auto") -> tuple[Network, ModelInfo]:
    """:func:`~numbacnn.io.model_file.load_model` with the checkpoint's parts read and
    checked: ``info.optimizer`` (OptimizerState) and ``info.training`` (TrainingState),
    None in a file without them. ModelFileError for any problem, as load_model."""
    return load_model(path, device, parts={"optimizer": OptimizerState.read,
                                           "training": TrainingState.read})


def _check_rng_states(states: dict[str, Any]) -> None:
    """shuffle and augment (one PCG64 state each), and after data-parallel training
    augment_ranks (a list of them, one per rank: numbacnn/training/distributed.py)."""
    if set(states) - {"augment_ranks"} != {"shuffle", "augment"}:
        raise Damaged(f"training/@rng_states has {sorted(states)}, expected augment, shuffle "
                      "(and augment_ranks after training on several ranks)")
    per_rank = states.get("augment_ranks", [])
    if not isinstance(per_rank, list):
        raise Damaged("training/@rng_states/augment_ranks is not a list of PCG64 states")
    for role, value in [*((r, v) for r, v in states.items() if r != "augment_ranks"),
                        *((f"augment_ranks/{i}", v) for i, v in enumerate(per_rank))]:
        try:
            np.random.default_rng(0).bit_generator.state = value
        except (TypeError, ValueError, KeyError, OverflowError):
            raise Damaged(f"training/@rng_states/{role} is not a numpy PCG64 state") from None


def _schedule_types() -> dict[str, type]:
    """The schedule's state schema: the fields of LRSchedule and their types."""
    hints = typing.get_type_hints(LRSchedule)
    return {f.name: hints[f.name] for f in fields(LRSchedule)}


def _check_schedule(state: dict[str, Any]) -> None:
    types = _schedule_types()
    if set(state) != set(types):
        raise Damaged(f"training/@schedule has {sorted(state)}, expected {sorted(types)}")
    for key, kind in types.items():
        value = state[key]
        good = (isinstance(value, str) if kind is str else
                is_int(value) if kind is int else is_real(value))
        if not good:
            raise Damaged(f"training/@schedule/{key} is {shown(value)}, not a "
                          f"{'string' if kind is str else kind.__name__}")
    if not state["lr"] > 0 or state["stale_epochs"] < 0:
        raise Damaged(f"training/@schedule: lr {state['lr']} must be > 0 and "
                      f"stale_epochs {state['stale_epochs']} ≥ 0")
    try:
        LRSchedule.from_state(state)
    except NumbacnnError as exc:
        raise Damaged(f"training/@schedule: {exc}") from None
