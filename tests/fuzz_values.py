"""Generators of the command fuzz pass (tests/test_fuzz_commands*.py): hostile option
values by family, hostile paths (a zoo of wrong kinds of file, made once per module),
output targets of every kind, spec text mutations, and the check of one case's result
and of the files it left (docs/reliability.md §1, §3, §9).

Placeholders in a command line: ``@NAME`` is the zoo's file NAME (its inputs, never
written), ``%NAME`` a path in the case's own working folder (its outputs).
"""

from __future__ import annotations

import gc
import json
import os
import random
import shutil
import signal
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from helpers import CLASSES, run
from hostile import snapshot, train_checkpoint

from numbacnn.io.dataset_files import load_dataset, save_dataset
from numbacnn.io.datasets import Dataset

HOSTILE_NAMES = ["top\x1b[31m left", "top\tright", "bottom\x07 left", "bottom \u202eright"]
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

# ----------------------------------------------------------------------------- values

HOSTILE_TEXT: dict[str, list[str]] = {
    "empty": ["", " ", "\t", " \n "],
    "unicode digits": ["²", "①", "٣", "٣٢", "８", "1²"],
    "negative": ["-1", "-0", "-2147483649", "-1e-9", "-9223372036854775809"],
    "zero": ["0", "0.0", "00", "0x0"],
    "huge": ["1" + "0" * 400, str(2**63), str(2**64), str(2**31), "1e400", "9" * 30],
    "non-finite": ["nan", "inf", "-inf", "NaN", "Infinity", "-nan"],
    "wrong type": ["x", "1.5", "1e3", "true", "[1]", "0x10", "1_0", "3,4", "8x8", "--"],
    "long": ["a" * 10240, "9" * 10240, "8x" * 5000 + "8"],
    "control": ["\x1b[31mred\x1b[0m", "a\x07b", "\x7f", "\u202e8", "1\r", "\x0b", "tab\there",
                "\u2028", "line\nbreak"],
}
# the zoo's wrong kinds of file and special paths, given where any value goes
PATH_FAMILIES = ["directory", "fifo", "missing", "loop", "unreadable", "model", "dataset",
                 "npz", "png", "onnx", "random", "empty", "truncated", "bench", "spec", "npy"]


def hostile_value(rng: random.Random) -> tuple[str, str]:
    """(family, value): a hostile text, or ``@path`` of a hostile zoo path."""
    if rng.random() < 0.3:
        family = rng.choice([f for f in PATH_FAMILIES if f != "unreadable" or not AS_ROOT])
        return f"path {family}", f"@{family}"
    family = rng.choice(sorted(HOSTILE_TEXT))
    return family, rng.choice(HOSTILE_TEXT[family])


# ----------------------------------------------------------------------------- spec text

SPECS = [
    "input 8x8x1; conv 4 3 pad=1 activation=relu; maxpool 2; fc 4; softmax",
    "input 8x8x2; conv 4 3x3 stride=1 pad=1,1,1,1 groups=2; relu; avgpool 2; fc 4; softmax",
    "input 8x8x1; conv 2 3 dilation=2 pad=same round=floor; batchnorm; fc 4; softmax",
    "input 9x9x1; conv 2 2x3 stride=2x1 pad=0,1,1,0 round=ceil; leaky 0.1; fc 4; softmax",
    "input 8x8x1\nconv 2 3 pad=1x2   # comment ×\nlrn size=3\nelu\ndropout 0.25\nfc 4\nsoftmax",
]
SPEC_INSERTS = ["groups=", "dilation=", "round=", "pad=", "stride=", "size=", "filters=",
                "eps=", "momentum=", "alpha=", "activation=", "init="]
SPEC_WORDS = ["1", "2", "0", "3x3", "1,2,3,4", "1,2", "same", "valid", "exact", "floor",
              "ceil", "FLOOR", "relu", "softmax", "he", "2147483648", "4x0", "٣", "①", "²",
              "1e400", "nan", "-1", "1.5", "x", "×", ",", "=", ";", "#", "\x0b", "\x1b",
              "\u2028", "\xa0", "\x00", "conv", "input", "maxpool 2", "fc 2147483647"]


