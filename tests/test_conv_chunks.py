"""The CPU convolution a chunk of images at a time (``cpu.conv_forward``/``conv_backward``)
against the float64 reference, for chunks of one image up to the whole batch, parts
with no chunk, both thread counts, the fused ReLU, and without a CBLAS function (the
whole-batch fallback). Runs repeat bit for bit."""

from __future__ import annotations

import numba
import numeric_checks as checks
import numpy as np
import pytest
import reference as ref

from numbacnn.backends import cblas, cpu, cpu_conv
from numbacnn.layers import Conv2D

GEOMETRIES = {  # name: (filters, size, stride, pad, input N×C×H×W[, other options])
    "f3-s1-p1": (5, 3, 1, 1, (7, 3, 9, 8)),  # the drivers' constant-F, S, P path
    "f5-s1-p2": (4, 5, 1, 2, (5, 2, 11, 7)),
    "f3-s2": (6, 3, 2, 0, (6, 4, 13, 11)),
    "f4-s4": (3, 4, 4, 0, (3, 2, 12, 8)),
    # one GEMM per group, the constant path too; dilation in the stride-1 shifted copy;
    # every option at once; windows past the end (ceil)
    "f3-s1-p1-groups": (6, 3, 1, 1, (5, 4, 9, 8), {"groups": 2}),
    "f3-d2-same": (4, 3, 1, 2, (3, 2, 8, 9), {"dilation": 2}),
    "rect-dilated-groups-floor": (4, (3, 2), (2, 1), (1, 0, 2, 1), (4, 6, 9, 7),
                                  {"groups": 2, "dilation": (2, 1), "round": "floor"}),
    "rect-ceil": (3, (3, 5), (2, 3), (0, 1), (3, 3, 8, 10), {"round": "ceil"}),
}


def run(layer: Conv2D, x: np.ndarray, dy: np.ndarray, need_dx: bool
        ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    y = layer.forward(x).copy()
    dx = layer.backward(dy, need_dx=need_dx)
    return y, None if dx is None else dx.copy(), layer.grads["W"].copy(), layer.grads["b"].copy()


def make(name: str, rng: np.random.Generator, relu: bool):
    K, F, S, P, shape, *options = GEOMETRIES[name]
    layer = Conv2D(K, F, stride=S, pad=P, **(options[0] if options else {}))
    layer.build(shape[1:])
    layer.device = "cpu"
    layer.init_params(rng, "he")
    layer.params["b"] = rng.standard_normal(K).astype(np.float32)
    layer.fused_relu = relu
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal((shape[0], *layer.output_shape)).astype(np.float32)
    return layer, x, dy


def check_reference(layer: Conv2D, x: np.ndarray, dy: np.ndarray, got: tuple, what: str) -> None:
    y, dx, dw, db = got
    W, b = layer.params["W"], layer.params["b"]
    geometry = (layer.stride, layer.pad, layer.groups, layer.dilation, layer.round)
    expected_y = ref.conv2d_forward(x, W, b, *geometry)
    g = dy
    if layer.fused_relu:
        expected_y = np.maximum(expected_y, 0.0)
        g = np.where(y > 0, dy, 0.0).astype(np.float32)  # the mask the layer saw
    checks.assert_close(y, expected_y, what=f"{what}: y")
    expected_dx, expected_dw, expected_db = ref.conv2d_backward(x, W, g, *geometry)
    if dx is not None:
        checks.assert_close(dx, expected_dx, what=f"{what}: dx")
    checks.assert_close(dw, expected_dw, what=f"{what}: dW")
    checks.assert_close(db, expected_db, what=f"{what}: db")


@pytest.fixture
def threads():
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


@pytest.mark.skipif(cblas.sgemm() is None, reason="no CBLAS function in numpy's BLAS")
@pytest.mark.parametrize("name", GEOMETRIES)
@pytest.mark.parametrize("images", [1, 3, 1000])
@pytest.mark.parametrize("nthreads", [1, 2])
def test_chunks_match_reference(name: str, images: int, nthreads: int, threads,
                                monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator):
    """Chunks of 1 and 3 images and the whole batch (a part may get no chunk); with and
    without the fused ReLU and dx."""
    numba.set_num_threads(min(nthreads, numba.config.NUMBA_NUM_THREADS))
    for relu, need_dx in ((False, True), (True, True), (True, False)):
        layer, x, dy = make(name, rng, relu)
        K, C = layer.filters, x.shape[1]
        OH, OW = layer.output_shape[1:]
        monkeypatch.setattr(cpu_conv, "CHUNK_BYTES",
                            images * 4 * (C * layer.taps() + K) * OH * OW)
        assert "chunk_cols" in cpu.conv_workspace(x.shape[0], C, K, layer.size, OH, OW,
                                                  layer.groups)
        got = run(layer, x, dy, need_dx)
        assert (got[1] is None) == (not need_dx)
        check_reference(layer, x, dy, got, f"{name} chunk {images} relu={relu}")


@pytest.mark.skipif(cblas.sgemm() is None, reason="no CBLAS function in numpy's BLAS")
def test_runs_repeat_bit_for_bit(monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator):
    """Two runs of the same batch give the same bits (the parts' gradient sums are added
    in order, whichever thread finishes first)."""
    monkeypatch.setattr(cpu_conv, "CHUNK_BYTES", 1)  # one image per chunk: the most partial sums
    layer, x, dy = make("f3-s1-p1", rng, relu=True)
    first = run(layer, x, dy, True)
    for _ in range(3):
        again = run(layer, x, dy, True)
        for a, b in zip(first, again, strict=True):
            assert np.array_equal(a, b)


def test_large_weight_matrices_keep_the_whole_batch_gemm():
    """AlexNet's 13×13 layers (3.5 MB of weights) run as one GEMM, fmnist's in chunks."""
    assert not cpu.conv_in_chunks(256, 384, 3)
    assert cpu.conv_in_chunks(32, 64, 3) == (cblas.sgemm() is not None)
    # in G groups a filter has C/G·FH·FW weights
    assert not cpu.conv_in_chunks(256, 256, 3)
    assert cpu.conv_in_chunks(256, 256, 3, groups=4) == (cblas.sgemm() is not None)
    assert not cpu.conv_in_chunks(256, 256, (3, 7), groups=4)


@pytest.mark.parametrize("name", GEOMETRIES)
def test_without_cblas_the_whole_batch_path_matches(name: str, monkeypatch: pytest.MonkeyPatch,
                                                    rng: np.random.Generator):
    """No CBLAS function: im2col of the whole batch and ``gemm``, the same results."""
    monkeypatch.setattr(cblas, "sgemm", lambda: None)
    layer, x, dy = make(name, rng, relu=True)
    assert "cols" in cpu.conv_workspace(x.shape[0], x.shape[1], layer.filters, layer.size,
                                        *layer.output_shape[1:], layer.groups)
    check_reference(layer, x, dy, run(layer, x, dy, True), f"{name} whole batch")
