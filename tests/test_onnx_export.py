"""``numbacnn export`` to ONNX, checked by onnx.checker and onnxruntime.

For every classifier preset in data/specs/, a spec that uses every layer kind, and each
layer kind alone (tests/layer_cases.py),
a freshly initialized model (its last layer scaled so that the probabilities are far
from uniform, so a wrong graph shows) is saved with io/model_file, exported through the
command line, and onnxruntime's probabilities on raw pixels are compared with
numbacnn's own predict path (``predict_images``: the model's normalization, then
``Network.predict_proba``) within 1e-4. AlexNet (227×227×3, 62 M parameters) uses 8
images instead of 200 to keep the suite fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_error, run
from layer_cases import LAYER_CASES, POOL_OPTION_CASES

from numbacnn.device import to_host
from numbacnn.io.dataset_files import load_dataset
from numbacnn.io.datasets import normalization
from numbacnn.io.model_file import ModelInfo, load_model, save_model
from numbacnn.io.onnx_export import ExportError, build_onnx_model, export_onnx
from numbacnn.layers import BatchNorm, Dense, Layer
from numbacnn.layers.syntax import LayerSyntax
from numbacnn.network import Network
from numbacnn.tools.inference import predict_images

onnx = pytest.importorskip("onnx", reason="needs onnx: pip install -e '.[test]'")
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install -e '.[test]'")

# The layer kinds together (each alone: tests/layer_cases.py's networks): conv with a
# fused relu, a relu that is not fused, lrn with an odd size (ONNX LRN) and an even one
# (written out), both poolings, every activation, maxout, flatten, fc, dropout and the
# closing softmax.
EVERY_KIND = ("input 12x12x3; conv 8 3 pad=1 activation=relu; lrn size=3 alpha=0.5 beta=0.75 k=1;"
              " maxpool 2; relu; conv 8 3 pad=1; batchnorm momentum=0.5; leaky 0.1;"
              " lrn size=4 alpha=0.5 beta=0.6 k=1.5;"
              " avgpool 2; conv 6 1 activation=elu; tanh; maxout 2; sigmoid; gelu; flatten;"
              " fc 16; batchnorm; relu; dropout 0.5; fc 8 activation=tanh; fc 5; softmax")
TOLERANCE = 1e-4


def images_for(net: Network, count: int, rng: np.random.Generator) -> np.ndarray:
    """Raw uint8 N×C×H×W: Fashion-MNIST test images for 28×28×1 nets, else random."""
    if net.input_shape == (1, 28, 28):
        return load_dataset("fashion-mnist-mini").x_test[:count]
    return rng.integers(0, 256, (count, *net.input_shape), dtype=np.uint8)


def sharpen(net: Network, info: ModelInfo, x: np.ndarray) -> None:
    """Scale the last fc layer so that the logits have a standard deviation of 3: the
    probabilities are then far from uniform and a wrong graph cannot hide in them."""
    last = net.layers[-1]
    assert isinstance(last, Dense)
    logits = to_host(net.forward(info.normalize(x[:16]), training=False))
    factor = np.float32(3.0 / max(float(np.std(logits)), 1e-6))
    for key in ("W", "b"):
        last.params[key][...] = to_host(last.params[key]) * factor


def settle_batchnorm(net: Network, info: ModelInfo, x: np.ndarray,
                     rng: np.random.Generator) -> None:
    """Give each BatchNorm running statistics from training passes and random γ and β, so
    that a graph which mixed them up (or ignored them) would give other probabilities."""
    layers = [layer for layer in net.layers if isinstance(layer, BatchNorm)]
    if not layers:
        return
    for _ in range(3):
        net.forward(info.normalize(x[:16]), training=True)
    for layer in layers:
        C = layer.input_shape[0]
        layer.params["gamma"][...] = rng.uniform(0.5, 2.0, C).astype(np.float32)
        layer.params["beta"][...] = rng.standard_normal(C).astype(np.float32)
        assert np.abs(to_host(layer.state["var"]) - 1.0).max() > 0.01  # moved from the start


def make_model(spec: str, path: Path, count: int, seed: int = 3) -> tuple[np.ndarray, Path]:
    """An initialized, sharpened model of ``spec`` saved at ``path``; returns the images."""
    rng = np.random.default_rng(seed)
    net = Network.from_spec(spec).initialize(seed=seed)
    x = images_for(net, count, rng)
    mean, std = normalization(x)
    info = ModelInfo(spec_text=net.spec_text or "", input_shape=net.input_shape,
                     class_names=[f"class {k}" for k in range(net.num_classes)],
                     mean=mean, std=std)
    settle_batchnorm(net, info, x, rng)
    sharpen(net, info, x)
    save_model(path, net, info)
    return x, path


def onnx_proba(path: Path, x: np.ndarray, batch: int = 256) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    parts = [session.run(["probabilities"], {"pixels": x[i:i + batch].astype(np.float32)})[0]
             for i in range(0, len(x), batch)]
    return np.concatenate(parts)


EXPORTS = {
    "fmnist": ("fmnist", 200, 17),
    "lenet": ("lenet", 200, 17),
    "alexnet": ("alexnet", 8, 17),
    "every-kind": (EVERY_KIND, 200, 17),
    "every-kind-opset18": (EVERY_KIND, 200, 18),  # ReduceMax takes its axes as an input
    # from opset 18 on; then each layer kind alone in a tiny classifier
    **{f"case-{kind}": (case.network_spec(), 200, 17) for kind, case in LAYER_CASES.items()},
    # conv's options beyond its case: ceil rounding (pads reaching past the declared
    # ones), dilation with groups, and the paper's grouped AlexNet
    "conv-ceil": ("input 10x8x3; conv 3 3x5 stride=2x3 pad=0x1 round=ceil; fc 3", 200, 17),
    "conv-dilated-groups": ("input 6x7x3; conv 6 3 pad=same groups=3 dilation=2; relu; fc 3",
                            200, 17),
    "alexnet-groups": ("alexnet-groups", 8, 17),
    **{name: (case.network_spec(), 200, 17) for name, case in POOL_OPTION_CASES.items()},
}


@pytest.mark.parametrize("spec, count, opset", list(EXPORTS.values()), ids=list(EXPORTS))
def test_onnxruntime_matches_predict(spec: str, count: int, opset: int,
                                     tmp_path: Path) -> None:
    x, model = make_model(spec, tmp_path / "model.h5", count)
    out = tmp_path / "model.onnx"
    result = run("export", model, out, "--opset", opset)
    assert result.exit_code == 0, result.output
    assert f"opset {opset}" in result.output
    onnx.checker.check_model(str(out), full_check=True)
    proto = onnx.load(str(out))
    assert proto.opset_import[0].version == opset
    net, info = load_model(model)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["class_names"]) == info.class_names
    assert [n.op_type for n in proto.graph.node[:2]] == ["Mul", "Sub"]  # the normalization
    expected = predict_images(net, info, x, batch_size=4 if spec.startswith("alexnet") else 256)
    got = onnx_proba(out, x, batch=4 if spec.startswith("alexnet") else 256)
    assert got.shape == (count, net.num_classes)
    # far from uniform (sharpened), so agreement means something
    assert expected.max(axis=1).mean() > 2.0 / net.num_classes
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_export_matches_predict_save_proba(tmp_path: Path) -> None:
    """The exported graph equals ``numbacnn predict --save-proba`` on the same images."""
    x, model = make_model("fmnist", tmp_path / "model.h5", 200, seed=5)
    np.save(tmp_path / "images.npy", x)
    assert run("export", model, tmp_path / "m.onnx").exit_code == 0
    result = run("predict", model, tmp_path / "images.npy", "--save-proba",
                 tmp_path / "p.npy", "--device", "cpu")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(onnx_proba(tmp_path / "m.onnx", x), np.load(tmp_path / "p.npy"),
                               rtol=0, atol=TOLERANCE)


def test_dropout_is_gone_and_fused_relu_written_out(tmp_path: Path) -> None:
    _, model = make_model("fmnist", tmp_path / "model.h5", 16)
    net, info = load_model(model)
    ops = [n.op_type for n in build_onnx_model(net, info).graph.node]
    assert "Dropout" not in ops
    assert ops.count("Conv") == 2 and ops.count("Relu") == 3  # 2 fused into convs, 1 after fc
    assert ops[-2:] == ["Softmax", "Identity"]


def test_not_a_classifier_is_refused_and_nothing_written(tmp_path: Path) -> None:
    """lecture-example ends in a 32x32x10 volume: one clear line, no file, an existing
    file left as it was."""
    net = Network.from_spec("lecture-example").initialize(seed=0)
    info = ModelInfo(spec_text="", input_shape=net.input_shape,
                     class_names=[str(k) for k in range(10)],
                     mean=np.zeros(3, np.float32), std=np.ones(3, np.float32))
    save_model(tmp_path / "m.h5", net, info)
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    assert_one_error(run("export", tmp_path / "m.h5", out), "32x32x10", "fc K")
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5", "m.onnx"]


class NoOnnxLayer(Layer):
    """A shape-preserving layer without an ONNX mapping."""

    syntax = LayerSyntax("mystery")  # not registered: only built by hand

    def forward(self, x, training=True):  # noqa: ANN001, ANN201
        return self._check_input(x)


def test_layer_without_hook_gets_one_line_naming_it(tmp_path: Path) -> None:
    net = Network([NoOnnxLayer(), Dense(3)], input_shape=(1, 4, 4)).initialize(seed=0)
    info = ModelInfo(spec_text="", input_shape=(1, 4, 4), class_names=["a", "b", "c"],
                     mean=np.zeros(1, np.float32), std=np.ones(1, np.float32))
    with pytest.raises(ExportError, match=r"layer 1 \(mystery, class NoOnnxLayer\) has no "
                                          r"ONNX mapping") as caught:
        export_onnx(net, info, tmp_path / "x.onnx")
    assert "\n" not in str(caught.value)
    assert not list(tmp_path.iterdir())


def test_bad_input_gets_one_error_line(tmp_path: Path) -> None:
    assert_one_error(run("export", tmp_path / "missing.h5", tmp_path / "x.onnx"),
                     "no such model file")
    _, model = make_model(EVERY_KIND, tmp_path / "model.h5", 4)
    assert_one_error(run("export", model, tmp_path / "x.onnx", "--opset", 13),
                     "Invalid value for '--opset': 13 is not in the range x>=17")
    newest = onnx.defs.onnx_opset_version()
    assert_one_error(run("export", model, tmp_path / "x.onnx", "--opset", newest + 1),
                     f"Invalid value for '--opset': opset {newest + 1}", f"up to {newest}")
    assert_one_error(run("export", model, tmp_path / "nodir" / "x.onnx"), "does not exist")
    assert_one_error(run("export", model, tmp_path), "is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.h5"]


def test_missing_onnx_gets_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, model = make_model(EVERY_KIND, tmp_path / "model.h5", 4)
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    assert_one_error(run("export", model, tmp_path / "x.onnx"), "pip install", "numbacnn[onnx]")
    assert not (tmp_path / "x.onnx").exists()


def test_too_large_for_one_onnx_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numbacnn.io.onnx_export

    _, model = make_model(EVERY_KIND, tmp_path / "model.h5", 4)
    net, _ = load_model(model)
    monkeypatch.setattr(numbacnn.io.onnx_export, "MAX_BYTES", 4 * net.num_params())
    assert_one_error(run("export", model, tmp_path / "x.onnx"), "2 GiB")
    assert not (tmp_path / "x.onnx").exists()


def test_writes_through_either_form_of_the_atomic_writer(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """replace_atomically may hand its callback a temporary path or an open binary file."""
    import numbacnn.io.onnx_export

    def with_open_file(path, write, error, what):  # noqa: ANN001, ANN202
        with open(path, "wb") as fh:
            write(fh)

    _, model = make_model(EVERY_KIND, tmp_path / "model.h5", 4)
    net, info = load_model(model)
    export_onnx(net, info, tmp_path / "by_path.onnx")
    monkeypatch.setattr(numbacnn.io.onnx_export, "replace_atomically", with_open_file)
    export_onnx(net, info, tmp_path / "by_file.onnx")
    assert (tmp_path / "by_file.onnx").read_bytes() == (tmp_path / "by_path.onnx").read_bytes()
