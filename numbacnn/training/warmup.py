"""The first run's compile of the CPU drivers: whether it is needed, how long it takes,
and doing it on all cores at once.

numba compiles each ``cache=True`` driver of the CPU backend the first time it is
called and keeps it in its on-disk cache (``backends/kernel_cache.py``); later processes
load it in milliseconds. Called one after the other, the drivers of the default fmnist
network take about 10 CPU seconds to compile before the first training step
(``bench/compile_profile.py``; 25–30 before each max-pooling window got its own driver
and the convolution's parts became plain functions on threads); each is compiled by one
core. :func:`compile_plan` names the drivers a training run
calls (the layers' declared ``drivers``, the loss, the optimizer's update) that the cache
does not hold yet; :meth:`CompilePlan.run` shares them between this process and new
ones, one per core, each of which runs one training step and one evaluation of a copy
of the run on a few images, with the drivers of the other shares replaced by no-ops:
each driver is compiled by one process, with the argument types of the real calls, into
the shared cache, and the run then loads the others' from there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FunctionType, ModuleType
from typing import Any

import numpy as np
from numba.core.registry import CPUDispatcher

from numbacnn.backends import kernel_cache
from numbacnn.errors import NumbacnnError

# CPU seconds each driver took to compile on its first call, the chunk functions it
# calls included (im2col's with the forward convolution, called first), fmnist's first
# step in one process on the shared 2-core machine (bench/RESULTS.md, "Cold start,
# 2026-12-06"); a driver not listed counts DEFAULT_SECONDS.
COMPILE_SECONDS = {
    "_conv_backward_part": 2.3, "_conv_forward_part": 2.3,
    "_max_pool_backward_2x2": 1.5, "_max_pool_backward_any": 1.5, "_max_pool_forward_2x2": 1.0,
    "_max_pool_forward_3x3s2": 1.0, "_max_pool_forward_any": 1.0, "batchnorm_backward": 2.0,
    "lrn_backward": 1.5, "lrn_forward": 1.0, "softmax_cross_entropy_forward": 0.55,
    "softmax_cross_entropy_backward": 0.55, "_gemm_in_parts": 0.6,
    # Winograd's: bench/compile_profile.py --conv-algo winograd (bench/RESULTS.md,
    # "Winograd on the CPU: balanced parts, one pass over dy")
    "_winograd_forward_part": 2.5, "_winograd_backward_part": 1.6,
    "_winograd_finish_grads": 0.9,
    # the direct convolution's (bench/compile_profile.py, one thread, "with callees")
    "_direct_forward_part": 1.9, "_direct_weight_grads_part": 1.3,
    "_direct_input_grads_part": 2.1,
    # fused with the 2×2 max pooling after it (compile_profile.py --conv-algo auto, one
    # thread, load 4.5; the input-gradient part, which fmnist never calls, as unfused)
    "_direct_pool_forward_part": 2.2, "_direct_pool_weight_grads_part": 1.9,
    "_direct_pool_input_grads_part": 2.1,
    # Winograd F(2×2, 5×5), cpu_winograd5.py: one thread, empty cache, CPU seconds, two
    # runs (bench/RESULTS.md, "Winograd F(2×2, 5×5)"); the forward part with the filter,
    # input and output loops, the backward part with the output-gradient loop
    "_winograd5_forward_part": 3.5, "_winograd5_backward_part": 2.3,
    "_winograd5_finish_grads": 0.7,
    # Winograd F(4×4, 3×3), cpu_winograd43.py: the same way (bench/RESULTS.md, "Winograd
    # F(4×4, 3×3)"; F(2×2, 3×3)'s in the same hour 2.3, 1.6 and 0.8)
    "_winograd43_forward_part": 2.3, "_winograd43_backward_part": 2.5,
    "_winograd43_finish_part": 0.7,
    # fused with the 2×2 max pooling after it (cpu_winograd43_pool.py), compiled with the
    # unfused ones (COMPILED_TOGETHER; inference runs those): after them in one process,
    # one thread, empty cache, 1.66 and 1.77 CPU s against their 3.22 and 4.35, so scaled
    "_winograd43_pool_forward_part": 1.2, "_winograd43_pool_backward_part": 1.0,
    # Winograd F(3×3, 5×5), cpu_winograd35.py: one thread, empty cache, CPU seconds with
    # callees, two runs (bench/RESULTS.md, "Winograd F(3×3, 5×5)"; the forward part with
    # the filter part called before it; F(2×2, 5×5)'s in the same minutes 3.5, 2.7, 0.85)
    "_winograd35_forward_part": 3.4, "_winograd35_backward_part": 4.1,
    "_winograd35_finish_part": 1.2,
}
# Drivers that call the same compiled chunk functions (cpu_conv.py, cpu_winograd.py): one
# process compiles them all, or each process would compile those functions again.
COMPILED_TOGETHER = ({"_conv_forward_part", "_conv_backward_part"},
                     {"_winograd_forward_part", "_winograd_backward_part", "_winograd_inputs",
                      "_winograd_plane_inputs", "_winograd_outputs", "_winograd_grad_tiles",
                      "_winograd_filters", "_winograd_filter_grads", "_winograd_finish_grads",
                      "_part_chunks"},
                     {"_winograd5_forward_part", "_winograd5_backward_part", "_winograd5_inputs",
                      "_winograd5_outputs", "_winograd5_output_grads", "_winograd5_filters",
                      "_winograd5_input_grads", "_winograd5_filter_grads",
                      "_winograd5_finish_grads"},
                     {"_winograd43_forward_part", "_winograd43_backward_part",
                      "_winograd43_inputs", "_winograd43_outputs", "_winograd43_output_grads",
                      "_winograd43_filters_part",
                      "_winograd43_input_grads", "_winograd43_filter_grads",
                      "_winograd43_finish_part", "_winograd43_finish_bias",
                      "_winograd43_pool_forward_part", "_winograd43_pool_backward_part",
                      "_winograd43_pooled_outputs", "_winograd43_pooled_output_grads",
                      "_zero_sums", "_backward_chunk"},
                     {"_winograd35_forward_part", "_winograd35_backward_part",
                      "_winograd35_inputs", "_winograd35_outputs", "_winograd35_output_grads",
                      "_winograd35_filters_part", "_winograd35_input_grads",
                      "_winograd35_filter_grads", "_winograd35_finish_part",
                      "_winograd35_finish_bias", "_winograd35_zero_sums",
                      "_winograd35_backward_chunk"})
DEFAULT_SECONDS = 0.4
START_SECONDS = 0.8  # a spawned process imports numpy, numba and numbacnn (quiet machine)
OPTIMIZER_DRIVERS = {"sgd": ("sgd_momentum",), "adam": ("adam",)}
TRAINER_DRIVERS = ("fill", "batch_stats")  # the trainer's own calls (sums of loss, accuracy)
WORKER = ("import json, sys; from numbacnn.training.warmup import compile_share; "
          "print(json.dumps(compile_share(**json.loads(sys.argv[1]))))")
ENV_SWITCH = "NUMBACNN_PARALLEL_COMPILE"  # "0": let each driver compile on its first call


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _backend_modules() -> Iterator[Any]:
    """The CPU backend's modules that are loaded (where its drivers live)."""
    for name, module in list(sys.modules.items()):
        if name.startswith("numbacnn.backends.") and module is not None:
            yield module


