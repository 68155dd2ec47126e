"""PyTorch twins of numbacnn networks, for side-by-side benchmarks only.

:func:`make_twin` turns a built numbacnn :class:`~numbacnn.network.Network` into a list of
``torch.nn`` modules, one per numbacnn layer and in the same order (conv, pooling, LRN,
fc, flatten, dropout and every activation), with the same float32 weights when the
network is initialized. Any spec therefore has a twin, and the per-layer rows of the
two frameworks line up one to one.

:func:`bench_twin` times the twin the way ``numbacnn.training.profiler.profile_training`` times
numbacnn: per-layer forward/backward (each layer's input detached, so a layer's
backward is timed alone), the loss and the SGD update as their own rows, then whole
training steps for the throughput, in the profile's layout. PyTorch is not a numbacnn
dependency: the benchmark suite (``bench/suite.py --compare torch``) imports this module
only when torch is installed; it imports torch at the top.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from numbacnn.training.profiler import (
    LEARNING_RATE,
    clock,
    layer_table,
    output_shape_text,
    random_batch,
    throughput,
    time_steps,
    warmup_summary,
)


def twin_layer(layer: Any) -> nn.Module:
    """The torch module for one built numbacnn layer: the layer's own ``torch_module()``."""
    return layer.torch_module()


def make_twin(net: Any, device: str = "cpu", copy_weights: bool = True) -> nn.ModuleList:
    """One torch module per layer of ``net`` (built), float32 on ``device``.

    With ``copy_weights`` and an initialized ``net``, every parameter and state array is
    copied into the twin's tensor that ``layer.torch_names`` names (K×C×F×F and
    units×inputs are PyTorch's layouts too; BatchNorm's running statistics included).
    """
    from numbacnn.device import to_host

    modules = nn.ModuleList(twin_layer(layer) for layer in net.layers)
    if copy_weights:
        with torch.no_grad():
            for layer, module in zip(net.layers, modules, strict=True):
                arrays = {**layer.params, **layer.state}
                for key, name in layer.torch_names.items():
                    if key not in arrays:
                        continue
                    # the module holding the tensor (a Sequential's Linear for fc)
                    target = next(m for m in module.modules()
                                  if isinstance(getattr(m, name, None), torch.Tensor))
                    getattr(target, name).copy_(torch.from_numpy(np.array(to_host(arrays[key]))))
    return modules.to(device=device, dtype=torch.float32)


def _sync_fn(device: str) -> Callable[[], None]:
    if device == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def compute_threads() -> int:
    """Threads numbacnn computes with on the CPU (numba's count: NUMBA_NUM_THREADS, else
    every core), read without importing numba; PyTorch is given as many."""
    env = os.environ.get("NUMBA_NUM_THREADS")
    return int(env) if env and env.isdigit() else (os.cpu_count() or 1)


def setup_training(net: Any, batch: int, device: str = "cpu", threads: int | None = None,
                   seed: int = 0, lr: float = LEARNING_RATE
                   ) -> tuple[nn.ModuleList, torch.Tensor, torch.Tensor, torch.optim.SGD]:
    """The twin of ``net`` in training mode, the random batch numbacnn's profile uses
    (images N×C×H×W, labels N) and SGD with numbacnn's hyperparameters; on the CPU
    PyTorch computes with ``threads`` threads (default :func:`compute_threads`)."""
    if device == "cpu":
        torch.set_num_threads(threads or compute_threads())
    torch.manual_seed(seed)
    model = make_twin(net, device, copy_weights=False)
    model.train()
    x_host, y_host = random_batch(net.input_shape, net.num_classes, batch, seed)
    x = torch.from_numpy(x_host).to(device)
    labels = torch.from_numpy(y_host).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    return model, x, labels, opt


