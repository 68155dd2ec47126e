"""The first run's compile (numbacnn.training.warmup): ``numbacnn train`` says so before
numba compiles the CPU drivers and only then, and the drivers compiled in other processes
are the ones the run then loads from numba's cache, without compiling anything itself.

Each test starts fresh processes on an empty NUMBACNN_CACHE_DIR with a small network of
fully connected layers (a few cheap drivers: seconds to compile, not the fmnist
network's 25 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from numbacnn.io.dataset_files import save_dataset
from numbacnn.io.datasets import Dataset
from numbacnn.training.warmup import COMPILE_SECONDS, DEFAULT_SECONDS, CompilePlan

SPEC = "input 6x6x1; fc 8 activation=relu; fc 3; softmax"
COMPILE_LINE = "compiling the CPU kernels for this machine (first run only, ~"


def small_dataset(path: Path) -> Path:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (40, 1, 6, 6), dtype=np.uint8)
    y = np.arange(40, dtype=np.int64) % 3
    save_dataset(Dataset(x, y, x[:9], y[:9], ["a", "b", "c"], "small"), path)
    return path


def run_python(code: str, cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NUMBACNN_CACHE_DIR=str(cache), NUMBACNN_DEVICE="cpu")
    env.pop("NUMBACNN_PARALLEL_COMPILE", None)
    run = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return run


def test_train_says_it_compiles_on_a_cold_cache_and_not_on_a_warm_one(tmp_path: Path) -> None:
    data = small_dataset(tmp_path / "small.h5")
    train = "from numbacnn_cli.main import cli; cli()"
    args = ("train", SPEC, "--data", str(data), "--epochs", "1", "--out",
            str(tmp_path / "m.h5"), "--force")
    cold = run_python(train, tmp_path / "cache", *args)
    lines = cold.stdout.splitlines()
    said = [i for i, line in enumerate(lines) if line.startswith(COMPILE_LINE)]
    assert len(said) == 1, cold.stdout
    # after the header, before the initial loss (whose forward pass compiles too)
    assert said[0] == 2 and lines[3].startswith("initial loss"), cold.stdout
    warm = run_python(train, tmp_path / "cache", *args)
    assert "compiling" not in warm.stdout + warm.stderr, warm.stdout
    assert warm.stdout.splitlines()[2].startswith("initial loss")


CHECK_LOADS = """
import json, sys
import numpy as np
from numba.core.registry import CPUDispatcher
from numbacnn.io.dataset_files import load_dataset
from numbacnn.network import Network
from numbacnn.training.settings import TrainSettings
from numbacnn.training.trainer import Trainer
from numbacnn.training.warmup import compile_plan

spec, data, compile_first = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
settings = TrainSettings(spec=spec, data=data, epochs=1, batch_size=16)
trainer = Trainer(Network.from_spec(spec, device="cpu"), load_dataset(data), settings)
plan = compile_plan(trainer)
plan.workers = 2  # in parallel even on one core


def counts():  # {driver: (cache hits, cache misses)} of this process's compiled drivers
    found = {}
    for module in [m for n, m in sys.modules.items() if n.startswith("numbacnn.backends.")]:
        for value in vars(module).values():
            if isinstance(value, CPUDispatcher) and value.signatures:
                found[value.py_func.__name__] = (sum(value.stats.cache_hits.values()),
                                                 sum(value.stats.cache_misses.values()))
    return found


if compile_first:
    plan.run()
before = counts()  # what plan.run compiled in this process (its first share)
trainer.run()
trainer.test_accuracy()
found = {name: (hits, misses - before.get(name, (0, 0))[1])
         for name, (hits, misses) in counts().items()}
print(json.dumps({"planned": plan.names, "shares": plan.shares(), "drivers": found,
                  "compiled_first": sorted(before)}))
