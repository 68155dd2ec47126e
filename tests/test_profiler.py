"""The profiler (numbacnn/training/profiler.py) and ``numbacnn bench``, which prints it.

The timer is an argument of :meth:`Network.train_step_on_device`: it must see every
layer's and the loss's forward and backward call, in order, with the device
synchronized around each, and must not change what the step computes. The profile's
arithmetic (ms per step, percentages, totals) is checked on given seconds; real
timings are only checked to be positive. The library imports neither the CLI nor the
benchmark suite.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import run

from numbacnn.network import Network
from numbacnn.training import profiler
from numbacnn.training.optim import SGD

SPEC = "input 8x8x1; conv 4 3 pad=1; relu; maxpool 2; fc 16; relu; dropout 0.2; fc 3"
LIBRARY = Path(profiler.__file__).resolve().parent


class RecordingTimer:
    """A timer that records the calls it measures, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    @contextmanager
    def measure(self, slot: int, phase: str) -> Iterator[None]:
        self.calls.append((slot, phase))
        yield


def test_the_timer_sees_every_layer_and_the_loss_in_order(rng: np.random.Generator) -> None:
    net = Network.from_spec(SPEC).initialize(0)
    x = rng.standard_normal((5, 1, 8, 8)).astype(np.float32)
    timer = RecordingTimer()
    net.train_step_on_device(x, rng.integers(0, 3, 5), timer=timer)
    L = len(net.layers)
    assert timer.calls == ([(i, "forward") for i in range(L + 1)]
                           + [(i, "backward") for i in range(L, -1, -1)])


