"""Issue 24: files lost or silently replaced by a command's writes, as fixed tests.

One writing policy for every writer (numbacnn.io.output_policy, docs/reliability.md §3):
never the command's own input, never a device, FIFO or socket (a symlink is followed),
models and datasets replaced only with --force, other outputs replaced with a
``replaced FILE`` line. Temporaries of killed writers are swept whatever their target;
a Ctrl-C held back during a save says the file was written in full. Checksums: in
test_hardening_checksums.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from dataset_samples import write_idx_dir
from helpers import SPEC, assert_one_error, quadrants, run
from hostile import killed_save, numbacnn_cli, snapshot, trained_directory

from numbacnn.io import atomic_file
from numbacnn.io.dataset_files import load_dataset
from numbacnn.io.model_file import load_model, save_model

HAS_ONNX = __import__("importlib").util.find_spec("onnx") is not None
HAS_MPL = __import__("importlib").util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data.npz and sgd.h5 (a one-epoch checkpoint trained on it)."""
    return trained_directory(tmp_path_factory)


@pytest.fixture
def here(work: Path, tmp_path: Path) -> Path:
    """A directory with copies: tiny.h5 (a model), tiny.best.h5, data.npz, data.h5 (a
    dataset), in.npy (images), net.spec (the SPEC text)."""
    shutil.copy(work / "sgd.h5", tmp_path / "tiny.h5")
    shutil.copy(work / "sgd.h5", tmp_path / "tiny.best.h5")
    shutil.copy(work / "data.npz", tmp_path / "data.npz")
    assert run("data", "import-npz", tmp_path / "data.npz", tmp_path / "data.h5").exit_code == 0
    np.save(tmp_path / "in.npy", quadrants(3)[0])
    (tmp_path / "net.spec").write_text(SPEC.replace("; ", "\n") + "\n")
    return tmp_path


def args_in(here: Path, *args: str) -> list[str]:
    return [a.format(d=here) for a in args]


# ----------------------------------------------------------------------------- own input

OWN_INPUT = {
    "export onto its model": ["export", "{d}/tiny.h5", "{d}/tiny.h5", "--force"],
    "predict onto its images": ["predict", "{d}/tiny.h5", "{d}/in.npy", "--save-proba",
                                "{d}/in.npy", "--force"],
    "predict onto its model": ["predict", "{d}/tiny.h5", "{d}/in.npy", "--save-proba",
                               "{d}/model-link.npy", "--force"],
    "train onto its data": ["train", SPEC, "--data", "{d}/data.npz", "--out", "{d}/data.npz",
                            "--force", "--epochs", "1"],
    "train onto its spec file": ["train", "{d}/net.spec", "--data", "{d}/data.npz", "--out",
                                 "{d}/net.spec", "--force", "--epochs", "1"],
    "bench onto its spec file": ["bench", "{d}/net.spec", "--output", "{d}/net.spec", "--force"],
    "import-npz onto its source (hard link)": ["data", "import-npz", "{d}/data.npz",
                                               "{d}/hard.h5", "--force"],
    "make-mini onto its source": ["data", "make-mini", "{d}/data.h5", "{d}/data.h5", "--force"],
    "plot onto its model": ["plot", "curves", "{d}/tiny.h5", "-o", "{d}/model-link.png",
                            "--force", "--no-test-accuracy"],
}


@pytest.mark.parametrize("args", OWN_INPUT.values(), ids=OWN_INPUT.keys())
def test_a_command_never_writes_over_its_own_input(args: list[str], here: Path) -> None:
    """Even with --force: the same file by path, by symlink or by hard link (inode)."""
    (here / "model-link.npy").symlink_to(here / "tiny.h5")
    (here / "model-link.png").symlink_to(here / "tiny.h5")
    (here / "data-link.h5").symlink_to(here / "data.npz")
    os.link(here / "data.npz", here / "hard.h5")
    before = snapshot(here)
    assert_one_error(run(*args_in(here, *args)), "is the source", "itself")
    assert snapshot(here) == before
    load_model(here / "tiny.h5")


