"""The benchmark suite under bench/ (suite.py and the modules it runs).

The suite runs in ``--quick`` mode (fmnist batch 32, 2 steps) and is checked for its
JSON layout and for every measured figure being positive and finite; timings
themselves are not judged. The PyTorch comparison runs only where torch imports.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import report
import suite
import targets

BENCH = Path(suite.__file__).resolve().parent
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed "
                                 f"(pip install {suite.TORCH_PIN}); comparison not tested")

MAY_BE_ZERO = {"compile_s"}  # the first step can be as fast as a steady one


def _measured_numbers(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (path, number) under ``value``; booleans and strings are not numbers."""
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _measured_numbers(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _measured_numbers(v, f"{path}[{i}]")]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [(path, value)]
    if value is None:
        return [(path, None)]
    return []


def assert_all_positive(section: Any, where: str) -> None:
    numbers = _measured_numbers(section, where)
    assert numbers, f"{where}: no numbers"
    for path, number in numbers:
        assert number is not None, f"{path} is null"
        assert math.isfinite(number), f"{path} = {number}"
        if isinstance(number, int):
            assert number >= 0, f"{path} = {number}"  # indices, counts, batch sizes
        elif path.rsplit(".", 1)[-1] in MAY_BE_ZERO:
            assert number >= 0, f"{path} = {number}"
        else:
            assert number > 0, f"{path} = {number}"


