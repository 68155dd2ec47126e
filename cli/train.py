"""``numbacnn train``: train a network from a spec on a dataset, with checkpoints.

Each epoch ends with one summary line on stdout and a checkpoint (``--out``, default
``model.h5``); the best model on validation is kept beside it (``model.best.h5``). A
progress bar (click's; loss, accuracy, images/s, ETA) is drawn when stdout is a terminal.
Ctrl-C stops at the next batch, saves a checkpoint and exits with status 130;
``--resume FILE`` continues exactly where it stopped. The training code lives in
:mod:`numbacnn.training.trainer`, imported inside the command so other commands start fast.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
from numbacnn_cli.options import (
    device_option,
    echo_replaced,
    error_text,
    float_range,
    int_range,
)

from numbacnn.errors import printable, shown_path
from numbacnn.training.optim import OPTIMIZERS
from numbacnn.training.settings import BOUNDS, CHOICES, TYPES  # imports no kernel, no h5py

_PATH = click.Path(path_type=Path)
DEFAULT_OUT = Path("model.h5")
RESUME_COMMAND = "numbacnn train --resume {checkpoint}"  # how a stopped run continues


class _TrainCommand(click.Command):
    """The command, with the defaults of every training option listed after --help."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from dataclasses import fields

        from numbacnn.training.settings import TrainSettings

        def shown(value: object) -> object:
            if isinstance(value, bool):
                return "on" if value else "off"
            return "all images" if value is None else value

        defaults = ", ".join(f"--{f.name.replace('_', '-')} {shown(f.default)}"
                             for f in fields(TrainSettings) if f.name not in ("spec", "lr"))
        formatter.write_paragraph()
        with formatter.indentation():
            rates = ", ".join(f"{kind.default_lr} ({name})" for name, kind in OPTIMIZERS.items())
            formatter.write_text(f"Defaults: SPEC {TrainSettings.spec}, {defaults}, --lr "
                                 f"{rates}, --out {DEFAULT_OUT}.")


class _Progress:
    """click's progress bar over the batches of each epoch, with loss, accuracy, images/s
    and the ETA of the epoch; drawn on ``file`` (default stdout) only when it is a
    terminal (under MPI: when the launcher's output is one), otherwise training prints
    just its epoch lines. Redrawn at most 5 times a
    second; the finished bar stays above its epoch's summary line."""

    def __init__(self, file: Any = None) -> None:
        from numbacnn.training.distributed import launched_by_mpi, launcher_writes_to_terminal

        self.file = file
        stream = file if file is not None else sys.stdout
        self.enabled = bool(stream is not None and stream.isatty())
        if self.enabled and file is None and launched_by_mpi():
            # under mpirun stdout is a pseudo-terminal even in `mpirun ... > log`
            self.enabled = launcher_writes_to_terminal()
        self.bar: Any = None
        self.epoch_shown = 0
        self.last = 0.0

    @staticmethod
    def _info(p: Any) -> str:
        if p is None:
            return ""
        return (f"loss {p.loss:.4f}  acc {100 * p.accuracy:5.1f}%  "
                f"{p.images_per_second:,.0f} img/s  ETA {_duration(p.eta_seconds)}")

    def batch(self, p: Any) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.bar is None or p.epoch != self.epoch_shown:
            self.clear()
            self.bar = click.progressbar(length=p.batches, label=f"epoch {p.epoch}/{p.epochs}",
                                         show_eta=False, show_percent=False, show_pos=True,
                                         item_show_func=self._info, width=24, file=self.file)
            self.epoch_shown, self.last = p.epoch, 0.0
        if now - self.last < 0.2 and p.batch < p.batches:
            return
        self.last = now
        self.bar.update(p.batch - self.bar.pos, p)

    def clear(self) -> None:
        """Finish the bar: it stays on its line, the cursor shows again."""
        if self.bar is not None:
            self.bar.render_finish()
            self.bar = None

    def epoch(self, record: Any) -> None:
        self.clear()
        click.echo(record.line())


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _setting(name: str) -> click.ParamType:
    """Click's type for the training setting ``name``: its choices or its bounds, as the
    library declares them (numbacnn.training.settings)."""
    if name in CHOICES:
        return click.Choice(tuple(CHOICES[name]))
    return int_range(BOUNDS[name]) if TYPES[name] is int else float_range(BOUNDS[name])


@click.command("train", cls=_TrainCommand)
@click.argument("spec", required=False)
@click.option("--data", help="Dataset: fashion-mnist-mini, fashion-mnist, a .h5/.npz file or "
              "a directory of IDX files.")
@click.option("--epochs", type=_setting("epochs"),
              help="Total epochs to train (with --resume: in all).")
