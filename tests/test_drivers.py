"""The backend drivers are checked, not found by name at run time only.

Each layer class declares the backend functions its code calls (``drivers``; Layer's own:
the memory functions). Here: the CPU and CUDA backends define the same kernel drivers,
every declared driver of every registered layer is in both backends, and running each
layer on the CPU through a recording backend calls exactly what its class declares.

The backends are read by importing them (in a subprocess: ``numbacnn.backends.cuda``
under ``NUMBA_ENABLE_CUDASIM=1``, so no GPU is needed) and listing their public callables,
however their code is split into files.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import numbacnn.backends.cpu
from numbacnn.errors import ShapeError
from numbacnn.layers import LAYERS, Layer

# name → whether it launches a compiled kernel (a numba dispatcher on the CPU, a
# launcher on the GPU: both carry ``py_func``; or a CPU driver that calls the compiled
# driver of its window, ``choose``), for the public callables a backend module defines
# (numba's own njit, typeof, ... are left out)
_LIST_FUNCTIONS = """
import importlib, json, sys
module = importlib.import_module(sys.argv[1])
print(json.dumps({
    name: hasattr(value, "py_func") or hasattr(value, "choose")
    for name, value in vars(module).items()
    if not name.startswith("_") and callable(value) and not isinstance(value, type)
    and getattr(value, "__module__", "").startswith("numbacnn.backends")}))
"""


def backend_functions(device: str) -> dict[str, bool]:
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    result = subprocess.run([sys.executable, "-c", _LIST_FUNCTIONS, f"numbacnn.backends.{device}"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def backends() -> dict[str, dict[str, bool]]:
    return {device: backend_functions(device) for device in ("cpu", "cuda")}


def declared_drivers(cls: type[Layer]) -> set[str]:
    """Every backend function a layer of ``cls`` may call: the ``drivers`` of each class
    it is built from (Layer's memory functions included)."""
    return {name for klass in cls.__mro__ for name in vars(klass).get("drivers", ())}


def own_drivers(cls: type[Layer]) -> set[str]:
    """What ``cls`` declares beyond Layer's own (the layer's kernel drivers)."""
    return declared_drivers(cls) - set(Layer.drivers)


def kernel_drivers(functions: dict[str, bool]) -> set[str]:
    return {name for name, launches in functions.items() if launches}


def test_both_backends_define_the_same_kernel_drivers(backends: dict) -> None:
    cpu, cuda = kernel_drivers(backends["cpu"]), kernel_drivers(backends["cuda"])
    assert len(cpu) > 20  # the probe found the drivers at all
    assert sorted(cpu - cuda) == [], "kernel drivers of the CPU backend missing on the GPU"
    assert sorted(cuda - cpu) == [], "kernel drivers of the GPU backend missing on the CPU"


def test_every_layer_driver_is_in_both_backends(backends: dict) -> None:
    missing = [f"{cls.__name__}.drivers: {name} (not in numbacnn.backends.{device})"
               for cls in LAYERS.values() for name in sorted(declared_drivers(cls))
               for device, functions in backends.items() if name not in functions]
    assert missing == []


class RecordingBackend:
    """The CPU backend, noting the name of each function a layer takes from it."""

    def __init__(self, module: ModuleType) -> None:
        self._module = module
        self.called: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._module, name)
        if callable(value):
            self.called.add(name)
        return value


def run_layer(layer: Layer, rng: np.random.Generator) -> None:
    """Build ``layer`` for a small input and run every pass that reaches the backend:
    forward in training and in inference, each followed by backward; a loss layer's
    forward with labels (plain, then with label smoothing), backward, probabilities and
    batch statistics."""
    try:
        shape = layer.build((4, 6, 6))
    except ShapeError:  # a layer that takes only K×1×1 class scores (the loss)
        shape = layer.build((4, 1, 1))
    layer.init_params(rng)
    x = rng.standard_normal((2, *layer.input_shape)).astype(np.float32)  # type: ignore[misc]
    if "labels" in inspect.signature(layer.forward).parameters:
        layer.forward(x, np.array([0, 3]))  # type: ignore[call-arg]
        layer.backward()
        layer.probabilities(x)  # type: ignore[attr-defined]
        layer.add_batch_stats(np.zeros(2, np.float32))  # type: ignore[attr-defined]
        layer.label_smoothing = 0.1  # type: ignore[attr-defined]
        layer.forward(x, np.array([0, 3]))  # type: ignore[call-arg]
        return
    for training in (True, False):
        layer.forward(x, training=training)
        layer.backward(np.ones((2, *shape), np.float32))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_a_layer_calls_the_drivers_it_declares(name: str, monkeypatch: pytest.MonkeyPatch,
                                                rng: np.random.Generator) -> None:
    cls = LAYERS[name]
    recorder = RecordingBackend(numbacnn.backends.cpu)
    monkeypatch.setattr(Layer, "_backend", lambda self: recorder)
    required = {o.key: 3 for o in cls.syntax.arguments if o.required}
    layer = cls(**required)
    run_layer(layer, rng)
    # drivers the layer calls only under a condition it does not meet (conv's algorithm)
    unmet = {name for name, attr in getattr(cls, "conditional_drivers", {}).items()
             if not getattr(layer, attr)}
    assert sorted(recorder.called - declared_drivers(cls)) == [], \
        f"{cls.__name__} calls backend functions it does not declare in drivers"
    assert sorted(own_drivers(cls) - recorder.called - unmet) == [], \
        f"{cls.__name__} declares drivers it never calls"
    assert sorted(recorder.called & unmet) == [], \
        f"{cls.__name__} calls conditional drivers whose condition it does not meet"


def test_layer_memory_functions_are_used(monkeypatch: pytest.MonkeyPatch,
                                         rng: np.random.Generator) -> None:
    """Layer's own declaration (the memory functions) is what the layers call of it."""
    recorder = RecordingBackend(numbacnn.backends.cpu)
    monkeypatch.setattr(Layer, "_backend", lambda self: recorder)
    for cls in LAYERS.values():
        run_layer(cls(**{o.key: 3 for o in cls.syntax.arguments if o.required}), rng)
    assert sorted(set(Layer.drivers) - recorder.called) == []
