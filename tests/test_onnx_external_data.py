"""``numbacnn import`` of ONNX files whose weights live in an external data file, as
PyTorch's exporter writes them (``model.onnx`` + ``model.onnx.data``).

A torchvision-style network exported by each of torch's exporters (the default
torch.export-based one and the TorchScript one, where torch still has it) imports and
gives torch's probabilities within 1e-4 on 100 images. External data is read only
from a regular file inside the model's own folder, within the file's bounds; every
other location, file kind or byte range is one ``error:`` line naming the initializer,
exit 2, and no file written.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from helpers import assert_ok, assert_one_error, run
from onnx.external_data_helper import convert_model_to_external_data
from onnx_graphs import GraphBuilder, proba_of

# ----------------------------------------------------------------------------- torch


def _torchvision_style(torch: Any) -> Any:
    """Conv/BN/ReLU/MaxPool/Conv/BN/ReLU/AdaptiveAvgPool/Flatten/Dropout/Linear, in eval
    mode with running statistics far from BN's defaults (so folding them matters)."""
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(16, 10))
    for module in model:
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def _export(torch: Any, model: Any, path: Path, exporter: str) -> None:
    """torch.onnx.export with the exporter's own way of a dynamic batch size and its
    default opset (torch 2.13's version converter fails on older opsets)."""
    x = (torch.zeros(1, 3, 16, 16),)
    names: dict[str, Any] = {"input_names": ["x"], "output_names": ["logits"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            batch = torch.export.Dim("N", min=1, max=1024)
            torch.onnx.export(model, x, str(path), dynamo=True,
                              dynamic_shapes=({0: batch},), **names)
            return
        try:
            torch.onnx.export(model, x, str(path), dynamo=False,
                              dynamic_axes={"x": {0: "N"}}, **names)
        except (TypeError, NotImplementedError, RuntimeError) as exc:
            if path.exists():
                raise
            pytest.skip(f"this torch has no TorchScript ONNX exporter ({exc})")


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_torchvision_style_network_exported_by_pytorch(exporter: str, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="needs torch to export a PyTorch network")
    if exporter == "dynamo":
        pytest.importorskip("onnxscript", reason="torch's default ONNX exporter needs onnxscript")
    model = _torchvision_style(torch)
    path = tmp_path / "torch.onnx"
    _export(torch, model, path, exporter)
    out = tmp_path / "torch.h5"
    output = assert_ok(run("import", path, out))
    assert "softmax" in output and f"numbacnn shapes {out}" in output
    assert "16x16x8" in assert_ok(run("shapes", out))
    x = np.random.default_rng(0).integers(0, 256, (100, 3, 16, 16), dtype=np.uint8)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(x.astype(np.float32))), 1).numpy()
    from numbacnn.io.model_file import load_model
    from numbacnn.tools.inference import predict_images

    net, info = load_model(out, "cpu")
    np.testing.assert_allclose(predict_images(net, info, x), expected, rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------- external data


def _graph() -> GraphBuilder:
    g = GraphBuilder(2, 6, 6, opset=17, seed=5)
    g.normalize(mean=[127] * 2, std=[70] * 2).conv(3, 3).op("Relu").op("Flatten")
    g.gemm(4, trans_b=True)
    return g


def _save_external(g: GraphBuilder, folder: Path, location: str = "m.onnx.data") -> Path:
    """The graph as folder/m.onnx with every initializer in ``location``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / location).parent.mkdir(parents=True, exist_ok=True)
    path, model = folder / "m.onnx", g.model()
    convert_model_to_external_data(model, all_tensors_to_one_file=True,
                                   location=location, size_threshold=0)
    onnx.save(model, str(path))
    return path


def _edit(path: Path, **entries: str) -> str:
    """Set the external_data ``entries`` of the conv's weights (the largest external
    tensor) in the .onnx at ``path``; returns its name."""
    model = onnx.load(str(path), load_external_data=False)
    tensor = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    current = {e.key: e.value for e in tensor.external_data} | entries
    del tensor.external_data[:]
    for key, value in current.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    path.write_bytes(model.SerializeToString())
    return tensor.name


def test_external_data_imports_as_embedded(tmp_path: Path) -> None:
    g = _graph()
    embedded = g.save(tmp_path / "embedded.onnx")
    external = _save_external(g, tmp_path / "ext", "weights/m.data")
    assert not embedded.with_suffix(".onnx.data").exists()
    assert_ok(run("import", embedded, tmp_path / "a.h5"))
    assert_ok(run("import", external, tmp_path / "b.h5"))
    np.testing.assert_array_equal(proba_of(tmp_path / "a.h5", g, 20),
                                  proba_of(tmp_path / "b.h5", g, 20))


def test_the_external_data_file_is_never_the_output(tmp_path: Path) -> None:
    path = _save_external(_graph(), tmp_path)
    data = tmp_path / "m.onnx.data"
    before = data.read_bytes()
    assert_one_error(run("import", path, data, "--force"), "holds the graph's weights")
    assert data.read_bytes() == before


def _hostile(case: str, folder: Path) -> dict[str, str]:
    """The external_data entries of ``case``, after making the files it needs."""
    size = (folder / "m.onnx.data").stat().st_size
    if case == "absolute":
        return {"location": str((folder / "m.onnx.data").resolve())}
    if case == "etc":
        return {"location": "/etc/passwd"}
    if case == "parent":
        (folder.parent / "x").write_bytes(b"\0" * size)
        return {"location": "../x"}
    if case == "backslash parent":
        return {"location": "..\\x"}
    if case == "symlink":
        (folder.parent / "outside.data").write_bytes((folder / "m.onnx.data").read_bytes())
        os.symlink(folder.parent / "outside.data", folder / "link.data")
        return {"location": "link.data"}
    if case == "fifo":
        os.mkfifo(folder / "fifo.data")
        return {"location": "fifo.data"}
    if case == "missing":
        return {"location": "gone.data"}
    return {"length past the end": {"length": str(size + 4)},
            "offset negative": {"offset": "-4"},
            "offset huge": {"offset": str(2**62)},
            "offset not a number": {"offset": "99999999999999999999999"},
            "length short": {"offset": "0", "length": "4"},
            "unknown key": {"basepath": "/"}}[case]


@pytest.mark.parametrize("case, fragment", [
    ("absolute", "absolute path"), ("etc", "external file '/etc/passwd', an absolute path"),
    ("parent", "leaves the model's folder"), ("backslash parent", "leaves the model's folder"),
    ("symlink", "leads out of the model's folder"), ("fifo", "not a regular file"),
    ("missing", "does not exist"), ("length past the end", "past its end"),
    ("offset negative", "is not a byte count"), ("offset huge", "past its end"),
    ("offset not a number", "is not a byte count"), ("length short", "dimensions claim"),
    ("unknown key", "unknown external_data key"),
])
def test_hostile_external_data_is_refused(case: str, fragment: str, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    path = _save_external(_graph(), folder)
    if case == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this system")
    name = _edit(path, **_hostile(case, folder))
    out = tmp_path / "m.h5"
    assert_one_error(run("import", path, out), f"initializer '{name}'", fragment)
    assert not [p.name for p in tmp_path.iterdir() if "h5" in p.name]  # nor a temporary file


def test_external_data_total_is_limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from numbacnn.io import onnx_external

    path = _save_external(_graph(), tmp_path)
    monkeypatch.setattr(onnx_external, "MAX_EXTERNAL_BYTES", 100)
    assert_one_error(run("import", path, tmp_path / "m.h5"), "initializer", "in all")
    assert not (tmp_path / "m.h5").exists()