# ----------------------------------------------------------------------------- protected files

PROTECTED = {
    "export over another model": (["export", "{d}/tiny.h5", "{d}/tiny.best.h5"],
                                  "tiny.best.h5", "holds an HDF5 file"),
    "bench over a model": (["bench", SPEC, "--output", "{d}/tiny.best.h5"], "tiny.best.h5",
                           "holds an HDF5 file"),
    "import-npz over a dataset": (["data", "import-npz", "{d}/data.npz", "{d}/data.h5"],
                                  "data.h5", "exists already"),
    "import-idx over a dataset": (["data", "import-idx", "{d}/idx", "{d}/data.h5"], "data.h5",
                                  "exists already"),
    "make-mini over a dataset": (["data", "make-mini", "{d}/data.npz", "{d}/data.h5",
                                  "--train-per-class", "2", "--test-per-class", "1"], "data.h5",
                                 "exists already"),
    "import over a model": (["import", "{d}/tiny.onnx", "{d}/tiny.best.h5"], "tiny.best.h5",
                            "exists already"),
    "train over a model": (["train", SPEC, "--data", "{d}/data.npz", "--out", "{d}/tiny.h5",
                            "--epochs", "1"], "tiny.h5", "exists already"),
}


@pytest.mark.parametrize("args, name, fragment", PROTECTED.values(), ids=PROTECTED.keys())
def test_models_and_datasets_are_replaced_only_with_force(args: list[str], name: str,
                                                          fragment: str, here: Path) -> None:
    if args[0] in ("export", "import") and not HAS_ONNX:
        pytest.skip("needs onnx")
    write_idx_dir(here / "idx")
    if args[0] == "import":
        assert run("export", here / "tiny.h5", here / "tiny.onnx").exit_code == 0
    before = snapshot(here)
    assert_one_error(run(*args_in(here, *args)), f"{name}: {fragment}", "--force")
    assert snapshot(here) == before
    if args[0] == "bench":
        return  # the refusal came before the benchmark; running one is test_bench's
    result = run(*args_in(here, *args), "--force")
    assert result.exit_code == 0, result.output
    assert f"replaced {here / name}" in result.stderr.splitlines()
    if args[0] == "data":
        load_dataset(here / name)
    elif args[0] in ("train", "import"):
        load_model(here / name)


@pytest.mark.skipif(not HAS_MPL, reason="needs matplotlib")
def test_derived_outputs_are_replaced_and_say_so(here: Path) -> None:
    proba = here / "p.npy"
    proba.write_bytes(b"old probabilities")
    result = run("predict", here / "tiny.h5", here / "in.npy", "--save-proba", proba)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [f"replaced {proba}"]
    assert np.load(proba).shape == (3, 4)
    picture = here / "conv.png"
    picture.write_bytes(b"old picture")
    result = run("plot", "conv", "-o", picture)
    assert result.exit_code == 0, result.output
    assert f"replaced {picture}" in result.stderr.splitlines()
    assert picture.read_bytes().startswith(b"\x89PNG")
    new = here / "new.png"
    result = run("plot", "conv", "-o", new)
    assert result.exit_code == 0 and "replaced" not in result.output, result.output


def test_the_benchmark_suite_output_follows_the_policy(here: Path) -> None:
    """python bench/suite.py --output: checked before the benchmark runs, like numbacnn
    bench --output (it used to write over anything, after the run)."""
    suite = Path(__file__).resolve().parents[1] / "bench" / "suite.py"
    before = snapshot(here)
    for output, fragment in ((here / "tiny.h5", "tiny.h5: holds an HDF5 file"),
                             (here / "net.spec", "is the source"),
                             (here / "missing" / "run.json", "does not exist")):
        done = subprocess.run([sys.executable, str(suite), str(here / "net.spec"), "--quick",
                               "--device", "cpu", "--output", str(output)],
                              capture_output=True, text=True, timeout=300)
        lines = done.stderr.splitlines()  # one line: no "bench: ..." log, nothing was run
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert snapshot(here) == before


