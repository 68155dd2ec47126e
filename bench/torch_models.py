"""PyTorch twins of numbacnn networks, for side-by-side benchmarks only.

:func:`make_twin` turns a built numbacnn :class:`~numbacnn.network.Network` into a list of
``torch.nn`` modules, one per numbacnn layer and in the same order (conv, pooling, LRN,
fc, flatten, dropout and every activation), with the same float32 weights when the
network is initialized. Any spec therefore has a twin, and the per-layer rows of the
two frameworks line up one to one.

:func:`bench_twin` times the twin the way ``numbacnn.bench.bench_numbacnn`` times
numbacnn: per-layer forward/backward (each layer's input detached, so a layer's
backward is timed alone), the loss and the SGD update as their own rows, then whole
training steps for the throughput. PyTorch is not a numbacnn dependency: this file is
loaded by ``numbacnn bench --compare torch`` from the source tree and imports torch at
the top, so it is only loaded when torch is installed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


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


def _clock(sync: Callable[[], None]) -> float:
    sync()
    return time.perf_counter()


def _setup(net: Any, batch: int, device: str, threads: int, seed: int,
           lr: float) -> tuple[nn.ModuleList, torch.Tensor, torch.Tensor, torch.optim.SGD]:
    from numbacnn.bench import random_batch

    if device == "cpu":
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = make_twin(net, device, copy_weights=False)
    model.train()
    x_host, y_host = random_batch(net.input_shape, net.num_classes, batch, seed)
    x = torch.from_numpy(x_host).to(device)
    labels = torch.from_numpy(y_host).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    return model, x, labels, opt


def _train_step(model: nn.ModuleList, x: torch.Tensor, labels: torch.Tensor,
                opt: torch.optim.SGD) -> None:
    h = x
    for module in model:
        h = module(h)
    loss = F.cross_entropy(h.flatten(1), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def train_steps(net: Any, batch: int, steps: int, device: str = "cpu", threads: int = 1,
                lr: float = 1e-3, seed: int = 0) -> None:
    """Run ``steps`` whole training steps of the twin (for the peak-RSS subprocess)."""
    model, x, labels, opt = _setup(net, batch, device, threads, seed, lr)
    for _ in range(steps):
        _train_step(model, x, labels, opt)
    _sync_fn(device)()


def set_precision(tf32: bool) -> None:
    """TF32 tensor cores in cuDNN convolutions and cuBLAS products on (True) or off."""
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32


def bench_twin(net: Any, batch: int, iterations: int, warmup: int, device: str = "cpu",
               layers: bool = True, seed: int = 0, threads: int = 1,
               lr: float = 1e-3, tf32: bool = False) -> dict[str, Any]:
    """Time the twin of ``net``: the same dict layout as numbacnn's side of the bench.
    On CUDA in true FP32 (PyTorch's default lets cuDNN use TF32) unless ``tf32``."""
    from numbacnn.bench import layer_table, output_shape_text, throughput, warmup_summary

    if device == "cuda":
        set_precision(tf32)

    model, x, labels, opt = _setup(net, batch, device, threads, seed, lr)
    sync = _sync_fn(device)

    def step() -> None:
        _train_step(model, x, labels, opt)

    result: dict[str, Any] = {
        "framework": "torch", "torch_version": torch.__version__, "device": device,
        "precision": ("tf32" if tf32 else "fp32") if device == "cuda" else "fp32",
        "threads": torch.get_num_threads(), "batch": batch, "iterations": iterations,
        "warmup": warmup,
    }
    warm = []
    for _ in range(max(1, warmup)):
        t0 = _clock(sync)
        step()
        warm.append(_clock(sync) - t0)
    if layers:
        L = len(model)
        fwd, bwd = np.zeros(L + 1), np.zeros(L + 1)
        update = 0.0
        for _ in range(iterations):
            inputs, outputs = [], []
            h = x
            for i, module in enumerate(model):
                xi = h.detach().requires_grad_(i > 0)
                t0 = _clock(sync)
                out = module(xi)
                fwd[i] += _clock(sync) - t0
                inputs.append(xi)
                outputs.append(out)
                h = out
            logits = h.detach().requires_grad_(True)
            t0 = _clock(sync)
            loss = F.cross_entropy(logits.flatten(1), labels)
            fwd[L] += _clock(sync) - t0
            t0 = _clock(sync)
            loss.backward()
            bwd[L] += _clock(sync) - t0
            grad = logits.grad
            for i in range(L - 1, -1, -1):
                if not outputs[i].requires_grad:
                    break  # a parameterless first layer: nothing to backpropagate into
                t0 = _clock(sync)
                outputs[i].backward(grad)
                bwd[i] += _clock(sync) - t0
                grad = inputs[i].grad
            t0 = _clock(sync)
            opt.step()
            opt.zero_grad(set_to_none=True)
            update += _clock(sync) - t0
        result.update(layer_table([layer.describe() for layer in net.layers],
                                  [output_shape_text(layer.output_shape) for layer in net.layers],
                                  fwd, bwd, update, iterations))
    result["train"] = throughput(step, sync, batch, iterations)
    result["warmup_times"] = warmup_summary(warm, result["train"]["step_ms"])
    return result


def cublas_tflops(n: int = 4096, reps: int = 10) -> float:
    """TFLOP/s of an n³ float32 torch.matmul on the GPU (cuBLAS, TF32 off)."""
    set_precision(False)
    a = torch.randn(n, n, device="cuda", dtype=torch.float32)
    b = torch.randn(n, n, device="cuda", dtype=torch.float32)
    torch.matmul(a, b)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.matmul(a, b)
    torch.cuda.synchronize()
    return 2.0 * n**3 / ((time.perf_counter() - t0) / reps) / 1e12
