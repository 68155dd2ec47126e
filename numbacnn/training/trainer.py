"""Training: mini-batch SGD (momentum 0.9, L2 weight decay 5e-4) or Adam over a dataset,
with a validation split, lr policies, checkpoints, exact resume, and NaN/Ctrl-C handling.

    trainer = Trainer(net, dataset, TrainSettings(epochs=5), out="model.h5")
    trainer.run()                                 # checkpoint each epoch, best model beside
    trainer = Trainer.from_checkpoint("model.h5", epochs=10)
    trainer.run()                                 # continues exactly where it stopped

Determinism: everything random derives from ``settings.seed``: the weights
(``Network.initialize(seed)``), the validation split, the shuffling and augmentation
generators (children of ``np.random.SeedSequence(seed)``) and dropout (seeded from
``Network.seed`` and ``Network.step``). Checkpoints store the generators' states, so a
run resumed from a checkpoint gives bit-identical weights on the CPU.

What training reports (:class:`BatchProgress`, :class:`EpochRecord`) is in
``progress.py``, the validation score in ``evaluation.py``, the Ctrl-C handling
(:class:`Interrupted`) in ``interrupts.py``; their names are importable from here too.

Images are normalized once per run (float32, with the mean and std of the images
trained on). Every batch is gathered into one reused host buffer (page-locked on a GPU)
and copied into one reused device buffer; a training step reads nothing back: the
loss and the correct predictions are summed on the device and read once per progress
update (every batch on the CPU, where that costs nothing; every
``GPU_PROGRESS_SECONDS`` on a GPU), then added up on the host in float64. Those reads
also log the training loss within epochs (``self.steps``, a
:class:`~numbacnn.io.step_history.StepHistory`): a point every ``steps.every`` steps on
the CPU, the mean of each progress interval of at least that many steps on a GPU.

Under ``mpirun`` (or ``srun``) the ranks train data-parallel: each its slice of every
global batch, gradients summed by one Allreduce per step, rank 0 writing checkpoints
(``numbacnn/training/distributed.py``, ``docs/distributed.md``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from numbacnn.device import to_host
from numbacnn.errors import DataError, TrainingError
from numbacnn.geometry import VOLUME_AXES, volume
from numbacnn.io.dataset_files import load_dataset
from numbacnn.io.datasets import Dataset, augment, normalization, normalize
from numbacnn.io.model_file import (
    HISTORY_KEYS,
    ModelInfo,
    best_path,
    check_model_writable,
    copy_model,
    save_model,
)
from numbacnn.io.step_history import StepHistory, points_every
from numbacnn.limits import check_memory
from numbacnn.network import Network
from numbacnn.shapes import training_bytes
from numbacnn.spec import spec_difference
from numbacnn.training.checkpoint import OptimizerState, TrainingState, load_checkpoint
from numbacnn.training.distributed import GradientAllreduce, World
from numbacnn.training.distributed import world as current_world
from numbacnn.training.evaluation import evaluate
from numbacnn.training.interrupts import Interrupted, deferred_interrupts
from numbacnn.training.progress import BatchProgress, EpochRecord
from numbacnn.training.schedules import LRSchedule
from numbacnn.training.settings import TrainSettings
from numbacnn.training.staging import BatchStaging

CROP_PAD = 2  # pixels of zero padding for the random crop of settings.augment
GPU_PROGRESS_SECONDS = 0.25  # how often a GPU run reads its loss and accuracy back


def check_fits(net: Network, dataset: Dataset, where: str) -> None:
    """DataError unless the dataset's image shape and classes fit the network."""
    if tuple(dataset.input_shape) != tuple(net.input_shape or ()):
        shown, wanted = volume(dataset.input_shape), volume(net.input_shape or ())
        raise DataError(f"{where}: images are {shown} ({VOLUME_AXES}) but the network takes "
                        f"{wanted}; use a dataset of that shape or change the spec's input line")
    K = net.num_classes
    top = max(int(dataset.y_train.max(initial=0)), int(dataset.y_test.max(initial=0)))
    if top >= K:
        raise DataError(f"{where}: labels go up to {top} but the network has {K} outputs "
                        f"(classes 0…{K - 1}); make the last layer fc {top + 1} or fix the labels")
    if dataset.num_classes != K:
        raise DataError(f"{where}: the dataset has {dataset.num_classes} classes but the network "
                        f"has {K} outputs; make the last layer fc {dataset.num_classes}")