# ----------------------------------------------------------------------------- special files

WRITERS = {
    "export": ["export", "{d}/tiny.h5", "{out}"],
    "predict --save-proba": ["predict", "{d}/tiny.h5", "{d}/in.npy", "--save-proba", "{out}"],
    "train --out": ["train", SPEC, "--data", "{d}/data.npz", "--out", "{out}", "--force",
                    "--epochs", "1"],
    "data import-npz": ["data", "import-npz", "{d}/data.npz", "{out}", "--force"],
    "bench --output": ["bench", SPEC, "--output", "{out}", "--force"],
    "plot conv -o": ["plot", "conv", "-o", "{out}", "--force"],
}
SUFFIX = {"export": ".onnx", "predict --save-proba": ".npy", "train --out": ".h5",
          "data import-npz": ".h5", "bench --output": ".json", "plot conv -o": ".png"}


def special_file(kind: str, path: Path) -> tuple[Path, str]:
    """``path`` made a FIFO, a socket, or a link to /dev/null; the kind a message names."""
    if kind == "fifo":
        os.mkfifo(path)
        return path, "is a FIFO"
    if kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))  # the socket file stays after close
        server.close()
        return path, "is a socket"
    path.symlink_to(os.devnull)
    return path, "(a link to /dev/null): is a character device"


@pytest.mark.parametrize("kind", ["fifo", "socket", "devnull"])
@pytest.mark.parametrize("writer", WRITERS.keys())
def test_a_device_fifo_or_socket_is_never_written(writer: str, kind: str, here: Path) -> None:
    out, fragment = special_file(kind, here / f"out{SUFFIX[writer]}")
    before = snapshot(here)
    args = [a.format(d=here, out=out) for a in WRITERS[writer]]
    started = time.monotonic()
    done = numbacnn_cli(*args)  # a fresh process: a FIFO opened by mistake would block
    assert time.monotonic() - started < 100
    errors = done.stderr.splitlines()
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    assert fragment in errors[0] and "not a regular file" in errors[0], errors[0]
    assert snapshot(here) == before
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_a_device_named_directly_is_refused(here: Path) -> None:
    """A character device given as the output itself (as root, ``export MODEL /dev/null``
    replaced /dev/null). Tried on a null device node made for the test, never on the
    system's /dev/null: a writer that gets it wrong replaces only the copy."""
    device = here / "null"
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except OSError:
        pytest.skip("making a device node needs root (CAP_MKNOD)")
    assert_one_error(run("export", here / "tiny.h5", device),
                     f"{device}: is a character device, not a regular file")
    assert stat.S_ISCHR(os.stat(device).st_mode)


def test_a_symlinked_output_replaces_its_target_and_keeps_the_link(here: Path) -> None:
    real, link = here / "real.npy", here / "link.npy"
    real.write_bytes(b"old")
    link.symlink_to(real)
    result = run("predict", here / "tiny.h5", here / "in.npy", "--save-proba", link)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and np.load(real).shape == (3, 4)
    assert f"replaced {link}" in result.stderr.splitlines()
    dangling, target = here / "dangling.npy", here / "sub" / "made.npy"
    (here / "sub").mkdir()
    dangling.symlink_to(target)
    result = run("predict", here / "tiny.h5", here / "in.npy", "--save-proba", dangling)
    assert result.exit_code == 0 and "replaced" not in result.stderr, result.output
    assert dangling.is_symlink() and np.load(target).shape == (3, 4)


# ----------------------------------------------------------------------------- stale temporaries