def _dispatchers(function: Any, depth: int = 2) -> list[Any]:
    """The compiled drivers that calling the backend function ``function`` compiles:
    itself when it is one, else the drivers its Python code calls, directly or through a
    backend module's Python function (``conv_forward`` → ``cpu_conv.forward_in_chunks`` →
    ``_conv_forward_part``), ``depth`` calls deep."""
    if isinstance(function, CPUDispatcher):
        return [function]
    code = getattr(function, "__code__", None)
    if code is None or depth == 0:
        return []
    scope = function.__globals__
    modules = [m for n in code.co_names if isinstance(m := scope.get(n), ModuleType)]
    found: list[Any] = []
    for name in code.co_names:
        for target in [scope.get(name), *(getattr(m, name, None) for m in modules)]:
            if isinstance(target, CPUDispatcher):
                found.append(target)
            elif (isinstance(target, FunctionType) and target is not function
                  and target.__module__.startswith("numbacnn.backends.")):
                found.extend(_dispatchers(target, depth - 1))
    return list(dict.fromkeys(found))


def _key(dispatcher: Any) -> str:
    return dispatcher.py_func.__name__


def drivers_of(trainer: Any) -> dict[str, Any]:
    """{name: numba dispatcher} of every CPU driver a training step and an evaluation of
    ``trainer`` call, from what its layers, loss and optimizer declare."""
    from numbacnn.backends import cpu

    calls: list[tuple[str, Any]] = [(name, None) for name in (
        *TRAINER_DRIVERS, *OPTIMIZER_DRIVERS.get(trainer.settings.optimizer, ()))]
    for layer in [*trainer.net.layers, trainer.net.loss]:
        conditional = getattr(layer, "conditional_drivers", {})
        calls.extend((name, layer) for name in getattr(layer, "drivers", ())
                     if name not in conditional or getattr(layer, conditional[name]))
    found: dict[str, Any] = {}
    for name, layer in calls:
        function = getattr(cpu, name, None)
        if hasattr(function, "choose"):  # one compiled driver per pooling window: the layer's
            dispatchers = ([function.choose(*layer.driver_window())]
                           if hasattr(layer, "driver_window") else [])
        else:
            dispatchers = _dispatchers(function)
        for dispatcher in dispatchers:
            found[_key(dispatcher)] = dispatcher
    return found


