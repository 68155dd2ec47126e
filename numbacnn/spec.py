"""Layer-spec text: parse it, load presets and files, and write it back canonically.

A spec is plain text, one layer per line (docs/spec.md has the full reference)::

    # the lecture's first convolution
    input 32x32x3                 # W x H x D, D = channels
    conv 10 5 stride=1 pad=2      # positional: filters, size
    maxpool 2                     # stride defaults to the size
    fc 10 activation=relu init=xavier
    softmax

A ``;`` ends a line just as a newline does (``"input 28x28x1; conv 8 3; relu"``), and
line numbers count both. Parsing is pure Python: it imports neither numba nor a
kernel, and :meth:`Spec.build` only runs each layer's shape arithmetic.

This module knows no layer by name: the keywords, options and their rules, what
``activation=`` allows, the options a layer derives from others and which layer must
come last are each layer class's own declaration (``numbacnn/layers/syntax.py`` has the
vocabulary, ``numbacnn.layers.LAYERS`` the registered classes).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from numbacnn.errors import MissingInputError, NumbacnnError, SpecError, excerpt, shown_path
from numbacnn.geometry import volume
from numbacnn.layers import LAYERS, Layer
from numbacnn.layers.syntax import LayerSyntax
from numbacnn.limits import MAX_INT, check_regular_file, exists

Shape = tuple[int, int, int]

_INTEGER = re.compile(r"[0-9]+")
MAX_SPEC_BYTES = 1 << 20  # a spec file larger than this is not a spec
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Characters a line may hold outside its comment: printable ASCII, tab, and the
# multiplication sign of `input 28×28×1`. Anything else (other line breaks, control
# characters, other scripts' digits and spaces) is refused, not silently read.
_ALLOWED = re.compile(r"[\t\x20-\x7e×]*")


class _Syntaxes(Mapping[str, LayerSyntax]):
    """Every layer's syntax by spec name, read from the classes in numbacnn.layers.LAYERS
    (each layer declares its own ``syntax``); live, so a layer registered later counts."""

    def __getitem__(self, name: str) -> LayerSyntax:
        return LAYERS[name].syntax

    def __iter__(self) -> Iterator[str]:
        return iter(list(LAYERS))

    def __len__(self) -> int:
        return len(LAYERS)


SYNTAX: Mapping[str, LayerSyntax] = _Syntaxes()


def keywords() -> tuple[str, ...]:
    """Words that can start a spec line: ``input`` and every layer's name."""
    return ("input", *SYNTAX)


def format_layer(name: str, kwargs: dict[str, Any]) -> str:
    """Canonical spec text of one layer, e.g. 'conv 96 11 stride=4 pad=0'."""
    return SYNTAX[name].format(kwargs)


def format_input(shape: Shape) -> str:
    """(C, H, W) as the lecture's W×H×D, e.g. '227x227x3'."""
    return volume(shape)


def parse_input_size(text: str) -> Shape:
    """'227x227x3' (W×H×D) → (C, H, W) = (3, 227, 227); SpecError when malformed."""
    pieces = text.strip().lower().replace("×", "x").split("x")
    if len(pieces) != 3 or not all(_INTEGER.fullmatch(p) for p in pieces):
        raise SpecError(f"input size {excerpt(text.strip())} is not WxHxD (width x height x "
                        "depth in ASCII digits, e.g. 227x227x3 or 28x28x1)")
    W, H, D = (int(p) for p in pieces)
    if min(W, H, D) < 1 or max(W, H, D) > MAX_INT:
        raise SpecError(f"input size {excerpt(text.strip())}: width, height and depth must be "
                        f"≥ 1 and ≤ {MAX_INT}")
    return (D, H, W)



def layer_kwargs(layer: Layer) -> dict[str, Any]:
    """The spec arguments that rebuild ``layer`` (its hyperparameters, and its init)."""
    return layer.arguments()


