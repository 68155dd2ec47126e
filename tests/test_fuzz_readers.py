"""Issue 24: readers of user files and the numbers in them, one fixed test per finding.

Bench JSON (``plot bench``), IDX and npz datasets with zero-width images or huge labels,
model files whose normalization or BatchNorm numbers overflow float32, weights that
export into NaN, control characters drawn into pictures, long quotes and unclear
messages. Each ends in exit 0 or one ``error:`` line and exit 2, with no Python
warning on stderr (helpers.run writes warnings there) and nothing written. The
generated variants (hundreds of mutated bench results and dataset files) are in
test_fuzz_files.py.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import assert_ok, assert_one_error, run
from hostile import checkpoint_copy, numbacnn_cli, snapshot, trained_directory

from numbacnn import limits
from numbacnn.errors import ModelFileError, TrainingError, excerpt
from numbacnn.io.model_file import ModelInfo, load_model, save_model
from numbacnn.network import Network
from numbacnn.spec import spec_difference
from numbacnn.tools import plots
from numbacnn.training.trainer import Trainer

BN_SPEC = "input 8x8x1; conv 2 3 pad=1; batchnorm; relu; maxpool 2; fc 4; softmax"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data.npz and sgd.h5 (a one-epoch checkpoint), bn.h5 (an untrained BatchNorm
    model) and bench.json (a valid benchmark result of one network, two layers)."""
    directory = trained_directory(tmp_path_factory)
    net = Network.from_spec(BN_SPEC, device="cpu").initialize(seed=0)
    info = ModelInfo(spec_text=BN_SPEC, input_shape=(1, 8, 8), class_names=list("abcd"),
                     mean=np.array([0.5], np.float32), std=np.array([0.25], np.float32))
    save_model(directory / "bn.h5", net, info)
    (directory / "bench.json").write_text(json.dumps(BENCH))
    return directory


BENCH = {"config": {"device": "cpu"}, "environment": {"cpu": "test"}, "networks": [{
    "spec": "tiny", "batch": 8,
    "layers": [{"index": 1, "layer": "conv 2 3", "forward_ms": 0.5, "backward_ms": 0.7},
               {"index": 2, "layer": "fc 2", "forward_ms": 0.1, "backward_ms": 0.2}],
    "loss": {"forward_ms": 0.01, "backward_ms": 0.02}}]}


def tampered_bench(change) -> dict:
    result = copy.deepcopy(BENCH)
    change(result)
    return result


def _net(r: dict) -> dict:
    return r["networks"][0]


def _row(r: dict) -> dict:
    return r["networks"][0]["layers"][0]


# (what the issue found, the tampered result, a fragment of the one error line)
BENCH_CASES = [
    ("networks a number", lambda r: r.update(networks=5), "no list of networks"),
    ("layers a string", lambda r: _net(r).update(layers="conv"), "layers is a string"),
    ("layers an int", lambda r: _net(r).update(layers=3), "layers is an integer"),
    ("row without index", lambda r: _row(r).pop("index"), "lacks 'index'"),
    ("row without forward_ms", lambda r: _row(r).pop("forward_ms"), "lacks 'forward_ms'"),
    ("row without layer", lambda r: _row(r).pop("layer"), "lacks 'layer'"),
    ("index a string", lambda r: _row(r).update(index="a"), "index is a string"),
    ("forward_ms a string", lambda r: _row(r).update(forward_ms="1"), "is a string"),
    ("forward_ms null", lambda r: _row(r).update(forward_ms=None), "forward_ms is null"),
    ("forward_ms 10**400", lambda r: _row(r).update(forward_ms=10**400), "expected a number"),
    ("forward_ms a list", lambda r: _row(r).update(forward_ms=[1]), "forward_ms is a list"),
    ("forward_ms < 0", lambda r: _row(r).update(forward_ms=-1), "expected a number in"),
    ("loss missing", lambda r: _net(r).pop("loss"), "lacks 'loss'"),
    ("loss null", lambda r: _net(r).update(loss=None), "loss is null"),
    ("loss empty", lambda r: _net(r).update(loss={}), "loss lacks"),
    ("torch rows without times", lambda r: _net(r).update(torch={
        "layers": [{"index": 1, "layer": "x"}, {"index": 2, "layer": "y"}],
        "loss": {"forward_ms": 1, "backward_ms": 1}}), "torch.layers["),
    ("environment a list", lambda r: r.update(environment=[1]), "environment is a list"),
    ("config a string", lambda r: r.update(config="cpu"), "config is a string"),
    ("400 networks", lambda r: r.update(networks=r["networks"] * 400), "at most 16"),
    ("too many rows", lambda r: _net(r).update(layers=_net(r)["layers"] * 200), "at most"),
]


