"""Fuzz pass over every command and its options (issue 24, docs/reliability.md §9).

For each command of ``numbacnn --help`` (and each ``plot`` and ``data`` subcommand), a
valid call on tiny files (an 8x8 model, a 56-image dataset: tests/fuzz_values.py's
zoo, made once) is run as it is, then changed by seeded random draws: an option's
value from a hostile family (empty, whitespace, unicode digits, negative, zero, huge,
NaN/inf, wrong type, 10 KB, control characters; a directory, FIFO, missing path,
symlink loop, unreadable file (not as root) or a file of the wrong kind: model,
dataset, PNG, ONNX, random bytes, empty, truncated HDF5), a valid other value, a
positional argument replaced, a word dropped, an unknown option, a flag added, spec
text mutated (docs/spec.md, conv's groups=, dilation=, round=, HxW sizes and pad=a,b,c,d
among the words) and an output path of every kind (existing text or HDF5 file,
directory, FIFO, missing folder, links, the command's own input, a 300-character or
control-character name).

Each case must end in exit 0, or exit 2 with exactly one ``error:`` line (Click's usage
errors print that form too); never a traceback, a Python warning or an unprintable
output line; the zoo (every input) unchanged; in the case's working folder, nothing
lost, and a file written or replaced only where the writing policy allows (a
successful case's outputs; an existing one only for a derived output that held no
HDF5, or with --force).

1,110 cases (the count is asserted and printed, with each command's exits); the seed
is fixed (0) so CI is deterministic: ``NUMBACNN_FUZZ_SEED=N`` draws other cases,
``NUMBACNN_FUZZ_CASES=K`` K times as many. Time of the pass, seed 0, on the 2-core
development machine shared with other work: 44 to 63 s, plus about 10 s for the zoo
(one tiny training, one export); under heavy load up to 150 s.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from fuzz_values import (
    AS_ROOT,
    OUTPUT_KINDS,
    SPECS,
    Case,
    hostile_value,
    local_copy,
    make_output,
    make_zoo,
    mutate_spec,
    problems,
    run_case,
    working_snapshot,
)
from hostile import snapshot

from numbacnn.io.model_file import best_path

SEED = int(os.environ.get("NUMBACNN_FUZZ_SEED", "0"))
SCALE = int(os.environ.get("NUMBACNN_FUZZ_CASES", "1"))

# kinds of value: a list is a choice; "flag"; "out:.ext" a derived output (replaced),
# "OUT:.ext" a model or dataset (refused when it exists, unless --force)
INT, FLOAT = ["1", "2", "3", "8"], ["0", "0.1", "0.5", "0.9"]
SIZE2, SIZE3 = ["8x8", "12x6", "4x4", "8×8"], ["8x8x1", "16x16x3", "8X8×1", "8x8"]
SPEC = SPECS + ["@spec", "fmnist", "lenet"]
MODEL, DATA = ["@model", "@model2"], ["@dataset", "@npz", "@idx", "@names"]
IMAGE = ["@npy", "@png", "@dataset"]
TEXT = ["name", "ünï côdé"]
DEVICES = ["cpu", "auto", "cuda", "CPU"]


@dataclass
class Command:
    """A valid call: the command's words, positionals (kind, value), options (name,
    kind, value or None for absent) and the number of cases drawn from it."""

    words: list[str]
    positionals: list[tuple[object, str]]
    options: list[tuple[str, object, str | None]]
    cases: int
    fixed: tuple[str, ...] = ()  # options never dropped


PLOT_OPTIONS = [("--size", SIZE2, "480x360"), ("--dpi", ["10", "50", "1000"], "40"),
                ("--data", DATA, None), ("--split", ["train", "test"], None),
                ("--image", ["0", "3", "@png", "@npy"], None), ("--fit", ["crop", "pad"], None),
                ("--maps", INT, "2"), ("--layer", INT, None), ("--rgb", "flag", None),
                ("--no-test-accuracy", "flag", None), ("--per-step", "flag", None),
                ("--seed", INT, None), ("--force", "flag", None),
                ("--batch-size", INT, "8"), ("--device", DEVICES, "cpu")]
DATA_OUT = ("--force", "flag", None)

COMMANDS = {
    "shapes": Command(["shapes"], [(SPEC, SPECS[1])],
                      [("--input", SIZE3, None), ("--batch", INT, "2"),
                       ("--format", ["table", "json", "csv", "html"], "table"),
                       ("--wide", "flag", None), ("--compact", "flag", None)], 150),
    "inspect": Command(["inspect"], [(MODEL, "@model")], [], 60),
    "devices": Command(["devices"], [], [], 10),
    "data info": Command(["data", "info"], [(DATA, "@dataset")], [], 60),
    "evaluate": Command(["evaluate"], [(MODEL, "@model")],
                        [("--data", DATA, "@dataset"), ("--split", ["train", "test"], None),
                         ("--ensemble", "flag", None), ("--batch-size", INT, "16"),
                         ("--device", DEVICES, "cpu")], 70),
    "predict": Command(["predict"], [(MODEL, "@model"), (IMAGE, "@npy")],
                       [("--top-k", INT, "2"), ("--data-split", ["train", "test"], None),
                        ("--fit", ["crop", "pad"], None), ("--limit", INT, "4"),
                        ("--save-proba", "out:.npy", None), ("--force", "flag", None),
                        ("--batch-size", INT, "8"), ("--device", DEVICES, "cpu")], 90),
    "export": Command(["export"], [(MODEL, "@model"), ("out:.onnx", "%out.onnx")],
                      [("--opset", ["17", "18", "99"], None), ("--force", "flag", None)], 60),
    "import": Command(["import"], [(["@onnx"], "@onnx"), ("OUT:.h5", "%out.h5")],
                      [("--input", SIZE3, None), ("--force", "flag", None)], 60),
    "compare": Command(["compare"], [(MODEL, "@model"), (MODEL, "@model2")],
                       [("--data", DATA, "@dataset"), ("--no-test-accuracy", "flag", None),
                        ("--batch-size", INT, "16"), ("--device", DEVICES, "cpu")], 50),
    "bench": Command(["bench"], [(SPEC, SPECS[0])],
                     [("--batch", INT, "2"), ("--iterations", INT, "1"), ("--warmup", INT, "1"),
                      ("--device", DEVICES, "cpu"), ("--tf32", "flag", None),
                      ("--no-layers", "flag", "--no-layers"), ("--json", "flag", None),
                      ("--output", "out:.json", "%out.json"), ("--force", "flag", None),
                      ("--compare", ["torch"], None)], 50),
    "train": Command(["train"], [(SPEC, SPECS[0])],
                     [("--data", DATA, "@npz"), ("--epochs", INT, "1"), ("--limit", INT, "8"),
                      ("--batch-size", INT, "8"), ("--lr", FLOAT, None),
                      ("--momentum", FLOAT, None), ("--weight-decay", FLOAT, None),
                      ("--optimizer", ["sgd", "adam"], None),
                      ("--lr-policy", ["constant", "step", "plateau"], None),
                      ("--lr-step", INT, None), ("--gamma", FLOAT, None),
                      ("--patience", INT, None),
                      ("--init", ["zeros", "normal", "he", "xavier", "lecun"], None),
                      ("--augment", "flag", None), ("--val-split", FLOAT, "0"),
                      ("--seed", INT, None), ("--device", DEVICES, "cpu"),
                      ("--tf32", "flag", None), ("--out", "OUT:.h5", "%out.h5"),
                      ("--resume", MODEL, None), ("--weights", MODEL, None),
                      ("--force", "flag", None)], 60, fixed=("--out",)),
    **{f"plot {what}": Command(["plot", what], [(MODEL if what != "bench" else ["@bench"],
                                                 "@model" if what != "bench" else "@bench")],
                               [("-o", "out:.png", "%out.png"), *PLOT_OPTIONS], cases)
       for what, cases in (("curves", 25), ("filters", 25), ("features", 25),
                           ("confusion", 25), ("activations", 25), ("bench", 25))},
    "plot conv": Command(["plot", "conv"], [],
                         [("-o", "out:.png", "%out.png"), ("--input", INT, "5"),
                          ("--filter", INT, "3"), ("--stride", INT, "2"), ("--pad", INT, "0"),
                          ("--depth", INT, None), ("--bias", INT, None), ("--seed", INT, None),
                          ("--dpi", ["10", "30"], "20"), ("--frame-ms", ["20", "800"], None),
                          ("--force", "flag", None)], 40),
    "data import-idx": Command(["data", "import-idx"], [(["@idx"], "@idx"),
                                                        ("OUT:.h5", "%out.h5")],
                               [("--name", TEXT, None), DATA_OUT], 35),
    "data import-npz": Command(["data", "import-npz"], [(["@npz"], "@npz"),
                                                        ("OUT:.h5", "%out.h5")],
                               [("--name", TEXT, None), DATA_OUT], 35),
    "data import-cifar10": Command(["data", "import-cifar10"],
                                   [(["@cifar10"], "@cifar10"), ("OUT:.h5", "%out.h5")],
                                   [("--labels", ["fine", "coarse"], None),
                                    ("--name", TEXT, None), DATA_OUT], 30),
    "data import-cifar100": Command(["data", "import-cifar100"],
                                    [(["@cifar100"], "@cifar100"), ("OUT:.h5", "%out.h5")],
                                    [("--labels", ["fine", "coarse"], None),
                                     ("--name", TEXT, None), DATA_OUT], 30),
    "data import-folder": Command(["data", "import-folder"],
                                  [(["@folder"], "@folder"), ("OUT:.h5", "%out.h5")],
                                  [("--size", SIZE2, "8x8"), ("--channels", ["1", "3"], "1"),
                                   ("--fit", ["crop", "pad"], None),
                                   ("--test-split", FLOAT, "0.5"), ("--seed", INT, None),
                                   ("--strict", "flag", None), ("--name", TEXT, None),
                                   DATA_OUT], 35),
    "data make-mini": Command(["data", "make-mini"], [(DATA, "@dataset"), ("OUT:.h5", "%out.h5")],
                              [("--train-per-class", INT, "2"), ("--test-per-class", INT, "1"),
                               ("--seed", INT, None), ("--level", INT, "1"), DATA_OUT], 35),
}


def _hostile(rng: random.Random, kind: object, trains: bool) -> tuple[str, str]:
    """A hostile value for a value of ``kind``: a spec mutated or from any family."""
    if kind is SPEC and rng.random() < 0.6:
        return "spec mutated", mutate_spec(rng, digits=2 if trains else 6)
    return hostile_value(rng)


def draw(rng: random.Random, name: str, command: Command, number: int, folder: Path,
         zoo: dict[str, Path]) -> Case:
    """Case ``number`` of ``command`` (number 0: the valid call as it is)."""
    positionals = [list(p) for p in command.positionals]
    options = {option: value for option, _, value in command.options}
    kinds = {option: kind for option, kind, _ in command.options}
    changes, extra = [], []
    for _ in range(0 if number == 0 else rng.choice([1, 1, 1, 2])):
        operation = rng.random()
        if operation < 0.55 and command.options:
            option = rng.choice(sorted(kinds))
            kind = kinds[option]
            if kind == "flag":
                options[option] = None if options[option] else option
                changes.append(f"flag {option}")
            elif operation < 0.15 and isinstance(kind, list):
                options[option] = rng.choice(kind)
                changes.append(f"{option} valid")
            else:
                family, options[option] = _hostile(rng, kind, name in ("train", "bench"))
                changes.append(f"{option} {family}")
        elif operation < 0.8 and positionals:
            at = rng.randrange(len(positionals))
            kind = positionals[at][0]
            if isinstance(kind, list) and rng.random() < 0.3:
                positionals[at][1] = rng.choice(kind)
                changes.append(f"argument {at + 1} valid")
            else:
                family, positionals[at][1] = _hostile(rng, kind, name in ("train", "bench"))
                changes.append(f"argument {at + 1} {family}")
        elif operation < 0.88:
            droppable = [o for o in options if options[o] is not None and o not in command.fixed]
            if positionals and (not droppable or rng.random() < 0.3):
                del positionals[rng.randrange(len(positionals))]
                changes.append("argument dropped")
            elif droppable:
                options[rng.choice(droppable)] = None
                changes.append("option dropped")
        else:
            extra.append(rng.choice(["--nope", "-x", "--", "stray", "--help=1", "-o"]))
            changes.append(f"extra {extra[-1]}")
    # the output paths: mostly new files, else any kind of target; a hostile value
    # given instead (a relative name) is an output too
    outputs, refuse = [], False
    inputs = [str(zoo[v[1:]]) for v in [p[1] for p in positionals] + list(options.values())
              if isinstance(v, str) and v.startswith("@") and v[1:] in zoo]
    slots = [(p[0], p[1], p) for p in positionals] + [
        (kinds[o], options[o], o) for o in options if options[o] is not None]
    for kind, value, where in slots:
        if not (isinstance(kind, str) and kind[:4].lower() == "out:"):
            continue
        refuse = refuse or kind.startswith("OUT")
        if value.startswith("@") and value[1:] in zoo:  # a hostile path: a copy of it here
            value = local_copy(zoo[value[1:]], folder)
        elif value.startswith("%"):
            output_kind = ("new" if number == 0 or rng.random() < 0.7
                           else rng.choice(OUTPUT_KINDS))
            value = make_output(rng, output_kind, folder, kind[4:], inputs)
            if output_kind != "new":
                changes.append(f"output {output_kind}")
        if isinstance(where, list):
            where[1] = value
        else:
            options[where] = value
        outputs.append(value)
    words = list(command.words)
    for option, value in options.items():
        if value is not None:
            words += [option] if kinds[option] == "flag" else [option, value]
    words += [p[1] for p in positionals] + extra
    words = [_resolve(w, zoo, folder) for w in words]
    outputs = [_resolve(o, zoo, folder) for o in outputs]
    if name == "train":
        out = options.get("--out") or options.get("--resume") or "model.h5"
        outputs = [_resolve(out, zoo, folder)]
        outputs.append(str(best_path(Path(outputs[0]))))
        refuse = True
    return Case(number, words, [f"{name}: " + c for c in changes] or [f"{name}: valid"],
                outputs, refuse)


def _resolve(word: str, zoo: dict[str, Path], folder: Path) -> str:
    if word.startswith("@") and word[1:] in zoo:
        return str(zoo[word[1:]])
    if word.startswith("%"):
        return str(folder / word[1:])
    return word


def _special(folder: str, names: list[str]) -> list[str]:
    """The links, FIFOs and such among ``names``: not copied, they stay as they are."""
    return [n for n in names if Path(folder, n).is_symlink()
            or not (Path(folder, n).is_file() or Path(folder, n).is_dir())]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_zoo(tmp_path_factory.mktemp("zoo"))


def test_every_command_and_option_ends_cleanly(zoo: dict[str, Path], tmp_path: Path) -> None:
    """The pass: every case ends cleanly and writes only where the policy allows."""
    zoo_folder = zoo["model"].parent
    pristine = tmp_path / "pristine"
    shutil.copytree(zoo_folder, pristine, ignore=_special)
    zoo_before = snapshot(zoo_folder)
    findings, count, started, exits = [], 0, time.perf_counter(), {}
    for name, command in COMMANDS.items():
        rng = random.Random(f"{SEED}:{name}")
        for number in range(command.cases * SCALE):
            folder = tmp_path / "case"
            folder.mkdir()
            case = draw(rng, name, command, number, folder, zoo)
            before = working_snapshot(folder)
            result = run_case(case, folder)
            found = problems(case, result, before, working_snapshot(folder), folder)
            if number == 0 and result.exit_code != 0:
                found.append(f"the valid call failed: {result.output[-300:]!r}")
            if snapshot(zoo_folder) != zoo_before:
                found.append("an input in the zoo changed")
                shutil.copytree(pristine, zoo_folder, dirs_exist_ok=True)
            if found:
                findings.append(f"{case}: {'; '.join(found)}")
            shutil.rmtree(folder)
            count += 1
            exits.setdefault(name, []).append(result.exit_code)
    elapsed = time.perf_counter() - started
    print(f"\n{count} cases over {len(COMMANDS)} commands in {elapsed:.0f} s "
          f"(seed {SEED}{', as root: no unreadable files' if AS_ROOT else ''}), "
          f"{len(findings)} findings")
    print("; ".join(f"{name} {codes.count(0)} ok, {codes.count(2)} refused"
                    for name, codes in exits.items()))
    if findings:
        print("\n".join(findings))
    assert count >= 1000 * SCALE
    assert not findings, "\n".join(findings[:30])