@dataclass
class CompilePlan:
    """The drivers a run still has to compile (``names``), shared between ``workers``
    processes; ``seconds``: the expected time, from :data:`COMPILE_SECONDS`."""

    names: list[str]
    workers: int
    seconds: float
    spec_text: str | None
    settings: dict[str, Any]
    input_shape: tuple[int, ...]
    num_classes: int

    @property
    def parallel(self) -> bool:
        """Whether :meth:`run` compiles in other processes (else the drivers compile on
        their first call, one after the other)."""
        return (self.workers > 1 and self.spec_text is not None
                and os.environ.get(ENV_SWITCH, "1").strip() != "0")

    def shares(self) -> list[list[str]]:
        """``names`` in ``workers`` lists of about equal compile time, longest first; the
        drivers of a set in :data:`COMPILED_TOGETHER` in the same list."""
        units: list[list[str]] = []
        for name in self.names:
            group = next((g for g in COMPILED_TOGETHER if name in g), set())
            unit = next((u for u in units if u[0] in group), None)
            if unit is None:
                units.append([name])
            else:
                unit.append(name)
        loads = [0.0] * self.workers
        shares: list[list[str]] = [[] for _ in range(self.workers)]
        for unit in sorted(units, key=lambda u: -_seconds(u)):
            least = loads.index(min(loads))
            loads[least] += _seconds(unit)
            shares[least].extend(sorted(unit, key=lambda n: -_seconds([n])))
        return [share for share in shares if share]

    def run(self) -> float:
        """Compile the drivers into numba's cache, in parallel where :attr:`parallel`;
        returns the seconds it took. Without it, nothing happens here (the drivers
        compile on their first call)."""
        if not self.parallel:
            return 0.0
        started = time.perf_counter()
        shares = self.shares()
        jobs = [{"spec_text": self.spec_text, "settings": self.settings,
                 "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                 "share": share, "skip": [n for other in shares if other is not share
                                          for n in other]} for share in shares]
        # the first share (the longest) compiles in this process, which has its modules
        # loaded already, the others each in a new interpreter; not multiprocessing's:
        # that would run the caller's __main__ again (a script without a __main__ guard
        # would start over)
        workers = [subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(job)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, text=True) for job in jobs[1:]]
        used: set[str] = set()
        try:
            try:
                used.update(compile_share(**jobs[0]))
            except NumbacnnError:  # bad settings (e.g. NUMBACNN_BLAS): the run would fail too
                raise
            except Exception as exc:  # the run compiles what is missing on its own
                return self._failed(str(exc).splitlines()[0] if str(exc) else repr(exc), started)
            for worker in workers:
                output, errors = worker.communicate()
                if worker.returncode != 0:
                    failed = errors.strip().splitlines()[-1:] or [f"exit {worker.returncode}"]
                    return self._failed(failed[0], started)
                used.update(json.loads(output.strip().splitlines()[-1]))
            _remember_drivers(self.spec_text, self.settings, sorted(used))
        finally:  # Ctrl-C or an error here: no compiler is left running
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
        return time.perf_counter() - started

    @staticmethod
    def _failed(why: str, started: float) -> float:
        warnings.warn(f"compiling the CPU drivers in parallel failed ({why}); they compile on "
                      "their first call instead", stacklevel=3)
        return time.perf_counter() - started


def _seconds(names: list[str]) -> float:
    return sum(COMPILE_SECONDS.get(name, DEFAULT_SECONDS) for name in names)


def compile_plan(trainer: Any) -> CompilePlan | None:
    """What the CPU drivers of ``trainer``'s run cost before its first step: None when
    the network does not run on the CPU or numba's cache holds every driver it calls."""
    if not trainer.net.backend().on_host:
        return None
    drivers = drivers_of(trainer)
    used = _remembered_drivers(getattr(trainer.net, "spec_text", None), asdict(trainer.settings))
    if used is not None:  # what a copy of this run called, where the layers do not say
        drivers = _named_dispatchers(used) or drivers
    missing = [name for name, d in drivers.items() if not kernel_cache.holds(d)]
    if not missing:
        return None
    workers = min(cpu_count(), len(missing))
    if trainer.world.size > 1 or not kernel_cache.writable():
        workers = 1  # ranks share the cores; an unwritable cache cannot be shared
    spec_text = getattr(trainer.net, "spec_text", None)
    plan = CompilePlan(missing, workers, 0.0, spec_text, asdict(trainer.settings),
                       tuple(trainer.net.input_shape), trainer.net.num_classes)
    if plan.parallel:  # the first share compiles in this process, the others start one each
        first, *others = plan.shares()
        plan.seconds = max([_seconds(first), *(START_SECONDS + _seconds(o) for o in others)])
    else:
        plan.seconds = _seconds(missing)
    return plan