"""


def test_the_run_loads_every_driver_the_workers_compiled(tmp_path: Path) -> None:
    data = small_dataset(tmp_path / "small.h5")
    result = json.loads(run_python(CHECK_LOADS, tmp_path / "cache", SPEC, str(data),
                                   "1").stdout)
    assert len(result["shares"]) == 2
    drivers = result["drivers"]
    compiled_here = {name: misses for name, (_, misses) in drivers.items() if misses}
    assert not compiled_here, f"compiled by the run itself: {compiled_here}"
    assert {"_gemm_in_parts", "relu_forward", "relu_backward", "softmax_cross_entropy_forward",
            "sgd_momentum", "batch_stats"} <= set(result["planned"])
    # the first share compiled in this process, the other in a worker: loaded from the cache
    first, other = result["shares"]
    assert set(first) <= set(result["compiled_first"])
    assert not set(other) & set(result["compiled_first"])
    assert set(other) <= {name for name, (hits, _) in drivers.items() if hits}
    # what the workers' run called is kept beside the cache, for the next run's check
    remembered = list((tmp_path / "cache").glob("*/runs/*.json"))
    assert len(remembered) == 1 and set(json.loads(remembered[0].read_text())) == set(
        result["planned"])
    # the check itself: without the workers every driver is compiled by the run
    cold = json.loads(run_python(CHECK_LOADS, tmp_path / "other", SPEC, str(data),
                                 "0").stdout)
    assert all(misses for _, misses in cold["drivers"].values())


def test_shares_balance_the_compile_time() -> None:
    names = ["_conv_backward_part", "_conv_forward_part", "_max_pool_backward_2x2",
             "_max_pool_forward_2x2", "fill", "adam", "multiply", "lrn_backward",
             "lrn_forward", "batchnorm_backward"]
    plan = CompilePlan(names, 2, 0.0, "spec", {}, (1, 4, 4), 2)
    shares = plan.shares()
    assert sorted(n for share in shares for n in share) == sorted(names)
    # the two convolution drivers call the same chunk functions: one process compiles both
    assert shares[0][:2] == ["_conv_backward_part", "_conv_forward_part"]
    assert {"batchnorm_backward", "lrn_backward"} <= set(shares[1])
    loads = [sum(COMPILE_SECONDS.get(n, DEFAULT_SECONDS) for n in share) for share in shares]
    assert max(loads) - min(loads) <= max(COMPILE_SECONDS.values())
    assert CompilePlan(names[:1], 3, 0.0, "spec", {}, (1, 4, 4), 2).shares() == [names[:1]]


def test_a_run_needs_the_pooling_drivers_of_its_windows_only(tmp_path: Path) -> None:
    """Each max-pooling window kind is its own compiled driver (one prange loop each);
    the plan names those of the network's windows, so a cold run compiles no other."""
    from numbacnn.backends import cpu, cpu_pool
    from numbacnn.network import Network
    from numbacnn.training.settings import TrainSettings
    from numbacnn.training.trainer import Trainer
    from numbacnn.training.warmup import drivers_of

    spec = "input 6x6x1; maxpool 2 stride=1; maxpool 3 stride=2; fc 3; softmax"
    data = small_dataset(tmp_path / "small.h5")
    from numbacnn.io.dataset_files import load_dataset

    trainer = Trainer(Network.from_spec(spec, device="cpu"), load_dataset(data),
                      TrainSettings(spec=spec, data=str(data)))
    pooling = sorted(name for name in drivers_of(trainer) if "pool" in name)
    # both backward passes are the one scatter driver: the same loop is not compiled twice
    assert pooling == ["_max_pool_backward_any", "_max_pool_forward_3x3s2",
                       "_max_pool_forward_any"]
    assert cpu.max_pool_forward.choose(2, 2, 2, 2, 0, 0, True) is cpu_pool._max_pool_forward_2x2
    assert cpu.max_pool_backward.choose(3, 3, 2, 2, 0, 0, True) is cpu_pool._max_pool_backward_any
    assert cpu.max_pool_forward.choose(2, 2, 1, 1, 0, 0, True) is cpu_pool._max_pool_forward_any
    # a padded or clipped (ceil) window takes the general driver
    assert cpu.max_pool_forward.choose(2, 2, 2, 2, 0, 0, False) is cpu_pool._max_pool_forward_any
    assert cpu.avg_pool_forward.choose(2, 2, 2, 2, 0, 0, True) is cpu_pool._avg_pool_forward_2x2

    fmnist_like = "input 6x6x1; maxpool 2; fc 3; softmax"
    trainer = Trainer(Network.from_spec(fmnist_like, device="cpu"), load_dataset(data),
                      TrainSettings(spec=fmnist_like, data=str(data)))
    assert sorted(n for n in drivers_of(trainer) if "pool" in n) == [
        "_max_pool_backward_2x2", "_max_pool_forward_2x2"]


def test_a_direct_convolution_plans_its_own_drivers(tmp_path: Path) -> None:
    """A network whose first convolution runs direct (auto, one input channel) plans the
    direct drivers and, with no other convolution on im2col, not im2col's; each has its
    measured compile seconds."""
    from numbacnn.io.dataset_files import load_dataset
    from numbacnn.network import Network
    from numbacnn.training.settings import TrainSettings
    from numbacnn.training.trainer import Trainer
    from numbacnn.training.warmup import drivers_of

    spec = ("input 6x6x1; conv 4 3 pad=same activation=relu; conv 4 3 pad=1 algo=direct; "
            "fc 3; softmax")
    data = small_dataset(tmp_path / "small.h5")
    trainer = Trainer(Network.from_spec(spec, device="cpu"), load_dataset(data),
                      TrainSettings(spec=spec, data=str(data), conv_algo="auto"))
    convolution = sorted(n for n in drivers_of(trainer) if "direct" in n or "conv" in n)
    assert convolution == ["_direct_forward_part", "_direct_input_grads_part",
                           "_direct_weight_grads_part"]
    assert set(convolution) <= set(COMPILE_SECONDS)


def test_a_run_needs_the_winograd_drivers_of_its_window_sizes_only(tmp_path: Path) -> None:
    """A 5×5 convolution under winograd names cpu_winograd5's drivers (cpu_winograd35's
    under winograd3), a 3×3 one cpu_winograd's (cpu_winograd43's under winograd4); each
    has its COMPILE_SECONDS."""
    from numbacnn.io.dataset_files import load_dataset
    from numbacnn.network import Network
    from numbacnn.training.settings import TrainSettings
    from numbacnn.training.trainer import Trainer
    from numbacnn.training.warmup import drivers_of

    data = load_dataset(small_dataset(tmp_path / "small.h5"))
    found = {}
    for size, algo in ((3, "winograd"), (5, "winograd"), (3, "winograd4"), (5, "winograd3")):
        spec = f"input 6x6x1; conv 2 {size} pad={size // 2} algo={algo}; fc 3; softmax"
        trainer = Trainer(Network.from_spec(spec, device="cpu"), data,
                          TrainSettings(spec=spec, data="small.h5"))
        found[size, algo] = sorted(n for n in drivers_of(trainer) if "winograd" in n)
    for key, prefix in (((3, "winograd"), "_winograd_"), ((5, "winograd"), "_winograd5_"),
                        ((3, "winograd4"), "_winograd43_"), ((5, "winograd3"), "_winograd35_")):
        assert all(name.startswith(prefix) for name in found[key])
        finish = ("finish_part" if prefix in ("_winograd43_", "_winograd35_")  # in parts
                  else "finish_grads")
        parts = {prefix + part for part in ("forward_part", "backward_part", finish)}
        assert parts <= set(found[key]) and parts <= set(COMPILE_SECONDS)
