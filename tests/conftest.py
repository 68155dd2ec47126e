"""Shared fixtures: every test runs on the CPU backend unless it asks otherwise.

The device is resolved lazily from NUMBACNN_DEVICE; a machine with a GPU would pick
"cuda" under "auto", so each test pins "cpu" (environment and dispatcher) and the
previous selection is restored afterwards. Tests of the CUDA backend override the
``cpu_device`` fixture (tests/cuda_sim) or force the dispatcher themselves.
"""

from __future__ import annotations

import numpy as np
import pytest

import numbacnn.device


@pytest.fixture(autouse=True)
def cpu_device(monkeypatch: pytest.MonkeyPatch):
    """Run the test on the CPU backend, restoring the previous device afterwards."""
    monkeypatch.setenv("NUMBACNN_DEVICE", "cpu")
    monkeypatch.setattr(numbacnn.device, "_current", numbacnn.device._current)
    numbacnn.device.set_device("cpu")
    yield "cpu"


@pytest.fixture
def rng() -> np.random.Generator:
    """A generator with a fixed seed, fresh for every test."""
    return np.random.default_rng(20240607)