@dataclass
class LayerEntry:
    """One layer of a spec: its name and full constructor arguments (defaults filled
    in, then the layer's ``derive_options``: ``pad=same`` as a number), and where it was
    written (not part of equality)."""

    name: str
    kwargs: dict[str, Any]
    line: int = field(default=0, compare=False)
    text: str = field(default="", compare=False)

    def to_text(self) -> str:
        return format_layer(self.name, self.kwargs)

    def make_layer(self) -> Layer:
        """A fresh, unbuilt Layer object."""
        return LAYERS[self.name](**self.kwargs)


@dataclass
class Spec:
    """A parsed spec: input shape (C, H, W) or None, and the layers in order."""

    input_shape: Shape | None
    layers: list[LayerEntry]
    source: str = field(default="<spec>", compare=False)

    def where(self, entry: LayerEntry) -> str:
        """'spec line 3 (`conv 8 3`)': where an entry was written, for messages."""
        return f"{_place(self.source, entry.line)} ({_quoted(entry.text or entry.to_text())})"

    def make_layers(self) -> list[Layer]:
        """Fresh Layer objects, unbuilt (no kernel runs)."""
        layers = []
        for entry in self.layers:
            try:
                layers.append(entry.make_layer())
            except NumbacnnError as exc:
                raise SpecError(f"{self.where(entry)}: {exc}") from None
        return layers

    def build(self, input_shape: Shape | None = None) -> list[Layer]:
        """Fresh layers built for ``input_shape`` (default: the spec's own input line).

        Runs only the shape arithmetic; a layer that does not fit raises SpecError
        naming its line, with the arithmetic and a fix.
        """
        shape = input_shape or self.input_shape
        if shape is None:
            raise MissingInputError("the spec gives no input size: add a first line like "
                                    "`input 28x28x1` (W x H x D)")
        layers = self.make_layers()
        for entry, layer in zip(self.layers, layers, strict=True):
            try:
                shape = layer.build(shape)
            except NumbacnnError as exc:
                raise SpecError(f"{self.where(entry)}: {exc}") from None
        return layers

    def to_text(self) -> str:
        """Canonical text: parses back to an equal Spec."""
        lines = [] if self.input_shape is None else [f"input {format_input(self.input_shape)}"]
        lines += [entry.to_text() for entry in self.layers]
        return "\n".join(lines) + "\n"


def _quoted(line: str, limit: int = 80) -> str:
    """A spec line in backquotes for a message, cut to ``limit`` characters."""
    return f"`{line}`" if len(line) <= limit else f"`{line[:limit]}…`"


def _place(source: str, line: int) -> str:
    return f"spec line {line}" if source == "<spec>" else f"{source} line {line}"


def _suggest(word: str, options: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word[:40], options, n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}? " if close else ""


def _split_lines(text: str, source: str = "<spec>") -> list[tuple[int, str]]:
    """(line number, text) of every non-empty line; comments stripped, ';' a line break.

    Lines end at \\n, \\r\\n, \\r or ';' only; words are separated by spaces and tabs.
    """
    out = []
    number = 0
    for physical in _LINE_BREAK.split(text):
        for part in physical.split("#", 1)[0].split(";"):
            number += 1
            bad = _ALLOWED.match(part).end()  # type: ignore[union-attr]
            if bad < len(part):
                raise SpecError(f"{_place(source, number)}: character U+{ord(part[bad]):04X} "
                                f"({part[bad]!r}) at column {bad + 1} is not allowed; write "
                                "specs in ASCII, with spaces or tabs between words and "
                                "newlines or ; between layers")
            if part.strip(" \t"):
                out.append((number, " ".join(part.split())))
    return out