@pytest.mark.parametrize(("change", "says"), [c[1:] for c in BENCH_CASES],
                         ids=[c[0] for c in BENCH_CASES])
def test_bench_results_are_checked_before_they_are_drawn(work: Path, tmp_path: Path,
                                                        change, says: str) -> None:
    source = tmp_path / "b.json"
    source.write_text(json.dumps(tampered_bench(change)))
    before = snapshot(tmp_path)
    line = assert_one_error(run("plot", "bench", source, "-o", tmp_path / "b.png"), says)
    assert len(line) < 400, line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("text", "says"), [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (json.dumps(BENCH).replace("0.5", "Infinity"), "Infinity is not a number"),
    (json.dumps(BENCH).replace("0.5", "NaN"), "NaN is not a number"),
    (json.dumps(BENCH).replace("0.5", "1e400"), "1e400 is beyond"),
    ("{" + " " * (limits.MAX_BENCH_RESULT_BYTES + 1) + "}", "larger than 4.0 MiB"),
    ("\xff\xfe", "not a numbacnn benchmark result"),
], ids=["deep", "Infinity", "NaN", "1e400", "huge", "not UTF-8"])
def test_bench_json_text_that_is_no_result(tmp_path: Path, text: str, says: str) -> None:
    source = tmp_path / "b.json"
    source.write_bytes(text.encode("latin-1") if text == "\xff\xfe" else text.encode())
    assert_one_error(run("plot", "bench", source, "-o", tmp_path / "b.png"), says)


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_bench_reads_no_fifo_or_device(tmp_path: Path, kind: str) -> None:
    source = tmp_path / "b.json"
    if kind == "fifo":
        os.mkfifo(source)
    started = time.monotonic()
    done = numbacnn_cli("plot", "bench", str(source) if kind == "fifo" else kind,
                        "-o", str(tmp_path / "b.png"))
    assert time.monotonic() - started < 60
    assert done.returncode == 2 and "not a regular file" in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr


