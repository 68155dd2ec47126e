"""Issue 11: each hostile input that used to break through, as a fixed test.

Every case ends in one ``error:`` line and exit 2 (130 for Ctrl-C, 143 for SIGTERM),
with no file changed or left behind. Sections follow the issue: tracebacks and
crashes (1-8), files lost or left behind, silently wrong results and misleading
messages. The generated (hypothesis) variants are in test_fuzz.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from hostile import (
    SPEC,
    FullDisk,
    assert_one_error,
    quadrants,
    run,
    snapshot,
    train_checkpoint,
    write_dataset_npz,
)

from numbacnn import limits
from numbacnn.errors import DataError, ModelFileError, NumbacnnError, SpecError, TrainingError
from numbacnn.io import atomic_file
from numbacnn.io.dataset_files import read_h5, read_idx, save_dataset
from numbacnn.io.model_file import save_model
from numbacnn.io.numpy_files import read_npy
from numbacnn.shapes import shape_table
from numbacnn.spec import parse_spec
from numbacnn.training.checkpoint import load_checkpoint
from numbacnn.training.trainer import Trainer, TrainSettings

LONG = "conv 1 3 " * 40  # 360 characters, no ';': once tried as a file name


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numbacnn.device

    numbacnn.device.set_device("cpu")
    directory = tmp_path_factory.mktemp("hostile")
    train_checkpoint(directory)
    return directory


@pytest.fixture
def checkpoint(work: Path, tmp_path: Path) -> Path:
    """A fresh copy of the checkpoint (and its data) to tamper with."""
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


# ----------------------------------------------------------------------------- 1. long specs


@pytest.mark.parametrize("args", [
    ["shapes", LONG], ["data", "info", LONG], ["train", LONG],
    ["bench", LONG],
])
def test_spec_text_longer_than_a_file_name_is_one_error(args: list[str]) -> None:
    line = assert_one_error(run(*args))
    assert len(line) < 400  # the 360 characters are not echoed whole


def test_train_out_with_a_name_too_long_is_one_error(work: Path, tmp_path: Path) -> None:
    out = tmp_path / ("m" * 300 + ".h5")
    assert_one_error(run("train", SPEC, "--data", work / "data.npz", "--out", out),
                     "Invalid value for '--out'", "File name too long",
                     "choose another path")


# ----------------------------------------------------------------------------- 2. huge sizes


@pytest.mark.parametrize("spec, fragment", [
    ("input 99999999999x99999999999x99999999999; fc 10", "≤ 2147483647"),
    ("input 8x8x1; conv 4611686018427387904 3", "filters must be ≤ 2147483647"),
    ("input 8x8x1; conv 10000000000000000000000 3", "filters must be ≤ 2147483647"),
])
def test_huge_spec_numbers_are_refused(spec: str, fragment: str) -> None:
    assert_one_error(run("shapes", spec), fragment)


def test_parameter_counts_are_exact_for_huge_layers() -> None:
    """2**31-1 filters of 3x3 over 3 channels: (27 + 1)·K parameters, not a wrapped int64."""
    K = 2**31 - 1
    report = shape_table(f"input 8x8x3; conv {K} 3 pad=1; fc {K}")
    assert report.rows[0].params == 28 * K
    assert report.rows[1].params == K * 8 * 8 * K + K
    assert report.total_params > 0


@pytest.mark.parametrize("spec", [
    "input 8x8x1; conv 2000000 3 pad=1; fc 4",
    "input 8x8x1; conv 2 3 pad=100000; fc 4",
    "input 8x8x1; fc 100000000; fc 4",
])
def test_train_refuses_networks_that_need_more_memory_than_there_is(
        spec: str, work: Path, tmp_path: Path) -> None:
    result = run("train", spec, "--data", work / "data.npz", "--out", tmp_path / "m.h5")
    assert_one_error(result, "would need", "of memory but only", "lower batch_size")
    assert snapshot(tmp_path) == {}


def test_memory_check_uses_what_is_available(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same small network is refused when the machine has almost nothing free."""
    from numbacnn.io.dataset_files import load_dataset
    from numbacnn.network import Network

    dataset = load_dataset(work / "data.npz")
    monkeypatch.setattr(limits, "available_memory", lambda: 1000)
    with pytest.raises(TrainingError, match="would need .* only 1000 B is available"):
        Trainer(Network.from_spec(SPEC), dataset, TrainSettings(spec=SPEC, batch_size=16))


