"""Benchmarks: per-layer times like ``caffe time``, training throughput, and the figures
that the performance targets are judged by.

:func:`run_benchmarks` returns one JSON-ready dict; ``numbacnn bench`` (``cli/bench.py``)
prints it as tables or JSON, and :func:`markdown_section` writes it for
``bench/RESULTS.md``. What is measured, for each network (a preset name or spec):

* per layer: forward and backward milliseconds averaged over ``iterations`` training
  steps after ``warmup`` steps, the backend synchronized before every clock read;
  the loss and the SGD update appear as their own rows;
* training throughput: images/s of whole steps (forward, loss, backward, SGD update);
* warm-up: the first step's time beyond a steady step, i.e. JIT compilation (or the
  loading of numba's on-disk cache), reported apart from the steady state;
* convolution forward rate in GFLOP/s beside the rate of the plain SGEMM of the same
  product (K × CFF times CFF × N·OH·OW): numpy's BLAS on the CPU, our kernel on CUDA.

Run-wide: peak RSS of training in fresh subprocesses (numbacnn and PyTorch apart, so
they do not share a peak), start-up time of a second process up to its first finished
training step, on CUDA the 4096³ SGEMM rate against cuBLAS, and the target table.

PyTorch is never a dependency: ``compare="torch"`` loads ``bench/torch_models.py`` from
the source tree, which imports torch itself; when either is missing the comparison is
skipped with the reason recorded. Importing this module imports neither numba nor torch.

``python -m numbacnn.bench`` runs the helper processes (``rss``, ``first-step``) and turns
a saved JSON result into a RESULTS.md section (``markdown``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from numbacnn.errors import NumbacnnError

DEFAULT_SPECS = ("fmnist", "alexnet")
QUICK_SPECS = ("fmnist",)
CPU_BATCH = {"fmnist": 128, "alexnet": 16}
GPU_BATCH = {"fmnist": 128, "alexnet": 128}
QUICK_BATCH = {"fmnist": 32, "alexnet": 2}
OTHER_BATCH = 64  # any other spec
DEFAULT_ITERATIONS, DEFAULT_WARMUP = 10, 2
QUICK_ITERATIONS, QUICK_WARMUP = 2, 1
LEARNING_RATE = 1e-3  # small: random data must not drive the weights to NaN
TORCH_PIN = "torch==2.13.0"

# Targets of issue 8 (GPU, H100/H200, FP32); see bench/README.md.
GPU_TARGET_CUBLAS_TFLOPS = 40.0  # SGEMM 4096³ through cuBLAS
GPU_TARGET_NUMBA_TFLOPS = 20.0  # the numba SGEMM
GPU_TARGET_FMNIST = 0.5  # × PyTorch FP32, batch 128
GPU_TARGET_ALEXNET = 0.33  # × PyTorch FP32, batch 128
# Targets of issue 5 (CPU); see bench/README.md.
TARGET_FMNIST_THROUGHPUT = 1.0  # ≥ PyTorch's images/s
TARGET_CONV_RATE = 0.70  # conv forward GFLOP/s ≥ 70 % of numpy SGEMM
TARGET_ALEXNET_THROUGHPUT = 0.8  # ≥ 0.8 × PyTorch at batch 16
TARGET_STARTUP_S = 3.0  # second process: first finished training step
TARGET_RSS_RATIO = 1.5  # alexnet batch-16 peak RSS ≤ 1.5 × PyTorch's

_REPO = Path(__file__).resolve().parents[1]
TORCH_MODELS = _REPO / "bench" / "torch_models.py"


# --- networks -------------------------------------------------------------------------


def _builtin_layers(name: str) -> tuple[tuple[int, int, int], list[Any]] | None:
    """The two default networks from layer objects, for a tree without their presets."""
    from numbacnn.layers import LRN, Conv2D, Dense, Dropout, MaxPool2D, ReLU

    if name == "fmnist":
        return (1, 28, 28), [
            Conv2D(32, 3, pad=1), ReLU(), MaxPool2D(2),
            Conv2D(64, 3, pad=1), ReLU(), MaxPool2D(2),
            Dense(128), ReLU(), Dropout(0.3), Dense(10),
        ]  # fmt: skip
    if name == "alexnet":
        return (3, 227, 227), [
            Conv2D(96, 11, stride=4), ReLU(), MaxPool2D(3, 2), LRN(5, 1e-4, 0.75, 2.0),
            Conv2D(256, 5, pad=2), ReLU(), MaxPool2D(3, 2), LRN(5, 1e-4, 0.75, 2.0),
            Conv2D(384, 3, pad=1), ReLU(), Conv2D(384, 3, pad=1), ReLU(),
            Conv2D(256, 3, pad=1), ReLU(), MaxPool2D(3, 2),
            Dense(4096), ReLU(), Dropout(0.5), Dense(4096), ReLU(), Dropout(0.5), Dense(1000),
        ]  # fmt: skip
    return None


def build_network(spec: str) -> Any:
    """A built (not yet initialized) :class:`~numbacnn.network.Network` for ``spec``.

    ``spec`` is a preset name, a spec file or spec text (``Network.from_spec``); the
    names ``fmnist`` and ``alexnet`` also work in a tree whose spec module or presets
    are missing, from the layer lists above.
    """
    from numbacnn.network import Network

    try:
        return Network.from_spec(spec)
    except (ImportError, NumbacnnError):
        builtin = _builtin_layers(spec.strip())
        if builtin is None:
            raise
    shape, layers = builtin
    return Network(layers, input_shape=shape)


def default_batch(spec: str, device: str, quick: bool) -> int:
    """Batch size of a spec when ``--batch`` is not given."""
    table = QUICK_BATCH if quick else GPU_BATCH if device == "cuda" else CPU_BATCH
    return table.get(spec.strip(), 32 if quick else OTHER_BATCH)


def spec_label(spec: str) -> str:
    """A short name for tables: the preset name, or the first line of spec text."""
    text = spec.strip().splitlines()[0] if spec.strip() else spec
    return text if len(text) <= 40 else text[:37] + "..."


def output_shape_text(shape: tuple[int, ...]) -> str:
    """W×H×D as the lecture and the spec write it (``55x55x96``; fc outputs as ``4096``)."""
    C, H, W = shape
    return str(C) if H == W == 1 else f"{W}x{H}x{C}"


# --- timing -------------------------------------------------------------------------


def _clock(sync: Callable[[], None]) -> float:
    sync()
    return time.perf_counter()


@contextmanager
def _layer_timers(net: Any, sync: Callable[[], None]) -> Iterator[dict[str, np.ndarray]]:
    """Wrap every layer's and the loss's forward/backward so each call adds its seconds.

    The wrappers are instance attributes that shadow the methods while the block runs,
    so :meth:`Network.train_step` itself is what gets timed, unchanged.
    """
    L = len(net.layers)
    totals = {"forward": np.zeros(L + 1), "backward": np.zeros(L + 1)}

    def wrap(obj: Any, method: str, slot: int, column: str) -> None:
        inner = getattr(obj, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = _clock(sync)
            out = inner(*args, **kwargs)
            totals[column][slot] += _clock(sync) - t0
            return out

        setattr(obj, method, timed)

    # the loss's forward pass in a training step is forward_on_device (and its batch sums)
    methods = [(layer, "forward", "forward") for layer in net.layers] + [
        (net.loss, "forward_on_device", "forward"), (net.loss, "add_batch_stats", "forward")]
    methods += [(obj, "backward", "backward") for obj in [*net.layers, net.loss]]
    slots = {id(obj): slot for slot, obj in enumerate([*net.layers, net.loss])}
    try:
        for obj, method, column in methods:
            wrap(obj, method, slots[id(obj)], column)
        yield totals
    finally:
        for obj, method, _ in methods:
            obj.__dict__.pop(method, None)


def layer_table(descriptions: list[str], shapes: list[str], forward_s: np.ndarray,
                backward_s: np.ndarray, update_s: float, iterations: int,
                fused: list[bool] | None = None) -> dict[str, Any]:
    """The per-layer part of a result: rows, loss, update and totals in ms per step.

    ``forward_s``/``backward_s`` hold one total per layer plus the loss last; ``fused``
    marks layers whose work another layer does (a ReLU fused into its convolution).
    """
    fwd = forward_s * 1e3 / iterations
    bwd = backward_s * 1e3 / iterations
    upd = update_s * 1e3 / iterations
    total = float(fwd.sum() + bwd.sum() + upd)

    def pct(ms: float) -> float:
        return 100.0 * ms / total if total > 0 else 0.0

    rows = [{"index": i, "layer": descriptions[i], "output_shape": shapes[i],
             "forward_ms": float(fwd[i]), "backward_ms": float(bwd[i]),
             "percent": pct(fwd[i] + bwd[i])} for i in range(len(descriptions))]
    if fused is not None:
        for row, flag in zip(rows, fused, strict=True):
            row["fused"] = bool(flag)
    return {
        "layers": rows,
        "loss": {"forward_ms": float(fwd[-1]), "backward_ms": float(bwd[-1]),
                 "percent": pct(fwd[-1] + bwd[-1])},
        "update": {"ms": upd, "percent": pct(upd)},
        "total": {"forward_ms": float(fwd.sum()), "backward_ms": float(bwd.sum()),
                  "update_ms": upd, "step_ms": total},
    }


def throughput(step: Callable[[], None], sync: Callable[[], None], batch: int,
               iterations: int) -> dict[str, float]:
    """Images/s of ``iterations`` whole training steps, plus the mean and best step."""
    times = []
    for _ in range(iterations):
        t0 = _clock(sync)
        step()
        times.append(_clock(sync) - t0)
    total = float(sum(times))
    return {"images_per_s": batch * iterations / total, "step_ms": 1e3 * total / iterations,
            "best_step_ms": 1e3 * min(times)}


def warmup_times(step: Callable[[], None], sync: Callable[[], None], warmup: int) -> list[float]:
    """Seconds of each warm-up step; the first includes JIT compilation or cache loading."""
    times = []
    for _ in range(max(1, warmup)):
        t0 = _clock(sync)
        step()
        times.append(_clock(sync) - t0)
    return times


def warmup_summary(times: list[float], steady_step_ms: float) -> dict[str, float]:
    """First step, steady step and their difference (the one-off compile/load cost)."""
    first = times[0]
    steady = steady_step_ms / 1e3
    return {"first_step_s": first, "steady_step_s": steady, "compile_s": max(first - steady, 0.0)}


def random_batch(input_shape: tuple[int, int, int], classes: int, batch: int,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal float32 images N×C×H×W and int64 labels, the same for both sides."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *input_shape), dtype=np.float32)
    return x, rng.integers(0, classes, batch).astype(np.int64)


# --- numbacnn ---------------------------------------------------------------------------


def bench_numbacnn(spec: str, batch: int, iterations: int, warmup: int,
                   layers: bool = True, seed: int = 0) -> dict[str, Any]:
    """Time one network on the current device; the dict described in the module doc."""
    from numbacnn.device import backend, get_device, to_device
    from numbacnn.optim import SGD

    B = backend()
    sync = B.synchronize
    net = build_network(spec)
    net.initialize(seed)
    opt = SGD(momentum=0.9, weight_decay=5e-4)
    x_host, y_host = random_batch(net.input_shape, net.num_classes, batch, seed)
    x, labels = to_device(x_host), to_device(y_host)
    stats = B.zeros((2,))

    def step() -> None:  # as the trainer runs it: nothing read back
        net.train_step_on_device(x, labels, stats)
        opt.step(net, LEARNING_RATE)

    result: dict[str, Any] = {
        "spec": spec_label(spec), "framework": "numbacnn", "device": get_device(),
        "batch": batch, "iterations": iterations, "warmup": warmup,
        "params": int(net.num_params()),
        "gflop_per_image": sum(layer.flops() for layer in net.layers) / 1e9,
    }
    warm = warmup_times(step, sync, warmup)
    if layers:
        update = 0.0
        with _layer_timers(net, sync) as totals:
            for _ in range(iterations):
                net.train_step_on_device(x, labels, stats)
                t0 = _clock(sync)
                opt.step(net, LEARNING_RATE)
                update += _clock(sync) - t0
        result.update(layer_table([layer.describe() for layer in net.layers],
                                  [output_shape_text(layer.output_shape) for layer in net.layers],
                                  totals["forward"], totals["backward"], update, iterations,
                                  fused=[bool(getattr(la, "fused", False)) for la in net.layers]))
    result["train"] = throughput(step, sync, batch, iterations)
    result["warmup_times"] = warmup_summary(warm, result["train"]["step_ms"])
    if layers:
        result["conv_rate"] = conv_rates(net, result["layers"], batch, iterations)
    return result


def _sgemm_seconds(M: int, K: int, N: int, reps: int) -> tuple[float, str]:
    """Mean seconds of one M×K @ K×N float32 product on the current device, and its name."""
    from numbacnn.device import backend, get_device

    rng = np.random.default_rng(1)
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((K, N), dtype=np.float32)
    if get_device() == "cpu":
        out = np.empty((M, N), np.float32)
        np.matmul(a, b, out=out)
        t0 = time.perf_counter()
        for _ in range(reps):
            np.matmul(a, b, out=out)
        return (time.perf_counter() - t0) / reps, "numpy SGEMM"
    B = backend()
    da, db, dout = B.to_device(a), B.to_device(b), B.empty((M, N))
    B.gemm(da, db, dout)
    t0 = _clock(B.synchronize)
    for _ in range(reps):
        B.gemm(da, db, dout)
    name = "cuBLAS SGEMM" if B.gemm_name() == "cublas" else "numbacnn CUDA SGEMM"
    return (_clock(B.synchronize) - t0) / reps, f"{name} ({B.tf32_label()})"


def conv_rates(net: Any, rows: list[dict[str, Any]], batch: int,
               iterations: int) -> dict[str, Any]:
    """Forward GFLOP/s of each convolution beside the SGEMM of its matrix product."""
    out: list[dict[str, Any]] = []
    flops_total = conv_s = gemm_s = 0.0
    reference = ""
    for layer, row in zip(net.layers, rows, strict=True):
        if layer.kind != "conv":
            continue
        K, OH, OW = layer.output_shape
        CFF = layer.input_shape[0] * layer.size * layer.size
        flops = 2.0 * K * CFF * batch * OH * OW
        t_conv = row["forward_ms"] / 1e3
        t_gemm, reference = _sgemm_seconds(K, CFF, batch * OH * OW, max(3, iterations))
        out.append({"index": row["index"], "layer": row["layer"],
                    "gemm": f"{K}x{CFF} @ {CFF}x{batch * OH * OW}",
                    "gflops": flops / t_conv / 1e9, "sgemm_gflops": flops / t_gemm / 1e9,
                    "ratio": t_gemm / t_conv})
        flops_total += flops
        conv_s += t_conv
        gemm_s += t_gemm
    total = ({"gflops": flops_total / conv_s / 1e9, "sgemm_gflops": flops_total / gemm_s / 1e9,
              "ratio": gemm_s / conv_s} if out else {})
    return {"reference": reference, "layers": out, "total": total}


# --- PyTorch --------------------------------------------------------------------------


def load_torch_models() -> ModuleType:
    """``bench/torch_models.py`` as a module; NumbacnnError when torch or the file is absent."""
    if importlib.util.find_spec("torch") is None:
        raise NumbacnnError(f"PyTorch is not installed (pip install {TORCH_PIN})")
    if not TORCH_MODELS.is_file():
        raise NumbacnnError(f"{TORCH_MODELS} is missing: --compare torch needs the numbacnn "
                            "source tree (bench/torch_models.py)")
    name = "numbacnn_bench_torch_models"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, TORCH_MODELS)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module


def backend_gemm_name(device: str) -> str:
    """Which matrix product a device uses: numpy's BLAS, cuBLAS or the numba SGEMM."""
    if device != "cuda":
        return "numpy BLAS"
    from numbacnn.backends import cuda

    return "cuBLAS" if cuda.gemm_name() == "cublas" else "numba SGEMM"