def train_step(model: nn.ModuleList, x: torch.Tensor, labels: torch.Tensor,
               opt: torch.optim.SGD) -> None:
    """One whole training step of the twin: forward, cross-entropy, backward, SGD."""
    h = x
    for module in model:
        h = module(h)
    loss = F.cross_entropy(h.flatten(1), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def train_steps(net: Any, batch: int, steps: int, device: str = "cpu",
                threads: int | None = None, lr: float = LEARNING_RATE, seed: int = 0) -> None:
    """Run ``steps`` whole training steps of the twin (for the peak-RSS subprocess)."""
    model, x, labels, opt = setup_training(net, batch, device, threads, seed, lr)
    for _ in range(steps):
        train_step(model, x, labels, opt)
    _sync_fn(device)()


def set_precision(tf32: bool) -> None:
    """TF32 tensor cores in cuDNN convolutions and cuBLAS products on (True) or off."""
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32


def _layer_seconds(model: nn.ModuleList, x: torch.Tensor, labels: torch.Tensor,
                   opt: torch.optim.SGD, sync: Callable[[], None], forward_s: np.ndarray,
                   backward_s: np.ndarray) -> float:
    """One training step timed layer by layer: adds each layer's seconds (the loss last)
    to ``forward_s``/``backward_s`` and returns the update's seconds. Each layer's input
    is detached, so its backward runs alone."""
    L = len(model)
    inputs, outputs = [], []
    h = x
    for i, module in enumerate(model):
        xi = h.detach().requires_grad_(i > 0)
        start = clock(sync)
        h = module(xi)
        forward_s[i] += clock(sync) - start
        inputs.append(xi)
        outputs.append(h)
    logits = h.detach().requires_grad_(True)
    start = clock(sync)
    loss = F.cross_entropy(logits.flatten(1), labels)
    forward_s[L] += clock(sync) - start
    start = clock(sync)
    loss.backward()
    backward_s[L] += clock(sync) - start
    grad = logits.grad
    for i in range(L - 1, -1, -1):
        if not outputs[i].requires_grad:
            break  # a parameterless first layer: nothing to backpropagate into
        start = clock(sync)
        outputs[i].backward(grad)
        backward_s[i] += clock(sync) - start
        grad = inputs[i].grad
    start = clock(sync)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return clock(sync) - start


def bench_twin(net: Any, batch: int, iterations: int, warmup: int, device: str = "cpu",
               layers: bool = True, seed: int = 0, threads: int | None = None,
               lr: float = LEARNING_RATE, tf32: bool = False) -> dict[str, Any]:
    """Time the twin of ``net``: the layout of ``numbacnn.training.profiler.profile_training``.
    On CUDA in true FP32 (PyTorch's default lets cuDNN use TF32) unless ``tf32``."""
    if device == "cuda":
        set_precision(tf32)
    model, x, labels, opt = setup_training(net, batch, device, threads, seed, lr)
    sync = _sync_fn(device)

    def step() -> None:
        train_step(model, x, labels, opt)

    result: dict[str, Any] = {
        "framework": "torch", "torch_version": torch.__version__, "device": device,
        "precision": ("tf32" if tf32 else "fp32") if device == "cuda" else "fp32",
        "threads": torch.get_num_threads(), "batch": batch, "iterations": iterations,
        "warmup": warmup,
    }
    warmup_seconds = time_steps(step, sync, max(1, warmup))
    if layers:
        forward_s, backward_s = np.zeros(len(model) + 1), np.zeros(len(model) + 1)
        update_s = sum(_layer_seconds(model, x, labels, opt, sync, forward_s, backward_s)
                       for _ in range(iterations))
        result.update(layer_table([layer.describe() for layer in net.layers],
                                  [output_shape_text(layer.output_shape) for layer in net.layers],
                                  forward_s, backward_s, update_s, iterations))
    result["train"] = throughput(time_steps(step, sync, iterations), batch)
    result["warmup_times"] = warmup_summary(warmup_seconds, result["train"]["step_ms"])
    return result


def cublas_tflops(n: int = 4096, reps: int = 10) -> float:
    """TFLOP/s of an n³ float32 torch.matmul on the GPU (cuBLAS, TF32 off)."""
    set_precision(False)
    a = torch.randn(n, n, device="cuda", dtype=torch.float32)
    b = torch.randn(n, n, device="cuda", dtype=torch.float32)
    torch.matmul(a, b)
    start = clock(torch.cuda.synchronize)
    for _ in range(reps):
        torch.matmul(a, b)
    return 2.0 * n**3 / ((clock(torch.cuda.synchronize) - start) / reps) / 1e12
