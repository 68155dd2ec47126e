"""Shared fixtures: every test runs on the CPU backend unless it asks otherwise.

A network resolves its device at construction, and "auto" picks the GPU where there is
one; so for each test module the autouse fixtures make "auto" pick the CPU (CUDA
reported unavailable: ``device_context.cpu_only``) and set NUMBACNN_DEVICE=cpu, the
CLI's ``--device`` default. A test module of the CUDA backend sets
``DEVICE = "cuda"`` (tests/cuda_sim); a test of the CUDA backend without a GPU runs in
its dry run (``tests/device_context.py``); a test of the real CUDA check takes the
``real_cuda_check`` fixture. No test sets a device for the whole process: there is no
such setting. The benchmark suite's modules (``bench/``) import by their names
(``import suite``).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np
import pytest
from device_context import REAL_CUDA_UNAVAILABLE_REASON, cpu_only

import numbacnn.device

# The benchmark suite's modules: bench/*.py are scripts that import each other by name
BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))


@pytest.fixture(scope="module", autouse=True)
def module_device(request: pytest.FixtureRequest):
    """Run the module on its ``DEVICE`` ("cpu" unless it says otherwise): on "cpu", "auto"
    resolves to the CPU. Module-scoped and autouse, so it is set up before the module's
    own fixtures (a network a fixture builds is on the CPU too)."""
    device = getattr(request.module, "DEVICE", "cpu")
    with cpu_only() if device == "cpu" else contextlib.nullcontext():
        yield device


@pytest.fixture(autouse=True)
def test_device(module_device: str, monkeypatch: pytest.MonkeyPatch):
    """The module's device is the CLI's default device too (NUMBACNN_DEVICE)."""
    monkeypatch.setenv("NUMBACNN_DEVICE", module_device)
    yield module_device


@pytest.fixture
def real_cuda_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo the autouse fixture's stand-in: CUDA is looked for for real."""
    monkeypatch.setattr(numbacnn.device, "cuda_unavailable_reason", REAL_CUDA_UNAVAILABLE_REASON)


@pytest.fixture
def rng() -> np.random.Generator:
    """A generator with a fixed seed, fresh for every test."""
    return np.random.default_rng(20240607)
