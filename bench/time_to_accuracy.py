"""Time to a test accuracy: numbacnn and PyTorch train the same network the same way on
the full Fashion-MNIST, each in its own process, one after the other.

    python bench/time_to_accuracy.py                      # fmnist, target 91%, 10 epochs
    python bench/time_to_accuracy.py --markdown >> bench/RESULTS.md

The recipe is ``numbacnn train``'s default one for the fmnist preset (bench/fmnist_full.md):
batch 64, SGD with momentum 0.9 and weight decay 5e-4, learning rate 0.02 × 0.3 every 4
epochs, dropout 0.3, no augmentation, 54,000 training images (the default 10% held out
for validation, scored every epoch on both sides). Both start from the same He-initialized
weights (PyTorch's twin copies numbacnn's, ``bench/torch_models.py``), on the same number
of threads. After every epoch the 10,000 test images are scored off the clock; the time
to the target is the training (and validation) time up to the first epoch whose test
accuracy reaches it. numbacnn trains through its Trainer, exactly as ``numbacnn train``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LR, MOMENTUM, WEIGHT_DECAY, BATCH, STEP, GAMMA, VAL_SPLIT = 0.02, 0.9, 5e-4, 64, 4, 0.3, 0.1


def run_numbacnn(spec: str, epochs: int, seed: int) -> list[dict[str, float]]:
    """Per epoch: seconds on the clock so far and the test accuracy."""
    from numbacnn.io.dataset_files import load_dataset
    from numbacnn.io.datasets import normalize
    from numbacnn.network import Network
    from numbacnn.training.trainer import Trainer, TrainSettings

    data = load_dataset("fashion-mnist")
    net = Network.from_spec(spec)
    settings = TrainSettings(spec=spec, epochs=epochs, batch_size=BATCH, lr=LR,
                             momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, lr_policy="step",
                             lr_step=STEP, gamma=GAMMA, val_split=VAL_SPLIT, seed=seed)
    rows: list[dict[str, float]] = []
    clock = {"start": time.perf_counter(), "off": 0.0}

    def on_epoch(record: Any) -> None:
        stopped = time.perf_counter()
        proba = net.predict_proba(x_test)
        accuracy = float(np.mean(np.argmax(proba, axis=1) == data.y_test))
        rows.append({"epoch": record.epoch, "seconds": stopped - clock["start"] - clock["off"],
                     "test_accuracy": accuracy})
        print(json.dumps({"numbacnn": rows[-1]}), file=sys.stderr, flush=True)
        clock["off"] += time.perf_counter() - stopped

    trainer = Trainer(net, data, settings, on_epoch=on_epoch)
    started = time.perf_counter()
    x_test = normalize(data.x_test, trainer.mean, trainer.std)  # the trainer's normalization
    clock["off"] += time.perf_counter() - started  # scored off the clock, as each epoch's
    trainer.run()
    return rows


def run_torch(spec: str, epochs: int, seed: int, threads: int) -> list[dict[str, float]]:
    import torch
    import torch.nn.functional as F
    import torch_models

    from numbacnn.io.dataset_files import load_dataset
    from numbacnn.io.datasets import normalization, normalize
    from numbacnn.network import Network

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    data = load_dataset("fashion-mnist")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.y_train))
    held = int(round(VAL_SPLIT * len(order)))
    train_idx, val_idx = order[held:], order[:held]
    mean, std = normalization(data.x_train[train_idx])
    x = torch.from_numpy(normalize(data.x_train, mean, std))
    y = torch.from_numpy(data.y_train.astype(np.int64))
    x_test = torch.from_numpy(normalize(data.x_test, mean, std))
    net = Network.from_spec(spec).initialize(seed=seed)  # He init; the twin copies it
    model = torch_models.make_twin(net)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=STEP, gamma=GAMMA)

    def logits(batch: torch.Tensor) -> torch.Tensor:
        for module in model:
            batch = module(batch)
        return batch.flatten(1)

    def accuracy(xs: torch.Tensor, ys: np.ndarray) -> float:
        model.eval()
        with torch.inference_mode():
            pred = torch.cat([logits(xs[i:i + 1000]).argmax(1) for i in range(0, len(xs), 1000)])
        model.train()
        return float((pred.numpy() == ys).mean())

    rows: list[dict[str, float]] = []
    on_clock = 0.0
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        perm = torch.from_numpy(rng.permutation(train_idx))
        for i in range(0, len(perm), BATCH):
            idx = perm[i:i + BATCH]
            loss = F.cross_entropy(logits(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        schedule.step()
        accuracy(x[torch.from_numpy(val_idx)], data.y_train[val_idx])  # as numbacnn does
        on_clock += time.perf_counter() - started
        rows.append({"epoch": epoch, "seconds": on_clock,
                     "test_accuracy": accuracy(x_test, data.y_test)})
        print(json.dumps({"torch": rows[-1]}), file=sys.stderr, flush=True)
    return rows


def first_reaching(rows: list[dict[str, float]], target: float) -> dict[str, float] | None:
    return next((r for r in rows if r["test_accuracy"] >= target), None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spec", default="fmnist")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--target", type=float, default=0.91)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--child", choices=("numbacnn", "torch"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        sys.path.insert(0, str(ROOT / "bench"))
        rows = (run_numbacnn(args.spec, args.epochs, args.seed) if args.child == "numbacnn"
                else run_torch(args.spec, args.epochs, args.seed, args.threads))
        print(json.dumps(rows))
        return 0
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env["NUMBA_NUM_THREADS"] = str(args.threads)
    results: dict[str, Any] = {"load_before": os.getloadavg()}
    for framework in ("numbacnn", "torch"):
        cmd = [sys.executable, __file__, "--child", framework, "--spec", args.spec,
               "--epochs", str(args.epochs), "--seed", str(args.seed),
               "--threads", str(args.threads)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, check=True)
        results[framework] = json.loads(proc.stdout.strip().splitlines()[-1])
    results["load_after"] = os.getloadavg()
    if not args.markdown:
        print(json.dumps(results, indent=2))
        return 0
    print(f"| framework | epoch reaching {100 * args.target:.0f}% | seconds to it | "
          f"test accuracy per epoch (seconds on the clock) |")
    print("| --- | ---: | ---: | --- |")
    for framework in ("numbacnn", "torch"):
        rows = results[framework]
        hit = first_reaching(rows, args.target)
        per_epoch = ", ".join(f"{100 * r['test_accuracy']:.2f}% ({r['seconds']:.0f} s)"
                              for r in rows)
        reached = (f"{hit['epoch']} | {hit['seconds']:.1f}" if hit else "not reached | —")
        print(f"| {framework} | {reached} | {per_epoch} |")
    print(f"\nload average {results['load_before'][0]:.2f} → {results['load_after'][0]:.2f}, "
          f"{args.threads} threads each, seed {args.seed}, {args.epochs} epochs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