def test_control_characters_are_drawn_without_warnings(tmp_path: Path) -> None:
    result = tampered_bench(lambda r: _row(r).update(layer="conv\x1b\x07 2 3"))
    source = tmp_path / "b.json"
    source.write_text(json.dumps(result))
    assert_ok(run("plot", "bench", source, "-o", tmp_path / "b.png"))
    figure = plots.confusion_figure(np.eye(2, dtype=int), ["cat\x1b", "dog\x00\x07"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib: "Glyph 27 missing from font(s)"
        plots.save_figure(figure, tmp_path / "c.png")


# ----------------------------------------------------------------------------- datasets


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def idx_directory(directory: Path, images: tuple[int, ...]) -> Path:
    directory.mkdir()
    for prefix in ("train", "t10k"):
        write_idx(directory / f"{prefix}-images-idx3-ubyte", np.zeros(images, np.uint8))
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", np.zeros(images[0], np.uint8))
    return directory


def images_npz(path: Path, images: tuple[int, ...], labels: np.ndarray) -> Path:
    np.savez(path, x_train=np.zeros(images, np.uint8), y_train=labels,
             x_test=np.zeros(images, np.uint8), y_test=np.zeros(len(labels), np.int64))
    return path


@pytest.mark.parametrize("command", ["import-idx", "info", "make-mini"])
def test_zero_width_idx_images_are_refused(tmp_path: Path, command: str) -> None:
    source = idx_directory(tmp_path / "idx", (20, 28, 0))
    out = [tmp_path / "o.h5"] if command != "info" else []
    assert_one_error(run("data", command, source, *out), "0x28x1", "at least 1")
    assert not (tmp_path / "o.h5").exists()


@pytest.mark.parametrize("command", ["import-npz", "info", "make-mini"])
def test_zero_width_npz_images_are_refused(tmp_path: Path, command: str) -> None:
    source = images_npz(tmp_path / "z.npz", (5, 28, 0), np.zeros(5, np.int64))
    out = [tmp_path / "o.h5"] if command != "info" else []
    assert_one_error(run("data", command, source, *out), "0x28x1", "at least 1")


@pytest.mark.parametrize("label", [2**40, 2**64 - 1, 10**7, limits.MAX_CLASSES])
@pytest.mark.parametrize("command", ["import-npz", "info", "evaluate"])
def test_huge_labels_make_no_class_names(work: Path, tmp_path: Path, label: int,
                                         command: str) -> None:
    dtype = np.uint64 if label >= 2**63 else np.int64
    source = images_npz(tmp_path / "big.npz", (5, 8, 8),
                        np.array([0, 1, 2, 3, label], dtype))
    args = {"import-npz": ["data", "import-npz", source, tmp_path / "o.h5"],
            "info": ["data", "info", source],
            "evaluate": ["evaluate", work / "sgd.h5", "--data", source]}[command]
    assert_one_error(run(*args), f"label {label}", f"more than the {limits.MAX_CLASSES}")


def test_an_idx_header_of_255_dims_is_quoted_briefly(tmp_path: Path) -> None:
    directory = idx_directory(tmp_path / "idx", (4, 8, 8))
    header = bytes([0, 0, 0x08, 255]) + (2**32 - 1).to_bytes(4, "big") * 255
    (directory / "train-images-idx3-ubyte").write_bytes(header)
    line = assert_one_error(run("data", "info", directory), "255 dims")
    quoted = line[line.index("dims (") + 5:line.index(" dims)") + 6]
    assert len(quoted) <= 80, quoted  # was all 255 of them, 881 characters in all
    assert len(line.replace(str(directory), "")) < 300, line


def test_excerpts_elide_the_middle() -> None:
    shown = excerpt("a" * 50 + "MIDDLE" + "b" * 50 + "END")
    assert len(shown) <= 62 and shown.startswith("'aaa") and shown.endswith("bEND'")
    assert "MIDDLE" not in shown and "…" in shown


# ----------------------------------------------------------------------------- numbers


def tampered_model(work: Path, tmp_path: Path, name: str, change) -> Path:
    path = tmp_path / name
    shutil.copy(work / name, path)
    with h5py.File(path, "r+") as f:
        change(f)
    return path


@pytest.mark.parametrize(("key", "value", "says"), [
    ("normalization_std", 1e-45, "std must be in [1e-10, 1000]"),
    ("normalization_std", 0.0, "std must be"),
    ("normalization_mean", 3e38, "mean must be in [-1000, 1000]"),
])
@pytest.mark.parametrize("command", ["evaluate", "export", "features"])
def test_normalization_that_overflows_float32_is_refused_on_load(
        work: Path, tmp_path: Path, key: str, value: float, says: str, command: str) -> None:
    def change(f):
        f.attrs[key] = np.array([value], np.float32)

    model = tampered_model(work, tmp_path, "bn.h5", change)
    args = {"evaluate": ["evaluate", model, "--data", work / "data.npz"],
            "export": ["export", model, tmp_path / "m.onnx"],
            "features": ["plot", "features", model, "-o", tmp_path / "f.png",
                         "--data", work / "data.npz"]}[command]
    assert_one_error(run(*args), says)
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "f.png").exists()


@pytest.mark.parametrize("text", ["eps=1e-300", "eps=1e-45", "eps=1e300",
                                  "momentum=0.9999999999"])
def test_batchnorm_numbers_are_checked_in_float32(tmp_path: Path, text: str) -> None:
    spec = BN_SPEC.replace("batchnorm", f"batchnorm {text}")
    key = text.split("=")[0]
    assert_one_error(run("shapes", spec), f"{key} must be", "in float32")
    stored = float(text.split("=")[1])

    def change(f):
        for name in f["layers"]:
            if f["layers"][name].attrs["kind"] == "batchnorm":
                f["layers"][name].attrs[key] = stored

    work = tmp_path / "work"
    work.mkdir()
    net = Network.from_spec(BN_SPEC, device="cpu").initialize(seed=0)
    save_model(work / "bn.h5", net, ModelInfo(spec_text=BN_SPEC, input_shape=(1, 8, 8),
               class_names=list("abcd"), mean=np.array([0.5], np.float32),
               std=np.array([0.25], np.float32)))
    with pytest.raises(ModelFileError, match=f"{key} must be"):
        load_model(tampered_model(work, tmp_path, "bn.h5", change), device="cpu")


def test_a_negative_running_variance_is_refused_on_load(work: Path, tmp_path: Path) -> None:
    def change(f):
        for name in f["layers"]:
            state = f["layers"][name].get("state")
            if state is not None:
                var = state["var"][()]
                var[0] = -1.0
                del state["var"]
                state.create_dataset("var", data=var)

    model = tampered_model(work, tmp_path, "bn.h5", change)
    assert_one_error(run("evaluate", model, "--data", work / "data.npz"),
                     "negative values", "variance")


@pytest.mark.parametrize("value", [3e38, -1e9, np.inf])
def test_export_refuses_weights_that_overflow(work: Path, tmp_path: Path, value: float) -> None:
    pytest.importorskip("onnx")
    net, info = load_model(work / "bn.h5", device="cpu")
    net.layers[0].params["W"][0, 0, 0, 0] = value
    from numbacnn.io.onnx_export import ExportError, export_onnx

    with pytest.raises(ExportError, match=r"beyond ±1e\+08"):
        export_onnx(net, info, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("kind", ["features", "activations", "filters"])
def test_pictures_of_weights_that_overflow_are_one_error(work: Path, tmp_path: Path,
                                                         kind: str) -> None:
    def change(f):
        for name in f["layers"]:
            if "W" in f["layers"][name]:
                weights = f["layers"][name]["W"][()]
                weights.reshape(-1)[::2], weights.reshape(-1)[1::2] = 3e38, -3e38
                del f["layers"][name]["W"]
                f["layers"][name].create_dataset("W", data=weights)

    model = tampered_model(work, tmp_path, "bn.h5", change)
    result = run("plot", kind, model, "-o", tmp_path / "p.png", "--data", work / "data.npz")
    if kind == "filters":  # the weights themselves are drawn, scaled: nothing overflows
        assert_ok(result)
    else:  # matplotlib warned of overflows, and the histogram raised ValueError
        assert_one_error(result, "NaN or infinite", "overflow float32")


# ----------------------------------------------------------------------------- messages


def test_features_without_training_info_names_the_data_option(work: Path,
                                                               tmp_path: Path) -> None:
    model = tampered_model(work, tmp_path, "sgd.h5", lambda f: f.__delitem__("training"))
    assert_one_error(run("plot", "features", model, "-o", tmp_path / "f.png"), "--data")
    assert_one_error(run("evaluate", model), "--data")


def test_resume_compares_the_parsed_network(work: Path, tmp_path: Path) -> None:
    copy_ = checkpoint_copy(work, tmp_path)
    with h5py.File(copy_, "r") as f:
        stored = json.loads(f["training"].attrs["settings"])["spec"]
    rewritten = "\n".join(line.strip() for line in stored.split(";")) + "\n# same net\n"
    assert spec_difference(rewritten, stored) is None
    Trainer.from_checkpoint(copy_, epochs=2, expect={"spec": rewritten}, device="cpu")
    other = rewritten.replace("maxpool 2", "maxpool 4")
    with pytest.raises(TrainingError, match=r"layer \d+ is `maxpool 4 stride=4`, not "
                                            r"`maxpool 2 stride=2`"):
        Trainer.from_checkpoint(copy_, epochs=2, expect={"spec": other}, device="cpu")