def _parse_arguments(syntax: LayerSyntax, words: list[str]) -> dict[str, Any]:
    """Positional values and key=value pairs → {key: value} for the given keys only."""
    given: dict[str, Any] = {}
    seen_key = False
    for position, word in enumerate(words):
        if "=" in word:
            key, raw = (s.strip() for s in word.split("=", 1))
            key = key.lower()
            seen_key = True
        else:
            if seen_key:
                raise ValueError(f"the value {excerpt(word)} follows a key=value; write it as "
                                 f"key=value too (usage: {syntax.usage()})")
            if position >= syntax.positional:
                if not syntax.options:
                    raise ValueError(f"{syntax.name} takes no arguments, got {excerpt(word)}")
                if not syntax.positional:
                    raise ValueError(f"{syntax.name} takes only key=value arguments, got "
                                     f"{excerpt(word)} (usage: {syntax.usage()})")
                named = ", ".join(o.key for o in syntax.options[:syntax.positional])
                raise ValueError(f"{syntax.name} takes {syntax.positional} value"
                                 f"{'' if syntax.positional == 1 else 's'} without a key "
                                 f"({named}), got {excerpt(word)} too; write the others as "
                                 f"key=value (usage: {syntax.usage()})")
            key, raw = syntax.options[position].key, word
        opt = syntax.option(key)
        if opt is None:
            keys = tuple(o.key for o in syntax.options)
            if not keys:
                raise ValueError(f"{syntax.name} takes no arguments, got {excerpt(word)}")
            raise ValueError(f"{syntax.name} has no key {excerpt(key)}; {_suggest(key, keys)}"
                             f"keys: {', '.join(keys)}")
        if key in given:
            raise ValueError(f"{key} is given twice")
        if not raw:
            raise ValueError(f"{key}= needs a value ({opt.rule()})")
        given[key] = opt.convert(raw)
    return given