def test_a_timed_step_computes_what_an_untimed_step_computes(rng: np.random.Generator) -> None:
    x = rng.standard_normal((6, 1, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 3, 6)
    grads = []
    for timed in (False, True):
        net = Network.from_spec(SPEC).initialize(1)
        timer = profiler.LayerTimer(len(net.layers), lambda: None) if timed else None
        stats = np.zeros(2, np.float32)
        net.train_step_on_device(x, labels, stats, timer=timer)
        grads.append([np.array(g) for _, _, g in net.parameters()] + [stats])
    for untimed, timed in zip(*grads, strict=True):
        np.testing.assert_array_equal(untimed, timed)


def test_layer_timer_synchronizes_before_each_clock_read() -> None:
    events: list[str] = []
    timer = profiler.LayerTimer(2, lambda: events.append("sync"))
    with timer.measure(1, "backward"):
        events.append("work")
    assert events == ["sync", "work", "sync"]
    assert timer.seconds["backward"][1] > 0
    assert timer.seconds["forward"].tolist() == [0.0, 0.0, 0.0]
    assert timer.seconds["backward"][[0, 2]].tolist() == [0.0, 0.0]


def test_layer_table_is_ms_per_step_and_shares_of_the_step() -> None:
    table = profiler.layer_table(["conv 2 3", "fc 2"], ["4x4x2", "2"],
                                 forward_s=np.array([0.004, 0.002, 0.001]),
                                 backward_s=np.array([0.006, 0.004, 0.001]),
                                 update_s=0.002, steps=2, fused=[False, True])
    assert [r["forward_ms"] for r in table["layers"]] == pytest.approx([2.0, 1.0])
    assert [r["backward_ms"] for r in table["layers"]] == pytest.approx([3.0, 2.0])
    assert table["loss"] == pytest.approx({"forward_ms": 0.5, "backward_ms": 0.5,
                                           "percent": 10.0})
    assert table["update"] == pytest.approx({"ms": 1.0, "percent": 10.0})
    assert table["total"] == pytest.approx({"forward_ms": 3.5, "backward_ms": 5.5,
                                            "update_ms": 1.0, "step_ms": 10.0})
    assert [r["percent"] for r in table["layers"]] == pytest.approx([50.0, 30.0])
    assert [r["fused"] for r in table["layers"]] == [False, True]


def test_throughput_and_warmup_from_step_seconds() -> None:
    assert profiler.throughput([0.5, 0.25, 0.25], batch=10) == pytest.approx(
        {"images_per_s": 30.0, "step_ms": 1000 / 3, "best_step_ms": 250.0})
    assert profiler.warmup_summary([2.0, 0.5], steady_step_ms=500.0) == pytest.approx(
        {"first_step_s": 2.0, "steady_step_s": 0.5, "compile_s": 1.5})
    assert profiler.warmup_summary([0.4], steady_step_ms=500.0)["compile_s"] == 0.0


def test_profile_of_a_network(rng: np.random.Generator) -> None:
    net = Network.from_spec(SPEC).initialize(0)
    profile = profiler.profile_training(net, batch=4, iterations=2, warmup=1)
    assert (profile["framework"], profile["device"], profile["batch"]) == ("numbacnn", "cpu", 4)
    assert [r["layer"] for r in profile["layers"]] == [la.describe() for la in net.layers]
    assert [r["output_shape"] for r in profile["layers"]][:3] == ["8x8x4", "8x8x4", "4x4x4"]
    assert [r["fused"] for r in profile["layers"]][:2] == [False, True]  # relu in the conv
    total = profile["total"]
    assert total["step_ms"] == pytest.approx(total["forward_ms"] + total["backward_ms"]
                                             + total["update_ms"])
    shares = [r["percent"] for r in profile["layers"]]
    assert sum(shares) + profile["loss"]["percent"] + profile["update"]["percent"] == \
        pytest.approx(100.0)
    assert all(r["forward_ms"] > 0 and r["backward_ms"] > 0 for r in profile["layers"][2:])
    assert profile["train"]["images_per_s"] > 0 and profile["warmup_times"]["first_step_s"] > 0
    assert profile["params"] == net.num_params()


def test_profiling_trains_like_the_trainer_does() -> None:
    """The profiled steps are SGD steps on the network: the same weights as steps run
    by hand (warm-up, layer-timed and throughput steps: 1 + 2 + 2)."""
    net = Network.from_spec(SPEC).initialize(0)
    profiler.profile_training(net, batch=4, iterations=2, warmup=1)
    by_hand = Network.from_spec(SPEC).initialize(0)
    x, labels = profiler.random_batch(by_hand.input_shape, by_hand.num_classes, 4)
    optimizer = SGD(momentum=0.9, weight_decay=5e-4)
    stats = np.zeros(2, np.float32)
    for _ in range(5):
        by_hand.train_step_on_device(x, labels, stats)
        optimizer.step(by_hand, profiler.LEARNING_RATE)
    for (_, w, _), (_, v, _) in zip(net.parameters(), by_hand.parameters(), strict=True):
        np.testing.assert_allclose(np.asarray(w), np.asarray(v), rtol=1e-6)


def test_text_table_lines_line_up() -> None:
    table = profiler.layer_table(["conv 2 3 stride=1 pad=0 with a very long name", "fc 2"],
                                 ["4x4x2", "2"], np.ones(3), np.ones(3), 1.0, 1)
    profile = {"spec": "tiny", "batch": 8, "device": "cpu", "iterations": 1, "warmup": 1,
               "params": 1234, "gflop_per_image": 0.5, **table,
               "train": {"images_per_s": 80.0, "step_ms": 100.0, "best_step_ms": 90.0},
               "warmup_times": {"first_step_s": 1.0, "steady_step_s": 0.1, "compile_s": 0.9}}
    lines = profiler.layer_table_lines(profile)
    assert {len(line) for line in lines} == {profiler.TABLE_WIDTH}
    assert len(lines) == 1 + 2 + 4  # header, layers, loss, update, total, step
    text = profiler.format_profile(profile)
    assert text.splitlines()[0].startswith("tiny: batch 8 on cpu") and "1,234 parameters" in text
    assert "training: 80.0 images/s (100.0 ms/step, best 90.0)" in text
    assert "JIT compile / cache load 0.90 s" in text


# ----------------------------------------------------------------------------- the command


def bench_cli(*args: str) -> Any:
    return run("bench", "--device", "cpu", *args)


def test_bench_json_and_output_file(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = bench_cli(SPEC, "fmnist", "--batch", "4", "--iterations", "2", "--warmup", "1",
                       "--json", "--output", str(out))
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == json.loads(out.read_text())
    assert printed["config"] == {"device": "cpu", "precision": "fp32", "batch": 4,
                                 "iterations": 2, "warmup": 1}
    assert [n["spec"] for n in printed["networks"]] == [profiler.spec_label(SPEC), "fmnist"]
    assert all(len(n["layers"]) == len(Network.from_spec(s).layers)
               for n, s in zip(printed["networks"], (SPEC, "fmnist"), strict=True))
    assert result.stderr.startswith("bench: input 8x8x1")


def test_the_bench_result_is_built_and_read_by_the_library(tmp_path: Path) -> None:
    from numbacnn.training.bench_result import (
        BenchResultError,
        bench_result,
        bench_result_text,
        read_bench_result,
    )

    profile = profiler.profile_spec(SPEC, batch=2, iterations=1, warmup=1, layers=False)
    result = bench_result([profile], device="cpu", precision="fp32", batch=2, iterations=1,
                          warmup=1)
    assert list(result["config"]) == ["device", "precision", "batch", "iterations", "warmup"]
    path = tmp_path / "r.json"
    path.write_text(bench_result_text(result) + "\n")
    assert read_bench_result(path) == json.loads(json.dumps(result))
    with pytest.raises(BenchResultError, match="lacks train"):
        bench_result([{k: v for k, v in profile.items() if k != "train"}], device="cpu",
                     precision="fp32", batch=2, iterations=1, warmup=1)
    for text, says in (("{", "not a numbacnn benchmark result"),
                       ('{"networks": {}}', "no list of networks"), ("[]", "no list")):
        path.write_text(text)
        with pytest.raises(BenchResultError, match=says):
            read_bench_result(path)
    with pytest.raises(BenchResultError, match="no such file"):
        read_bench_result(tmp_path / "none.json")


def test_bench_text_and_no_layers() -> None:
    result = bench_cli(SPEC, "--batch", "4", "--iterations", "1", "--warmup", "1")
    assert result.exit_code == 0, result.output
    assert "fwd ms" in result.stdout and "training:" in result.stdout
    result = bench_cli(SPEC, "--batch", "4", "--iterations", "1", "--warmup", "1",
                       "--no-layers", "--json")
    [net] = json.loads(result.stdout)["networks"]
    assert "layers" not in net and net["train"]["images_per_s"] > 0


def test_bench_compare_points_to_the_suite() -> None:
    result = bench_cli("fmnist", "--compare", "torch")
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and "python bench/suite.py fmnist --compare torch" in line


def test_importing_the_profiler_and_the_command_loads_no_numba_or_torch() -> None:
    code = ("import sys, numbacnn.training.profiler, numbacnn_cli.bench, numbacnn_cli.main; "
            "print(sorted(m for m in ('numba', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def imported_modules(path: Path) -> set[str]:
    """The modules a Python file imports, at any depth."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_library_imports_neither_the_cli_nor_the_benchmark_suite() -> None:
    suite_modules = {p.stem for p in (LIBRARY.parent / "bench").glob("*.py")}
    for path in sorted(LIBRARY.rglob("*.py")):
        top_level = {name.split(".")[0] for name in imported_modules(path)}
        assert not top_level & ({"numbacnn_cli"} | suite_modules), path