def dead_pid() -> int:
    return subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_temporaries_of_any_target_are_swept_when_their_writer_is_gone(
        work: Path, tmp_path: Path) -> None:
    host, dead = atomic_file._writer_host(), dead_pid()
    other_host = "0" * 8 if host != "0" * 8 else "1" * 8
    stale = [f".o.best.h5.tmp-{dead}-{host}-abc123xy",  # the killed rank's best model
             f".plot.png.tmp-{dead}-{host}-zz_99zzz",
             f".o.h5.tmp-{dead}-{other_host}-oldoldol"]  # another machine's, hours old
    kept = [f".o.best.h5.tmp-1-{host}-alive123",  # pid 1 lives: its save may be running
            f".o.best.h5.tmp-{os.getpid()}-{host}-mine1234",
            f".o.h5.tmp-{dead}-{other_host}-recent12",  # another machine's, just written
            f".notes.txt.tmp-{dead}-abcdefgh",  # older numbacnn's form, of another target
            f".o.best.h5.tmp-{dead}-{host}-short", "o.best.h5.tmp-1-x", "notes.txt"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x" * 100)
    old = time.time() - 2 * 3600
    os.utime(tmp_path / stale[2], (old, old))
    (tmp_path / f".d.h5.tmp-{dead}-{host}-adirect1").mkdir()  # not a file: kept
    (tmp_path / f".l.h5.tmp-{dead}-{host}-alink123").symlink_to(tmp_path / "notes.txt")
    kept += [f".d.h5.tmp-{dead}-{host}-adirect1", f".l.h5.tmp-{dead}-{host}-alink123"]
    net, info = load_model(work / "sgd.h5")
    save_model(tmp_path / "o.h5", net, info)
    assert sorted(os.listdir(tmp_path)) == sorted(["o.h5", *kept])


def test_a_killed_best_model_save_is_swept_by_the_next_checkpoint(work: Path,
                                                                   tmp_path: Path) -> None:
    """Issue 24: a rank killed while saving o.best.h5 left its 160 MB temporary, and
    later saves of o.h5 kept it."""
    killed_save(tmp_path / "o.best.h5")
    assert [p.name[:len(".o.best.h5.tmp-")] for p in tmp_path.iterdir()] == [".o.best.h5.tmp-"]
    net, info = load_model(work / "sgd.h5")
    save_model(tmp_path / "o.h5", net, info)
    assert os.listdir(tmp_path) == ["o.h5"]


# ----------------------------------------------------------------------------- Ctrl-C in a save

INTERRUPTED = {
    "export": (["export", "{d}/tiny.h5", "{d}/x.onnx"], "x.onnx"),
    "plot": (["plot", "conv", "-o", "{d}/x.png"], "x.png"),
    "predict --save-proba": (["predict", "{d}/tiny.h5", "{d}/in.npy", "--save-proba",
                              "{d}/x.npy"], "x.npy"),
    "data import-npz": (["data", "import-npz", "{d}/data.npz", "{d}/x.h5"], "x.h5"),
}
# Ctrl-C (or SIGTERM) arrives while the file is being fsynced: it is held back until the
# save is done, then interrupts the command
SIGNAL_IN_SAVE = ("import os, signal, sys\n"
                  "real, signum = os.fsync, getattr(signal, sys.argv.pop(1))\n"
                  "def fsync(fd):\n"
                  "    signal.raise_signal(signum)\n"
                  "    real(fd)\n"
                  "os.fsync = fsync\n"
                  "from numbacnn_cli.main import main\n"
                  "main()\n")


@pytest.mark.parametrize("command", INTERRUPTED.keys())
def test_ctrl_c_during_a_save_says_the_file_was_written_in_full(command: str,
                                                                here: Path) -> None:
    args, name = INTERRUPTED[command]
    if (command == "export" and not HAS_ONNX) or (command == "plot" and not HAS_MPL):
        pytest.skip("needs onnx and matplotlib")
    args = args_in(here, *args)
    done = subprocess.run([sys.executable, "-c", SIGNAL_IN_SAVE, "SIGINT", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    assert done.stderr.splitlines() == [f"interrupted after {here / name} was written in full"]
    assert (here / name).stat().st_size > 0
    assert [p for p in os.listdir(here) if ".tmp" in p] == []
    if command == "data import-npz":
        load_dataset(here / name)
    done = subprocess.run([sys.executable, "-c", SIGNAL_IN_SAVE, "SIGTERM", *args, "--force"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 143, done.stderr
    assert done.stderr.splitlines() == [
        f"error: terminated by SIGTERM after {here / name} was written in full"]