def compute_threads() -> int:
    """Threads numbacnn computes with on the CPU (numba's count), for torch.set_num_threads."""
    env = os.environ.get("NUMBA_NUM_THREADS")
    return int(env) if env and env.isdigit() else (os.cpu_count() or 1)


def bench_torch(spec: str, batch: int, iterations: int, warmup: int, device: str,
                layers: bool = True, seed: int = 0, tf32: bool = False) -> dict[str, Any]:
    """The PyTorch twin of ``spec`` timed the same way (bench/torch_models.py); on CUDA in
    true FP32 (cuDNN's and cuBLAS's TF32 off) unless ``tf32``."""
    tm = load_torch_models()
    net = build_network(spec)
    result = tm.bench_twin(net, batch=batch, iterations=iterations, warmup=warmup,
                           device=device, layers=layers, seed=seed, threads=compute_threads(),
                           lr=LEARNING_RATE, tf32=tf32)
    result["spec"] = spec_label(spec)
    return result


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """numbacnn ÷ PyTorch: images/s (above 1 = numbacnn faster) and per-layer ms
    (above 1 = numbacnn slower)."""
    out: dict[str, Any] = {
        "throughput": ours["train"]["images_per_s"] / theirs["train"]["images_per_s"]}
    if "layers" in ours and "layers" in theirs:
        rows = []
        for a, b in zip(ours["layers"], theirs["layers"], strict=True):
            rows.append({"index": a["index"],
                         "forward": _ratio(a["forward_ms"], b["forward_ms"]),
                         "backward": _ratio(a["backward_ms"], b["backward_ms"])})
        out["layers_time"] = rows
        out["step_time"] = _ratio(ours["total"]["step_ms"], theirs["total"]["step_ms"])
    return out


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