def _resolve(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The constructor arguments: defaults filled in, then what the layer derives from
    them (its ``derive_options``: e.g. the pooling stride, pad=same as a number)."""
    syntax = SYNTAX[name]
    missing = [o.key for o in syntax.options if o.required and o.key not in given]
    if missing:
        raise ValueError(f"{syntax.name} needs {' and '.join(missing)} "
                         f"(usage: {syntax.usage()}, e.g. `{syntax.example}`)")
    values = LAYERS[name].derive_options({o.key: given.get(o.key, o.default)
                                          for o in syntax.arguments})
    # options added later stay out while at their default (the layer's ``arguments()``)
    return {key: value for key, value in values.items()
            if not ((o := syntax.option(key)) and o.quiet_default and value == o.default)}


def _parse_line(number: int, text: str, source: str) -> list[LayerEntry]:
    """The layer entries of one line (two when it has activation=...)."""
    words = text.split()
    name = words[0].lower()
    syntax = SYNTAX.get(name)
    where = f"{_place(source, number)} ({_quoted(text)})"
    if syntax is None:
        raise SpecError(f"{where}: unknown layer {excerpt(words[0])}; {_suggest(name, keywords())}"
                        f"layers: {', '.join(SYNTAX)}")
    try:
        given = _parse_arguments(syntax, words[1:])
        entries = [LayerEntry(name, _resolve(name, given), number, text)]
        # shorthand for the layers right after this one (activation=relu: a relu line)
        for after in (given[o.key] for o in syntax.options if o.layer_after and o.key in given):
            entries.append(LayerEntry(after, _resolve(after, {}), number, text))
    except ValueError as exc:
        raise SpecError(f"{where}: {exc}") from None
    return entries


def parse_spec(text: str, source: str = "<spec>") -> Spec:
    """Parse spec text (see docs/spec.md); SpecError naming the line when malformed."""
    input_shape: Shape | None = None
    entries: list[LayerEntry] = []
    for number, line in _split_lines(text, source):
        words = line.split()
        if words[0].lower() == "input":
            where = f"{_place(source, number)} ({_quoted(line)})"
            if input_shape is not None:
                raise SpecError(f"{where}: the input size is given twice")
            if entries:
                raise SpecError(f"{where}: the input line must come before the first layer")
            if len(words) != 2:
                raise SpecError(f"{where}: write the input size as `input WxHxD`, "
                                "e.g. `input 227x227x3`")
            try:
                input_shape = parse_input_size(words[1])
            except SpecError as exc:
                raise SpecError(f"{where}: {exc}") from None
            continue
        entries += _parse_line(number, line, source)
    if not entries:
        raise SpecError(f"{'the spec' if source == '<spec>' else source} has no layers: write "
                        "one layer per line, e.g. `input 28x28x1; conv 8 3; relu; fc 10`")
    for entry in entries[:-1]:
        why = LAYERS[entry.name].must_be_last
        if why:
            raise SpecError(f"{_place(source, entry.line)} ({_quoted(entry.text)}): "
                            f"{entry.name} must be the last layer ({why})")
    return Spec(input_shape, entries, source)


def _presets_dir() -> Any:
    return resources.files("numbacnn_data") / "specs"


def list_presets() -> list[str]:
    """Names of the bundled presets (data/specs/*.spec), sorted."""
    return sorted(p.name[:-5] for p in _presets_dir().iterdir() if p.name.endswith(".spec"))


def preset_text(name: str) -> str:
    """The text of a bundled preset; SpecError when there is none of that name."""
    if name not in list_presets():
        raise SpecError(f"no preset {excerpt(name)}; {_suggest(name, list_presets())}"
                        f"presets: {', '.join(list_presets())}")
    return (_presets_dir() / f"{name}.spec").read_text(encoding="utf-8")


def load_spec(spec: str | os.PathLike[str]) -> Spec:
    """A Spec from a preset name (``alexnet``), a spec file path, or inline spec text.

    Text is inline when it has a newline or ``;``; otherwise a preset of that name,
    then a file, is looked for; failing both, text starting with ``input``, a layer
    name or a ``#`` comment is inline too.
    """
    if isinstance(spec, os.PathLike):
        return _load_file(Path(spec))
    if not spec.strip():
        raise SpecError("the spec is empty: give a preset name, a spec file or spec text")
    if "\n" in spec or ";" in spec:
        return parse_spec(spec)
    name = spec.strip()
    if name in list_presets():
        return parse_spec(preset_text(name), source=f"{name}.spec")
    if exists(Path(name)):  # a name too long for the OS is no file, not an OSError
        return _load_file(Path(name))
    if name.startswith("#") or name.split()[0].lower() in keywords():
        return parse_spec(spec)
    if name.endswith(".spec") or os.sep in name or "/" in name:
        raise SpecError(f"spec file {shown_path(name)} not found")
    raise SpecError(f"{excerpt(name)} is not a preset, a spec file or spec text; "
                    f"{_suggest(name, list_presets())}presets: {', '.join(list_presets())}")


def spec_difference(given: str, stored: str) -> str | None:
    """Where the spec ``given`` (a preset, file or text, as :func:`load_spec` takes it)
    builds another network than ``stored``: "layer 3 is `maxpool 3`, not `maxpool 2`",
    or None when both parse to the same network (however they are written: newlines
    or ``;``, spacing, defaults left out). Text that does not parse is compared as it
    is."""
    if given == stored:
        return None
    try:
        a, b = load_spec(given), load_spec(stored)
    except NumbacnnError:
        return f"{excerpt(given)} is not {excerpt(stored)}"
    if a == b:
        return None
    if a.input_shape != b.input_shape:
        shown = [format_input(s) if s else "none" for s in (a.input_shape, b.input_shape)]
        return f"the input is {shown[0]}, not {shown[1]}"
    for index, (x, y) in enumerate(zip(a.layers, b.layers, strict=False)):
        if x != y:
            return (f"layer {index + 1} is {_quoted(x.to_text(), 40)}, not "
                    f"{_quoted(y.to_text(), 40)}")
    return f"it has {len(a.layers)} layers, not {len(b.layers)}"


def _load_file(path: Path) -> Spec:
    try:
        check_regular_file(path, "spec file", SpecError, "give a preset, a spec file or text")
    except SpecError as exc:
        raise SpecError(f"cannot read spec file {exc}") from None  # path quoted already
    if path.stat().st_size > MAX_SPEC_BYTES:
        raise SpecError(f"spec file {shown_path(path)} is {path.stat().st_size:,} bytes, "
                        f"more than a spec holds ({MAX_SPEC_BYTES:,} at most); give a spec file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"spec file {shown_path(path)} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read spec file {shown_path(path)}: {exc}") from None
    return parse_spec(text, source=str(path))
