"""numbacnn.geometry: the output-size arithmetic, its rounding modes (exact, floor,
ceil as PyTorch's ceil_mode), dilation, unequal padding and per-axis sizes."""

from __future__ import annotations

import itertools

import pytest

from numbacnn.errors import ShapeError
from numbacnn.geometry import formula, output_hw, output_size, pads4, window_arithmetic


def windows_counted(W: int, F: int, S: int, P1: int, P2: int, D: int, rounding: str) -> int:
    """Windows counted one by one over the padded input: a window k starts at k·S in
    padded coordinates and covers D·(F − 1) + 1 pixels. floor: the windows that fit;
    ceil: one more that runs past the end when they do not tile the padded input
    exactly, then, as PyTorch's ceil_mode, the last window dropped if it starts in the
    right padding (k·S ≥ W + P1)."""
    Fe, padded = D * (F - 1) + 1, W + P1 + P2
    count = sum(1 for k in range(padded + 1) if k * S + Fe <= padded)
    if rounding == "floor":
        return count
    count += (padded - Fe) % S != 0
    return count - ((count - 1) * S >= W + P1)


@pytest.mark.parametrize("rounding", ["floor", "ceil"])
def test_rounding_counts_the_windows(rounding: str) -> None:
    for W, F, S, P1, P2, D in itertools.product(range(1, 12), range(1, 5), range(1, 5),
                                                range(3), range(3), range(1, 3)):
        if D * (F - 1) + 1 > W + P1 + P2:
            continue
        got = output_size(W, F, S, P1, pad_end=P2, dilation=D, rounding=rounding)
        assert got == windows_counted(W, F, S, P1, P2, D, rounding), (W, F, S, P1, P2, D)


def test_exact_is_the_default_and_its_error_names_round_floor() -> None:
    assert output_size(227, 11, 4, 0) == 55
    with pytest.raises(ShapeError) as caught:
        output_size(224, 3, 2, 0, "conv 8 3 stride=2")
    text = str(caught.value)
    assert "(224 − 3 + 2·0)/2 + 1 = 111.50 is not whole" in text
    assert "round=floor gives ⌊(224 − 3 + 2·0)/2⌋ + 1 = 111" in text
    assert output_size(224, 3, 2, 0, rounding="floor") == 111
    assert output_size(224, 3, 2, 0, rounding="ceil") == 112


def test_formulas_show_the_numbers() -> None:
    assert formula(227, 11, 4, 0) == "(227 − 11 + 2·0)/4 + 1 = 55"
    assert formula(224, 3, 2, 0, rounding="floor") == "⌊(224 − 3 + 2·0)/2⌋ + 1 = 111"
    assert formula(224, 3, 2, 0, rounding="ceil") == "⌈(224 − 3 + 2·0)/2⌉ + 1 = 112"
    assert formula(9, 3, 1, 1, pad_end=2, dilation=2) == "(9 − 5 + 1 + 2)/1 + 1 = 8"
    # ceil drops a window that would start in the right padding (PyTorch's rule)
    assert formula(5, 2, 2, 1, rounding="ceil").endswith("− 1 = 3 (the last window would "
                                                         "start in the padding)")


def test_per_axis_sizes_and_padding_sides() -> None:
    assert pads4(1) == (1, 1, 1, 1) and pads4((1, 2)) == (1, 2, 1, 2)
    assert pads4((0, 1, 2, 3)) == (0, 1, 2, 3)
    with pytest.raises(ValueError, match="top,left,bottom,right"):
        pads4((1, 2, 3))
    assert output_hw(10, 13, (3, 5), (1, 2), (1, 2)) == (10, 7)
    assert output_hw(10, 12, 3, 1, (0, 0, 1, 2), dilation=(2, 1)) == (7, 12)
    with pytest.raises(ShapeError, match=r"\(width\).*not whole"):
        output_hw(10, 12, (3, 5), (1, 2), 0)
    assert window_arithmetic((1, 8, 8), 3, 1, 1) == "(8 − 3 + 2·1)/1 + 1 = 8"
    assert window_arithmetic((1, 9, 9), 3, 1, 0, dilation=2) == \
        "F' = 2·(3 − 1) + 1 = 5; (9 − 5 + 2·0)/1 + 1 = 5"
    assert window_arithmetic((1, 9, 9), (3, 5), 1, 0, dilation=(2, 1)) == \
        "height F' = 2·(3 − 1) + 1 = 5; (9 − 5 + 2·0)/1 + 1 = 5"
    assert window_arithmetic((1, 8, 9), (3, 1), 1, 0) == \
        "width (9 − 1 + 2·0)/1 + 1 = 9, height (8 − 3 + 2·0)/1 + 1 = 6"


def test_windows_that_do_not_fit_are_an_error_in_every_mode() -> None:
    for rounding in ("exact", "floor", "ceil"):
        with pytest.raises(ShapeError, match="dilated by 3 .7 pixels. window is larger"):
            output_size(5, 3, 1, 0, dilation=3, rounding=rounding)
    with pytest.raises(ShapeError, match="rounding must be one of exact, floor, ceil"):
        output_size(5, 3, 1, 0, rounding="up")