# --- subprocess measurements --------------------------------------------------------------


def _child(args: list[str], timeout: float = 600.0, env: dict[str, str] | None = None,
           cwd: str | None = None) -> dict[str, Any]:
    """Run ``python -m numbacnn.bench ARGS``; its last stdout line is a JSON object."""
    cmd = [sys.executable, "-m", "numbacnn.bench", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=_child_env() | (env or {}))
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise NumbacnnError(f"benchmark subprocess {' '.join(args)} failed "
                            f"(exit {proc.returncode}): {tail}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        raise NumbacnnError(f"benchmark subprocess {' '.join(args)} ended without its "
                            f"result line (last line: {lines[-1][:200]!r})") from None


def _child_env() -> dict[str, str]:
    """The environment of a helper process: ours, with this tree importable first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO), env.get("PYTHONPATH")) if p)
    return env


def peak_rss(spec: str, batch: int, steps: int, device: str,
             frameworks: tuple[str, ...]) -> dict[str, Any]:
    """Peak RSS (MiB) of ``steps`` training steps in a fresh process per framework."""
    out: dict[str, Any] = {"spec": spec_label(spec), "batch": batch, "steps": steps}
    for fw in frameworks:
        try:
            out[fw] = _child(["rss", fw, spec, "--batch", str(batch), "--steps", str(steps),
                              "--device", device])
        except (NumbacnnError, subprocess.TimeoutExpired) as exc:
            out[fw] = {"error": str(exc)}
    a, b = out.get("numbacnn", {}), out.get("torch", {})
    if "peak_rss_mib" in a and "peak_rss_mib" in b:
        out["ratio"] = a["peak_rss_mib"] / b["peak_rss_mib"]
    return out


def _max_rss_mib() -> float:
    """resource.getrusage(RUSAGE_SELF).ru_maxrss in MiB (bytes on macOS, KiB elsewhere)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def _peak_rss() -> dict[str, Any]:
    """This process' peak RSS in MiB.

    Linux carries the parent's peak into a child's ru_maxrss across fork and exec (the
    child starts as a copy of the benchmark process), so there the figure is VmHWM of
    /proc/self/status, the high-water mark of this program's own memory; ru_maxrss is
    kept beside it.
    """
    out: dict[str, Any] = {"ru_maxrss_mib": _max_rss_mib()}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    out["peak_rss_mib"] = int(line.split()[1]) / 1024
                    out["rss_source"] = "VmHWM"
    except OSError:
        pass
    if "peak_rss_mib" not in out:
        out["peak_rss_mib"] = out["ru_maxrss_mib"]
        out["rss_source"] = "ru_maxrss"
    return out