def run_suite_command(*args: str) -> subprocess.CompletedProcess:
    """``python bench/suite.py ARGS`` in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, str(BENCH / "suite.py"), *args],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def quick() -> dict[str, Any]:
    """One quick run of the whole suite on the CPU, shared by the tests below."""
    return json.loads(json.dumps(suite.run_benchmarks(quick=True, device="cpu")))


def check_network(net: dict[str, Any], framework: str) -> None:
    assert net["framework"] == framework
    assert net["batch"] == 32 and net["iterations"] == 2
    for key in ("layers", "loss", "update", "total", "train", "warmup_times"):
        assert key in net, key
    keys = {"index", "layer", "output_shape", "forward_ms", "backward_ms", "percent"}
    for row in net["layers"]:
        assert set(row) == keys | ({"fused"} if framework == "numbacnn" else set())
    assert [r["index"] for r in net["layers"]] == list(range(1, len(net["layers"]) + 1))
    percent = sum(r["percent"] for r in net["layers"]) + net["loss"]["percent"] + \
        net["update"]["percent"]
    assert percent == pytest.approx(100.0)
    t = net["total"]
    assert t["step_ms"] == pytest.approx(t["forward_ms"] + t["backward_ms"] + t["update_ms"])
    for key in ("images_per_s", "step_ms", "best_step_ms"):
        assert key in net["train"]
    for key in ("first_step_s", "steady_step_s", "compile_s"):
        assert key in net["warmup_times"]


def test_quick_json_layout_and_numbers(quick: dict[str, Any]) -> None:
    assert quick["quick"] is True
    assert quick["config"]["specs"] == ["fmnist"]
    assert quick["environment"]["device"] == "cpu"
    [net] = quick["networks"]
    assert net["spec"] == "fmnist"
    check_network(net, "numbacnn")
    layers = [r["layer"] for r in net["layers"]]
    assert layers[0].startswith("conv 32 3") and layers[-1] == "fc 10"
    assert net["layers"][0]["output_shape"] == "28x28x32"
    assert net["layers"][-1]["output_shape"] == "10"
    assert net["conv_rate"]["reference"] == "numpy SGEMM"
    assert [c["index"] for c in net["conv_rate"]["layers"]] == [1, 4]
    assert net["conv_rate"]["layers"][0]["gemm"] == "32x9 @ 9x25088"
    assert "torch" not in net
    assert_all_positive(quick["networks"], "networks")
    mem = quick["memory"]
    assert mem["spec"] == "fmnist" and set(mem) >= {"numbacnn"}
    assert mem["numbacnn"]["numba_loaded"] and not mem["numbacnn"]["torch_loaded"]
    assert_all_positive({k: v for k, v in mem.items() if k != "spec"}, "memory")
    startup = quick["startup"]
    assert "train_command_error" not in startup, startup["train_command_error"]
    assert_all_positive(startup, "startup")
    assert startup["first_step_s"] == startup["train_command_s"]
    names = [t["target"] for t in quick["targets"]]
    assert len(names) == 5 and any("conv forward rate" in n for n in names)


@needs_torch
def test_quick_compare_torch() -> None:
    import torch_models

    result = json.loads(json.dumps(suite.run_benchmarks(
        quick=True, device="cpu", compare_with="torch", startup_check=False)))
    [net] = result["networks"]
    check_network(net, "numbacnn")
    check_network(net["torch"], "torch")
    assert [r["layer"] for r in net["torch"]["layers"]] == [r["layer"] for r in net["layers"]]
    assert net["torch"]["threads"] == torch_models.compute_threads()
    assert len(net["ratio"]["layers_time"]) == len(net["layers"])
    assert_all_positive(result["networks"], "networks")
    mem = result["memory"]
    assert not mem["torch"]["numba_loaded"] and mem["torch"]["torch_loaded"]
    assert_all_positive({k: v for k, v in mem.items() if k != "spec"}, "memory")
    [fm] = [t for t in result["targets"] if t["target"].startswith("fmnist")]
    assert fm["passed"] in (True, False)
    lines = report.format_text(result).splitlines()
    table = [line for line in lines if "│" in line]
    assert len(table) == 1 + len(net["layers"]) + 4  # numbacnn's rows, PyTorch's beside
    assert len({line.index("│") for line in table}) == 1


def test_text_output_and_markdown(quick: dict[str, Any], tmp_path) -> None:
    text = report.format_text(quick)
    assert "fwd ms" in text and "images/s" in text and "targets:" in text
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps(quick))
    md = subprocess.run([sys.executable, str(BENCH / "report.py"), str(saved),
                         "--command", "bench/suite.py --quick"], capture_output=True, text=True,
                        check=True).stdout
    assert md.startswith("## ") and "### Targets" in md
    assert "`bench/suite.py --quick`" in md and "| target | goal | measured | result |" in md


def test_the_command_runs_and_writes_its_result(tmp_path) -> None:
    out = tmp_path / "run.json"
    done = run_suite_command("input 8x8x1; conv 4 3; relu; fc 3", "--quick", "--no-layers",
                             "--no-memory", "--no-startup", "--iterations", "1",
                             "--device", "cpu", "--json", "--output", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == json.loads(out.read_text())
    [net] = result["networks"]
    assert "layers" not in net and "conv_rate" not in net
    assert net["iterations"] == 1 and net["batch"] == 32
    assert_all_positive(net["train"], "train")
    assert "memory" not in result and "startup" not in result
    assert done.stderr.startswith("bench: input 8x8x1")


def test_unknown_spec_is_one_error_line() -> None:
    done = run_suite_command("nosuchnet", "--quick", "--device", "cpu")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in done.stderr


def test_importing_the_suite_loads_no_torch() -> None:
    """Without --compare torch the suite runs where PyTorch is not installed."""
    code = (f"import sys; sys.path.insert(0, {str(BENCH)!r}); import suite; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_targets_judge_the_ratios() -> None:
    def net(spec: str, ips: float, torch_ips: float, conv_ratio: float) -> dict[str, Any]:
        return {"spec": spec, "batch": 16, "train": {"images_per_s": ips},
                "torch": {"train": {"images_per_s": torch_ips}},
                "ratio": {"throughput": ips / torch_ips},
                "conv_rate": {"reference": "numpy SGEMM", "total": {
                    "gflops": 70.0 * conv_ratio, "sgemm_gflops": 70.0, "ratio": conv_ratio}}}

    result = {"networks": [net("fmnist", 5000, 4000, 0.75), net("alexnet", 70, 100, 0.5)],
              "startup": {"first_step_s": 3.5, "method": "x"},
              "memory": {"spec": "alexnet", "batch": 16, "numbacnn": {"peak_rss_mib": 1400},
                         "torch": {"peak_rss_mib": 1000}, "ratio": 1.4}}
    verdicts = {row["target"].split(" (")[0]: row["passed"]
                for row in targets.evaluate_targets(result)}
    assert verdicts == {"fmnist training throughput": True, "conv forward rate": False,
                        "alexnet training throughput": False,
                        "second process: start to first finished step": False,
                        "peak RSS": True}
    rows = targets.evaluate_targets({"networks": []})
    assert all(row["passed"] is None for row in rows)


def test_gpu_targets_judge_sgemm_and_fp32_ratios() -> None:
    def net(spec: str, ips: float, torch_ips: float) -> dict[str, Any]:
        return {"spec": spec, "batch": 128, "train": {"images_per_s": ips},
                "torch": {"train": {"images_per_s": torch_ips}},
                "ratio": {"throughput": ips / torch_ips}}

    result = {"config": {"device": "cuda", "precision": "fp32"},
              "networks": [net("fmnist", 30000, 59000), net("alexnet", 2000, 7400)],
              "sgemm": {"cublas_fp32_tflops": 50.1, "numbacnn_tflops": 12.0}}
    verdicts = {row["target"].split(",")[0].split(" (")[0]: row["passed"]
                for row in targets.evaluate_targets(result)}
    assert verdicts == {"SGEMM 4096³ through cuBLAS": True, "SGEMM 4096³": False,
                        "fmnist training": True, "alexnet training": False}
    rows = targets.evaluate_targets({"config": {"device": "cuda"}, "networks": []})
    assert all(row["passed"] is None for row in rows)


def test_target_lines_say_not_measured_once() -> None:
    rows = [{"target": "speed", "goal": "fast", "measured": "not measured", "passed": None},
            {"target": "size", "goal": "small", "measured": "3 MB", "passed": True}]
    environment = {"device": "cpu", "cpu": "x", "cores": 2,
                   "versions": {"numba": "0", "numpy": "0"}}
    text = report.format_text({"networks": [], "targets": rows, "environment": environment})
    assert "measured not measured" not in text
    assert "speed: fast; not measured" in text and "size: small; measured 3 MB" in text


def test_default_batches() -> None:
    assert suite.default_batch("alexnet", "cpu", quick=False) == 16
    assert suite.default_batch("alexnet", "cuda", quick=False) == 128
    assert suite.default_batch("input 8x8x1; fc 2", "cpu", quick=True) == 32
