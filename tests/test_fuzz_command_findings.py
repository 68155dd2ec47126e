"""The findings of the command fuzz pass (test_fuzz_commands.py), one fixed case each:
control characters and line breaks in paths, names and spec text printed escaped (output
and error lines), empty and 10 KB output names, bench's batch, warm-up and iteration
counts checked before the work."""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzz_values import HOSTILE_NAMES, make_zoo
from helpers import assert_ok, assert_one_error, run
from hostile import snapshot

from numbacnn.errors import printable

TINY = "input 8x8x1; fc 2; softmax"
CONTROL = "o\x1b[2J\x07"


def printable_lines(text: str) -> str:
    """``text`` whose every line is printable (tabs aside); returns it."""
    for line in text.splitlines():
        assert line.replace("\t", " ").isprintable(), repr(line)
    return text


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_zoo(tmp_path_factory.mktemp("zoo"))


def test_printable_escapes_what_a_terminal_would_run() -> None:
    assert printable("a\x1b[31mb\x07\n\u202e") == "a\\x1b[31mb\\x07\\n\\u202e"
    assert printable("top\tright") == "top\\tright"
    assert printable("ünï côdé ×") == "ünï côdé ×"


@pytest.mark.parametrize("command", ["data info {names}", "predict {model2} {npy}",
                                     "evaluate {model2} --data {dataset}",
                                     "inspect {model2}"])
def test_class_names_with_control_characters_are_printed_escaped(
        zoo: dict[str, Path], command: str) -> None:
    words = command.split()
    output = printable_lines(assert_ok(run(*[w.format(**zoo) for w in words])))
    assert printable(HOSTILE_NAMES[2]) in output  # "bottom\\x07 left"
    if words[0] == "data":
        assert "quad\\x1b[2Jrants\\r" in output


@pytest.mark.parametrize("command", [
    "export {model} OUT.onnx", "import {onnx} OUT.h5", "data import-npz {npz} OUT.h5",
    "data import-idx {idx} OUT.h5",
    "data make-mini {dataset} OUT.h5 --train-per-class 1 --test-per-class 1",
    "plot filters {model} -o OUT.png", "plot conv -o OUT.png --input 5 --pad 0",
    "train {spec} --data {npz} --epochs 1 --limit 8 --val-split 0 --out OUT.h5",
    "predict {model} {npy} --save-proba OUT.npy"])
def test_an_output_named_with_control_characters_is_shown_escaped(
        zoo: dict[str, Path], tmp_path: Path, command: str) -> None:
    out = tmp_path / CONTROL
    words = [w.format(**zoo).replace("OUT", str(out)) for w in command.split()]
    result = run(*words)
    printable_lines(assert_ok(result))
    printable_lines(result.stderr)
    assert CONTROL not in result.output
    if words[0] != "predict":  # predict says nothing of the file it wrote
        assert "o\\x1b[2J\\x07" in result.output + result.stderr


@pytest.mark.parametrize("args, says", [
    (["data", "import-npz", "a\x07b.npz", "{tmp}/out.h5"], "'a\\x07b.npz': no such file"),
    (["data", "make-mini", "{dataset}", " \n "], "must be named .h5"),
    (["data", "make-mini", "{dataset}", ""], "e.g. data.h5"),
    (["data", "import-cifar100", "{cifar100}", ""], "e.g. data.h5"),
    (["data", "import-folder", "{folder}", "a" * 10240, "--size", "8x8"], "must be named .h5"),
    (["predict", "{model}", "{npy}", "--save-proba", "9" * 10240], "writes a .npy file"),
    (["predict", "{model}", "{npy}", "--save-proba", ""], "e.g. proba.npy"),
    (["bench", " \n ", "--iterations", "1", "--warmup", "1"], "the spec is empty"),
    (["bench", TINY, "--batch", str(2**63)], "'--batch'"),
    (["bench", TINY, "--warmup", str(2**63)], "'--warmup'"),
    (["bench", TINY, "--iterations", "1" + "0" * 18], "'--iterations'"),
])
def test_hostile_values_found_by_the_pass_are_one_short_line(
        zoo: dict[str, Path], tmp_path: Path, args: list[str], says: str) -> None:
    (tmp_path / "work").mkdir()
    words = [a.format(tmp=tmp_path / "work", **zoo) if "{" in a else a for a in args]
    result = run(*words)
    line = assert_one_error(result, says)
    assert line.isprintable() and len(line) < 1000, line[:200]
    bench_log = [x for x in result.stderr.splitlines() if x.startswith("bench: ")]
    assert all(x.isprintable() for x in bench_log), bench_log
    assert snapshot(tmp_path / "work") == {}