def _train_command_args(device: str) -> list[str] | None:
    """Arguments of a tiny ``numbacnn train`` run, when that command exists with
    ``--epochs`` and ``--limit``; None otherwise."""
    try:
        from numbacnn_cli.main import cli
    except Exception:
        return None
    command = cli.commands.get("train")
    names = {p.name for p in getattr(command, "params", [])}
    if command is None or not {"epochs", "limit"} <= names:
        return None
    return ["train", "fmnist", "--epochs", "1", "--limit", "256"] + (
        ["--device", device] if "device" in names else [])


def startup(device: str, batch: int = 128, fresh_cache: bool = True) -> dict[str, Any]:
    """Seconds from a new process' start to its first finished training step.

    Two kinds of process are timed: ``numbacnn train fmnist --epochs 1 --limit 256`` (when
    that command exists; the process stops right after its first SGD update) and a bare
    one that builds fmnist at ``batch`` and runs one ``train_step`` and update. With
    ``fresh_cache`` each kind runs twice on an empty numba cache directory: the first
    process compiles every kernel it needs (the cold JIT cost), the second loads them
    from the cache and is the figure (each kind has its own empty cache); without it one
    process runs on the cache as it is.
    ``first_step_s`` is the train command's figure when it ran, else the bare one's.
    """
    with tempfile.TemporaryDirectory(prefix="numbacnn-bench-") as tmp:

        def timed(args: list[str], cache: str) -> tuple[float, dict[str, Any]]:
            # numbacnn keeps its CPU kernels under NUMBACNN_CACHE_DIR (backends/kernel_cache.py)
            env = {"NUMBA_CACHE_DIR": str(Path(tmp) / cache / "numba"),
                   "NUMBACNN_CACHE_DIR": str(Path(tmp) / cache / "numbacnn")} \
                if fresh_cache else {}
            t0 = time.time()
            child = _child(args, env=env, cwd=tmp)
            return child.pop("done_at") - t0, child

        out: dict[str, Any] = {"batch": batch, "fresh_cache": fresh_cache}
        runs = [timed(["first-step", "fmnist", "--batch", str(batch), "--device", device],
                      "bare") for _ in range(2 if fresh_cache else 1)]
        out["train_step_process_s"] = runs[-1][0]
        out["phases"] = runs[-1][1]
        if fresh_cache:
            out["cold_train_step_process_s"] = runs[0][0]
        out.update(method="new process: build fmnist, one train_step + SGD update",
                   first_step_s=runs[-1][0])
        args = _train_command_args(device)
        if args is not None:
            try:
                runs = [timed(["train-first-step", *args], "train")
                        for _ in range(2 if fresh_cache else 1)]
            except NumbacnnError as exc:
                out["train_command_error"] = str(exc)
            else:
                out["train_command_s"] = runs[-1][0]
                if fresh_cache:
                    out["cold_train_command_s"] = runs[0][0]
                out.update(method=f"numbacnn {' '.join(args)}, to its first SGD update",
                           first_step_s=runs[-1][0])
    return out


# --- GPU extras --------------------------------------------------------------------------


def gpu_sgemm(n: int = 4096, reps: int = 10) -> dict[str, Any]:
    """TFLOP/s of an n³ float32 product through numbacnn's CUDA GEMM: the numba SGEMM,
    cuBLAS in true FP32 and cuBLAS with TF32 tensor cores; torch's cuBLAS (FP32) beside."""
    from numbacnn.backends import cuda as B

    flops = 2.0 * n**3
    chosen, tf32 = B.gemm_name(), B.cublas.tf32_enabled()
    out: dict[str, Any] = {"n": n}
    try:
        for name, label, use_tf32 in (("numba", "numbacnn_tflops", False),
                                      ("cublas", "cublas_fp32_tflops", False),
                                      ("cublas", "cublas_tf32_tflops", True)):
            if name == "cublas" and B.cublas.unavailable_reason() is not None:
                out[label.replace("_tflops", "")] = f"skipped: {B.cublas.unavailable_reason()}"
                continue
            B.set_gemm(name)
            B.set_tf32(use_tf32)
            seconds, _ = _sgemm_seconds(n, n, n, reps)
            out[label] = flops / seconds / 1e12
    finally:
        B.set_gemm(chosen)
        B.set_tf32(tf32)
    try:
        out["torch_cublas_tflops"] = load_torch_models().cublas_tflops(n, reps)
    except Exception as exc:  # torch is optional
        out["torch_cublas"] = f"skipped: {type(exc).__name__}: {exc}"[:200]
    return out