@click.option("--batch-size", type=_setting("batch_size"), help="Images per SGD step.")
@click.option("--lr", type=_setting("lr"), help="Learning rate of the first epoch.")
@click.option("--momentum", type=_setting("momentum"), help="SGD momentum μ.")
@click.option("--weight-decay", type=_setting("weight_decay"), help="L2 weight decay λ.")
@click.option("--optimizer", type=_setting("optimizer"), help="Update rule.")
@click.option("--lr-policy", type=_setting("lr_policy"),
              help="constant; step: × gamma every --lr-step epochs; plateau: ÷10 when "
              "validation accuracy has not improved for --patience epochs; cosine: half a "
              "cosine from --lr towards 0 over the --epochs.")
@click.option("--lr-step", type=_setting("lr_step"), help="Epochs between step reductions.")
@click.option("--gamma", type=_setting("gamma"), help="Factor of each step reduction.")
@click.option("--patience", type=_setting("patience"),
              help="Epochs without improvement before ÷10 (plateau).")
@click.option("--label-smoothing", type=_setting("label_smoothing"),
              help="ε of the training targets (1 − ε)·onehot + ε/K; 0: plain cross-entropy.")
@click.option("--init", type=_setting("init"),
              help="Weight initializer of layers whose spec gives no init= (the layer "
              "feeding the softmax starts small, one feeding a maxout lecun: docs/spec.md).")
@click.option("--augment/--no-augment", default=None,
              help="Random crop (2 px padding) and horizontal flip of training images.")
@click.option("--val-split", type=_setting("val_split"),
              help="Fraction of the training split held out.")
@click.option("--seed", type=_setting("seed"), help="Seed of weights, split, shuffling, "
              "augmentation, dropout: same seed, same run (bit for bit on the CPU).")
@click.option("--limit", type=_setting("limit"),
              help="Use only the first N training images (quick tries).")
@click.option("--conv-algo", type=_setting("conv_algo"),
              help="How the convolutions compute: im2col and one GEMM, winograd "
                   "F(2x2,3x3) or F(2x2,5x5) where a convolution can (3x3 or 5x5, stride 1), "
                   "winograd4 F(4x4,3x3) or winograd3 F(3x3,5x5) (larger tiles, CPU), or "
                   "auto per layer; a spec's algo= on a conv line wins.")
@device_option()
@click.option("--tf32", is_flag=True, help="On a GPU, let the matrix products use TF32 tensor "
              "cores (faster, 10-bit mantissa inputs); default true FP32.")
@click.option("--out", type=_PATH, help=f"Checkpoint file [default: {DEFAULT_OUT}, or the "
              "--resume file]; the best model goes beside it as NAME.best.h5.")
@click.option("--resume", type=_PATH, help="Continue training from this checkpoint.")
@click.option("--weights", type=_PATH, help="Start from this model file's network and "
              "weights (fine-tuning; e.g. one numbacnn import wrote): its normalization and "
              "classes are kept, optimizer and lr schedule start afresh. SPEC may be left out "
              "(or be the model file); one given must describe the same layers.")
@click.option("--force", is_flag=True, help="Replace an existing --out file and its best "
              "model (without it, train refuses to overwrite them).")
def train(spec: str | None, device: str, tf32: bool, out: Path | None, resume: Path | None,
          force: bool, weights: Path | None, **options: Any) -> None:
    """Train SPEC (a preset, a .spec file or spec text; default fmnist) on --data; or a
    model file's network from its weights (--weights MODEL.h5, or MODEL.h5 as SPEC).

    Prints one line per epoch (train and validation loss and accuracy, lr, seconds),
    writes a checkpoint every epoch and the test accuracy at the end. Under mpirun (or
    srun) the ranks train data-parallel; rank 0 alone prints (docs/distributed.md).
    """
    from numbacnn.training.distributed import errors_said_once, join_world

    # under mpirun the library decides which rank says an error, and when (rank 0 at
    # once, another rank after a grace, naming itself); this command prints it
    ranks = join_world(_say_error)  # before CUDA starts: each rank takes its own GPU
    ranks.resume_advice = RESUME_COMMAND
    ctx = click.get_current_context()
    with errors_said_once(ranks, _say_error, lambda exc: error_text(exc, ctx)):
        spec, weights = _weights(spec, weights, resume)
        _train(spec, device, tf32, out, resume, force, options, weights)


def _say_error(text: str) -> None:
    click.echo(f"error: {text}", err=True)


def _weights(spec: str | None, weights: Path | None, resume: Path | None
             ) -> tuple[str | None, Path | None]:
    """(spec, weights): a model file given as SPEC is the --weights (by content)."""
    import os

    if weights is None and spec is not None and os.path.isfile(spec):
        from numbacnn.io.model_file import is_model_file

        if is_model_file(spec):
            spec, weights = None, Path(spec)
    if weights is not None and resume is not None:
        raise click.UsageError("--resume continues a checkpoint with its own weights; give "
                               "--weights (a model to start a new run from) or --resume")
    return spec, weights


