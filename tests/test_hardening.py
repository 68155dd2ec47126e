"""Issue 11: each hostile input that used to break through, as a fixed test (inputs).

Every case ends in one ``error:`` line and exit 2, with no file changed or left behind.
Sections follow the issue: long specs (1), huge sizes (2) and headers (3), options and
outputs (5), and silently wrong results and misleading messages. Tampered checkpoints,
full disks, signals, FIFOs and files lost or left behind are in test_hardening_files.py;
the generated (hypothesis) variants in test_fuzz.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import SPEC, assert_one_error, quadrants, run
from hostile import checkpoint_copy, numbacnn_cli, snapshot, trained_directory

from numbacnn import limits
from numbacnn.errors import DataError, ModelFileError, NumbacnnError, SpecError, TrainingError
from numbacnn.io.dataset_files import read_h5, read_idx, save_dataset
from numbacnn.io.numpy_files import read_npy
from numbacnn.shapes import shape_table
from numbacnn.spec import parse_spec
from numbacnn.training.checkpoint import load_checkpoint
from numbacnn.training.trainer import Trainer, TrainSettings

LONG = "conv 1 3 " * 40  # 360 characters, no ';': once tried as a file name


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with data.npz and sgd.h5, a one-epoch checkpoint trained on it."""
    return trained_directory(tmp_path_factory)


@pytest.fixture
def checkpoint(work: Path, tmp_path: Path) -> Path:
    """A fresh copy of the checkpoint (and its data) to tamper with."""
    return checkpoint_copy(work, tmp_path)


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
