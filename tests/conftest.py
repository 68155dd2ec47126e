"""Shared fixtures: every test runs on the CPU backend unless it asks otherwise.

The device is resolved lazily from NUMBACNN_DEVICE; a machine with a GPU would pick
"cuda" under "auto", so each test pins "cpu" (environment and dispatcher) and the
previous selection is restored afterwards. A test module of the CUDA backend sets
``DEVICE = "cuda"`` (tests/cuda_sim) or forces the dispatcher itself. The benchmark
suite's modules (``bench/``) import by their names (``import suite``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import numbacnn.device

# The benchmark suite's modules: bench/*.py are scripts that import each other by name
BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))


@pytest.fixture(autouse=True)
def test_device(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Run the test on its module's ``DEVICE`` ("cpu" unless the module says otherwise),
    restoring the previous device afterwards."""
    device = getattr(request.module, "DEVICE", "cpu")
    monkeypatch.setenv("NUMBACNN_DEVICE", device)
    monkeypatch.setattr(numbacnn.device, "_current", numbacnn.device._current)
    numbacnn.device.set_device(device)
    yield device


@pytest.fixture
def rng() -> np.random.Generator:
    """A generator with a fixed seed, fresh for every test."""
    return np.random.default_rng(20240607)