def _train(spec: str | None, device: str, tf32: bool, out: Path | None, resume: Path | None,
           force: bool, options: dict[str, Any], weights: Path | None = None) -> None:
    from numbacnn.device import resolve_device, set_tf32
    from numbacnn.training.trainer import Interrupted

    chosen = {key: value for key, value in options.items() if value is not None}
    device = resolve_device(device)
    set_tf32(tf32, device)
    progress = _Progress()
    data = chosen.get("data")
    if resume is not None:
        targets = ([] if out is None or _same_file(out, resume)
                   else _plan_out(out, force, [resume, spec, data]))
        trainer = _resume(resume, spec, out, chosen, progress, device)
    else:
        targets = _plan_out(out or DEFAULT_OUT, force, [spec, data, weights])
        trainer = _start(spec, out or DEFAULT_OUT, chosen, progress, device, weights)
    started = time.perf_counter()
    try:
        trainer.run()
    except Interrupted as stop:
        progress.clear()
        resume = ("" if stop.checkpoint is None
                  else "; continue with: " + RESUME_COMMAND.format(checkpoint=stop.checkpoint))
        click.echo(stop.message + resume, err=True)
        click.get_current_context().exit(130)
    finally:
        progress.clear()
    if targets and trainer.world.is_root:  # rank 0 alone wrote them
        echo_replaced(targets[0])
        if trainer.state.best_epoch > 0:  # the best model was saved over the old one
            echo_replaced(targets[1])
    _report(trainer, time.perf_counter() - started)


def _same_file(a: Path, b: Path) -> bool:
    import os

    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _plan_out(out: Path, force: bool, inputs: list[Any]) -> list[Any]:
    """The writing policy (numbacnn.io.output_policy) for the model and its best model:
    a finished model is work, never replaced without --force; never an input (the spec
    file, the dataset, the checkpoint resumed), not even with --force. Returns their
    OutputTargets."""
    from numbacnn.errors import ModelFileError
    from numbacnn.io.model_file import best_path
    from numbacnn.io.output_policy import REFUSE, plan_output

    advice = (f"pass --force to replace it (and {best_path(out).name}), --resume {out} to "
              "continue that run, or choose another --out")
    return [plan_output(path, inputs=[i for i in inputs if i is not None], existing=REFUSE,
                        force=force, what="model", field="out", error=ModelFileError,
                        example="model.h5", advice=advice)
            for path in (out, best_path(out))]


def _start(spec: str | None, out: Path, chosen: dict[str, Any], progress: _Progress,
           device: str, weights: Path | None = None) -> Any:
    from numbacnn.training.fine_tune import weights_trainer
    from numbacnn.training.settings import TrainSettings
    from numbacnn.training.trainer import Trainer

    settings = TrainSettings(**chosen)
    if weights is not None:  # fine-tuning: the model's network, its weights
        trainer = weights_trainer(weights, settings, spec, out=out, device=device,
                                  on_batch=progress.batch, on_epoch=progress.epoch)
        _header(trainer, f"the weights of {weights}")
        _compile_kernels(trainer)
        _initial_state(trainer)
        return trainer
    if spec is not None:
        settings.spec = spec
    trainer = Trainer.from_settings(settings, out=out, device=device, on_batch=progress.batch,
                                    on_epoch=progress.epoch)
    _header(trainer)
    _compile_kernels(trainer)  # before the initial loss: its forward pass compiles too
    _initial_state(trainer)
    return trainer


def _resume(path: Path, spec: str | None, out: Path | None, chosen: dict[str, Any],
            progress: _Progress, device: str) -> Any:
    from numbacnn.io.model_file import check_model_writable
    from numbacnn.training.trainer import Trainer

    if out is not None:
        check_model_writable(out)
    expect = {key: value for key, value in chosen.items() if key != "epochs"}
    if spec is not None:
        expect["spec"] = spec
    trainer = Trainer.from_checkpoint(path, epochs=chosen.get("epochs"), out=out,
                                      expect=expect, device=device, on_batch=progress.batch,
                                      on_epoch=progress.epoch)
    state = trainer.state
    where = f"epoch {state.epoch + 1}" + (f", batch {state.batch + 1}" if state.batch else "")
    click.echo(f"resuming {path} at {where}")
    _header(trainer)
    _compile_kernels(trainer)
    return trainer