# ----------------------------------------------------------------------------- 3. huge headers


def test_npy_header_claiming_a_huge_array_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.npy"
    header = {"descr": "|u1", "fortran_order": False, "shape": (10**11, 28, 28)}
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(b"\0" * 1000)
    with pytest.raises(DataError, match=r"declares shape \(100000000000, 28, 28\).*truncated"):
        read_npy(path)


@pytest.mark.parametrize("shape", [(-1, 159585, 159597, 362137030), (0, 2**40, 2**40)])
def test_npy_header_with_an_impossible_shape(tmp_path: Path, shape: tuple[int, ...]) -> None:
    """Found by the long fuzz profile: a negative dimension reached bytearray()."""
    header = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}"
    header = header.ljust(118) + "\n"
    path = tmp_path / "odd.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
                     + header.encode())
    with pytest.raises(DataError, match="which no array can have"):
        read_npy(path)


def test_npy_within_the_file_but_beyond_memory_says_how_much(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.npy"
    np.save(path, np.zeros((64, 28, 28), np.uint8))
    monkeypatch.setattr(limits, "available_memory", lambda: 10_000)
    with pytest.raises(DataError, match="would need 49.0 KiB of memory"):
        read_npy(path)


def test_hdf5_dataset_declaring_a_huge_array_is_not_read(tmp_path: Path,
                                                          work: Path) -> None:
    from numbacnn.io.dataset_files import load_dataset

    path = tmp_path / "huge.h5"
    save_dataset(load_dataset(work / "data.npz"), path)
    with h5py.File(path, "r+") as f:
        del f["train/images"]
        f["train"].create_dataset("images", shape=(10**11, 1, 8, 8), dtype=np.uint8,
                                  chunks=(1, 1, 8, 8))  # nothing stored: a tiny file
    assert path.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"train/images of shape \(100000000000, 1, 8, 8\) "
                                        r"would need 5.8 TiB"):
        read_h5(path)
    for args in (["data", "info", path], ["evaluate", work / "sgd.h5", "--data", path]):
        assert_one_error(run(*args), "would need")


def test_idx_header_with_huge_dims_says_what_it_needs(tmp_path: Path) -> None:
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(b"\0\0\x08\x03" + (2**32 - 1).to_bytes(4, "big") * 3 + b"\0" * 16)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert "0 data bytes" not in str(info.value)
    assert "would need" in str(info.value) or "truncated" in str(info.value)


# ----------------------------------------------------------------------- 4. tampered attributes