class Trainer:
    """Trains ``net`` on ``dataset`` with ``settings``, saving checkpoints to ``out``.

    ``resume``: the ModelInfo of a checkpoint whose weights ``net`` holds (use
    :meth:`from_checkpoint`); ``weights``: of a model whose weights ``net`` holds, for a new
    run from them (fine_tune.py). ``on_batch``/``on_epoch``: called after each batch, epoch.
    """

    def __init__(self, net: Network, dataset: Dataset, settings: TrainSettings,
                 out: str | Path | None = None, resume: ModelInfo | None = None,
                 on_batch: Callable[[BatchProgress], None] | None = None,
                 on_epoch: Callable[[EpochRecord], None] | None = None,
                 world: World | None = None, weights: ModelInfo | None = None) -> None:
        self.net, self.settings = net, dataclasses.replace(settings).checked()
        settings = self.settings
        self.out = Path(out) if out is not None else None
        self.on_batch, self.on_epoch = on_batch, on_epoch
        if self.out is not None:
            check_model_writable(self.out)
        self.dataset = dataset
        self.class_names = list((weights or dataset).class_names)  # a model keeps its names
        check_fits(net, dataset, settings.data)
        x_fit, y_fit, x_val, y_val = self._split(dataset)
        seeds = np.random.SeedSequence(settings.seed).spawn(2)
        self.shuffle_rng = np.random.default_rng(seeds[0])
        self.augment_rng = np.random.default_rng(seeds[1])
        batch = min(settings.batch_size, len(x_fit))  # a batch never holds more images
        check_memory(training_bytes(net, batch) + 4 * (x_fit.size + x_val.size),
                     f"training {settings.spec} with batch size {batch}",
                     TrainingError, "lower batch_size or use a smaller network", "batch_size")
        if resume is None:
            self.mean, self.std = (weights.mean, weights.std) if weights else normalization(x_fit)
            if weights is None:  # else a new run from the weights net holds (its seed is set)
                net.initialize(settings.seed, settings.init)
            self.optimizer = settings.make_optimizer()
            self.schedule = settings.schedule()
            self.state = TrainingState(lr=self.schedule.lr)
            self.history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
            self.steps = StepHistory(every=points_every(settings.epochs * self._batches(x_fit)))
        else:
            self._restore(resume, len(x_fit))
        net.loss.label_smoothing = settings.label_smoothing
        net.conv_algo = settings.conv_algo  # how its convolutions compute (layers/conv.py)
        self.x_fit, self.y_fit = normalize(x_fit, self.mean, self.std), y_fit
        self.x_val, self.y_val = normalize(x_val, self.mean, self.std), y_val
        B = net.backend()
        self._x_staging = BatchStaging((batch, *x_fit.shape[1:]), device=net.device)
        self._y_staging = BatchStaging((batch,), np.int64, device=net.device)
        self._stats = B.zeros((2,))  # Σ loss, correct predictions since the last read
        self.progress_seconds = 0.0 if B.on_host else GPU_PROGRESS_SECONDS
        self._stop_requested = False
        self.world = world if world is not None else current_world()
        self._allreduce = self._join_world(resume) if self.world.size > 1 else None

    @classmethod
    def from_settings(cls, settings: TrainSettings, out: str | Path | None = None,
                      dataset: Dataset | None = None, device: str = "auto",
                      **callbacks: Any) -> Trainer:
        """A new run of ``settings``: the network built from ``settings.spec`` on ``device``
        ("auto", "cpu" or "cuda"), trained on ``dataset`` (default: loaded from
        ``settings.data``), saving to ``out``."""
        settings = dataclasses.replace(settings).checked()
        if out is not None:
            check_model_writable(Path(out))  # before the network is built and the data loaded
        net = Network.from_spec(settings.spec, device=device)
        net.require_scores()  # a network that ends in a volume: refused before the data loads
        if dataset is None:
            dataset = load_dataset(settings.data)
        return cls(net, dataset, settings, out=out, **callbacks)

    @classmethod
    def from_checkpoint(cls, path: str | Path, epochs: int | None = None,
                        out: str | Path | None = None, dataset: Dataset | None = None,
                        expect: dict[str, Any] | None = None, device: str = "auto",
                        **callbacks: Any) -> Trainer:
        """Resume the run saved in the checkpoint ``path`` (its settings, data and state),
        optionally up to a new total of ``epochs``, saving to ``out`` (default: ``path``),
        on ``device`` ("auto", "cpu" or "cuda").

        ``expect``: settings the caller asked for; one that differs from the checkpoint's
        raises TrainingError (a resumed run keeps its settings, so it continues exactly).
        """
        net, info = load_checkpoint(path, device)
        if info.training is None or info.optimizer is None:
            raise TrainingError(f"{path}: holds no training state (a final model, not a "
                                "checkpoint); resume from the checkpoint training wrote")
        settings = TrainSettings.from_dict(info.settings)
        for key, value in (expect or {}).items():
            stored = getattr(settings, key)
            if key == "spec" and value != stored:  # the same network may be written otherwise
                difference = spec_difference(value, stored)
                if difference is not None:
                    raise TrainingError(f"spec differs from the checkpoint's: {difference}; a "
                                        f"resumed run keeps the network of {path}: leave spec "
                                        "out, or start a new run", field=key)
            elif value != stored:
                raise TrainingError(f"{key} {value} differs from the checkpoint's {stored}; a "
                                    f"resumed run keeps the settings of {path}: leave {key} as "
                                    "it is, or start a new run", field=key)
        if epochs is not None:
            settings.epochs = int(epochs)
        if info.training.epoch >= settings.epochs:
            raise TrainingError(f"{path}: already trained {info.training.epoch} of "
                                f"{settings.epochs} epochs; give more than "
                                f"{info.training.epoch} epochs to train on", field="epochs")
        if dataset is None:
            dataset = load_dataset(settings.data)
        return cls(net, dataset, settings, out=path if out is None else out, resume=info,
                   **callbacks)

    # --- data ---------------------------------------------------------------------------
    def _split(self, dataset: Dataset) -> tuple[np.ndarray, ...]:
        """(x_fit, y_fit, x_val, y_val): the first ``limit`` training images, a random
        ``val_split`` fraction of them (from the seed) held out for validation."""
        s = self.settings
        x, y = dataset.x_train, dataset.y_train
        if s.limit is not None:
            x, y = x[:s.limit], y[:s.limit]
        n_val = int(round(s.val_split * len(x)))
        if s.val_split > 0:
            n_val = max(n_val, 1)
        if len(x) - n_val < 1:
            raise DataError(f"{s.data}: {len(x)} training images leave none to train on after "
                            f"holding out {n_val} for validation; lower val_split or raise "
                            "limit", field="val_split")
        order = np.random.default_rng(np.random.SeedSequence([s.seed, 1])).permutation(len(x))
        val, fit = np.sort(order[:n_val]), np.sort(order[n_val:])
        return x[fit], y[fit], x[val], y[val]

    def _batches(self, x_fit: np.ndarray) -> int:
        """Steps (batches) per epoch."""
        return math.ceil(len(x_fit) / self.settings.batch_size)

    def _restore(self, info: ModelInfo, fit_images: int) -> None:
        assert info.training is not None and info.optimizer is not None
        state, s = info.training, self.settings
        batches = math.ceil(fit_images / s.batch_size)
        for bad, message in (
                (info.optimizer.name != s.optimizer,
                 f"its optimizer state is {info.optimizer.name} but its settings say "
                 f"{s.optimizer}"),
                (state.batch >= batches,
                 f"it stopped after batch {state.batch} but an epoch has {batches}"),
                (any(len(v) != state.epoch for v in info.history.values()),
                 f"its history does not have one entry for each of {state.epoch} epochs")):
            if bad:
                raise TrainingError(f"{info.path}: cannot resume: {message}; the checkpoint is "
                                    "damaged: use another copy or start a new run")
        self.mean, self.std = info.mean, info.std
        self.optimizer = info.optimizer.restore(self.net.device)
        self.schedule = LRSchedule.from_state(info.training.schedule)
        self.schedule.set_epochs(s.epochs, info.training.epoch)  # cosine: over the new total
        self.state = info.training
        self.shuffle_rng.bit_generator.state = self.state.rng_states["shuffle"]
        self.augment_rng.bit_generator.state = self.state.rng_states["augment"]
        self.history = {key: list(info.history.get(key, [])) for key in HISTORY_KEYS}
        # a file written before numbacnn logged per step starts its log here
        self.steps = info.steps if info.steps.every else StepHistory(
            every=points_every(s.epochs * batches))
        self.net.step = self.state.step
        self.net.seed = self.settings.seed

    def layer_initializers(self) -> list[str]:
        """The weight initializer each layer with parameters really uses, in order: its
        spec's ``init=``, else ``settings.init`` as the layer after it wants it (the layer
        feeding the softmax starts small: ``Layer.initializer``)."""
        return [layer.initializer(self.settings.init) for layer in self.net.layers
                if layer.params]

    @property
    def gradient_allreduce(self) -> GradientAllreduce | None:
        """The ranks' gradient sum (with its ``calls`` and ``seconds`` so far); None in a
        single process."""
        return self._allreduce

    def _join_world(self, resume: ModelInfo | None) -> GradientAllreduce:
        """Data-parallel set-up (``numbacnn/training/distributed.py``): per-rank dropout and
        augmentation streams, rank 0's weights, one flat gradient buffer."""
        w, s = self.world, self.settings
        w.start()
        if s.batch_size < w.size:
            raise TrainingError(f"batch_size {s.batch_size} is the global batch, shared by "
                                f"{w.size} ranks: give each rank an image, batch_size ≥ {w.size}",
                                field="batch_size")
        w.checkpoint = self.out
        self.net.stream = w.rank
        self.progress_seconds = 0.0  # every rank reduces its sums at the same batches
        if w.rank > 0:  # rank 0 keeps the single-process stream
            saved = resume.training.rng_states.get("augment_ranks") if resume else None
            if saved is not None and len(saved) == w.size:
                self.augment_rng.bit_generator.state = saved[w.rank]
            else:  # a first start, or a resume on another number of ranks
                self.augment_rng = np.random.default_rng(
                    np.random.SeedSequence([s.seed, 2, w.rank, self.state.step]))
        w.broadcast_parameters(self.net)
        return GradientAllreduce(w, self.net)

    # --- running ------------------------------------------------------------------------
    def run(self) -> TrainingState:
        """Train up to ``settings.epochs`` epochs; returns the final TrainingState.

        Raises TrainingError on a NaN or infinite loss (the last checkpoint is kept) and
        :class:`Interrupted` after Ctrl-C (once a checkpoint of the current step is saved).
        """
        # overflow shows up as a non-finite loss, reported as TrainingError: no numpy warnings
        with deferred_interrupts(self.request_stop), np.errstate(over="ignore", invalid="ignore"):
            while self.state.epoch < self.settings.epochs:
                self._run_epoch()
        return self.state

    def _run_epoch(self) -> None:
        s, state = self.settings, self.state
        start_state = self.shuffle_rng.bit_generator.state
        order = self.shuffle_rng.permutation(len(self.x_fit))
        batches = math.ceil(len(order) / s.batch_size)
        sums = {"loss": 0.0, "correct": 0.0, "seen": 0.0, "seconds": 0.0}
        sums.update(state.partial_epoch if state.batch else {})
        started, seen_before = time.perf_counter(), sums["seen"]
        queued = stepped = 0  # images and steps trained since the last read of the sums
        last_read = started
        for b in range(state.batch, batches):
            idx = order[b * s.batch_size:(b + 1) * s.batch_size]
            self._train_batch(idx)
            queued, stepped = queued + len(idx), stepped + 1
            state.batch = b + 1
            now = time.perf_counter()
            if (now - last_read < self.progress_seconds and b + 1 < batches
                    and not self._stop_requested):
                continue
            self._log_steps(self._read_sums(sums, queued, b, batches), queued, stepped, b,
                            batches)
            queued, stepped, last_read = 0, 0, now
            elapsed = time.perf_counter() - started
            if self.on_batch is not None:
                rate = (sums["seen"] - seen_before) / max(elapsed, 1e-9)
                left = len(order) - sums["seen"]
                self.on_batch(BatchProgress(state.epoch + 1, s.epochs, b + 1, batches,
                                            sums["loss"] / sums["seen"],
                                            sums["correct"] / sums["seen"], rate, left / rate))
            if self._stop_requested and b + 1 < batches:
                sums["seconds"] += elapsed
                self._save_interrupted(start_state, sums)
        sums["seconds"] += time.perf_counter() - started
        self._end_epoch(sums)

    def _train_batch(self, idx: np.ndarray) -> None:
        """One SGD step on the images ``idx``, queued: nothing is read back."""
        net, n = self.net, len(idx)
        if self._allreduce is not None:
            idx = self._allreduce.shard(idx)  # this rank's slice of the global batch
            n = len(idx)
        if n == 0:  # a last batch smaller than the world leaves this rank no image
            self._allreduce.skip()  # type: ignore[union-attr]
        else:
            xb = np.take(self.x_fit, idx, axis=0, out=self._x_staging.host(n), mode="clip")
            if self.settings.augment:
                xb[...] = augment(xb, self.augment_rng, crop_pad=CROP_PAD, flip=True)
            np.take(self.y_fit, idx, out=self._y_staging.host(n), mode="clip")
            net.train_step_on_device(self._x_staging.upload(n), self._y_staging.upload(n),
                                     self._stats)
        if self._allreduce is not None:
            self._allreduce()  # the ranks' gradients summed, as soon as backward is done
        self.optimizer.step(net, self.schedule.lr)

    def _read_sums(self, sums: dict[str, float], queued: int, b: int, batches: int) -> float:
        """Add the device's loss and accuracy sums of the last ``queued`` images to
        ``sums`` (zeroing them on the device) and return their loss sum; a non-finite loss
        stops training."""
        here = np.array([*to_host(self._stats), self._stop_requested], np.float64)
        total, correct, stops = (float(v) for v in self.world.allsum(here))
        self._stop_requested = stops > 0  # every rank stops at the same batch
        self.net.backend().fill(2, self._stats, np.float32(0.0))
        if not math.isfinite(total):
            raise TrainingError(self._nan_message(total, b, batches))
        sums["loss"] += total
        sums["correct"] += correct
        sums["seen"] += queued
        return total

    def _log_steps(self, loss_sum: float, images: int, steps: int, b: int,
                   batches: int) -> None:
        """Add a read's loss sum to the per-step log; end a point when ``steps.every``
        steps are pending and at the end of the epoch (batch ``b`` of ``batches``)."""
        self.steps.add(loss_sum, images, steps)
        if self.steps.due or b + 1 == batches:
            epoch = self.state.epoch
            self.steps.end_point(epoch * batches + b + 1, epoch + (b + 1) / batches)

    def _nan_message(self, loss: float, b: int, batches: int) -> str:
        epoch = self.state.epoch + 1
        where = self._kept_checkpoint()
        return (f"loss became {loss} at epoch {epoch}, batch {b + 1}/{batches} (step "
                f"{self.net.step}) with lr {self.schedule.lr:g}; training stopped and {where}; "
                "lower the learning rate (or check the data for bad values)")

    def _kept_checkpoint(self) -> str:
        """What a failed run leaves behind, for its error message."""
        if self.out is not None and self.state.epoch > 0 and self.out.exists():
            return f"the last good checkpoint {self.out} (epoch {self.state.epoch}) is kept"
        return "no checkpoint was written"

    def _end_epoch(self, sums: dict[str, float]) -> None:
        state, s = self.state, self.settings
        started = time.perf_counter()
        self._check_finite_weights()
        if len(self.y_val):
            val_loss, val_acc = self.score(self.x_val, self.y_val)
            if not math.isfinite(val_loss):
                self._check_finite_weights("the validation loss became NaN")
        else:
            val_loss, val_acc = math.nan, math.nan
        record = EpochRecord(state.epoch + 1, s.epochs, sums["loss"] / sums["seen"],
                             sums["correct"] / sums["seen"], val_loss, val_acc,
                             self.schedule.lr, sums["seconds"] + time.perf_counter() - started)
        for key in HISTORY_KEYS:
            self.history[key].append(float(getattr(record, key)))
        monitored = record.train_acc if math.isnan(val_acc) else val_acc
        improved = monitored > state.best_accuracy
        if improved:
            state.best_accuracy, state.best_epoch = monitored, record.epoch
        self.schedule.end_epoch(record.epoch, monitored)
        state.epoch, state.batch, state.partial_epoch = record.epoch, 0, {}
        state.lr = self.schedule.lr
        self.save()
        if improved and self.out is not None and self.world.is_root:
            copy_model(self.out, best_path(self.out))
        if self.on_epoch is not None:
            self.on_epoch(record)
        if self._stop_requested and state.epoch < s.epochs:
            raise Interrupted(self._resume_hint(), self.out)

    def score(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        """(mean cross-entropy, accuracy 0…1) of normalized float32 images x N×C×H×W with
        labels (N,); in data-parallel training each rank scores a shard (every rank must
        call this)."""
        if self.world.size > 1:
            return self.world.evaluate(self.net, x, labels)
        loss, acc, _ = evaluate(self.net, x, labels)
        return loss, acc

    def test_accuracy(self) -> float | None:
        """Accuracy (0…1) of the current weights on the dataset's test split, None when it
        has no images; in data-parallel training every rank must call this."""
        x_test, y_test = self.dataset.split("test")
        if len(y_test) == 0:
            return None
        return self.score(normalize(x_test, self.mean, self.std), y_test)[1]

    def _check_finite_weights(self, problem: str = "") -> None:
        """A loss can stay finite on the last batch of an epoch whose update overflowed
        the weights: never save (or score) NaN weights, or weights whose outputs
        overflow (``problem`` says so), as a checkpoint."""
        if not problem and all(np.isfinite(to_host(w)).all()
                               for _, w, _ in self.net.parameters()):
            return
        where = self._kept_checkpoint()
        problem = problem or "the weights became NaN or infinite"
        raise TrainingError(f"{problem} in epoch {self.state.epoch + 1} (step {self.net.step}) "
                            f"with lr {self.schedule.lr:g}; training stopped and {where}; "
                            "lower the learning rate")

    def _save_interrupted(self, epoch_start_rng: dict, sums: dict[str, float]) -> None:
        self.state.partial_epoch = dict(sums)
        self.save(shuffle_state=epoch_start_rng)
        raise Interrupted(self._resume_hint(), self.out)

    def _resume_hint(self) -> str:
        where = (f"epoch {self.state.epoch + 1}, batch {self.state.batch}" if self.state.batch
                 else f"the end of epoch {self.state.epoch}")
        if self.out is None:
            return f"interrupted at {where}; nothing was saved (no output file)"
        return f"interrupted at {where}; checkpoint saved to {self.out}"

    # --- saving -------------------------------------------------------------------------
    def model_info(self, shuffle_state: dict | None = None) -> ModelInfo:
        """Everything a checkpoint holds besides the weights, as of now."""
        self.state.step = self.net.step
        self.state.schedule = self.schedule.state()
        self.state.rng_states = {
            "shuffle": shuffle_state or self.shuffle_rng.bit_generator.state,
            "augment": self.augment_rng.bit_generator.state,
        }
        if self.world.size > 1:  # every rank's stream, to resume on as many ranks
            self.state.rng_states["augment_ranks"] = self.world.gather(
                self.augment_rng.bit_generator.state)
        return ModelInfo(
            spec_text=self.net.spec_text or self.settings.spec,
            input_shape=self.net.input_shape,  # type: ignore[arg-type]
            class_names=self.class_names, mean=self.mean, std=self.std,
            optimizer=OptimizerState.capture(self.optimizer), training=self.state,
            settings=asdict(self.settings),
            history={key: np.asarray(values, np.float64) for key, values in self.history.items()},
            steps=self.steps,
        )

    def save(self, path: str | Path | None = None, shuffle_state: dict | None = None) -> None:
        """Write a checkpoint to ``path`` (default: ``out``; nothing when both are None);
        in data-parallel training rank 0 writes it (every rank must call this)."""
        target = path if path is not None else self.out
        if target is not None:
            info = self.model_info(shuffle_state)
            if self.world.is_root:
                save_model(target, self.net, info)

    def request_stop(self) -> None:
        """Ask training to stop at the next batch boundary, after saving a checkpoint."""
        self._stop_requested = True