def mutate_spec(rng: random.Random, text: str | None = None, digits: int = 6) -> str:
    """A spec (docs/spec.md) with one to three changes: a word replaced, removed,
    doubled or inserted (an option of conv and pool with a hostile value among them),
    a line repeated or removed, the text cut. Random numbers have at most ``digits``
    digits (a command that trains: a valid conv 238852 3 trains for minutes)."""
    text = text if text is not None else rng.choice(SPECS)
    for _ in range(rng.randint(1, 3)):
        words = text.replace(";", " ; ").split(" ")
        at = rng.randrange(len(words))
        operation = rng.randrange(7)
        if operation == 0:
            words[at] = rng.choice(SPEC_WORDS)
        elif operation == 1:
            del words[at]
        elif operation == 2:
            words.insert(at, words[at])
        elif operation == 3:
            words.insert(at, rng.choice(SPEC_INSERTS) + rng.choice(SPEC_WORDS))
        elif operation == 4:
            words[at] = "".join(rng.choice("0123456789x,=")
                                for _ in range(rng.randint(1, digits)))
        elif operation == 5:
            lines = text.split(";")
            line = rng.choice(lines)
            text = ";".join(lines + [line] * rng.choice([1, 2, 50]))
            continue
        else:
            text = text[:rng.randrange(len(text) + 1)]
            continue
        text = " ".join(words).replace(" ; ", ";")
    return text


# ----------------------------------------------------------------------------- the zoo


def _picture(path: Path, size: tuple[int, int] = (8, 8), seed: int = 0) -> Path:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(path)
    return path


def _cifar(directory: Path, hundred: bool) -> Path:
    """A CIFAR-10 or -100 binary distribution folder of a few records per batch."""
    rng = np.random.default_rng(3)
    directory.mkdir()

    def records(n: int, labels: int) -> bytes:
        heads = rng.integers(0, 10, (n, labels), dtype=np.uint8)
        return np.concatenate([heads, rng.integers(0, 256, (n, 3072), dtype=np.uint8)],
                              axis=1).tobytes()

    if hundred:
        (directory / "train.bin").write_bytes(records(12, 2))
        (directory / "test.bin").write_bytes(records(6, 2))
        (directory / "fine_label_names.txt").write_text("\n".join(f"f{k}" for k in range(100)))
        (directory / "coarse_label_names.txt").write_text("\n".join(f"c{k}" for k in range(20)))
    else:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            (directory / f"{name}.bin").write_bytes(records(4, 1))
        (directory / "batches.meta.txt").write_text("\n".join(f"k{k}" for k in range(10)))
    return directory