TAMPERED = {
    "settings not an object": ("training", "settings", "[1,2]"),
    "batch size text": ("training", "settings", {"batch_size": "16"}),
    "batch size zero": ("training", "settings", {"batch_size": 0}),
    "optimizer bogus": ("training", "settings", {"optimizer": "rmsprop"}),
    "optimizer name": ("optimizer", "name", "rmsprop"),
    "optimizer name number": ("optimizer", "name", 3),
    "rng state": ("training", "rng_states", '{"shuffle": 1, "augment": 2}'),
    "rng state shape": ("training", "rng_states", '{"shuffle": {"bit_generator": "PCG64"}}'),
    "schedule text": ("training", "schedule", '"constant"'),
    "schedule lr": ("training", "schedule", {"lr": "fast"}),
    "schedule step": ("training", "schedule", {"step": 0}),
    "epoch negative": ("training", "epoch", -5),
    "epoch float": ("training", "epoch", 1.5),
    "lr nan": ("training", "lr", float("nan")),
    "stride 1.5": ("layers/00_conv", "stride", 1.5),
    "size text": ("layers/00_conv", "size", "3"),
    "kind bogus": ("layers/00_conv", "kind", "transformer"),
    "index text": ("layers/00_conv", "index", "zero"),
    "dropout p 2": ("layers/05_dropout", "p", 2.0),
    "input shape 2d": ("", "input_shape", np.array([8, 8])),
    "input shape float": ("", "input_shape", np.array([1.0, 8.0, 8.0])),
    "format version text": ("", "format_version", "one"),
    "mean nan": ("", "normalization_mean", np.array([np.nan], np.float32)),
    "mean beyond float32": ("", "normalization_mean", np.array([3.5e38])),
    "std inf": ("", "normalization_std", np.array([np.inf], np.float32)),
    "std zero": ("", "normalization_std", np.array([0.0], np.float32)),
    "class names numbers": ("", "class_names", np.arange(4)),
}


def tamper(path: Path, where: str, key: str, value: object) -> None:
    with h5py.File(path, "r+") as f:
        attrs = f[where].attrs if where else f.attrs
        if isinstance(value, dict):  # a change inside a JSON attribute
            stored = json.loads(attrs[key])
            stored.update(value)
            value = json.dumps(stored)
        attrs[key] = value


@pytest.mark.parametrize("where, key, value", TAMPERED.values(), ids=TAMPERED.keys())
def test_tampered_attributes_are_refused_on_load_and_resume(
        checkpoint: Path, where: str, key: str, value: object) -> None:
    tamper(checkpoint, where, key, value)
    before = snapshot(checkpoint.parent)
    with pytest.raises(ModelFileError, match="damaged|not supported"):
        load_checkpoint(checkpoint)
    assert_one_error(run("train", "--resume", checkpoint, "--epochs", 3))
    assert_one_error(run("inspect", checkpoint))
    assert snapshot(checkpoint.parent) == before


def test_invalid_utf8_text_is_refused_not_printed(checkpoint: Path) -> None:
    """A flipped bit in a UTF-8 attribute: h5py gives surrogates that crashed inspect."""
    with h5py.File(checkpoint, "r+") as f:
        f.attrs.create("spec", b"input 8x8x1\xff", dtype=h5py.string_dtype("utf-8"))
    assert_one_error(run("inspect", checkpoint), "not valid UTF-8")


def test_a_huge_stored_batch_size_allocates_only_one_real_batch(checkpoint: Path) -> None:
    """batch_size 98736402 in the settings: found by the long fuzz profile (it asked
    for 23.5 GiB); a batch never holds more images than the split has."""
    tamper(checkpoint, "training", "settings", {"batch_size": 98_736_402})
    trainer = Trainer.from_checkpoint(checkpoint, epochs=2)
    assert trainer._x_staging.hosts[0].shape[0] == len(trainer.y_fit)


def test_batch_position_beyond_the_epoch_is_refused_on_resume(checkpoint: Path) -> None:
    tamper(checkpoint, "training", "batch", 99)
    tamper(checkpoint, "training", "partial_epoch",
           json.dumps({"loss": 1.0, "correct": 1.0, "seen": 1.0, "seconds": 1.0}))
    assert_one_error(run("train", "--resume", checkpoint, "--epochs", 3),
                     "stopped after batch 99 but an epoch has 3")


def test_dataset_format_version_of_the_wrong_type(tmp_path: Path, work: Path) -> None:
    from numbacnn.io.dataset_files import load_dataset

    path = tmp_path / "data.h5"
    save_dataset(load_dataset(work / "data.npz"), path)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = "one"
    assert_one_error(run("data", "info", path), "format_version 'one' is not supported")


# ----------------------------------------------------------------------------- 5. options, outputs


