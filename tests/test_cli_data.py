"""Tests of the ``numbacnn data`` commands (no numba, no GPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from dataset_samples import assert_same, small_dataset, write_idx_dir

from numbacnn.io import dataset_files as files

# ----------------------------------------------------------------------------- CLI


def _root():
    """The ``numbacnn`` group; a stand-in with the same error handling while
    cli/main.py cannot be imported (another engineer's module is still missing)."""
    import click

    from numbacnn.errors import NumbacnnError

    try:
        from numbacnn_cli.main import cli

        return cli
    except ImportError:
        from numbacnn_cli.data import data

        class Group(click.Group):
            def invoke(self, ctx):
                try:
                    return super().invoke(ctx)
                except NumbacnnError as exc:
                    click.echo(f"error: {exc}", err=True)
                    ctx.exit(2)

        root = Group("numbacnn")
        root.add_command(data)
        return root


def run_cli(*args: str):
    return CliRunner().invoke(_root(), ["data", *map(str, args)])


def test_cli_info_bundled() -> None:
    result = run_cli("info", "fashion-mnist-mini")
    assert result.exit_code == 0, result.output
    assert "name:        fashion-mnist-mini" in result.stdout
    assert "input shape: 28x28x1 (W x H x D), uint8" in result.stdout
    assert "6000 images" in result.stdout
    assert "Ankle boot" in result.stdout and "   600     100" in result.stdout


def test_cli_import_and_make_mini(tmp_path: Path) -> None:
    write_idx_dir(tmp_path / "digits")
    result = run_cli("import-idx", tmp_path / "digits", tmp_path / "d.h5")
    assert result.exit_code == 0, result.output
    assert "40 train + 20 test images of 6x8x1 (W x H x D), 10 classes" in result.stdout
    ds = small_dataset(c=3)
    np.savez(tmp_path / "s.npz", x_train=ds.x_train.transpose(0, 2, 3, 1), y_train=ds.y_train,
             x_test=ds.x_test, y_test=ds.y_test, class_names=ds.class_names)  # fmt: skip
    result = run_cli("import-npz", tmp_path / "s.npz", tmp_path / "s.h5", "--name", "small")
    assert result.exit_code == 0, result.output
    assert_same(files.load_dataset(tmp_path / "s.h5"), ds)
    result = run_cli("make-mini", tmp_path / "s.h5", tmp_path / "m.h5",
                     "--train-per-class", "3", "--test-per-class", "2", "--seed", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    mini = files.load_dataset(tmp_path / "m.h5")
    assert len(mini.x_train) == 12 and len(mini.x_test) == 8 and mini.name == "small-mini"


@pytest.mark.parametrize(
    "args, message",
    [
        (["info", "{tmp}/absent.h5"], "no such dataset file or directory"),
        (["info", "{tmp}/bad.h5"], "not a readable HDF5 file"),
        (["info", "{tmp}/bad.h5"], "; numbacnn data import-idx and import-npz write dataset"),
        (["import-idx", "{tmp}", "{tmp}/out.h5"], "missing IDX files"),
        (["import-npz", "{tmp}/absent.npz", "{tmp}/out.h5"], "no such file"),
        (["make-mini", "fashion-mnist-mini", "{tmp}/no/out.h5"], "does not exist"),
        (["make-mini", "fashion-mnist-mini", "{tmp}/o.h5", "--test-per-class", "101"], "fewer"),
    ],
)
def test_cli_errors(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    result = run_cli(*(a.format(tmp=tmp_path) for a in args))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.output


def test_cli_module_imports_no_numba_or_h5py() -> None:
    code = "import sys, numbacnn_cli.data; print('numba' in sys.modules, 'h5py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_missing_bundled_data_names_the_fix_and_the_cli_the_command(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from numbacnn.errors import MissingBundledDataError

    monkeypatch.setattr(files, "BUNDLED_MINI", "absent-mini")
    with pytest.raises(MissingBundledDataError, match="absent-mini.h5 is missing") as bad:
        files.load_dataset("absent-mini")
    assert "make_mini subset" in str(bad.value) and "numbacnn data" not in str(bad.value)
    result = run_cli("info", "absent-mini")
    assert result.exit_code == 2 and result.stderr.endswith(
        "; run: numbacnn data make-mini fashion-mnist data/fashion-mnist-mini.h5\n")
