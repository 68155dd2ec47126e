"""Which SGEMM the CPU drivers call: MKL's from the ``mkl`` wheel where it is installed,
numpy's BLAS otherwise or with ``NUMBACNN_BLAS=numpy`` (``backends/cblas.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from numbacnn.backends import cblas
from numbacnn.errors import DeviceError

HAS_MKL = cblas.mkl_library() is not None

# one process per choice: sgemm() is chosen once per process
_PROBE = """
import json, threading
import numpy as np
from numbacnn.backends import cblas, cpu
rng = np.random.default_rng(3)
a = rng.standard_normal((200, 300), dtype=np.float32)
b = rng.standard_normal((300, 150), dtype=np.float32)
out = np.full((200, 150), np.nan, np.float32)
cpu.gemm(a, b, out)
error = float(np.abs(out - a.astype(np.float64) @ b).max())
print(json.dumps({"name": cblas.name(), "error": error, "threads": threading.active_count()}))
"""


def _probe(choice: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBACNN_BLAS"}
    if choice is not None:
        env["NUMBACNN_BLAS"] = choice
    return subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                          env=env, timeout=300)


def test_numpy_choice_keeps_numpys_blas() -> None:
    proc = _probe("numpy")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert not result["name"].startswith("MKL"), result
    assert result["error"] < 1e-3


@pytest.mark.skipif(not HAS_MKL, reason="the mkl wheel is not installed")
def test_default_takes_mkl_where_installed() -> None:
    proc = _probe(None)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["name"].startswith("MKL 20"), result
    assert result["error"] < 1e-3


@pytest.mark.skipif(not HAS_MKL, reason="the mkl wheel is not installed")
def test_mkl_runs_in_its_sequential_layer() -> None:
    # the drivers make one call per part from their own threads: MKL must not start a
    # thread pool of its own (its OpenMP layer would spin beside numba's threads)
    lib = cblas._mkl()
    assert lib is not None
    cblas.sgemm()  # chosen in this process
    lib.MKL_Get_Max_Threads.restype = int
    assert lib.MKL_Get_Max_Threads() == 1


def test_unknown_choice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMBACNN_BLAS", "atlas")
    with pytest.raises(DeviceError, match="NUMBACNN_BLAS='atlas': use auto, mkl or numpy"):
        cblas.blas_choice()


def test_asking_for_mkl_without_it_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMBACNN_BLAS", "mkl")
    monkeypatch.setattr(cblas, "mkl_library", lambda: None)
    cblas.sgemm.cache_clear()
    cblas._mkl.cache_clear()
    try:
        with pytest.raises(DeviceError, match="pip install mkl"):
            cblas.sgemm()
    finally:
        cblas.sgemm.cache_clear()
        cblas._mkl.cache_clear()
        cblas._mkl_sgemm.cache_clear()
        monkeypatch.undo()
        cblas.sgemm()  # this process's choice again, for the tests after this one


def test_a_bad_choice_ends_a_first_run_in_one_line(tmp_path) -> None:
    # the warm-up compiles in this process first: a settings error is the run's error, not
    # a "compiling in parallel failed" warning followed by the same error
    env = {**os.environ, "NUMBACNN_BLAS": "atlas", "NUMBACNN_CACHE_DIR": str(tmp_path / "c")}
    proc = subprocess.run([sys.executable, "-c", "from numbacnn_cli.main import main; main()",
                           "train", "--epochs", "1", "--out", str(tmp_path / "m.h5")],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: NUMBACNN_BLAS='atlas': use auto, mkl or numpy"], proc.stderr
    assert not (tmp_path / "m.h5").exists()