@pytest.mark.parametrize("option", [["--level", "10"], ["--seed", "-1"], ["--level", "-1"],
                                    ["--train-per-class", "0"]])
def test_make_mini_option_ranges(option: list[str], tmp_path: Path) -> None:
    assert_one_error(run("data", "make-mini", "fashion-mnist-mini", tmp_path / "m.h5", *option),
                     option[0])
    assert snapshot(tmp_path) == {}


def test_bench_output_is_checked_before_the_benchmark(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import numbacnn.training.profiler

    ran = []
    monkeypatch.setattr(numbacnn.training.profiler, "profile_spec", lambda *a, **k: ran.append(1))
    assert_one_error(run("bench", "--output", tmp_path / "no" / "r.json"), "does not exist")
    assert ran == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_full_stdout_is_one_error_line() -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-c", "from numbacnn_cli.main import main; main()",
                               "shapes", "alexnet"], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: cannot write the output: No space left on device; free disk space or send "
        "the output elsewhere"]


# ----------------------------------------------------------------------------- 6. disk full


@pytest.mark.parametrize("room", [0, 100, 5000])
def test_full_disk_during_a_save_keeps_the_old_file(
        work: Path, tmp_path: Path, room: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection where no small file system can be mounted: writes fail after
    ``room`` bytes. The old model stays, nothing is left behind, one clear error."""
    net, info = load_checkpoint(work / "sgd.h5")
    target = tmp_path / "model.h5"
    save_model(target, net, info)
    before = snapshot(tmp_path)
    real_fdopen = os.fdopen
    monkeypatch.setattr(atomic_file.os, "fdopen",
                        lambda fd, mode: FullDisk(real_fdopen(fd, mode), room))
    with pytest.raises(ModelFileError, match="No space left on device.*existing file is "
                                             "unchanged"):
        save_model(target, net, info)
    assert snapshot(tmp_path) == before


def tmpfs(directory: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                           str(directory)], capture_output=True)
    return done.returncode == 0


def test_full_tmpfs_during_a_training_save_is_one_error(work: Path, tmp_path: Path) -> None:
    """A real full disk: a 16 KiB tmpfs (root only; skipped elsewhere, where the
    fault-injecting test above holds the same promise)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if not tmpfs(disk, "16k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        (disk / "model.h5").write_bytes(b"an older model")
        done = numbacnn_cli("train", SPEC, "--data", str(work / "data.npz"), "--epochs", "1",
                            "--out", str(disk / "model.h5"), "--force", "--device", "cpu")
        assert done.returncode == 2, (done.returncode, done.stderr)
        errors = done.stderr.splitlines()
        assert len(errors) == 1 and "No space left on device" in errors[0], done.stderr
        assert (disk / "model.h5").read_bytes() == b"an older model"
        assert sorted(os.listdir(disk)) == ["model.h5"]
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# ----------------------------------------------------------------------------- 7. Ctrl-C in a save


def test_ctrl_c_twice_inside_a_save_finishes_it_then_interrupts(work: Path,
                                                                tmp_path: Path) -> None:
    net, info = load_checkpoint(work / "sgd.h5")
    target = tmp_path / "model.h5"

    def write(fh) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        fh.write(target.with_name("payload").read_bytes())

    save_model(tmp_path / "payload", net, info)
    with pytest.raises(KeyboardInterrupt):
        atomic_file.replace_atomically(target, write, ModelFileError, "model")
    load_checkpoint(target)  # complete: the interrupt came after the rename
    assert sorted(os.listdir(tmp_path)) == ["model.h5", "payload"]


def test_a_late_ctrl_c_during_shutdown_prints_no_traceback() -> None:
    """The second Ctrl-C of issue 11 item 7 arrived in threading's shutdown, after
    the command had ended with 130; it is now ignored there."""
    code = ("import os, signal, threading\n"
            "threading._register_atexit(lambda: os.kill(os.getpid(), signal.SIGINT))\n"
            "import numbacnn_cli.shapes as s\n"
            "from numbacnn_cli import main as m\n"
            "def interrupted(*a, **k):\n"
            "    raise KeyboardInterrupt\n"
            "s.shapes.callback = interrupted\n"
            "m.main()\n")
    done = subprocess.run([sys.executable, "-c", code, "shapes", "alexnet"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 130
    assert done.stderr.splitlines() == ["interrupted"], done.stderr


def test_sigterm_ends_with_143_and_a_message(work: Path, tmp_path: Path) -> None:
    code = ("import os, signal, sys\n"
            "from numbacnn_cli import main as m\n"
            "import numbacnn_cli.shapes as s\n"
            "real = s.shapes.callback\n"
            "def slow(*a, **k):\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    return real(*a, **k)\n"
            "s.shapes.callback = slow\n"
            "m.main()\n")
    done = subprocess.run([sys.executable, "-c", code, "shapes", "alexnet"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 143
    assert done.stderr.splitlines() == ["error: terminated by SIGTERM; files being written "
                                        "were left as they were (saves are atomic)"]


# ----------------------------------------------------------------------------- 8. FIFOs


@pytest.mark.parametrize("command", [["inspect"], ["evaluate"], ["predict", "{model}"],
                                     ["data", "info"], ["shapes"], ["train", "--resume"]])
def test_a_fifo_is_refused_not_waited_on(command: list[str], work: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)
    args = [a.format(model=work / "sgd.h5") for a in command]
    started = time.monotonic()
    done = numbacnn_cli(*args, str(fifo))
    assert time.monotonic() - started < 60
    assert done.returncode == 2, done.stderr
    errors = done.stderr.splitlines()
    assert len(errors) == 1 and "not a regular file" in errors[0], done.stderr


# ----------------------------------------------------------------------------- files lost


def test_train_refuses_to_overwrite_a_model_or_its_best_without_force(
        work: Path, tmp_path: Path) -> None:
    data = work / "data.npz"
    out = tmp_path / "m.h5"
    for existing in (out, tmp_path / "m.best.h5"):
        existing.write_bytes(b"85.17% model")
        before = snapshot(tmp_path)
        assert_one_error(run("train", SPEC, "--data", data, "--out", out, "--epochs", 1),
                         "exists already", "--force")
        assert snapshot(tmp_path) == before
        existing.unlink()
    out.write_bytes(b"old")
    result = run("train", SPEC, "--data", data, "--out", out, "--epochs", 1, "--force")
    assert result.exit_code == 0, result.output
    load_checkpoint(out)


def test_resume_into_its_own_file_needs_no_force(checkpoint: Path) -> None:
    result = run("train", "--resume", checkpoint, "--epochs", 2)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(checkpoint)[1].training.epoch == 2
    other = checkpoint.with_name("other.h5")
    other.write_bytes(b"keep")
    assert_one_error(run("train", "--resume", checkpoint, "--epochs", 3, "--out", other),
                     "exists already")
    assert other.read_bytes() == b"keep"


def test_stale_temporaries_of_dead_processes_are_swept(work: Path, tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".model.h5.tmp-{dead}-abc123xy"
    legacy = tmp_path / ".model.h5.tmpq1w2e3r4"
    alive = tmp_path / ".model.h5.tmp-1-zzz999zz"  # pid 1 lives: its save may be running
    recent = tmp_path / ".model.h5.tmpnewnew12"
    other = tmp_path / ".notes.txt.tmp-99999999-abcdefgh"
    for path in (stale, legacy, alive, recent, other):
        path.write_bytes(b"x" * 100)
    old = time.time() - 2 * 3600
    os.utime(legacy, (old, old))
    net, info = load_checkpoint(work / "sgd.h5")
    save_model(tmp_path / "model.h5", net, info)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["model.h5", alive.name, recent.name, other.name])


def test_a_save_killed_with_sigkill_is_cleaned_up_by_the_next_save(work: Path,
                                                                    tmp_path: Path) -> None:
    """SIGKILL cannot be caught: the killed save leaves its temporary, the target is
    intact, and the next save into the directory removes the temporary."""
    target = tmp_path / "model.h5"
    target.write_bytes(b"the previous model")
    code = ("import sys, time\n"
            "from pathlib import Path\n"
            "from numbacnn.io.atomic_file import replace_atomically\n"
            "from numbacnn.errors import ModelFileError\n"
            "def write(fh):\n"
            "    fh.write(b'half a model'); fh.flush(); print('writing', flush=True)\n"
            "    time.sleep(60)\n"
            "replace_atomically(Path(sys.argv[1]), write, ModelFileError, 'model')\n")
    saver = subprocess.Popen([sys.executable, "-c", code, str(target)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert saver.stdout.readline() == "writing\n"
    finally:
        saver.kill()
        saver.wait(timeout=30)
    left = [p.name for p in tmp_path.iterdir() if p.name != "model.h5"]
    assert len(left) == 1 and left[0].startswith(f".model.h5.tmp-{saver.pid}-")
    assert target.read_bytes() == b"the previous model"
    net, info = load_checkpoint(work / "sgd.h5")
    save_model(target, net, info)
    assert sorted(os.listdir(tmp_path)) == ["model.h5"]


def test_import_npz_refuses_its_own_source_and_a_non_h5_name(work: Path, tmp_path: Path) -> None:
    source = write_dataset_npz(tmp_path / "X.npz")
    before = snapshot(tmp_path)
    assert_one_error(run("data", "import-npz", source, source), ".h5 or .hdf5")
    assert_one_error(run("data", "import-npz", source, tmp_path / "Y.npz"), ".h5 or .hdf5")
    h5 = tmp_path / "X.h5"
    h5.symlink_to(source)
    assert_one_error(run("data", "import-npz", source, h5), "is the source")
    h5.unlink()
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name, fragment", [("p.txt", "ending in .npy"),
                                            ("dir", "ending in .npy"),
                                            ("missing/p.npy", "does not exist")])
def test_save_proba_path_is_checked_first(name: str, fragment: str, work: Path,
                                          tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    images = tmp_path / "images.npy"
    np.save(images, quadrants(3)[0])
    before = snapshot(tmp_path)
    assert_one_error(run("predict", work / "sgd.h5", images, "--save-proba", tmp_path / name),
                     fragment)
    assert snapshot(tmp_path) == before


def test_save_proba_on_a_full_disk_leaves_nothing(work: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    images = tmp_path / "images.npy"
    np.save(images, quadrants(3)[0])
    before = snapshot(tmp_path)
    real_fdopen = os.fdopen
    monkeypatch.setattr(atomic_file.os, "fdopen",
                        lambda fd, mode: FullDisk(real_fdopen(fd, mode), 64))
    line = assert_one_error(run("predict", work / "sgd.h5", images, "--save-proba",
                                tmp_path / "p.npy"), "No space left on device")
    assert "None" not in line
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- silently wrong


@pytest.mark.parametrize("change", ["nan", "inf", "complex", "int"])
def test_weights_that_are_not_finite_floats_are_refused(checkpoint: Path, change: str) -> None:
    with h5py.File(checkpoint, "r+") as f:
        w = f["layers/00_conv/W"][()]
        del f["layers/00_conv/W"]
        if change == "nan":
            w[0, 0, 0, 0] = np.nan
        elif change == "inf":
            w[-1, 0, 2, 2] = -np.inf
        f["layers/00_conv"]["W"] = (w.astype(np.complex64) if change == "complex" else
                                    w.astype(np.int32) if change == "int" else w)
    with pytest.raises(ModelFileError, match="NaN or infinite|expected float32"):
        load_checkpoint(checkpoint)
    assert_one_error(run("predict", checkpoint, "fashion-mnist-mini"), "damaged")


def test_a_missing_hyperparameter_is_not_replaced_by_its_default(checkpoint: Path) -> None:
    """Found by the long fuzz profile: a flipped bit hid maxpool's stride attribute and
    the layer was built with the default stride."""
    with h5py.File(checkpoint, "r+") as f:
        del f["layers/02_maxpool"].attrs["stride"]
    with pytest.raises(ModelFileError, match="02_maxpool lacks attribute stride"):
        load_checkpoint(checkpoint)


def test_empty_layers_group_says_so(checkpoint: Path) -> None:
    with h5py.File(checkpoint, "r+") as f:
        for name in list(f["layers"]):
            del f["layers"][name]
    with pytest.raises(ModelFileError, match="group layers holds no layers"):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize("option", [["--lr", "inf"], ["--lr", "nan"], ["--weight-decay", "nan"],
                                    ["--weight-decay", "inf"], ["--momentum", "nan"]])
def test_non_finite_training_options_are_refused(option: list[str], work: Path,
                                                 tmp_path: Path) -> None:
    assert_one_error(run("train", SPEC, "--data", work / "data.npz", "--out",
                         tmp_path / "m.h5", *option), option[0])
    assert snapshot(tmp_path) == {}


def test_predict_on_no_images_is_an_error(work: Path, tmp_path: Path) -> None:
    empty = tmp_path / "none.npy"
    np.save(empty, np.zeros((0, 1, 8, 8), np.uint8))
    assert_one_error(run("predict", work / "sgd.h5", empty), "no images")


def test_evaluate_on_a_dataset_with_other_classes(work: Path, tmp_path: Path) -> None:
    x, _ = quadrants(8)
    one = tmp_path / "one.npz"
    np.savez(one, x_train=x, y_train=np.zeros(8, np.int64), x_test=x,
             y_test=np.zeros(8, np.int64), class_names=np.array(["only"]))
    assert_one_error(run("evaluate", work / "sgd.h5", "--data", one),
                     "has 1 class but the model has 4")


@pytest.mark.parametrize("text, fragment", [
    ("input 8x8x1; conv +3 3", "filters must be"),
    ("input 8x8x1; conv 1_0 3", "filters must be"),
    ("input 8x8x1; conv \u0663 3", "U+0663"),
    ("input 8x8x1; leaky 0x1", "alpha must be"),
    ("input 8x8x1\x0bconv 3 3", "U+000B"),
    ("input 8x8x1\x1cconv 3 3", "U+001C"),
    ("input 8x8x1\u2028conv 3 3", "U+2028"),
    ("input 8x8x1\x85conv 3 3", "U+0085"),
    ("input 8x8x1; conv\xa03 3", "U+00A0"),
])
def test_spec_grammar_accepts_exactly_what_the_docs_say(text: str, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment.replace("+", r"\+")):
        parse_spec(text)


def test_documented_line_breaks_and_numbers_are_accepted() -> None:
    expected = parse_spec("input 8x8x1; conv 3 3; leaky 0.5; lrn alpha=1e-4 k=.5")
    for text in ("input 8x8x1\nconv 3 3\r\nleaky 0.5\rlrn alpha=1e-4 k=.5",
                 "input\t8x8x1;conv 3\t3 # note → ok\n leaky 0.50;lrn alpha=1E-4 k=0.5"):
        assert parse_spec(text) == expected


def test_error_messages_do_not_echo_a_huge_line() -> None:
    line = "conv " + "7" * 100_000 + " \x07 3"
    with pytest.raises(SpecError) as info:
        parse_spec("input 8x8x1\n" + line.replace("\x07", ""))
    assert len(str(info.value)) < 400 and "\n" not in str(info.value)
    with pytest.raises(SpecError) as info:
        parse_spec("input 8x8x1\n" + line)
    assert len(str(info.value)) < 400 and "\x07" not in str(info.value)


def test_spec_paths_with_control_characters_are_escaped() -> None:
    for name in ("/\x1b", "nets/\x07.spec"):
        line = assert_one_error(run("shapes", name))
        assert line.isprintable() and "\\x" in line


def test_pickled_arrays_are_never_loaded(tmp_path: Path) -> None:
    """An object array would run pickle on load: refused in .npy and .npz alike."""
    from numbacnn.io.dataset_files import import_npz

    objects = np.array([{"a": 1}, None], dtype=object)
    np.save(tmp_path / "o.npy", objects, allow_pickle=True)
    with pytest.raises(DataError, match="pickled"):
        read_npy(tmp_path / "o.npy")
    x, y = quadrants(4)
    np.savez(tmp_path / "o.npz", x_train=x, y_train=y, x_test=x, y_test=y, class_names=objects)
    with pytest.raises(DataError, match="pickled"):
        import_npz(tmp_path / "o.npz")


def test_text_file_given_as_npy(work: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.npy"
    text.write_text("hello, not an array\n")
    line = assert_one_error(run("predict", work / "sgd.h5", text), "NumPy magic")
    assert "pickled" not in line


def test_usage_errors_are_one_line_too(work: Path, tmp_path: Path) -> None:
    assert_one_error(run("evaluate"), "Missing argument", "evaluate --help")
    assert_one_error(run("inspect", tmp_path), "is a directory")
    line = assert_one_error(run("no\x1bsuch" + "command" * 10_000))
    assert line.isprintable() and len(line) < 400


def test_train_header_shows_the_spec_initializers(tmp_path: Path) -> None:
    x, y = quadrants(40)
    data = tmp_path / "d.npz"
    xs = np.zeros((40, 1, 28, 28), np.uint8)
    xs[:, :, :8, :8] = x
    np.savez(data, x_train=xs, y_train=y % 4, x_test=xs[:4], y_test=y[:4] % 4)
    spec = ("input 28x28x1; conv 2 5 pad=2 init=xavier; tanh; avgpool 2; fc 4 init=xavier; "
            "softmax")
    result = run("train", spec, "--data", data, "--epochs", 1, "--out", tmp_path / "m.h5")
    assert result.exit_code == 0, result.output
    assert "init xavier (from the spec)" in result.output and "init he," not in result.output


def test_missing_input_line_hint_fits_the_command(work: Path, tmp_path: Path) -> None:
    assert_one_error(run("shapes", "conv 3 3; fc 4"), "pass --input")
    line = assert_one_error(run("train", "conv 3 3; fc 4", "--data", work / "data.npz",
                                "--out", tmp_path / "m.h5"), "add a first line")
    assert "--input" not in line


@pytest.mark.parametrize("batch", ["16", "64"])
def test_overflowing_training_stops_without_numpy_warnings(batch: str, work: Path,
                                                           tmp_path: Path) -> None:
    """lr 1e30: with several batches the loss becomes NaN; with one batch an epoch ends
    on NaN weights (was: saved, scored "25%" and printed RuntimeWarnings)."""
    done = numbacnn_cli("train", SPEC, "--data", str(work / "data.npz"), "--out",
                        str(tmp_path / "m.h5"), "--lr", "1e30", "--epochs", "2",
                        "--batch-size", batch, "--device", "cpu")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "loss became" in done.stderr or "weights became NaN" in done.stderr
    if (tmp_path / "m.h5").exists():  # an earlier epoch's checkpoint: finite, loadable
        assert "last good checkpoint" in done.stderr
        load_checkpoint(tmp_path / "m.h5")


def test_every_user_error_is_a_numbacnn_error() -> None:
    """The CLI shows NumbacnnError as a line; anything else would be a traceback."""
    for error in (DataError, ModelFileError, SpecError, TrainingError):
        assert issubclass(error, NumbacnnError)
