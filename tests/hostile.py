"""Shared pieces of the hostile-input tests (test_hardening.py, test_fuzz.py).

A tiny dataset and checkpoint to tamper with, the CLI run in-process, and the
checks every hostile input must pass: one ``error:`` line, exit 2, no traceback,
and no file in the directory changed or left behind.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import numpy as np
from click.testing import CliRunner, Result
from numbacnn_cli.main import cli

from numbacnn.io.datasets import Dataset
from numbacnn.network import Network
from numbacnn.training.trainer import Trainer, TrainSettings

SPEC = "input 8x8x1; conv 3 3 pad=1 activation=relu; maxpool 2; fc 6 activation=relu; " \
       "dropout 0.25; fc 4; softmax"
CLASSES = ["top left", "top right", "bottom left", "bottom right"]


def quadrants(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N×1×8×8 images whose class k is bright in quadrant k."""
    rng = np.random.default_rng(seed)
    y = np.arange(n, dtype=np.int64) % 4
    x = rng.integers(0, 80, (n, 1, 8, 8)).astype(np.uint8)
    for i, k in enumerate(y):
        x[i, 0, 4 * (k // 2):4 * (k // 2) + 4, 4 * (k % 2):4 * (k % 2) + 4] += 150
    return x, y


def write_dataset_npz(path: Path) -> Path:
    x_train, y_train = quadrants(48)
    x_test, y_test = quadrants(8, seed=8)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
             class_names=np.array(CLASSES))
    return path


def train_checkpoint(directory: Path, optimizer: str = "sgd") -> Path:
    """A one-epoch checkpoint (optimizer and training state) trained on a tiny set."""
    data = write_dataset_npz(directory / "data.npz")
    x_train, y_train = quadrants(48)
    x_test, y_test = quadrants(8, seed=8)
    dataset = Dataset(x_train, y_train, x_test, y_test, list(CLASSES), "quadrants")
    settings = TrainSettings(spec=SPEC, data=str(data), epochs=1, batch_size=16, lr=0.05,
                             optimizer=optimizer)
    out = directory / f"{optimizer}.h5"
    Trainer(Network.from_spec(SPEC), dataset, settings, out=out).run()
    return out


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_error(result: Result, *fragments: str, code: int = 2) -> str:
    """Exit ``code``, exactly one line on stderr starting ``error:``, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exc_info)
    assert result.exc_info is None or result.exc_info[0] is SystemExit, result.exc_info
    lines = [line for line in result.stderr.splitlines()
             if not line.startswith("bench: ")]  # bench's progress log, not an error
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` (hidden ones too) with a hash of its content."""
    found = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = Path(root, name)
            if path.is_file():
                found[str(path.relative_to(directory))] = hashlib.sha256(
                    path.read_bytes()).hexdigest()
            else:
                found[str(path.relative_to(directory))] = "special"
    return found


class FullDisk:
    """A file object that takes ``room`` bytes, then fails like a full disk (ENOSPC)."""

    def __init__(self, fh, room: int) -> None:
        self.fh, self.room = fh, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.fh.write(data)

    def __getattr__(self, name: str):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()