def step_traffic(spec: str, batch: int, gemm: str | None = None,
                 seed: int = 0) -> dict[str, Any]:
    """Kernel launches (cuBLAS calls included), host↔device copies and device allocations
    of one CUDA training step as ``numbacnn train`` runs it (batch upload from pinned
    memory, forward, loss and its device-side sums, backward, SGD update), and of one
    progress update (the sums read back). Counted in a dry run: no GPU needed, nothing
    computed. The first steps allocate the buffers; the third step is counted.
    ``gemm``: count as with "cublas" or "numba" (default: the one in use)."""
    from numbacnn import device
    from numbacnn.backends import cuda as B
    from numbacnn.optim import SGD
    from numbacnn.staging import BatchStaging

    saved, saved_gemm = device._current, B.gemm_name()
    device._current = "cuda"
    B.set_gemm(gemm or saved_gemm, check=False)
    try:
        with B.dry_run():
            net = build_network(spec)
            net.initialize(seed)
            opt = SGD(momentum=0.9, weight_decay=5e-4)
            xs = BatchStaging((batch, *net.input_shape))
            ys = BatchStaging((batch,), np.int64)
            stats = B.zeros((2,))

            def step() -> None:
                xs.host(batch)[...] = 0.0
                ys.host(batch)[...] = 0
                net.train_step_on_device(xs.upload(batch), ys.upload(batch), stats)
                opt.step(net, LEARNING_RATE)

            step()
            step()
            B.reset_counters()
            step()
            per_step = B.reset_counters()
            B.to_host(stats)
            B.fill(2, stats, np.float32(0.0))
            per_update = B.reset_counters()
        gemm = B.gemm_name()
    finally:
        device._current = saved
        B.set_gemm(saved_gemm, check=False)
    return {"spec": spec_label(spec), "batch": batch, "gemm": gemm,
            "per_step": per_step, "per_progress_update": per_update}


# --- environment -----------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in text.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def _llvm_cpu() -> str:
    """The CPU as LLVM (numba's compiler) names it, e.g. znver4; "unknown" if it cannot."""
    try:
        import llvmlite.binding as llvm

        return str(llvm.get_host_cpu_name())
    except Exception:
        return "unknown"


def _blas() -> list[dict[str, Any]] | str:
    try:
        import threadpoolctl
    except ImportError:
        return "unknown (pip install threadpoolctl to see the BLAS kernel)"
    keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer")
    return [{k: info.get(k) for k in keys} for info in threadpoolctl.threadpool_info()
            if info.get("user_api") == "blas"]


