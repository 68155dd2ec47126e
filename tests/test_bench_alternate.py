"""bench/alternate.py: separate-process, alternating runs and their summary."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "alternate.py"


def load():
    spec = importlib.util.spec_from_file_location("bench_alternate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_is_median_and_spread_and_counts_errors():
    alt = load()
    runs = [{"images_per_s": v} for v in (10.0, 30.0, 20.0)] + [{"error": "boom"}]
    s = alt.summarize(runs)
    assert (s["runs"], s["median"], s["min"], s["max"], s["errors"]) == (3, 20.0, 10.0, 30.0, 1)
    assert alt.summarize([{"error": "no torch"}]) == {"runs": 0, "error": "no torch"}


def test_markdown_row_gives_ratio_of_medians():
    alt = load()
    result = {"spec": "fmnist", "batch": 128, "threads": 2, "load": True,
              "load_before": (0.1, 0, 0), "load_after": (1.0, 0, 0),
              "summary": {"numbacnn": alt.summarize([{"images_per_s": 300.0}]),
                          "torch": alt.summarize([{"images_per_s": 200.0}])},
              "ratio_of_medians": 1.5}
    row = alt.markdown([result]).splitlines()[-1]
    assert "| fmnist | 128 | 2 | a second training |" in row
    assert "300 (300–300), 1 runs" in row and "| 1.50 |" in row


@pytest.mark.parametrize("framework", [
    "numbacnn",
    pytest.param("torch", marks=pytest.mark.skipif(
        importlib.util.find_spec("torch") is None, reason="PyTorch is not installed")),
])
def test_a_child_process_trains_and_reports_images_per_second(framework: str):
    out = subprocess.run([sys.executable, str(SCRIPT), "--child", framework,
                          "input 8x8x1; conv 2 3; relu; fc 3", "--batch", "4", "--steps", "2",
                          "--warmup", "1"], capture_output=True, text=True, timeout=300,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["framework"] == framework and result["images_per_s"] > 0