def _header(trainer: Any, network: str | None = None) -> None:
    from numbacnn.device import precision
    from numbacnn.geometry import volume

    s, net = trainer.settings, trainer.net
    size = trainer.world.size
    ranks = f" on {size} ranks (MPI, batch {s.batch_size} split over them)" if size > 1 else ""
    reduce = trainer.gradient_allreduce
    if reduce is not None and reduce.on_device:
        ranks += (", gradients through pinned host memory" if reduce.staged
                  else ", gradients as GPU buffers (CUDA-aware MPI)")
    optimizer = (f"sgd momentum {s.momentum:g}" if s.optimizer == "sgd" else "adam")
    click.echo(f"training {printable(network or s.spec)} on {shown_path(s.data)}: "
               f"{len(trainer.y_fit)} training and "
               f"{len(trainer.y_val)} validation images of {volume(net.input_shape)}, "
               f"{net.num_classes} classes, {net.num_params():,} parameters")
    epochs = f"{s.epochs} epoch" + ("s" if s.epochs != 1 else "")
    click.echo(f"{epochs}, batch {s.batch_size}, {optimizer}, weight decay "
               f"{s.weight_decay:g}, lr {s.lr:g} ({s.lr_policy}), "
               + (f"label smoothing {s.label_smoothing:g}, " if s.label_smoothing else "")
               + f"init {_inits(trainer)}, augment "
               f"{'on' if s.augment else 'off'}, seed {s.seed}, device {net.device} "
               f"({precision(net.device)}){ranks}, checkpoint {shown_path(trainer.out)}")


def _initial_state(trainer: Any) -> None:
    """A new run's initial loss beside ln K, and why it cannot learn when weights start
    at zero (numbacnn.training.diagnostics); rank 0 alone computes and prints them."""
    from numbacnn.training.diagnostics import initial_loss, symmetry_warning

    if not trainer.world.is_root:
        return
    warning = symmetry_warning(trainer.net, trainer.settings.init)
    if warning is not None:
        click.echo(f"warning: {warning}; e.g. --init he", err=True)
    start = initial_loss(trainer.net, trainer.x_fit, trainer.y_fit)
    click.echo(start.line())
    advice = start.advice()
    if advice is not None:
        click.echo(f"note: {advice}", err=True)


def _compile_kernels(trainer: Any) -> None:
    """Say so before numba compiles the CPU drivers (a first run: seconds with no other
    sign of life), then compile them on all cores (numbacnn.training.warmup)."""
    from numbacnn.training.warmup import compile_plan

    plan = compile_plan(trainer)
    if plan is None:
        return
    cores = f", {plan.workers} cores" if plan.parallel else ""
    click.echo(f"compiling the CPU kernels for this machine (first run only, "
               f"~{plan.seconds:.0f} s{cores})")
    try:
        plan.run()
    except KeyboardInterrupt:
        click.echo("stopped while compiling, before the first step: nothing was trained or "
                   "written", err=True)
        click.get_current_context().exit(130)


def _inits(trainer: Any) -> str:
    """The initializers the layers really use: a spec's init= overrides --init."""
    default, used = trainer.settings.init, trainer.layer_initializers()
    if not used or all(init == default for init in used):
        return default
    own = [layer.init for layer in trainer.net.layers if layer.params and layer.init]
    if not own:  # the defaults alone: e.g. the layer feeding the softmax starts small
        return f"{default}, " + ", ".join(
            f"{layer.describe()} {layer.initializer(default)}"
            for layer in trainer.net.layers
            if layer.params and layer.initializer(default) != default)
    if len(set(used)) == 1:
        return f"{used[0]} (from the spec)"
    return "/".join(dict.fromkeys(used)) + " (per layer, from the spec)"


def _report(trainer: Any, seconds: float) -> None:
    """The closing lines; ``seconds``: how long this run trained."""
    from numbacnn.io.model_file import best_path

    state = trainer.state
    click.echo(f"saved {shown_path(trainer.out)} (epoch {state.epoch})")
    reduce = trainer.gradient_allreduce
    if reduce is not None and reduce.calls:  # tells whether more ranks would pay
        click.echo(f"gradient all-reduce on {trainer.world.size} ranks: "
                   f"{1e3 * reduce.seconds / reduce.calls:.2f} ms per step over {reduce.calls} "
                   f"steps (with the wait for the slowest rank), "
                   f"{100 * reduce.seconds / max(seconds, 1e-9):.0f} % of the training time")
    if state.best_epoch > 0:
        what = "validation" if len(trainer.y_val) else "training"
        click.echo(f"best {what} accuracy {100 * state.best_accuracy:.2f}% at epoch "
                   f"{state.best_epoch}: {shown_path(best_path(trainer.out))}")
    accuracy = trainer.test_accuracy()
    if accuracy is not None:
        click.echo(f"test accuracy {100 * accuracy:.2f}% ({len(trainer.dataset.y_test)} images "
                   f"of {shown_path(trainer.settings.data)}, last epoch's weights)")


COMMANDS = [train]
