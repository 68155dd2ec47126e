"""bench/gpu_results.py, the summary bench/gpu-check.sh hands back, without a GPU: the
runs' images/s and numbacnn ÷ PyTorch per network and precision, and one line (exit 3)
where there is no GPU."""

from __future__ import annotations

import json
from pathlib import Path

import gpu_results
import pytest


def write_run(folder: Path, framework: str, spec: str, precision: str, rate: float) -> None:
    result = {"train": {"images_per_s": rate}, "batch": 128, "precision": precision}
    (folder / f"{framework}-{spec}-{precision}.json").write_text(json.dumps(result))


def test_the_summary_pairs_the_frameworks_per_network_and_precision(tmp_path: Path,
                                                                     monkeypatch):
    monkeypatch.setenv("GPU_CHECK_COMMIT", "abc123")
    runs = tmp_path / "runs"
    runs.mkdir()
    write_run(runs, "numbacnn", "alexnet", "fp32", 1500.0)
    write_run(runs, "torch", "alexnet", "fp32", 3000.0)
    write_run(runs, "numbacnn", "fmnist-bn", "tf32", 9000.0)  # a spec with a dash, no twin
    (runs / "notes.json").write_text("{}")
    summary = gpu_results.collect(runs, tmp_path / "gpu-results.json", tmp_path / "runs.json")
    assert json.loads((tmp_path / "gpu-results.json").read_text()) == summary
    assert summary["networks"] == {
        "alexnet": {"fp32": {"numbacnn_images_per_s": 1500.0, "torch_images_per_s": 3000.0,
                             "batch": 128, "numbacnn_over_torch": 0.5}},
        "fmnist-bn": {"tf32": {"numbacnn_images_per_s": 9000.0, "batch": 128}}}
    assert summary["commit"] and summary["date"].endswith("UTC")
    assert set(json.loads((tmp_path / "runs.json").read_text())) == {
        "numbacnn-alexnet-fp32", "torch-alexnet-fp32", "numbacnn-fmnist-bn-tf32"}


def test_without_a_gpu_it_says_so_in_one_line(capsys):
    if gpu_results.no_gpu_reason() is None:
        pytest.skip("a GPU is here")
    assert gpu_results.main(["probe"]) == 3
    out = capsys.readouterr().out
    assert out.startswith("no GPU: ") and out.count("\n") == 1
    assert gpu_results.main(["run", "numbacnn", "fmnist", "/nonexistent"]) == 3
