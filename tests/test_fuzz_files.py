"""Generated hostile files through the command line, in this process: mutated benchmark
results (``plot bench``) and dataset files (npz, IDX directories, HDF5; ``data info``).

Every case ends in exit 0 or in one ``error:`` line and exit 2, with no traceback and no
Python warning on stderr (helpers.run writes warnings there). The mutations are drawn
from seeded ``random.Random`` streams, so every run tries the same few hundred cases; a
failure names its seed and case number. ``NUMBACNN_FUZZ=long`` runs 25 times as many,
seeded afresh from the clock (the seed is in the failure's message).
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from helpers import run

from numbacnn.io.dataset_files import load_dataset
from numbacnn.limits import MAX_BENCH_ROWS, MAX_CLASSES

LONG = os.environ.get("NUMBACNN_FUZZ", "").lower() == "long"
ROUNDS = 25 if LONG else 1
BASE_SEED = int(time.time()) if LONG else 0


def clean_exit(result: Any, case: str) -> None:
    """Exit 0, or exit 2 with one printable ``error:`` line; never a traceback or a
    warning."""
    assert result.exc_info is None or result.exc_info[0] is SystemExit, (case, result.exc_info)
    assert result.exit_code in (0, 2), (case, result.exit_code, result.output)
    assert "Traceback" not in result.output and "Warning" not in result.stderr, (
        case, result.stderr)
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (case, result.stderr)
        assert lines[0].isprintable() and len(lines[0]) < 1000, (case, lines[0][:300])


# ----------------------------------------------------------------------------- bench JSON


def _side(rng: random.Random, rows: int) -> dict[str, Any]:
    return {"layers": [{"index": i + 1, "layer": f"conv {i + 1} 3", "output_shape": "4x4x2",
                        "forward_ms": rng.uniform(0, 2), "backward_ms": rng.uniform(0, 2),
                        "percent": 10.0} for i in range(rows)],
            "loss": {"forward_ms": 0.01, "backward_ms": 0.02, "percent": 1.0}}


def bench_result(rng: random.Random) -> dict[str, Any]:
    """A valid result: two networks, the first beside a PyTorch twin."""
    first = {"spec": "tiny", "framework": "numbacnn", "batch": 8, **_side(rng, 3),
             "torch": _side(rng, 3)}
    second = {"spec": "lenet", "batch": 16, **_side(rng, 2),
              "torch": {"skipped": "skipped: PyTorch is not installed"}}
    return {"config": {"device": "cpu", "precision": "fp32", "batch": 8},
            "environment": {"cpu": "a CPU"}, "networks": [first, second]}


HOSTILE = [None, True, False, "", "x", "\x1b[31mred\x07", "\u202e", -1, 0, -0.0, 1.5, 1e308,
           10**30, 2**63, -(2**63), [], {}, [1, 2], {"a": 1}, "a" * 3000, [[[[]]]],
           {"forward_ms": 1}, {"layers": []}]
RAW = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" * 5000, "[" * 3000 + "]" * 3000,
       '"\\ud800"', "00", "1.", "tru"]


def _places(tree: Any, path: tuple = ()) -> list[tuple]:
    """Every path to a value in ``tree`` (keys and list indices), the root too."""
    places = [path]
    if isinstance(tree, dict):
        for key, value in tree.items():
            places += _places(value, (*path, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            places += _places(value, (*path, index))
    return places


def _at(tree: Any, path: tuple) -> Any:
    for step in path:
        tree = tree[step]
    return tree


def mutate_tree(rng: random.Random, tree: dict[str, Any]) -> Any:
    """``tree`` with one change at a random place: a hostile value, a key removed, an
    item repeated many times, a value wrapped in a list."""
    path = rng.choice(_places(tree)[1:])
    parent, last = _at(tree, path[:-1]), path[-1]
    operation = rng.randrange(5)
    if operation == 0 and isinstance(parent, dict):
        del parent[last]
    elif operation == 1 and isinstance(parent, list):
        parent.extend([copy.deepcopy(parent[last])] * rng.choice([1, 20, MAX_BENCH_ROWS]))
    elif operation == 2:
        parent[last] = [parent[last]]
    else:
        parent[last] = copy.deepcopy(rng.choice(HOSTILE))
    return tree


def mutate_text(rng: random.Random, text: str) -> bytes:
    """``text`` with raw damage: a number replaced by a token JSON's grammar or numbacnn
    refuses, cut short, or a byte flipped."""
    operation = rng.randrange(3)
    if operation == 0:
        numbers = [i for i, c in enumerate(text) if c.isdigit() and text[i - 1] == " "]
        if numbers:
            at = rng.choice(numbers)
            end = at
            while end < len(text) and (text[end].isdigit() or text[end] in ".e-"):
                end += 1
            return (text[:at] + rng.choice(RAW) + text[end:]).encode()
    data = bytearray(text.encode())
    if operation == 1:
        return bytes(data[:rng.randrange(len(data))])
    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


@pytest.mark.parametrize("seed", range(6))
def test_mutated_bench_results(tmp_path: Path, seed: int) -> None:
    seed += BASE_SEED
    rng = random.Random(seed)
    source, out = tmp_path / "b.json", tmp_path / "b.png"
    for case in range(40 * ROUNDS):
        tree = bench_result(rng)
        for _ in range(rng.choice([1, 1, 2, 3])):
            tree = mutate_tree(rng, tree)
        text = json.dumps(tree, indent=rng.choice([None, 2]))
        data = mutate_text(rng, text) if rng.random() < 0.3 else text.encode()
        source.write_bytes(data)
        size = ["--size", "400x300"] if rng.random() < 0.8 else []  # small: fast to draw
        result = run("plot", "bench", source, "-o", out, *size)
        clean_exit(result, f"seed {seed} case {case}: {data[:300]!r}")
        if result.exit_code == 2:
            assert not out.exists(), f"seed {seed} case {case}"
        out.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- datasets

DIMS = [0, 1, 2, 3, 8]
LABELS = [-1, 0, 1, 3, MAX_CLASSES - 1, MAX_CLASSES, 10**7, 2**31, 2**40, 2**63 - 1]
NAMES = [None, ["a", "b", "c", "d"], ["cat\x1b", "\x00", "\u202e", "x" * 500],
         [str(i) for i in range(MAX_CLASSES + 1)], [], [1, 2], ["only one"]]


def random_images(rng: random.Random, n: int, like: np.ndarray | None = None) -> np.ndarray:
    """Zeros of a random shape and dtype; mostly the image shape of ``like`` (the other
    split's), so that cases get past the check that both splits agree."""
    shape = (n, *(rng.choice(DIMS) for _ in range(rng.choice([1, 2, 2, 3, 3, 3, 4]))))
    if like is not None and rng.random() < 0.8:
        shape = (n, *like.shape[1:])
    dtype = rng.choice([np.uint8] * 4 + [np.int8, np.float32, np.uint16, np.bool_])
    return np.zeros(shape, dtype)


def random_labels(rng: random.Random, n: int) -> np.ndarray:
    values = [rng.choice(LABELS) if rng.random() < 0.2 else rng.randrange(4)
              for _ in range(n)]
    dtype = rng.choice([np.int64] * 4 + [np.uint64, np.int8, np.float64, np.uint8])
    labels = np.array([v % 2**64 if dtype == np.uint64 else v for v in values], object)
    try:
        with np.errstate(all="ignore"):
            array = labels.astype(dtype)
    except OverflowError:
        array = np.zeros(n, np.int64)
    return array.reshape(-1, 1) if rng.random() < 0.1 else array


def random_npz(rng: random.Random, path: Path) -> None:
    n, m = rng.choice([0, 1, 4, 6]), rng.choice([0, 1, 4])
    x_train = random_images(rng, n)
    arrays = {"x_train": x_train, "y_train": random_labels(rng, n),
              "x_test": random_images(rng, m, like=x_train), "y_test": random_labels(rng, m)}
    if rng.random() < 0.1:
        del arrays[rng.choice(list(arrays))]
    names = rng.choice(NAMES)
    if names is not None:
        arrays["class_names"] = np.array(names)
    np.savez(path, **arrays)


def random_idx(rng: random.Random, directory: Path) -> None:
    height, width = rng.choice(DIMS), rng.choice(DIMS)  # both splits' (mostly)
    for prefix in ("train", "t10k"):
        n = rng.choice([1, 4, 5])
        if rng.random() < 0.2:
            height, width = rng.choice(DIMS), rng.choice(DIMS)
        for kind, shape, values in (("images", (n, height, width), None),
                                    ("labels", (n,), random_labels(rng, n).reshape(-1))):
            dims = list(shape)
            if rng.random() < 0.05:  # one damage in a file at a time, mostly none
                dims = [rng.choice([0, 1, 2**31, 2**32 - 1]) for _ in range(rng.randrange(6))]
            code = 0x08 if rng.random() < 0.95 else rng.choice([0x09, 0x0D, 0xFF])
            with np.errstate(invalid="ignore"):  # float labels of NaN: bytes all the same
                body = (np.zeros(int(np.prod(shape)), np.uint8) if values is None
                        else values.astype(np.uint8, copy=False)).tobytes()
            if rng.random() < 0.05:
                body = body[:rng.randrange(len(body) + 1)] + b"\0" * rng.randrange(3)
            raw = bytes([0, 0, code, len(dims)]) + b"".join(
                (d % 2**32).to_bytes(4, "big") for d in dims) + body
            name = directory / f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
            if rng.random() < 0.2:
                name.with_name(name.name + ".gz").write_bytes(gzip.compress(raw))
            else:
                name.write_bytes(raw)


def random_h5(rng: random.Random, path: Path) -> None:
    with h5py.File(path, "w", libver="latest") as f:  # attributes over 64 KiB too
        f.attrs["format"] = "numbacnn-dataset"
        f.attrs["format_version"] = np.int64(1)
        f.attrs["name"] = rng.choice(["set", "a\x1bb", "x" * 300])
        names = rng.choice([n for n in NAMES if n is not None and all(
            isinstance(s, str) and "\x00" not in s for s in n)] + [None])
        if names is not None:
            f.attrs.create("class_names", np.array(names, dtype=object),
                           dtype=h5py.string_dtype())
        images = None
        for split in ("train", "test"):
            n = rng.choice([0, 1, 4])
            images = random_images(rng, n, like=images)
            f.create_dataset(f"{split}/images", data=images.astype(np.uint8))
            f.create_dataset(f"{split}/labels", data=random_labels(rng, n).reshape(-1))


@pytest.mark.parametrize("kind", ["npz", "idx", "h5"])
@pytest.mark.parametrize("seed", range(2))
def test_mutated_dataset_files(tmp_path: Path, kind: str, seed: int) -> None:
    seed += BASE_SEED
    rng = random.Random(f"{kind} {seed}")
    for case in range(50 * ROUNDS):
        directory = tmp_path / f"case{case}"
        directory.mkdir()
        if kind == "npz":
            source = directory / "data.npz"
            random_npz(rng, source)
        elif kind == "idx":
            source = directory
            random_idx(rng, source)
        else:
            source = directory / "data.h5"
            random_h5(rng, source)
        result = run("data", "info", source)
        clean_exit(result, f"{kind} seed {seed} case {case}")
        if result.exit_code == 0:  # what was accepted is a dataset numbacnn can train on
            ds = load_dataset(source)
            assert min(ds.input_shape) >= 1 and ds.num_classes <= MAX_CLASSES, (
                f"{kind} seed {seed} case {case}: {ds.input_shape}, {ds.num_classes} classes")