def _idx(directory: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    directory.mkdir()
    for prefix, x, y in (("train", images, labels), ("t10k", images[:8], labels[:8])):
        for kind, array in (("images-idx3", x[:, 0]), ("labels-idx1", y.astype(np.uint8))):
            header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            (directory / f"{prefix}-{kind}-ubyte").write_bytes(header + array.tobytes())
    return directory


def make_zoo(directory: Path) -> dict[str, Path]:
    """The inputs of every command, valid ones and hostile ones, in ``directory``."""
    model = train_checkpoint(directory)  # data.npz and sgd.h5, 8x8x1 quadrants
    dataset = load_dataset(directory / "data.npz")
    save_dataset(dataset, directory / "data.h5")
    zoo = {"model": model, "npz": directory / "data.npz", "dataset": directory / "data.h5"}
    # a model and a dataset whose texts hold control characters (printed escaped)
    zoo["model2"] = Path(shutil.copy(model, directory / "model2.h5"))
    with h5py.File(zoo["model2"], "r+") as f:
        f.attrs.create("class_names", np.array(HOSTILE_NAMES, dtype=object),
                       dtype=h5py.string_dtype())
    zoo["names"] = directory / "names.h5"
    save_dataset(Dataset(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test,
                         HOSTILE_NAMES, name="quad\x1b[2Jrants\r"), zoo["names"])
    assert run("export", model, directory / "model.onnx").exit_code == 0
    zoo["onnx"] = directory / "model.onnx"
    zoo["npy"] = directory / "images.npy"
    np.save(zoo["npy"], dataset.x_test[:6])
    zoo["png"] = _picture(directory / "picture.png")
    zoo["spec"] = directory / "tiny.spec"
    zoo["spec"].write_text(SPECS[0].replace("; ", "\n") + "\n")
    zoo["bench"] = directory / "bench.json"
    row = {"index": 1, "layer": "conv 4 3", "output_shape": "8x8x4", "forward_ms": 0.5,
           "backward_ms": 0.7, "percent": 50.0}
    zoo["bench"].write_text(json.dumps(
        {"config": {"device": "cpu", "precision": "fp32", "batch": 8}, "environment": {},
         "networks": [{"spec": "tiny", "batch": 8, "layers": [row],
                       "loss": {"forward_ms": 0.01, "backward_ms": 0.02, "percent": 1.0}}]}))
    zoo["idx"] = _idx(directory / "idx", dataset.x_train, dataset.y_train)
    zoo["cifar10"] = _cifar(directory / "cifar-10-batches-bin", hundred=False)
    zoo["cifar100"] = _cifar(directory / "cifar-100-binary", hundred=True)
    for k, name in enumerate(CLASSES[:2]):
        for i in range(3):
            _picture(directory / "pictures" / name / f"{i}.png", (6 + i, 8), seed=10 * k + i)
    zoo["folder"] = directory / "pictures"
    zoo["random"] = directory / "random.bin"
    zoo["random"].write_bytes(random.Random(0).randbytes(3000))
    zoo["empty"] = directory / "empty.h5"
    zoo["empty"].write_bytes(b"")
    zoo["truncated"] = directory / "truncated.h5"
    zoo["truncated"].write_bytes(model.read_bytes()[:model.stat().st_size // 2])
    zoo["directory"] = directory / "a directory"
    zoo["directory"].mkdir()
    zoo["fifo"] = directory / "fifo.h5"
    os.mkfifo(zoo["fifo"])
    zoo["missing"] = directory / "missing.h5"
    zoo["loop"] = directory / "loop.h5"
    zoo["loop"].symlink_to(directory / "loop2.h5")
    (directory / "loop2.h5").symlink_to(zoo["loop"])
    zoo["unreadable"] = directory / "unreadable.h5"
    shutil.copy(model, zoo["unreadable"])
    zoo["unreadable"].chmod(0)
    return zoo


# ----------------------------------------------------------------------------- outputs

OUTPUT_KINDS = ["new", "new", "new", "wrong suffix", "existing text", "existing hdf5",
                "directory", "fifo", "missing directory", "link to text", "dangling link",
                "link loop", "own input", "long name", "control name"]


def make_output(rng: random.Random, kind: str, folder: Path, suffix: str,
                inputs: list[str]) -> str:
    """A path for a command's output in the case's ``folder``, of ``kind``."""
    out = folder / f"out{suffix}"
    if kind == "wrong suffix":
        return str(folder / rng.choice(["out", "out.txt", "out.H5x", "out.npz", "out.jpg"]))
    if kind == "existing text":
        out.write_bytes(b"an earlier output")
    elif kind == "existing hdf5":
        out.write_bytes(HDF5_SIGNATURE + bytes(200))
    elif kind == "directory":
        out.mkdir()
    elif kind == "fifo":
        os.mkfifo(out)
    elif kind == "missing directory":
        return str(folder / "nowhere" / out.name)
    elif kind == "link to text":
        (folder / "target").write_bytes(b"old")
        out.symlink_to(folder / "target")
    elif kind == "dangling link":
        out.symlink_to(folder / "gone")
    elif kind == "link loop":
        out.symlink_to(folder / "loop")
        (folder / "loop").symlink_to(out)
    elif kind == "own input" and inputs:
        return rng.choice(inputs)
    elif kind == "long name":
        return str(folder / ("o" * 300 + suffix))
    elif kind == "control name":
        return str(folder / f"o\x1b[2J\x07{suffix}")
    return str(out)


def local_copy(source: Path, folder: Path) -> str:
    """A hostile zoo path given as an output: the same kind of thing in the case's
    ``folder`` (a command may replace an output that is not its input: not the zoo's)."""
    copy = folder / source.name
    if source.is_symlink():
        copy.symlink_to(folder / "loop2.h5")
        (folder / "loop2.h5").symlink_to(copy)
    elif source.is_dir():
        copy.mkdir()
    elif source.is_fifo():
        os.mkfifo(copy)
    elif source.exists():
        shutil.copy(source, copy)
        copy.chmod(source.stat().st_mode)
    return str(copy)


# ----------------------------------------------------------------------------- a case


@dataclass
class Case:
    """One generated command line: its words (placeholders resolved), what was changed,
    the outputs it may write (paths as given) and how (REFUSE: only new unless forced)."""

    number: int
    words: list[str]
    changes: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    refuse: bool = False

    def __str__(self) -> str:
        shown = " ".join(w if len(w) < 80 else w[:40] + "…" for w in self.words)
        return f"case {self.number}: numbacnn {shown!r} ({'; '.join(self.changes)})"


class Timeout(Exception):
    """A case ran past its limit (a read that blocks on a FIFO, a runaway training)."""


def _alarm(signum: int, frame: Any) -> None:
    raise Timeout


def run_case(case: Case, folder: Path, limit_s: int = 30) -> Any:
    """``numbacnn WORDS`` in this process with ``folder`` as the working directory."""
    previous, here = signal.signal(signal.SIGALRM, _alarm), os.getcwd()
    os.chdir(folder)
    signal.alarm(limit_s)
    try:
        result = run(*case.words)
        if result.exc_info is not None and result.exc_info[0] is Timeout:
            result.exception = Timeout(f"over {limit_s} s")  # drops the frames it stopped:
            result.exc_info = (Timeout, result.exception, None)
            with warnings.catch_warnings():  # what they held open is closed now, not in a
                warnings.simplefilter("ignore")  # later case's stderr
                gc.collect()
        return result
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(here)


def problems(case: Case, result: Any, before: dict[str, str], after: dict[str, str],
             folder: Path) -> list[str]:
    """What is wrong with a finished case: not exit 0 or one ``error:`` line and exit 2,
    a traceback, a warning, unprintable output, or a file of the working folder lost,
    changed or added against the writing policy (docs/reliability.md §3)."""
    found = []
    if result.exc_info is not None and result.exc_info[0] is not SystemExit:
        found.append(f"raised {result.exc_info[0].__name__}: {result.exc_info[1]}"[:300])
    if result.exit_code not in (0, 2):
        found.append(f"exit {result.exit_code}")
    if "Traceback" in result.output or "Warning" in result.stderr:
        found.append(f"traceback or warning: {result.stderr[-300:]!r}")
    lines = [line for line in result.stderr.splitlines() if not line.startswith("bench: ")]
    errors = [line for line in lines if line.startswith("error: ")]
    if result.exit_code == 2 and (len(errors) != 1 or len(lines) != 1):
        found.append(f"stderr is not one error line: {result.stderr[:300]!r}")
    if result.exit_code == 0 and errors:
        found.append(f"exit 0 with an error line: {errors[0][:200]!r}")
    if any(not line.replace("\t", " ").isprintable() for line in result.output.splitlines()):
        bad = next(line for line in result.output.splitlines()
                   if not line.replace("\t", " ").isprintable())
        found.append(f"unprintable output line: {bad[:120]!r}")
    if any(len(line) > 1000 for line in errors):
        found.append("error line over 1000 characters")
    allowed = _allowed(case, result.exit_code == 0, folder, before)
    for name in sorted(set(before) | set(after)):
        if before.get(name) == after.get(name):
            continue
        what = ("lost" if name not in after else "left behind" if name not in before
                else "changed")
        if name not in allowed or (what == "changed" and not allowed[name]):
            found.append(f"{name[:80]!r} {what}")
    return found


def _allowed(case: Case, ok: bool, folder: Path, before: dict[str, str]) -> dict[str, bool]:
    """The files of ``folder`` a successful case may write: name -> may it replace one
    that was there (REPLACE outputs unless they held HDF5; any with --force)."""
    if not ok:
        return {}
    forced = "--force" in case.words
    allowed = {}
    for given in case.outputs:
        path = Path(os.path.realpath(folder / given))
        try:
            name = str(path.relative_to(Path(os.path.realpath(folder))))
        except ValueError:
            continue  # outside the working folder: the zoo's check covers it
        hdf5 = before.get(name, "").startswith("hdf5 ")
        allowed[name] = forced or (not case.refuse and not hdf5)
        link = folder / given
        if link.is_symlink() and link.parent == folder:  # its entry changes with its file
            allowed[link.name] = allowed[name] or name not in before
    return allowed


def working_snapshot(folder: Path) -> dict[str, str]:
    """The folder's files with a hash each ("special" for what is not a regular file),
    "hdf5 " before the hash of a file that holds HDF5 (a model or a dataset)."""
    found = snapshot(folder)
    for name, digest in found.items():
        if digest != "special":
            with open(folder / name, "rb") as fh:
                if fh.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                    found[name] = "hdf5 " + digest
    return found