def environment(device: str) -> dict[str, Any]:
    """Machine, versions, BLAS kernel and the OPENBLAS_* variables in force."""
    import numba

    from numbacnn import __version__

    versions = {"numbacnn": __version__, "python": platform.python_version(),
                "numba": numba.__version__, "numpy": np.__version__}
    try:
        import importlib.metadata as md

        versions["torch"] = md.version("torch")
    except Exception:
        versions["torch"] = None
    env: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(), "cpu": _cpu_model(), "llvm_cpu": _llvm_cpu(),
        "cores": os.cpu_count(),
        "numba_threads": numba.config.NUMBA_NUM_THREADS, "platform": platform.platform(),
        "versions": versions, "blas": _blas(),
        "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
        "device": device, "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg")
        else None,
    }
    if device == "cuda":
        from numba import cuda

        name = getattr(cuda.get_current_device(), "name", "CUDA simulator")
        env["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
    return env


# --- the run -------------------------------------------------------------------------


def run_benchmarks(specs: list[str] | tuple[str, ...] = (), batch: int | None = None,
                   iterations: int | None = None, warmup: int | None = None,
                   device: str = "auto", compare_with: str | None = None, quick: bool = False,
                   layers: bool = True, memory: bool | None = None,
                   startup_check: bool | None = None, tf32: bool = False,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the whole suite; returns the JSON-ready result (see bench/README.md).

    ``memory=None`` and ``startup_check=None`` measure peak RSS and start-up on the CPU
    only (CUDA kernels are compiled anew in every process). ``log`` receives progress lines.
    """
    from numbacnn.device import set_device, set_tf32

    say = log or (lambda _line: None)
    dev = set_device(device)
    set_tf32(tf32)
    specs = list(specs) or list(QUICK_SPECS if quick else DEFAULT_SPECS)
    iterations = iterations or (QUICK_ITERATIONS if quick else DEFAULT_ITERATIONS)
    warmup = warmup or (QUICK_WARMUP if quick else DEFAULT_WARMUP)
    if memory is None:
        memory = dev == "cpu"
    if startup_check is None:
        startup_check = dev == "cpu"
    torch_reason = None
    if compare_with == "torch":
        try:
            load_torch_models()
        except NumbacnnError as exc:
            torch_reason = f"skipped: {exc}"
            say(f"--compare torch {torch_reason}")
    result: dict[str, Any] = {
        "suite": "numbacnn bench", "quick": quick, "environment": environment(dev),
        "config": {"specs": [spec_label(s) for s in specs], "iterations": iterations,
                   "warmup": warmup, "device": dev, "compare": compare_with,
                   "precision": "tf32" if tf32 and dev == "cuda" else "fp32",
                   "gemm": backend_gemm_name(dev),
                   "torch_threads": compute_threads() if compare_with == "torch" else None},
        "networks": [],
    }
    for spec in specs:
        n = batch or default_batch(spec, dev, quick)
        say(f"{spec_label(spec)}: numbacnn, batch {n}, {warmup} warm-up + {iterations} steps")
        entry = bench_numbacnn(spec, n, iterations, warmup, layers=layers)
        if compare_with == "torch":
            if torch_reason is None:
                say(f"{spec_label(spec)}: PyTorch, batch {n}")
                entry["torch"] = bench_torch(spec, n, iterations, warmup, dev, layers=layers,
                                             tf32=tf32)
                entry["ratio"] = compare(entry, entry["torch"])
            else:
                entry["torch"] = {"skipped": torch_reason}
        result["networks"].append(entry)
    if memory:
        spec = "alexnet" if ("alexnet" in specs and not quick) else specs[0]
        n = batch or default_batch(spec, dev, quick)
        frameworks = ("numbacnn", "torch") if compare_with == "torch" and not torch_reason \
            else ("numbacnn",)
        say(f"peak RSS: {spec_label(spec)} batch {n} in fresh processes ({', '.join(frameworks)})")
        result["memory"] = peak_rss(spec, n, 2 if quick else 3, dev, frameworks)
    if startup_check:
        say("start-up: a new process up to its first training step")
        result["startup"] = startup(dev, batch=32 if quick else 128, fresh_cache=not quick)
    if dev == "cuda":
        say("SGEMM rate")
        result["sgemm"] = gpu_sgemm(1024 if quick else 4096)
        result["traffic"] = [step_traffic(spec, batch or default_batch(spec, dev, quick))
                             for spec in specs]
    if hasattr(os, "getloadavg"):
        result["environment"]["load_average_end"] = list(os.getloadavg())
    result["targets"] = evaluate_targets(result)
    return result


# --- targets and reports ------------------------------------------------------------------


def _network(result: dict[str, Any], spec: str) -> dict[str, Any] | None:
    return next((n for n in result.get("networks", []) if n["spec"] == spec), None)


def evaluate_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets with the measured values; ``passed`` is None when not measured."""
    if result.get("config", {}).get("device") == "cuda":
        return evaluate_gpu_targets(result)
    rows: list[dict[str, Any]] = []

    def add(name: str, target: str, measured: str | None, passed: bool | None) -> None:
        rows.append({"target": name, "goal": target, "measured": measured or "not measured",
                     "passed": passed})

    fm = _network(result, "fmnist")
    if fm and "ratio" in fm:
        r = fm["ratio"]["throughput"]
        add(f"fmnist training throughput (batch {fm['batch']})", "≥ 1.0 × PyTorch",
            f"{fm['train']['images_per_s']:,.0f} vs {fm['torch']['train']['images_per_s']:,.0f}"
            f" images/s = {r:.2f} ×", r >= TARGET_FMNIST_THROUGHPUT)
    else:
        add("fmnist training throughput", "≥ 1.0 × PyTorch", None, None)
    for net in result.get("networks", []):
        total = net.get("conv_rate", {}).get("total")
        if total:
            add(f"conv forward rate ({net['spec']}, batch {net['batch']})",
                f"≥ {TARGET_CONV_RATE:.0%} of {net['conv_rate']['reference']}",
                f"{total['gflops']:.1f} vs {total['sgemm_gflops']:.1f} GFLOP/s = "
                f"{total['ratio']:.0%}", total["ratio"] >= TARGET_CONV_RATE)
    ax = _network(result, "alexnet")
    if ax and "ratio" in ax:
        r = ax["ratio"]["throughput"]
        add(f"alexnet training throughput (batch {ax['batch']})", "≥ 0.8 × PyTorch",
            f"{ax['train']['images_per_s']:,.1f} vs {ax['torch']['train']['images_per_s']:,.1f}"
            f" images/s = {r:.2f} ×", r >= TARGET_ALEXNET_THROUGHPUT)
    else:
        add("alexnet training throughput (batch 16)", "≥ 0.8 × PyTorch", None, None)
    st = result.get("startup")
    if st:
        add("second process: start to first finished step", f"≤ {TARGET_STARTUP_S:g} s",
            f"{st['first_step_s']:.2f} s ({st['method']})", st["first_step_s"] <= TARGET_STARTUP_S)
    else:
        add("second process: start to first finished step", f"≤ {TARGET_STARTUP_S:g} s",
            None, None)
    mem = result.get("memory")
    if mem and "ratio" in mem:
        add(f"peak RSS ({mem['spec']} batch {mem['batch']} training)", "≤ 1.5 × PyTorch",
            f"{mem['numbacnn']['peak_rss_mib']:,.0f} vs {mem['torch']['peak_rss_mib']:,.0f} MiB"
            f" = {mem['ratio']:.2f} ×", mem["ratio"] <= TARGET_RSS_RATIO)
    else:
        add("peak RSS (alexnet batch 16 training)", "≤ 1.5 × PyTorch", None, None)
    return rows


def evaluate_gpu_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 8's GPU targets (FP32; a TF32 run is reported but judged against FP32 goals
    only when both sides ran in TF32, and says so)."""
    rows: list[dict[str, Any]] = []
    precision = result.get("config", {}).get("precision", "fp32")

    def add(name: str, goal: str, measured: str | None, passed: bool | None) -> None:
        rows.append({"target": name, "goal": goal, "measured": measured or "not measured",
                     "passed": passed})

    sg = result.get("sgemm", {})
    for key, name, goal in (("cublas_fp32_tflops", "SGEMM 4096³ through cuBLAS (fp32)",
                             GPU_TARGET_CUBLAS_TFLOPS),
                            ("numbacnn_tflops", "SGEMM 4096³, numba kernel (fp32)",
                             GPU_TARGET_NUMBA_TFLOPS)):
        value = sg.get(key)
        add(name, f"≥ {goal:g} TFLOP/s", None if value is None else f"{value:.1f} TFLOP/s",
            None if value is None else value >= goal)
    for spec, goal in (("fmnist", GPU_TARGET_FMNIST), ("alexnet", GPU_TARGET_ALEXNET)):
        net = _network(result, spec)
        label = f"{spec} training, batch {net['batch'] if net else 128} ({precision})"
        if net and "ratio" in net:
            r = net["ratio"]["throughput"]
            add(label, f"≥ {goal:g} × PyTorch {precision}",
                f"{net['train']['images_per_s']:,.0f} vs "
                f"{net['torch']['train']['images_per_s']:,.0f} images/s = {r:.2f} ×", r >= goal)
        else:
            add(label, f"≥ {goal:g} × PyTorch {precision}", None, None)
    return rows


def _verdict(passed: bool | None) -> str:
    return "n/a" if passed is None else "pass" if passed else "FAIL"


def format_text(result: dict[str, Any]) -> str:
    """The result as ``caffe time``-like tables, one per network, then the run-wide parts."""
    lines: list[str] = []
    env = result["environment"]
    lines.append(f"numbacnn bench on {env['device']}: {env['cpu']}, {env['cores']} cores, "
                 f"numba {env['versions']['numba']}, numpy {env['versions']['numpy']}"
                 + (f", GPU {env['gpu']}" if "gpu" in env else ""))
    for net in result["networks"]:
        lines += [""] + _network_text(net)
    mem = result.get("memory")
    if mem:
        lines.append("")
        lines.append(f"peak RSS, {mem['spec']} batch {mem['batch']}, {mem['steps']} training "
                     "steps in a fresh process:")
        for fw in ("numbacnn", "torch"):
            if fw in mem:
                m = mem[fw]
                lines.append(f"  {fw:<9} " + (f"{m['peak_rss_mib']:,.0f} MiB" if
                                               "peak_rss_mib" in m else m.get("error", "")))
        if "ratio" in mem:
            lines.append(f"  numbacnn ÷ PyTorch = {mem['ratio']:.2f}")
    st = result.get("startup")
    if st:
        lines.append("")
        cache = "kernels from numba's cache" if st["fresh_cache"] else "numba's cache as it was"
        lines.append(f"start-up, process start to the first finished training step "
                     f"({cache}): {st['first_step_s']:.2f} s")
        lines.append(f"  {st['method']}")
        if "train_command_s" in st:
            lines.append(f"  numbacnn train: {st['train_command_s']:.2f} s"
                         + (f" (cold cache: {st['cold_train_command_s']:.2f} s)"
                            if "cold_train_command_s" in st else ""))
        ph = st["phases"]
        lines.append(f"  bare train_step process: {st['train_step_process_s']:.2f} s"
                     + (f" (cold cache: {st['cold_train_step_process_s']:.2f} s)"
                        if "cold_train_step_process_s" in st else "")
                     + f"; import {ph['import_s']:.2f} s, build {ph['build_s']:.2f} s, "
                       f"step {ph['step_s']:.2f} s, the rest is the interpreter's start")
        if "train_command_error" in st:
            lines.append(f"  (train command not timed: {st['train_command_error']})")
    sg = result.get("sgemm")
    if sg:
        lines.append("")
        parts = []
        for key, name in (("numbacnn_tflops", "numba SGEMM (fp32)"),
                          ("cublas_fp32_tflops", "cuBLAS via numbacnn (fp32)"),
                          ("cublas_tf32_tflops", "cuBLAS via numbacnn (tf32)"),
                          ("torch_cublas_tflops", "torch cuBLAS (fp32)")):
            if key in sg:
                parts.append(f"{name} {sg[key]:.2f}")
        lines.append(f"SGEMM {sg['n']}³ TFLOP/s: " + ", ".join(parts))
    for tr in result.get("traffic", []):
        s, u = tr["per_step"], tr["per_progress_update"]
        lines.append(f"{tr['spec']} batch {tr['batch']}, one training step ({tr['gemm']}): "
                     f"{s['launches']} launches, {s['h2d_copies']} host→device and "
                     f"{s['d2h_copies']} device→host copies, {s['allocations']} device "
                     f"allocations; per progress update {u['d2h_copies']} device→host copy, "
                     f"{u['launches']} launch")
    lines.append("")
    lines.append("targets:")
    for row in result.get("targets", []):
        shown = row["measured"]  # "not measured", or a value to prefix with "measured"
        shown = shown if shown == "not measured" else f"measured {shown}"
        lines.append(f"  [{_verdict(row['passed']):>4}] {row['target']}: {row['goal']}; {shown}")
    return "\n".join(lines)


def _network_text(net: dict[str, Any]) -> list[str]:
    torch = net.get("torch", {})
    has_torch = "layers" in torch
    head = (f"{net['spec']}: batch {net['batch']} on {net['device']}, {net['iterations']} steps "
            f"after {net['warmup']} warm-up; {net['params']:,} parameters, "
            f"{net['gflop_per_image']:.3f} GFLOP/image forward")
    lines = [head]
    if "layers" in net:
        cols = f"{'#':>3}  {'layer':<34} {'output':>10} {'fwd ms':>9} {'bwd ms':>9} {'%':>6}"
        if has_torch:
            cols += f" │ {'torch fwd':>9} {'torch bwd':>9} {'÷ fwd':>6} {'÷ bwd':>6}"
        lines.append(cols)
        trows = torch.get("layers", [])
        for i, row in enumerate(net["layers"]):
            name = row["layer"] + (" (fused)" if row.get("fused") else "")
            line = (f"{row['index']:>3}  {name[:34]:<34} {row['output_shape']:>10} "
                    f"{row['forward_ms']:>9.3f} {row['backward_ms']:>9.3f} {row['percent']:>5.1f}%")
            if has_torch:
                t = trows[i]
                line += (f" │ {t['forward_ms']:>9.3f} {t['backward_ms']:>9.3f} "
                         f"{_fmt_ratio(row['forward_ms'], t['forward_ms'])} "
                         f"{_fmt_ratio(row['backward_ms'], t['backward_ms'])}")
            lines.append(line)
        extra = [("softmax loss", net["loss"]["forward_ms"], net["loss"]["backward_ms"],
                  net["loss"]["percent"], torch.get("loss")),
                 ("sgd update", net["update"]["ms"], 0.0, net["update"]["percent"],
                  torch.get("update"))]
        for name, f, b, p, t in extra:
            line = f"{'':>3}  {name:<34} {'':>10} {f:>9.3f} {b:>9.3f} {p:>5.1f}%"
            if has_torch and t:
                tf = t.get("forward_ms", t.get("ms", 0.0))
                tb = t.get("backward_ms", 0.0)
                line += (f" │ {tf:>9.3f} {tb:>9.3f} {_fmt_ratio(f, tf)} "
                         f"{_fmt_ratio(b, tb) if tb else '':>6}")
            lines.append(line)
        tot = net["total"]
        line = (f"{'':>3}  {'total (per step)':<34} {'':>10} {tot['forward_ms']:>9.3f} "
                f"{tot['backward_ms']:>9.3f} {'':>6}")
        if has_torch:
            tt = torch["total"]
            line += (f" │ {tt['forward_ms']:>9.3f} {tt['backward_ms']:>9.3f} "
                     f"{_fmt_ratio(tot['forward_ms'], tt['forward_ms'])} "
                     f"{_fmt_ratio(tot['backward_ms'], tt['backward_ms'])}")
        lines.append(line)
        lines.append(f"{'':>3}  {'step (all rows)':<34} {'':>10} {tot['step_ms']:>9.3f}"
                     + (f" {'':>16} │ {torch['total']['step_ms']:>9.3f} {'':>9} "
                        f"{_fmt_ratio(tot['step_ms'], torch['total']['step_ms'])}"
                        if has_torch else ""))
        if has_torch:
            lines.append("     ÷ = numbacnn ms ÷ PyTorch ms: above 1 numbacnn is slower")
    tr = net["train"]
    line = (f"training: {tr['images_per_s']:,.1f} images/s ({tr['step_ms']:.1f} ms/step, "
            f"best {tr['best_step_ms']:.1f})")
    if "train" in torch:
        line += (f"; PyTorch {torch['train']['images_per_s']:,.1f} images/s "
                 f"({torch['train']['step_ms']:.1f} ms/step); numbacnn ÷ PyTorch = "
                 f"{net['ratio']['throughput']:.2f}")
    elif "skipped" in torch:
        line += f"; PyTorch {torch['skipped']}"
    lines.append(line)
    w = net["warmup_times"]
    line = (f"warm-up: first step {w['first_step_s']:.2f} s vs steady {w['steady_step_s']:.3f} s"
            f" → JIT compile / cache load {w['compile_s']:.2f} s")
    if "warmup_times" in torch:
        line += f" (PyTorch first step {torch['warmup_times']['first_step_s']:.2f} s)"
    lines.append(line)
    cr = net.get("conv_rate")
    if cr and cr["layers"]:
        lines.append(f"conv forward rate vs {cr['reference']} of the same product:")
        for c in cr["layers"]:
            lines.append(f"  {c['index']:>3} {c['layer']:<34} {c['gemm']:<24} "
                         f"{c['gflops']:>7.1f} vs {c['sgemm_gflops']:>7.1f} GFLOP/s "
                         f"= {c['ratio']:>4.0%}")
        t = cr["total"]
        lines.append(f"      {'all convolutions':<59} {t['gflops']:>7.1f} vs "
                     f"{t['sgemm_gflops']:>7.1f} GFLOP/s = {t['ratio']:>4.0%}")
    return lines


def _fmt_ratio(a: float, b: float) -> str:
    return f"{a / b:>6.2f}" if b > 0 else f"{'-':>6}"


def _load(values: list[float] | None) -> str:
    return " ".join(f"{v:.2f}" for v in values) if values else "unknown"


def markdown_section(result: dict[str, Any], command: str, notes: str = "") -> str:
    """A dated RESULTS.md section: machine, versions, command, tables and the targets."""
    env = result["environment"]
    v = env["versions"]
    blas = env["blas"]
    blas_text = (", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']}, "
                           f"{b['num_threads']} threads)" for b in blas)
                 if isinstance(blas, list) else str(blas))
    ob = ", ".join(f"{k}={val if val is not None else '(unset)'}"
                   for k, val in env["openblas_env"].items())
    out = [f"## {env['date']} — {env['device']}, {env['cpu']}", "",
           f"- machine: {env['cpu']} ({env.get('llvm_cpu', 'unknown')}), {env['cores']} "
           f"cores, numba threads "
           f"{env['numba_threads']}, {env['platform']}" + (f", GPU {env['gpu']}"
                                                            if "gpu" in env else ""),
           f"- versions: numbacnn {v['numbacnn']}, Python {v['python']}, numba {v['numba']}, "
           f"numpy {v['numpy']}, torch {v['torch'] or '(not installed)'}",
           f"- BLAS (threadpoolctl): {blas_text}; {ob}",
           f"- load average (1, 5, 15 min) at the start: {_load(env.get('load_average'))}, "
           f"at the end: {_load(env.get('load_average_end'))}",
           f"- command: `{command}`"]
    if notes:
        out.append(f"- notes: {notes}")
    out += ["", "### Targets", "", "| target | goal | measured | result |",
            "| --- | --- | --- | --- |"]
    for row in result.get("targets", []):
        out.append(f"| {row['target']} | {row['goal']} | {row['measured']} | "
                   f"{_verdict(row['passed'])} |")
    out += ["", "### Output", "", "```", format_text(result), "```", ""]
    return "\n".join(out)


# --- helper processes ----------------------------------------------------------------------


def _child_rss(framework: str, spec: str, batch: int, steps: int, device: str) -> dict[str, Any]:
    """Train ``steps`` steps in this (fresh) process and report its peak RSS."""
    if framework == "torch":
        tm = load_torch_models()
        net = build_network(spec)
        tm.train_steps(net, batch=batch, steps=steps, device=device, threads=compute_threads(),
                       lr=LEARNING_RATE)
    else:
        from numbacnn.device import set_device, to_device
        from numbacnn.optim import SGD

        set_device(device)
        net = build_network(spec)
        net.initialize(0)
        opt = SGD()
        x_host, y_host = random_batch(net.input_shape, net.num_classes, batch)
        x, labels = to_device(x_host), to_device(y_host)
        for _ in range(steps):
            net.train_step(x, labels)
            opt.step(net, LEARNING_RATE)
    return {"framework": framework, **_peak_rss(), "numba_loaded": "numba" in sys.modules,
            "torch_loaded": "torch" in sys.modules}


def _child_first_step(spec: str, batch: int, device: str) -> dict[str, Any]:
    """Import, build and run one training step; ``done_at`` is the wall clock at its end."""
    t0 = time.perf_counter()
    from numbacnn.device import set_device, to_device
    from numbacnn.network import Network  # noqa: F401  (import cost counted here)
    from numbacnn.optim import SGD

    set_device(device)
    t1 = time.perf_counter()
    net = build_network(spec)
    net.initialize(0)
    opt = SGD()
    x_host, y_host = random_batch(net.input_shape, net.num_classes, batch)
    x, labels = to_device(x_host), to_device(y_host)
    t2 = time.perf_counter()
    net.train_step(x, labels)
    opt.step(net, LEARNING_RATE)
    from numbacnn.device import backend

    backend().synchronize()
    t3 = time.perf_counter()
    return {"done_at": time.time(), "import_s": t1 - t0, "build_s": t2 - t1, "step_s": t3 - t2}


def _child_train_first_step(args: list[str]) -> None:
    """Run ``numbacnn ARGS`` (a train command) in this process and leave it right after
    its first optimizer update, printing the JSON line with ``done_at``."""
    from numbacnn import optim
    from numbacnn.device import backend

    def stop_after(method: Callable[..., Any]) -> Callable[..., Any]:
        def step(*a: Any, **k: Any) -> Any:
            out = method(*a, **k)
            backend().synchronize()
            print(json.dumps({"done_at": time.time()}), flush=True)
            os._exit(0)
            return out  # pragma: no cover

        return step

    for cls in {optim.SGD, getattr(optim, "Adam", optim.SGD)}:
        cls.step = stop_after(cls.step)  # type: ignore[method-assign]
    from numbacnn_cli.main import cli

    cli.main(args=args, prog_name="numbacnn")
    raise SystemExit("numbacnn train finished without an optimizer step")


def main(argv: list[str] | None = None) -> int:
    """``python -m numbacnn.bench {rss,first-step,markdown} ...`` (used by the suite)."""
    parser = argparse.ArgumentParser(prog="python -m numbacnn.bench")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("rss", help="peak RSS of a few training steps in this process")
    p.add_argument("framework", choices=("numbacnn", "torch"))
    p.add_argument("spec")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p = sub.add_parser("first-step", help="time to the first finished training step")
    p.add_argument("spec")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p = sub.add_parser("train-first-step", help="run `numbacnn ARGS` up to its first update")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p = sub.add_parser("markdown", help="a RESULTS.md section from a saved --json result")
    p.add_argument("file")
    p.add_argument("--command", default="numbacnn bench")
    p.add_argument("--notes", default="")
    args = parser.parse_args(argv)
    if args.what == "rss":
        out = _child_rss(args.framework, args.spec, args.batch, args.steps, args.device)
    elif args.what == "first-step":
        out = _child_first_step(args.spec, args.batch, args.device)
    elif args.what == "train-first-step":
        _child_train_first_step(args.args)
        return 1
    else:
        result = json.loads(Path(args.file).read_text(encoding="utf-8"))
        print(markdown_section(result, args.command, args.notes))
        return 0
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
