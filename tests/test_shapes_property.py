"""Property: the shape calculator agrees with the arrays the layers' forward passes make.

Random small geometries (H, W ≤ 12, C ≤ 4, batch 1–2) of conv, pooling, LRN, maxout
and fc layers, with strides and pads that fit, are written as spec text, built with
``Network.from_spec(...).initialize(0)`` and run forward on the CPU; every layer's
output array must have the shape its table row announces. Shapes are runtime values
to the kernels, so every example reuses the same few compiled specializations.
"""

from __future__ import annotations

import math
import re

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numbacnn.network import Network
from numbacnn.shapes import format_table, shape_table


def _fitting_strides(F: int, P: int, sizes: tuple[int, int]) -> list[int]:
    """Strides 1–3 that make (W − F + 2P)/S + 1 whole in both directions."""
    return [S for S in (1, 2, 3) if all((n - F + 2 * P) % S == 0 for n in sizes)]


@st.composite
def networks(draw: st.DrawFn) -> tuple[str, int, list[tuple[int, int, int]], list[int]]:
    """Spec text of a random small network ending in fc, a batch size, and every
    layer's output (W, H, D) and parameter count worked out here by hand with the
    lecture's formulas: (F·F·D1)·K + K for a conv, inputs·units + units for an fc, 2·D
    for a batchnorm (γ, β)."""
    C, H, W = draw(st.integers(1, 4)), draw(st.integers(1, 12)), draw(st.integers(1, 12))
    lines, expected, params = [f"input {W}x{H}x{C}"], [], []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv", "maxpool", "avgpool", "lrn", "batchnorm",
                                     "maxout"]))
        if kind == "conv":
            P = draw(st.integers(0, 2))
            F = draw(st.integers(1, min(H + 2 * P, W + 2 * P, 5)))
            S = draw(st.sampled_from(_fitting_strides(F, P, (H, W))))
            K = draw(st.integers(1, 4))
            lines.append(f"conv {K} {F} stride={S} pad={P}")
            params.append((F * F * C) * K + K)
            C = K
            H, W = (H - F + 2 * P) // S + 1, (W - F + 2 * P) // S + 1
        elif kind in ("maxpool", "avgpool"):
            F = draw(st.integers(1, min(H, W, 3)))
            S = draw(st.sampled_from(_fitting_strides(F, 0, (H, W))))
            lines.append(f"{kind} {F} stride={S}")
            H, W = (H - F) // S + 1, (W - F) // S + 1
        elif kind == "lrn":
            lines.append(f"lrn size={draw(st.integers(1, 5))}")
        elif kind == "batchnorm":
            lines.append("batchnorm")
            params.append(2 * C)  # γ and β per channel
        else:
            pieces = draw(st.sampled_from([p for p in (1, 2, 3, 4) if C % p == 0]))
            lines.append(f"maxout {pieces}")
            C //= pieces
        if kind not in ("conv", "batchnorm"):
            params.append(0)
        expected.append((W, H, C))
    units = draw(st.integers(1, 5))
    lines.append(f"fc {units}")
    params.append(W * H * C * units + units)
    expected.append((1, 1, units))
    return "\n".join(lines), draw(st.integers(1, 2)), expected, params


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_table_shapes_equal_forward_shapes(case: tuple[str, int, list, list]) -> None:
    text, batch, expected, params = case
    report = shape_table(text, batch=batch)
    assert [row.output for row in report.rows] == expected, text
    assert [row.params for row in report.rows] == params, text
    net = Network.from_spec(text).initialize(0)
    C, H, W = report.input_shape
    x = np.random.default_rng(0).standard_normal((batch, C, H, W)).astype(np.float32)
    for layer, row in zip(net.layers, report.rows, strict=True):
        x = layer.forward(x, training=False)
        W_out, H_out, D_out = row.output
        assert tuple(x.shape) == (batch, D_out, H_out, W_out), (text, row)
        assert row.activation_bytes == batch * W_out * H_out * D_out * 4  # float32
        assert x.nbytes == row.activation_bytes
        assert layer.num_params() == sum(np.prod(a.shape) for a in layer.params.values())
        assert np.isfinite(np.asarray(x)).all()


@settings(max_examples=60, deadline=None)
@given(networks(), st.integers(60, 130), st.sampled_from(["auto", "compact"]))
def test_the_text_fits_and_the_formulas_add_up(case: tuple[str, int, list, list], width: int,
                                               layout: str) -> None:
    """No kernel runs: every line of the table is at most ``width`` characters, and each
    parameter formula, worked out, is the row's parameter count."""
    text, batch, _, params = case
    report = shape_table(text, batch=batch)
    lines = format_table(report, width=width, layout=layout).splitlines()
    assert max(len(line) for line in lines) <= width, (text, width)
    for row, count in zip(report.rows, params, strict=True):
        if count == 0:
            assert row.params_formula == "", (text, row)
            continue
        sum_text, shown = row.params_formula.split(" = ")
        worked_out = sum(math.prod(int(n) for n in re.findall(r"[0-9]+", term))
                         for term in sum_text.split(" + "))
        assert worked_out == count == int(shown.replace(",", "")), (text, row)
