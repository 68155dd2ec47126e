"""Fuzz suite: generated hostile input through the public API and the CLI.

Malformed specs, tampered, truncated and bit-flipped model checkpoints, tampered
dataset files, ``.npy`` headers, IDX headers, option values and full disks. Each
must end in a numbacnn error (NumbacnnError; exit 2 with one ``error:`` line on the
command line) or in a correct result, never a traceback, a hang, a non-finite
weight, or a file changed or left behind.

The CI profile is small and derandomized (the same examples every run, a few
hundred in all, well under a minute on two cores). ``NUMBACNN_FUZZ=long`` runs a
nightly profile: 25 times the examples, random each time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import string
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import SPEC, quadrants, run
from hostile import FullDisk, snapshot, train_checkpoint
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from layer_cases import LAYER_CASES

from numbacnn.errors import DataError, ModelFileError, NumbacnnError
from numbacnn.io import atomic_file
from numbacnn.io.dataset_files import load_dataset, read_h5, read_idx, save_dataset
from numbacnn.io.model_file import save_model
from numbacnn.io.numpy_files import read_npy
from numbacnn.shapes import shape_table
from numbacnn.spec import parse_spec
from numbacnn.training.checkpoint import load_checkpoint
from numbacnn.training.trainer import Trainer

LONG = os.environ.get("NUMBACNN_FUZZ", "").lower() == "long"


def fuzz(examples: int) -> settings:
    """``examples`` in CI (fixed), 25 times as many and random with NUMBACNN_FUZZ=long."""
    return settings(max_examples=examples * (25 if LONG else 1), derandomize=not LONG,
                    deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fuzz")
    train_checkpoint(directory, "sgd")
    train_checkpoint(directory, "adam")
    save_dataset(load_dataset(directory / "data.npz"), directory / "data.h5")
    return directory


@contextmanager
def scratch(*sources: Path) -> Iterator[Path]:
    """A fresh directory per example holding copies of ``sources``."""
    with tempfile.TemporaryDirectory(prefix="numbacnn-fuzz-") as name:
        directory = Path(name)
        for source in sources:
            shutil.copy(source, directory / source.name)
        yield directory


def store(group, key: str, value, array: bool = False) -> None:
    """Write a hostile attribute or array; values HDF5 itself cannot store (a NUL in a
    string) are not inputs a file can hold, so the example is dropped."""
    try:
        if array:
            del group[key]
            group[key] = value
        else:
            group.attrs[key] = value
    except (TypeError, ValueError):
        assume(False)


def one_line(exc: BaseException) -> None:
    """A user-facing message: one printable line of bounded length."""
    message = str(exc)
    assert message and message.isprintable(), repr(message)
    assert len(message) < 1000, message[:200]


def cli_ok_or_one_error(result) -> None:
    assert result.exc_info is None or result.exc_info[0] is SystemExit, result.exc_info
    assert result.exit_code in (0, 2), (result.exit_code, result.output)
    if result.exit_code == 2:
        errors = [line for line in result.stderr.splitlines() if not line.startswith("bench:")]
        assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
        assert errors[0].isprintable() and len(errors[0]) < 1000


# ----------------------------------------------------------------------------- specs

# Every layer keyword (one per case of tests/layer_cases.py), then options and punctuation
WORDS = ["input", *LAYER_CASES, "stride=", "pad=", "size=", "alpha=", "init=", "activation=",
         "pad=same", "init=he", "round=", "round=ceil", "count_pad=no", "3x2", "#", "=", "x"]
NUMBERS = ["0", "1", "2", "3", "8", "28x28x1", "8x8x1", "-1", "+3", "1_0", "\u0663", "1e3",
           ".5", "0.5", "nan", "inf", "1e400", "99999999999x99999999999x99999999999",
           "4611686018427387904", "2147483648", "10000000000000000000000", "0x10"]
BREAKS = ["\n", "\r\n", "\r", ";", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\t", " "]

spec_text = st.lists(
    st.one_of(st.sampled_from(WORDS), st.sampled_from(NUMBERS), st.sampled_from(BREAKS),
              st.text(max_size=4)),
    max_size=30).map(" ".join)


@fuzz(400)
@given(text=spec_text, prefix=st.sampled_from(["", "input 8x8x1\n", "input 28x28x3;"]))
def test_spec_text_parses_or_raises_one_line(text: str, prefix: str) -> None:
    try:
        report = shape_table(prefix + text)
    except NumbacnnError as exc:
        one_line(exc)
    else:
        assert report.total_params >= 0 and all(r.params >= 0 for r in report.rows)
        # accepted text holds only what docs/spec.md allows outside comments
        code = " ".join(line.split("#", 1)[0]
                        for line in re.split(r"\r\n|\r|\n", prefix + text))
        assert all(c in "\t×" or " " <= c <= "~" for c in code), repr(code)
        assert "_" not in code and not re.search(r"(?<![eE])\+", code), repr(code)


TEMPLATES = ["input 28x28x1; conv {} 3", "input 28x28x1; conv 2 {}", "input 9x9x1; leaky {}",
             "input 28x28x1; conv 2 3 stride={}", "input 9x9x1; lrn alpha={}", "input {}x8x1; fc 2",
             "input 9x9x1; dropout {}", "input 9x9x2; maxout {}", "input 9x9x1; fc {} init=he"]


@fuzz(150)
@given(template=st.sampled_from(TEMPLATES),
       number=st.one_of(st.sampled_from(NUMBERS), st.integers(-10, 10**25).map(str),
                        st.floats().map(str),
                        st.text("0123456789+-_.eE\u0663\uff11", min_size=1, max_size=6)))
def test_spec_numbers_are_exactly_the_documented_ones(template: str, number: str) -> None:
    """Accepted numbers are ASCII digits with an optional fraction and exponent: '+3',
    '1_0', '\u0663' (Arabic-Indic three), nan and inf are refused."""
    try:
        parse_spec(template.format(number)).build()
    except NumbacnnError as exc:
        one_line(exc)
    else:
        assert re.fullmatch(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", number), number


@fuzz(80)
@given(text=spec_text.filter(lambda t: t.strip() and not t.startswith("-")))
def test_shapes_command_on_generated_specs(text: str) -> None:
    cli_ok_or_one_error(run("shapes", "input 8x8x1;" + text))


# ----------------------------------------------------------------------------- checkpoints

hostile_value = st.one_of(
    st.integers(min_value=-2**70, max_value=2**70).map(
        lambda v: np.int64(v) if -2**63 <= v < 2**63 else str(v)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.sampled_from(["[1,2]", "{}", "null", '"text"', "1e999", '{"shuffle": 1}',
                     '{"policy": "step"}', "NaN", "-5", '{"batch_size": 0}',
                     '{"optimizer": 3, "seed": -1}']),
    st.builds(lambda shape, dtype: np.ones(shape, dtype),
              st.lists(st.integers(0, 4), max_size=3).map(tuple),
              st.sampled_from([np.int64, np.float32, np.complex64, np.bool_, np.uint8])),
)


def attribute_places(path: Path) -> list[tuple[str, str]]:
    places = []
    with h5py.File(path, "r") as f:
        def visit(name: str, item) -> None:
            places.extend((name, key) for key in item.attrs)
        places.extend(("", key) for key in f.attrs)
        f.visititems(visit)
    return sorted(places)


def json_places(path: Path) -> list[tuple[str, str]]:
    with h5py.File(path, "r") as f:
        settings_keys = sorted(json.loads(f["training"].attrs["settings"]))
        schedule_keys = sorted(json.loads(f["training"].attrs["schedule"]))
    return ([("settings", k) for k in settings_keys] + [("schedule", k) for k in schedule_keys]
            + [("rng_states", "shuffle"), ("rng_states", "augment")])


json_value = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                       st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
                       st.lists(st.integers(-3, 3), max_size=3),
                       st.dictionaries(st.sampled_from(["state", "bit_generator", "inc"]),
                                       st.integers(-3, 2**70), max_size=3))


def check_loaded_or_refused(path: Path, resume: bool) -> None:
    """load_model refuses with one line, or gives finite weights; then resuming (when
    asked) raises a NumbacnnError or builds a trainer; no file changes either way."""
    before = snapshot(path.parent)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a ComplexWarning is a silent wrong load
            net, info = load_checkpoint(path)
    except ModelFileError as exc:
        one_line(exc)
    else:
        for _, w, _ in net.parameters():
            assert np.all(np.isfinite(w))
        for table in (info.optimizer.slots.values() if info.optimizer else ()):
            assert all(np.all(np.isfinite(a)) for a in table.values())
        assert not any(np.any(np.isinf(h)) for h in info.history.values())
        assert np.all(info.std > 0) and np.all(np.isfinite(info.mean))
        with h5py.File(path, "r") as f:  # read exactly as stored: a stride of 1.5 is not 1
            for group, layer in zip(sorted(f["layers"].values(),
                                           key=lambda g: int(g.attrs["index"])),
                                    net.layers, strict=True):
                for key, value in layer.hyperparameters().items():
                    stored = group.attrs[key]
                    if isinstance(stored, str):  # a word (pooling's round=)
                        assert value == stored, (key, stored)
                    elif np.ndim(stored):  # a pair option's (h, w)
                        assert value == tuple(v.item() for v in stored), (key, stored)
                    else:
                        assert type(value) is type(stored.item()) and value == stored, (key, stored)
        if resume and info.training is not None:
            try:
                Trainer.from_checkpoint(path, epochs=info.training.epoch + 1)
            except NumbacnnError as exc:
                one_line(exc)
    assert snapshot(path.parent) == before


@fuzz(120)
@given(data=st.data(), optimizer=st.sampled_from(["sgd", "adam"]), value=hostile_value)
def test_tampered_checkpoint_attribute(work: Path, data, optimizer: str, value) -> None:
    source = work / f"{optimizer}.h5"
    where, key = data.draw(st.sampled_from(attribute_places(source)), label="attribute")
    with scratch(source, work / "data.npz") as directory:
        path = directory / source.name
        with h5py.File(path, "r+") as f:
            store(f[where] if where else f, key, value)
        check_loaded_or_refused(path, resume=True)


@fuzz(120)
@given(data=st.data(), value=json_value)
def test_tampered_checkpoint_json(work: Path, data, value) -> None:
    source = work / "sgd.h5"
    attribute, key = data.draw(st.sampled_from(json_places(source)), label="json key")
    with scratch(source, work / "data.npz") as directory:
        path = directory / source.name
        with h5py.File(path, "r+") as f:
            stored = json.loads(f["training"].attrs[attribute])
            stored[key] = value
            if attribute == "settings":
                stored["data"] = str(directory / "data.npz")
            f["training"].attrs[attribute] = json.dumps(stored)
        check_loaded_or_refused(path, resume=True)


def hyperparameter_places(path: Path) -> list[tuple[str, str]]:
    return [(where, key) for where, key in attribute_places(path)
            if where.startswith("layers/") and key not in ("index", "kind", "init")]


@fuzz(60)
@given(data=st.data(), value=st.one_of(
    st.integers(-2**40, 2**40).map(np.int64), st.floats().map(np.float64),
    st.sampled_from([np.float32(1.5), np.float64(2.0), np.bool_(True), np.int8(3), "3",
                     np.uint64(2**63 + 5), np.complex64(2)])))
def test_tampered_hyperparameter(work: Path, data, value) -> None:
    """A stored hyperparameter is used exactly as stored or refused: never rounded."""
    source = work / "sgd.h5"
    where, key = data.draw(st.sampled_from(hyperparameter_places(source)), label="place")
    with scratch(source, work / "data.npz") as directory:
        path = directory / source.name
        with h5py.File(path, "r+") as f:
            store(f[where], key, value)
        check_loaded_or_refused(path, resume=False)


def array_places(path: Path) -> list[str]:
    names = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: names.append(name)
                     if isinstance(item, h5py.Dataset) else None)
    return sorted(names)


def filled(shape: tuple[int, ...], dtype: type, fill: float) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nan as an integer, a complex fill as a real
        return np.full(shape, fill).astype(dtype)


hostile_array = st.builds(
    filled,
    st.lists(st.integers(0, 5), max_size=4).map(tuple),
    st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.complex64, np.uint8]),
    st.sampled_from([0.0, 1.0, np.nan, np.inf, -np.inf, 1e30, 1 + 2j]))


@fuzz(150)
@given(data=st.data(), array=hostile_array, same_shape=st.booleans())
def test_tampered_checkpoint_array(work: Path, data, array: np.ndarray,
                                   same_shape: bool) -> None:
    source = work / "adam.h5"
    name = data.draw(st.sampled_from(array_places(source)), label="array")
    if same_shape:  # the stored shape, so that values and dtypes are what is tested
        with h5py.File(source, "r") as f:
            shape = f[name].shape
        array = filled(shape, array.dtype.type, array.flat[0] if array.size else 0.0)
    with scratch(source, work / "data.npz") as directory:
        path = directory / source.name
        with h5py.File(path, "r+") as f:
            store(f, name, array, array=True)
        check_loaded_or_refused(path, resume=False)


@fuzz(100)
@given(data=st.data(), mode=st.sampled_from(["truncate", "flip"]))
def test_truncated_or_bit_flipped_checkpoint(work: Path, data, mode: str) -> None:
    raw = bytearray((work / "sgd.h5").read_bytes())
    if mode == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:
        for offset in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1,
                                         max_size=8), label="offsets"):
            raw[offset] ^= data.draw(st.integers(1, 255), label="bits")
    with scratch() as directory:
        path = directory / "model.h5"
        path.write_bytes(bytes(raw))
        check_loaded_or_refused(path, resume=False)
        cli_ok_or_one_error(run("inspect", path))


# ----------------------------------------------------------------------------- datasets


@fuzz(100)
@given(data=st.data(), value=st.one_of(hostile_value, hostile_array))
def test_tampered_dataset_file(work: Path, data, value) -> None:
    source = work / "data.h5"
    place = data.draw(st.sampled_from(
        [("attr", k) for k in ("format", "format_version", "name", "class_names")]
        + [("array", n) for n in array_places(source)]), label="place")
    with scratch(source) as directory:
        path = directory / source.name
        with h5py.File(path, "r+") as f:
            store(f, place[1], value, array=place[0] == "array")
        before = snapshot(directory)
        try:
            ds = read_h5(path)
        except DataError as exc:
            one_line(exc)
        else:
            assert ds.x_train.dtype == np.uint8 and ds.x_train.ndim == 4
            assert ds.y_train.max(initial=0) < ds.num_classes
        assert snapshot(directory) == before


DESCRS = ["|u1", "<f4", "<f8", "|O", "<c8", "|b1", "<i8", ">u2", "x", "", "|V8", "<U3",
          "[('a', '<i4')]"]


@fuzz(120)
@given(descr=st.sampled_from(DESCRS), fortran=st.sampled_from(["False", "True", "1", "'x'"]),
       shape=st.one_of(st.lists(st.integers(-2, 10**12), max_size=4).map(
           lambda s: repr(tuple(s))), st.sampled_from(["None", "'8'", "(1e11, 28, 28)", "[]"])),
       tail=st.binary(max_size=200), magic=st.sampled_from([b"\x93NUMPY\x01\x00",
                                                            b"\x93NUMPY\x03\x00", b"text"]))
def test_npy_headers(descr: str, fortran: str, shape: str, tail: bytes, magic: bytes) -> None:
    header = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape}, }}"
    header = header.ljust(118) + "\n"
    with scratch() as directory:
        path = directory / "x.npy"
        path.write_bytes(magic + len(header).to_bytes(2, "little") + header.encode() + tail)
        try:
            array = read_npy(path)
        except DataError as exc:
            one_line(exc)
        else:
            assert not array.dtype.hasobject and array.nbytes <= len(tail)


@fuzz(120)
@given(type_code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF]),
       dims=st.lists(st.integers(0, 2**32 - 1), max_size=4), body=st.binary(max_size=64),
       gzipped=st.booleans())
def test_idx_headers(type_code: int, dims: list[int], body: bytes, gzipped: bool) -> None:
    import gzip

    raw = bytes([0, 0, type_code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    raw += body
    with scratch() as directory:
        path = directory / "images-idx3-ubyte"
        path.write_bytes(gzip.compress(raw) if gzipped else raw)
        try:
            array = read_idx(path)
        except DataError as exc:
            one_line(exc)
        else:
            assert array.shape == tuple(dims) and array.nbytes == len(body)


# ----------------------------------------------------------------------------- options

option_value = st.one_of(st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e400", "1.5",
                                          "99999999999999999999999", "", "x", "--"]),
                         st.integers(-10**20, 10**20).map(str), st.floats().map(str),
                         st.text(alphabet=string.printable, max_size=6))
TRAIN_OPTIONS = ["--epochs", "--batch-size", "--lr", "--momentum", "--weight-decay", "--lr-step",
                 "--gamma", "--patience", "--val-split", "--seed", "--limit", "--optimizer",
                 "--lr-policy", "--init", "--device"]


@fuzz(60)
@given(chosen=st.lists(st.tuples(st.sampled_from(TRAIN_OPTIONS), option_value), max_size=4))
def test_train_option_values(chosen: list[tuple[str, str]]) -> None:
    """Whatever the options, a run on a missing dataset ends in one error line and
    writes nothing."""
    with scratch() as directory:
        args = ["train", SPEC, "--data", directory / "missing.npz", "--out", directory / "m.h5"]
        for option, value in chosen:
            args += [option, value]
        result = run(*args)
        assert result.exit_code == 2, result.output
        cli_ok_or_one_error(result)
        assert snapshot(directory) == {}


@fuzz(30)
@given(chosen=st.lists(st.tuples(st.sampled_from(["--level", "--seed", "--train-per-class",
                                                  "--test-per-class"]), option_value),
                       min_size=1, max_size=3))
def test_make_mini_option_values(chosen: list[tuple[str, str]]) -> None:
    with scratch() as directory:
        args = ["data", "make-mini", directory / "missing.h5", directory / "out.h5"]
        for option, value in chosen:
            args += [option, value]
        result = run(*args)
        assert result.exit_code == 2
        cli_ok_or_one_error(result)
        assert snapshot(directory) == {}


@fuzz(30)
@given(array=st.builds(lambda shape, dtype: np.zeros(shape, dtype),
                       st.lists(st.integers(0, 9), max_size=5).map(tuple),
                       st.sampled_from([np.uint8, np.float32, np.int64, np.bool_])),
       limit=st.sampled_from([None, "1", "0", "-3"]))
def test_predict_inputs(work: Path, array: np.ndarray, limit: str | None) -> None:
    with scratch() as directory:
        np.save(directory / "in.npy", array)
        extra = [] if limit is None else ["--limit", limit]
        before = snapshot(directory)
        cli_ok_or_one_error(run("predict", work / "sgd.h5", directory / "in.npy", *extra))
        assert snapshot(directory) == before


# ----------------------------------------------------------------------------- full disk


@fuzz(30)
@given(room=st.integers(0, 200_000), kind=st.sampled_from(["model", "dataset"]))
def test_full_disk_at_any_point(work: Path, room: int, kind: str) -> None:
    """A save that runs out of room at any byte keeps the old file whole and leaves no
    temporary; a save with room enough writes the new file."""
    real_fdopen = os.fdopen
    with scratch() as directory, pytest.MonkeyPatch.context() as patch:
        target = directory / "out.h5"
        target.write_bytes(b"the previous file")
        patch.setattr(atomic_file.os, "fdopen",
                      lambda fd, mode: FullDisk(real_fdopen(fd, mode), room))
        try:
            if kind == "model":
                save_model(target, *load_checkpoint(work / "sgd.h5"))
            else:
                x, y = quadrants(32)
                ds = load_dataset(work / "data.npz")
                ds.x_train, ds.y_train = x, y
                save_dataset(ds, target)
        except (ModelFileError, DataError) as exc:
            one_line(exc)
            assert "No space left on device" in str(exc)
            assert target.read_bytes() == b"the previous file"
        else:
            (load_checkpoint if kind == "model" else read_h5)(target)
        assert sorted(os.listdir(directory)) == ["out.h5"]
