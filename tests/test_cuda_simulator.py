"""Runs tests/cuda_sim in numba's CUDA simulator, in a subprocess.

NUMBA_ENABLE_CUDASIM must be set before numba is first imported, which this process
has long done, hence the subprocess (with NUMBACNN_DEVICE=cuda). Its output is shown
when it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 300  # normally 15-30 s; generous for a loaded machine


def test_cuda_backend_in_the_simulator():
    """python -m pytest tests/cuda_sim under the simulator passes; only the tests that need
    a real GPU (cuBLAS) are skipped."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "NUMBACNN_DEVICE": "cuda"}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/cuda_sim", "-q", "-p", "no:cacheprovider",
         "-rs"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    elapsed = time.perf_counter() - started
    output = proc.stdout + proc.stderr
    print(f"simulator run: {elapsed:.1f} s\n{output[-2000:]}")
    assert proc.returncode == 0, f"tests/cuda_sim failed (exit {proc.returncode}):\n{output}"
    assert " passed" in output, output
    skips = [line for line in output.splitlines() if line.startswith("SKIPPED")]
    assert all("real GPU only" in line for line in skips), skips