def _run_file(spec_text: str | None, settings: dict[str, Any]) -> Path | None:
    """Where the drivers a run of this network and optimizer calls are listed."""
    if spec_text is None:
        return None
    key = hashlib.sha1(f"{spec_text}\n{settings.get('optimizer')}".encode()).hexdigest()[:16]
    return kernel_cache.cache_root() / kernel_cache.source_hash() / "runs" / f"{key}.json"


def _remember_drivers(spec_text: str | None, settings: dict[str, Any],
                      names: list[str]) -> None:
    path = _run_file(spec_text, settings)
    if path is None or not names:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_suffix(f".{os.getpid()}.part")
        part.write_text(json.dumps(names))
        os.replace(part, path)  # whole or not at all, whoever reads it
    except OSError:  # an unwritable cache: the declared drivers are checked instead
        pass


def _remembered_drivers(spec_text: str | None, settings: dict[str, Any]) -> list[str] | None:
    path = _run_file(spec_text, settings)
    try:
        names = json.loads(path.read_text()) if path is not None else None
    except (OSError, ValueError):
        return None
    return names if isinstance(names, list) else None


def _named_dispatchers(names: list[str]) -> dict[str, Any]:
    """{name: dispatcher} of the CPU backend's drivers called ``names``."""
    from numbacnn.backends import cpu  # noqa: F401  (loads the backend's modules)

    found: dict[str, Any] = {}
    for module in _backend_modules():
        for value in vars(module).values():
            if isinstance(value, CPUDispatcher) and _key(value) in names:
                found[_key(value)] = value
    return found


@contextmanager
def _drivers_replaced(skip: list[str], called: set[str]) -> Iterator[None]:
    """While in the block, the drivers named in ``skip`` are no-ops that add their name
    to ``called`` (they are another process's share) and ``empty`` hands out zeros, so
    that indices read from arrays those drivers would have written (max-pooling's
    argmax) stay in bounds."""
    from numbacnn.backends import cpu

    def no_op(name: str) -> Any:
        def nothing(*args: Any) -> None:
            called.add(name)
        return nothing

    replaced = [(cpu, "empty", cpu.empty)]
    for module in _backend_modules():
        for attr, value in list(vars(module).items()):
            if isinstance(value, CPUDispatcher) and _key(value) in skip:
                replaced.append((module, attr, value))
                setattr(module, attr, no_op(_key(value)))
    cpu.empty = cpu.zeros
    try:
        yield
    finally:
        for module, attr, value in replaced:
            setattr(module, attr, value)


def compile_share(spec_text: str, settings: dict[str, Any], input_shape: list[int],
                  num_classes: int, share: list[str], skip: list[str]) -> list[str]:
    """Compile the drivers of ``share`` into numba's cache (and this process) by one
    training step and one evaluation of a copy of the run on four random images; the
    drivers in ``skip`` do nothing meanwhile. Returns the names of the drivers the copy
    called."""
    from numbacnn.io.datasets import Dataset
    from numbacnn.network import Network
    from numbacnn.training.settings import TrainSettings
    from numbacnn.training.trainer import Trainer

    called: set[str] = set()
    rng = np.random.default_rng(0)
    n = 4
    x = rng.integers(0, 256, (n, *input_shape), dtype=np.uint8)
    y = np.arange(n, dtype=np.int64) % num_classes
    dataset = Dataset(x, y, x[:2], y[:2], [str(k) for k in range(num_classes)], "warm-up")
    chosen = dataclasses.replace(TrainSettings.from_dict(settings), limit=None, val_split=0.25,
                                 augment=False, epochs=1)
    trainer = Trainer(Network.from_spec(spec_text, device="cpu"), dataset, chosen)
    with _drivers_replaced(skip, called), np.errstate(all="ignore"):
        trainer._train_batch(np.arange(n - 1))
        trainer.net.backend().fill(2, trainer._stats, np.float32(0.0))
        trainer.score(trainer.x_val, trainer.y_val)
    compiled = {_key(value): value for module in _backend_modules()
                for value in vars(module).values()
                if isinstance(value, CPUDispatcher) and value.signatures}
    # the chunk functions the drivers call from compiled code are theirs, not the run's
    nested = {name for d in compiled.values() for name in d.py_func.__code__.co_names
              if isinstance(d.py_func.__globals__.get(name), CPUDispatcher)}
    return sorted(called | (compiled.keys() - nested))
