"""Where a training step's time goes, like ``caffe time``: per-layer forward and backward
milliseconds, training throughput, and the one-off warm-up (JIT compile) of a network.

    net = Network.from_spec("fmnist").initialize(0)
    print(format_profile(profile_training(net, batch=64)))

A :class:`LayerTimer` handed to :meth:`Network.train_step_on_device` (its ``timer``
argument) times each layer's and the loss's forward and backward call, so the step
that is timed is the step the trainer runs. The backend is synchronized before every
clock read: on a GPU a layer's queued kernels count in that layer's row. Throughput is
timed apart, over whole steps (forward, loss, backward, SGD update) without per-layer
synchronization. Inputs are random (:func:`random_batch`); nothing is read back.

``numbacnn bench`` prints these profiles; the benchmark suite under ``bench/`` (PyTorch
comparison, memory, start-up, targets) builds on them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from numbacnn.errors import TrainingError, printable
from numbacnn.geometry import volume
from numbacnn.limits import Bounds, check_memory

if TYPE_CHECKING:
    from numbacnn.network import Network

# Learning rate of the profiled SGD steps: small, so that random data cannot drive the
# weights to NaN
LEARNING_RATE = 1e-3
STAND_IN_LOSS = "mean of output (stand-in)"  # the loss row of a network without class scores
PHASES = ("forward", "backward")


def clock(synchronize: Callable[[], None]) -> float:
    """``time.perf_counter()`` seconds, read once the device has finished its queued work."""
    synchronize()
    return time.perf_counter()


class LayerTimer:
    """Seconds spent in each layer's calls, summed over every step it timed (a
    :class:`numbacnn.network.LayerTimer`: the passes call its ``measure``).

    ``seconds["forward"]`` and ``seconds["backward"]`` are float64 arrays of L + 1: the L
    layers in order, then the loss. ``synchronize`` waits for the device's queued work
    (the backend's ``synchronize``).
    """

    def __init__(self, layers: int, synchronize: Callable[[], None]) -> None:
        self.seconds = {phase: np.zeros(layers + 1) for phase in PHASES}
        self._synchronize = synchronize

    @contextmanager
    def measure(self, slot: int, phase: str) -> Iterator[None]:
        """Add the seconds the block takes to ``seconds[phase][slot]``."""
        start = clock(self._synchronize)
        yield
        self.seconds[phase][slot] += clock(self._synchronize) - start


def time_steps(step: Callable[[], None], synchronize: Callable[[], None],
               count: int) -> list[float]:
    """Seconds of each of ``count`` calls of ``step``, the device synchronized around each."""
    seconds = []
    for _ in range(count):
        start = clock(synchronize)
        step()
        seconds.append(clock(synchronize) - start)
    return seconds


def throughput(step_seconds: list[float], batch: int) -> dict[str, float]:
    """Images/s of whole steps of ``batch`` images, the mean and the best step in ms."""
    total = float(sum(step_seconds))
    return {"images_per_s": batch * len(step_seconds) / total,
            "step_ms": 1e3 * total / len(step_seconds), "best_step_ms": 1e3 * min(step_seconds)}


def warmup_summary(warmup_seconds: list[float], steady_step_ms: float) -> dict[str, float]:
    """The first step, a steady step and their difference in seconds: the one-off cost of
    JIT compilation (or of loading the kernels from numba's on-disk cache)."""
    first, steady = warmup_seconds[0], steady_step_ms / 1e3
    return {"first_step_s": first, "steady_step_s": steady,
            "compile_s": max(first - steady, 0.0)}


def random_batch(input_shape: tuple[int, ...], classes: int, batch: int,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal float32 images N×C×H×W and int64 labels in [0, classes)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *input_shape), dtype=np.float32)
    return x, rng.integers(0, classes, batch).astype(np.int64)


def spec_label(spec: str) -> str:
    """A short name for tables: a preset's name, or the first 40 characters of spec text."""
    text = printable(spec.strip().splitlines()[0] if spec.strip() else spec)
    return text if len(text) <= 40 else text[:37] + "..."


def output_shape_text(shape: tuple[int, int, int]) -> str:
    """C×H×W as the lecture writes it, W×H×D (``55x55x96``); an fc output as its length."""
    C, H, W = shape
    return str(C) if H == W == 1 else volume(shape)


def layer_table(descriptions: list[str], shapes: list[str], forward_s: np.ndarray,
                backward_s: np.ndarray, update_s: float, steps: int,
                fused: list[bool] | None = None) -> dict[str, Any]:
    """The per-layer part of a profile in ms per step: rows, loss, update and totals.

    ``forward_s``/``backward_s``: seconds summed over ``steps`` steps, one per layer and
    the loss last; ``update_s``: the optimizer's seconds over those steps. ``fused``
    marks layers whose work another layer does (a ReLU fused into its convolution).
    """
    forward = forward_s * 1e3 / steps
    backward = backward_s * 1e3 / steps
    update = update_s * 1e3 / steps
    step = float(forward.sum() + backward.sum() + update)

    def percent(ms: float) -> float:
        return 100.0 * ms / step if step > 0 else 0.0

    rows = [{"index": i + 1, "layer": descriptions[i], "output_shape": shapes[i],
             "forward_ms": float(forward[i]), "backward_ms": float(backward[i]),
             "percent": percent(forward[i] + backward[i])} for i in range(len(descriptions))]
    if fused is not None:
        for row, flag in zip(rows, fused, strict=True):
            row["fused"] = bool(flag)
    return {
        "layers": rows,
        "loss": {"forward_ms": float(forward[-1]), "backward_ms": float(backward[-1]),
                 "percent": percent(forward[-1] + backward[-1])},
        "update": {"ms": update, "percent": percent(update)},
        "total": {"forward_ms": float(forward.sum()), "backward_ms": float(backward.sum()),
                  "update_ms": update, "step_ms": step},
    }


PROFILE_STEPS = Bounds(1, 1_000_000)  # timed or warm-up steps of one profile


def profile_training(net: Network, batch: int, iterations: int = 10, warmup: int = 2,
                     layers: bool = True, seed: int = 0,
                     learning_rate: float = LEARNING_RATE) -> dict[str, Any]:
    """Profile training steps of the initialized ``net`` on its device, JSON-ready.

    ``warmup`` (≥ 1) untimed steps come first; the first of them gives the warm-up cost.
    With ``layers``, ``iterations`` steps are timed layer by layer (:func:`layer_table`'s
    keys, plus ``fused``); then ``iterations`` whole steps give ``train`` (images/s, ms per
    step). Each step is forward, loss, backward and an SGD update (momentum 0.9, weight
    decay 5e-4) on one random batch of ``batch`` images, as the trainer runs it. A network
    that ends in a volume has no loss: its backward starts from the gradient of the mean
    of its output (``loss_name`` in the profile says so).
    """
    from numbacnn.shapes import training_bytes
    from numbacnn.training.optim import SGD

    for name, steps in (("iterations", iterations), ("warmup", warmup)):
        PROFILE_STEPS.check(name, steps, TrainingError)  # 2**63 steps would never end
    check_memory(training_bytes(net, batch), f"a training step with batch {batch}",
                 TrainingError, "lower the batch", "batch")  # before the batch is made
    B = net.backend()
    optimizer = SGD(momentum=0.9, weight_decay=5e-4)
    scores = net.ends_in_scores
    x_host, labels_host = random_batch(net.input_shape, net.num_classes if scores else 1,
                                       batch, seed)
    x, labels = B.to_device(x_host), B.to_device(labels_host)
    stats = B.zeros((2,))
    # a network that ends in a volume has no loss: backward starts from the gradient of a
    # stand-in, the mean of its output (every element 1/(N·D·H·W))
    d_output = None if scores else B.to_device(
        np.full((batch, *net.output_shape), 1.0 / (batch * np.prod(net.output_shape)),
                np.float32))

    def passes(timer: LayerTimer | None = None) -> None:
        if scores:
            net.train_step_on_device(x, labels, stats, timer=timer)
        else:
            net.forward(x, training=True, timer=timer)
            net.backward(d_output, timer=timer)

    def step() -> None:
        passes()
        optimizer.step(net, learning_rate)

    profile: dict[str, Any] = {
        "spec": spec_label(net.spec_text or "network"), "framework": "numbacnn",
        "device": net.device, "precision": B.tf32_label(), "gemm": B.gemm_label(),
        "batch": batch,
        "iterations": iterations, "warmup": warmup, "params": int(net.num_params()),
        "gflop_per_image": sum(layer.flops() for layer in net.layers) / 1e9,
    }
    if not scores:
        profile["loss_name"] = STAND_IN_LOSS
    warmup_seconds = time_steps(step, B.synchronize, max(1, warmup))
    if layers:
        timer = LayerTimer(len(net.layers), B.synchronize)
        update_s = 0.0
        for _ in range(iterations):
            passes(timer)
            start = clock(B.synchronize)
            optimizer.step(net, learning_rate)
            update_s += clock(B.synchronize) - start
        profile.update(layer_table(
            [layer.describe() for layer in net.layers],
            [output_shape_text(layer.output_shape) for layer in net.layers],
            timer.seconds["forward"], timer.seconds["backward"], update_s, iterations,
            fused=[bool(getattr(layer, "fused", False)) for layer in net.layers]))
    profile["train"] = throughput(time_steps(step, B.synchronize, iterations), batch)
    profile["warmup_times"] = warmup_summary(warmup_seconds, profile["train"]["step_ms"])
    return profile


def profile_spec(spec: str, batch: int, iterations: int = 10, warmup: int = 2,
                 layers: bool = True, seed: int = 0, device: str = "auto",
                 conv_algo: str = "im2col") -> dict[str, Any]:
    """:func:`profile_training` of ``spec`` (a preset name, spec file or spec text) built
    and initialized with ``seed`` on ``device`` ("auto", "cpu" or "cuda"), its
    convolutions computed by ``conv_algo`` (``Network.conv_algo``); ``spec`` in the
    profile is the preset name or the spec's first line."""
    from numbacnn.network import Network

    net = Network.from_spec(spec, device=device).initialize(seed)
    net.conv_algo = conv_algo
    profile = profile_training(net, batch, iterations, warmup, layers, seed)
    profile["spec"] = spec_label(spec)
    return profile


# ----------------------------------------------------------------------------- text

TABLE_WIDTH = 77  # characters of every line of layer_table_lines


def profile_heading(profile: dict[str, Any]) -> str:
    """One line: the network, batch, device, steps, parameters and forward GFLOP/image."""
    gemm = f" ({profile['gemm']})" if profile.get("gemm") else ""
    return (f"{profile['spec']}: batch {profile['batch']} on {profile['device']}{gemm}, "
            f"{profile['iterations']} steps after {profile['warmup']} warm-up; "
            f"{profile['params']:,} parameters, {profile['gflop_per_image']:.3f} GFLOP/image "
            "forward")


def layer_table_lines(profile: dict[str, Any]) -> list[str]:
    """The per-layer table, each line :data:`TABLE_WIDTH` wide: a header, one row per
    layer (a fused ReLU marked, its time in its convolution's row), the softmax loss,
    the SGD update, the forward and backward totals, and the whole step, in ms per step
    and % of the step."""
    lines = [f"{'#':>3}  {'layer':<34} {'output':>10} {'fwd ms':>9} {'bwd ms':>9} {'%':>6}"]
    for row in profile["layers"]:
        name = row["layer"] + (" (fused)" if row.get("fused") else "")
        lines.append(f"{row['index']:>3}  {name[:34]:<34} {row['output_shape']:>10} "
                     f"{row['forward_ms']:>9.3f} {row['backward_ms']:>9.3f} "
                     f"{row['percent']:>5.1f}%")
    loss, update, total = profile["loss"], profile["update"], profile["total"]
    loss_name = profile.get("loss_name", "softmax loss")  # a stand-in without class scores
    for name, forward, backward, percent in (
            (loss_name, loss["forward_ms"], loss["backward_ms"], loss["percent"]),
            ("sgd update", update["ms"], 0.0, update["percent"])):
        lines.append(f"{'':>3}  {name:<34} {'':>10} {forward:>9.3f} {backward:>9.3f} "
                     f"{percent:>5.1f}%")
    lines.append(f"{'':>3}  {'total (per step)':<34} {'':>10} {total['forward_ms']:>9.3f} "
                 f"{total['backward_ms']:>9.3f} {'':>6}")
    lines.append(f"{'':>3}  {'step (all rows)':<34} {'':>10} {total['step_ms']:>9.3f}"
                 .ljust(TABLE_WIDTH))
    return lines


def throughput_line(profile: dict[str, Any]) -> str:
    """``training: N images/s (M ms/step, best B)``."""
    train = profile["train"]
    return (f"training: {train['images_per_s']:,.1f} images/s ({train['step_ms']:.1f} ms/step, "
            f"best {train['best_step_ms']:.1f})")


def warmup_line(profile: dict[str, Any]) -> str:
    """The first step against a steady one, and the difference: the JIT compile."""
    w = profile["warmup_times"]
    return (f"warm-up: first step {w['first_step_s']:.2f} s vs steady {w['steady_step_s']:.3f} s"
            f" → JIT compile / cache load {w['compile_s']:.2f} s")


def format_profile(profile: dict[str, Any]) -> str:
    """A profile as text: heading, the per-layer table (when timed), throughput, warm-up;
    for a network without class scores, a line saying what its backward started from."""
    table = layer_table_lines(profile) if "layers" in profile else []
    note = ([] if "loss_name" not in profile else
            ["no class scores (ends in a volume): backward starts from a stand-in loss, the",
             "mean of the output; add \"fc 10; softmax\" to time a classifier's training"])
    return "\n".join([profile_heading(profile), *note, *table, throughput_line(profile),
                      warmup_line(profile)])
