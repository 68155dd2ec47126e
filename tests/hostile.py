"""Shared pieces of the hostile-input tests (test_hardening*.py, test_fuzz.py).

A tiny checkpoint to tamper with (and a fresh copy of it), the command in a fresh
process, a snapshot of a directory (no file changed or left behind) and a file object
that fills up like a full disk. The CLI runner, the one ``error:`` line check and the
quadrant data are in helpers.py.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from helpers import CLASSES, SPEC, quadrants, write_dataset_npz

from numbacnn.io.datasets import Dataset
from numbacnn.network import Network
from numbacnn.training.trainer import Trainer, TrainSettings


def train_checkpoint(directory: Path, optimizer: str = "sgd") -> Path:
    """A one-epoch checkpoint (optimizer and training state) trained on a tiny set."""
    data = write_dataset_npz(directory / "data.npz")
    x_train, y_train = quadrants(48)
    x_test, y_test = quadrants(8, seed=8)
    dataset = Dataset(x_train, y_train, x_test, y_test, list(CLASSES), "quadrants")
    settings = TrainSettings(spec=SPEC, data=str(data), epochs=1, batch_size=16, lr=0.05,
                             optimizer=optimizer)
    out = directory / f"{optimizer}.h5"
    Trainer(Network.from_spec(SPEC, device="cpu"), dataset, settings, out=out).run()
    return out


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


def trained_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh directory holding data.npz and sgd.h5 (train_checkpoint), on the CPU."""
    directory = tmp_path_factory.mktemp("hostile")
    train_checkpoint(directory)
    return directory


def checkpoint_copy(work: Path, tmp_path: Path) -> Path:
    """A copy of ``work``'s checkpoint and data in ``tmp_path`` (the copy's settings name
    the copied data), to tamper with."""
    shutil.copy(work / "data.npz", tmp_path / "data.npz")
    copy = tmp_path / "model.h5"
    shutil.copy(work / "sgd.h5", copy)
    with h5py.File(copy, "r+") as f:
        settings = json.loads(f["training"].attrs["settings"])
        settings["data"] = str(tmp_path / "data.npz")
        f["training"].attrs["settings"] = json.dumps(settings)
    return copy


def numbacnn_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """The installed command in a fresh process (for signals, FIFOs and real stdout)."""
    code = "from numbacnn_cli.main import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, timeout=120, **kwargs)


def killed_save(path: Path) -> int:
    """Start a process that saves ``path`` through replace_atomically, wait until it has
    written half of it, SIGKILL it (which cannot be caught) and return its pid: its
    temporary is left beside ``path``."""
    code = ("import sys, time\n"
            "from pathlib import Path\n"
            "from numbacnn.io.atomic_file import replace_atomically\n"
            "from numbacnn.errors import ModelFileError\n"
            "def write(fh):\n"
            "    fh.write(b'half a model'); fh.flush(); print('writing', flush=True)\n"
            "    time.sleep(60)\n"
            "replace_atomically(Path(sys.argv[1]), write, ModelFileError, 'model')\n")
    saver = subprocess.Popen([sys.executable, "-c", code, str(path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert saver.stdout is not None and saver.stdout.readline() == "writing\n"
    finally:
        saver.kill()
        saver.wait(timeout=30)
    return saver.pid
