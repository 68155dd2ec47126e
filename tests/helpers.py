"""Shared test helpers: the CLI run in-process, the checks of its result (success; one
``error:`` line and exit 2), the small quadrant datasets and the tiny network spec that
several test files train on."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from click.testing import CliRunner, Result
from numbacnn_cli.main import cli

from numbacnn.io.datasets import Dataset

# A tiny classifier of 8x8x1 images into the four quadrant classes
SPEC = "input 8x8x1; conv 3 3 pad=1 activation=relu; maxpool 2; fc 6 activation=relu; " \
       "dropout 0.25; fc 4; softmax"
CLASSES = ["top left", "top right", "bottom left", "bottom right"]


# ----------------------------------------------------------------------------- the CLI


def run(*args: object, env: dict[str, str | None] | None = None) -> Result:
    """``numbacnn ARGS`` in this process (arguments turned into strings), with ``env``
    overriding environment variables (None removes one). Python warnings (numpy's
    RuntimeWarning, matplotlib's missing glyphs) are written to its stderr as a user
    would see them, not collected by pytest, so that the checks below see them."""

    def shown(message, category, filename, lineno, file=None, line=None) -> None:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = shown
        return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def assert_ok(result: Result) -> str:
    """Exit 0 and no error printed; returns the output."""
    assert result.exit_code == 0, result.output
    assert "error" not in result.output
    assert "Warning" not in result.stderr, result.stderr  # warnings are errors or silence
    return result.output


def assert_one_error(result: Result, *fragments: str, code: int = 2) -> str:
    """Exit ``code``, exactly one line on stderr starting ``error:`` and holding each of
    ``fragments``, no traceback; returns that line."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exc_info)
    assert result.exc_info is None or result.exc_info[0] is SystemExit, result.exc_info
    lines = [line for line in result.stderr.splitlines()
             if not line.startswith("bench: ")]  # bench's progress log, not an error
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "Warning" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- data


def quadrant_images(n: int, rng: np.random.Generator, size: int = 8, classes: int = 4,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N×1×size×size images and int64 labels: class k is bright (+150) in quadrant
    k mod 4 of a dim background (0-79)."""
    y = np.arange(n, dtype=np.int64) % classes
    x = rng.integers(0, 80, (n, 1, size, size)).astype(np.uint8)
    h = size // 2
    for i, k in enumerate(y):
        r, c = h * ((k // 2) % 2), h * (k % 2)
        x[i, 0, r:r + h, c:c + h] += 150
    return x, y


def quadrants(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N×1×8×8 quadrant images (see quadrant_images) from their own seed."""
    return quadrant_images(n, np.random.default_rng(seed))


def quadrant_dataset(n_train: int = 96, n_test: int = 32, seed: int = 0) -> Dataset:
    """8x8 grey images of the 4 CLASSES, training and test splits drawn in turn."""
    rng = np.random.default_rng(seed)
    x_train, y_train = quadrant_images(n_train, rng)
    x_test, y_test = quadrant_images(n_test, rng)
    return Dataset(x_train, y_train, x_test, y_test, list(CLASSES), name="quadrants")


def small_dataset(n_train: int = 80, classes: int = 4, seed: int = 0) -> Dataset:
    """8x8 grey quadrant images of ``classes`` classes named c0, c1, …; the test split is
    the first 16 training images."""
    x, y = quadrant_images(n_train, np.random.default_rng(seed), classes=classes)
    return Dataset(x, y, x[:16].copy(), y[:16].copy(), [f"c{k}" for k in range(classes)])


def write_dataset_npz(path: Path) -> Path:
    """A .npz dataset of 48 training and 8 test quadrant images."""
    x_train, y_train = quadrants(48)
    x_test, y_test = quadrants(8, seed=8)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
             class_names=np.array(CLASSES))
    return path
