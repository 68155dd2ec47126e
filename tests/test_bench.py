"""Tests of the benchmark suite (numbacnn.bench, ``numbacnn bench``, bench/torch_models.py).

The CLI runs in ``--quick`` mode (fmnist batch 32, 2 steps) and is checked for its JSON
layout and for every measured figure being positive and finite; timings themselves are
not judged. The PyTorch comparison and the twin check run only where torch imports.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from numbacnn_cli.main import cli

from numbacnn import bench

HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed "
                                 f"(pip install {bench.TORCH_PIN}); comparison not tested")

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


def run_cli(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["bench", "--quick", "--json", "--device", "cpu", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def quick() -> dict[str, Any]:
    """One ``numbacnn bench --quick --json`` run, shared by the tests below."""
    return run_cli()


def check_network(net: dict[str, Any], framework: str) -> None:
    assert net["framework"] == framework
    assert net["batch"] == 32 and net["iterations"] == 2
    for key in ("layers", "loss", "update", "total", "train", "warmup_times"):
        assert key in net, key
    keys = {"index", "layer", "output_shape", "forward_ms", "backward_ms", "percent"}
    for row in net["layers"]:
        assert set(row) == keys | ({"fused"} if framework == "numbacnn" else set())
    assert [r["index"] for r in net["layers"]] == list(range(len(net["layers"])))
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
    assert [c["index"] for c in net["conv_rate"]["layers"]] == [0, 3]
    assert net["conv_rate"]["layers"][0]["gemm"] == "32x9 @ 9x25088"
    assert "torch" not in net
    assert_all_positive(quick["networks"], "networks")
    mem = quick["memory"]
    assert mem["spec"] == "fmnist" and set(mem) >= {"numbacnn"}
    assert mem["numbacnn"]["numba_loaded"] and not mem["numbacnn"]["torch_loaded"]
    assert_all_positive({k: v for k, v in mem.items() if k != "spec"}, "memory")
    assert_all_positive(quick["startup"], "startup")
    assert quick["startup"]["first_step_s"] > 0
    names = [t["target"] for t in quick["targets"]]
    assert len(names) == 5 and any("conv forward rate" in n for n in names)


@needs_torch
def test_quick_compare_torch() -> None:
    result = run_cli("--compare", "torch", "--no-startup")
    [net] = result["networks"]
    check_network(net, "numbacnn")
    check_network(net["torch"], "torch")
    assert [r["layer"] for r in net["torch"]["layers"]] == [r["layer"] for r in net["layers"]]
    assert net["torch"]["threads"] == bench.compute_threads()
    assert len(net["ratio"]["layers_time"]) == len(net["layers"])
    assert_all_positive(result["networks"], "networks")
    mem = result["memory"]
    assert not mem["torch"]["numba_loaded"] and mem["torch"]["torch_loaded"]
    assert_all_positive({k: v for k, v in mem.items() if k != "spec"}, "memory")
    [fm] = [t for t in result["targets"] if t["target"].startswith("fmnist")]
    assert fm["passed"] in (True, False)


def test_text_output_and_markdown(quick: dict[str, Any], tmp_path) -> None:
    text = bench.format_text(quick)
    assert "fwd ms" in text and "images/s" in text and "targets:" in text
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps(quick))
    md = subprocess.run([sys.executable, "-m", "numbacnn.bench", "markdown", str(saved),
                         "--command", "numbacnn bench --quick"], capture_output=True, text=True,
                        check=True).stdout
    assert md.startswith("## ") and "### Targets" in md
    assert "`numbacnn bench --quick`" in md and "| target | goal | measured | result |" in md


def test_no_layers_skips_the_table() -> None:
    result = run_cli("--no-layers", "--no-memory", "--no-startup", "--iterations", "1")
    [net] = result["networks"]
    assert "layers" not in net and "conv_rate" not in net
    assert net["iterations"] == 1
    assert_all_positive(net["train"], "train")
    assert "memory" not in result and "startup" not in result


def test_unknown_spec_is_one_error_line() -> None:
    result = CliRunner().invoke(cli, ["bench", "nosuchnet", "--quick", "--device", "cpu"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in result.output


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
                for row in bench.evaluate_targets(result)}
    assert verdicts == {"fmnist training throughput": True, "conv forward rate": False,
                        "alexnet training throughput": False,
                        "second process: start to first finished step": False,
                        "peak RSS": True}
    rows = bench.evaluate_targets({"networks": []})
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
                for row in bench.evaluate_targets(result)}
    assert verdicts == {"SGEMM 4096³ through cuBLAS": True, "SGEMM 4096³": False,
                        "fmnist training": True, "alexnet training": False}
    rows = bench.evaluate_targets({"config": {"device": "cuda"}, "networks": []})
    assert all(row["passed"] is None for row in rows)


def test_builtin_networks_match_the_presets() -> None:
    for name, batch in (("fmnist", 128), ("alexnet", 16)):
        shape, layers = bench._builtin_layers(name)
        from numbacnn.network import Network

        ours = Network(layers, input_shape=shape)
        preset = bench.build_network(name)
        assert preset.input_shape == ours.input_shape
        assert [la.describe() for la in preset.layers] == [la.describe() for la in ours.layers]
        assert bench.default_batch(name, "cpu", quick=False) == batch


def test_importing_the_bench_modules_loads_no_numba_or_torch() -> None:
    code = ("import sys, numbacnn.bench, numbacnn_cli.bench, numbacnn_cli.main; "
            "print(sorted(m for m in ('numba', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


@needs_torch
def test_torch_twin_computes_what_numbacnn_computes(rng: np.random.Generator) -> None:
    """Same weights, same input: every twin layer gives numbacnn's forward output (a conv
    with a fused ReLU is compared after the ReLU)."""
    import torch

    from numbacnn.device import to_host
    from numbacnn.network import Network

    tm = bench.load_torch_models()
    spec = ("input 12x12x3; conv 8 3 pad=1; relu; lrn size=5 alpha=0.001 beta=0.75 k=2; "
            "maxpool 2; conv 6 3 stride=1 pad=0; leaky; maxout 2; avgpool 2; flatten; "
            "fc 16; tanh; dropout 0.5; fc 12; elu; fc 5; sigmoid; fc 4; softmax")
    net = Network.from_spec(spec).initialize(3)
    x = rng.standard_normal((3, 3, 12, 12)).astype(np.float32)
    model = tm.make_twin(net).eval()
    h_ours, h_theirs = x, torch.from_numpy(x)
    with torch.no_grad():
        for layer, module in zip(net.layers, model, strict=True):
            h_ours = to_host(layer.forward(h_ours, training=False)).copy()
            h_theirs = module(h_theirs)
            if getattr(layer, "fused_relu", False):
                continue  # its output already has the next layer's ReLU applied
            np.testing.assert_allclose(h_ours, h_theirs.numpy(), rtol=1e-4, atol=1e-5,
                                       err_msg=layer.describe())
