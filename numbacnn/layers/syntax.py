"""How a layer is written: the vocabulary a layer class declares its options in.

A layer class says ``syntax = LayerSyntax("conv", (int_option("filters"), ...), 2, ...)``:
its spec keyword, each option's key, type, default and valid range, and how many
leading options may be given by position. The constructor, ``describe()``, the spec
parser (``numbacnn/spec.py``) and the model files all read that one declaration.

Pure Python, no numba, and nothing about a particular layer: which layers may be
written as ``activation=NAME`` is filled in as they register (``ACTIVATIONS``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from numbacnn.errors import excerpt
from numbacnn.init import INITIALIZERS
from numbacnn.limits import MAX_INT, float32_value

_INTEGER = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_REQUIRED = object()


class LayerNames(Sequence[str]):
    """Spec names of layers, in the order they were added; a live list that a frozen
    Option can hold as its ``choices`` while layers are still registering."""

    def __init__(self) -> None:
        self._names: list[str] = []

    def add(self, name: str) -> None:
        if name not in self._names:
            self._names.append(name)

    def __getitem__(self, index: Any) -> Any:  # an int gives a name, a slice a list
        return self._names[index]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"LayerNames({self._names!r})"


# Layers that may be written as ``activation=NAME`` after conv or fc: numbacnn.layers.base's
# ``register`` adds every layer class that declares ``as_activation = True``.
ACTIVATIONS = LayerNames()


@dataclass(frozen=True)
class Option:
    """One argument of a layer: its key, type, default and allowed range.

    Numbers must be ≥ ``low`` (> ``low`` when ``low_open``) and < ``high`` when given;
    ``choices`` lists the allowed words of a text option, ``words`` the words a
    number option also takes (``pad=same``; the layer turns them into a number in its
    ``derive_options``). ``hyperparameter`` False: an argument that does not change
    what the layer computes (``init=``), left out of ``describe()``. ``layer_after``:
    spec shorthand whose value names a layer put right after this one
    (``activation=relu``), not an argument of the layer itself. ``axes``: an integer
    option that also takes one value per axis, ``HxW`` (``3x5``, a Python pair (3, 5));
    ``sides``: also one per side, ``top,left,bottom,right``. Equal parts collapse
    (``3x3`` is 3, ``1,2,1,2`` is 1x2), so a value has one canonical text.
    ``quiet_default``: left out of the spec text while it has its default value (an
    option added later: older specs and files keep their text).
    """

    key: str
    kind: type
    default: Any = _REQUIRED
    low: float = 0
    low_open: bool = False
    high: float | None = None
    choices: Sequence[str] = ()
    words: tuple[str, ...] = ()
    hyperparameter: bool = True
    layer_after: bool = False
    axes: bool = False
    sides: bool = False
    quiet_default: bool = False

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def rule(self) -> str:
        """What a value must be, e.g. 'an integer ≥ 1' or 'a number in [0, 1)'."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        noun = "an integer" if self.kind is int else "a number"
        if self.high is not None:
            rule = f"{noun} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g})"
        else:
            rule = f"{noun} {'>' if self.low_open else '≥'} {self.low:g}"
        forms = [*(["HxW"] if self.axes else []), *(["top,left,bottom,right"] if self.sides
                                                     else []), *self.words]
        return rule + "".join(f" or {form}" for form in forms)

    def _parts(self, raw: str) -> list[str] | None:
        """The per-axis (HxW) or per-side (a,b,c,d) parts of ``raw``; None for one value."""
        if self.axes and "x" in raw.lower():
            parts = raw.lower().split("x")
            if len(parts) == 2:
                return parts
        elif self.sides and "," in raw:
            parts = raw.split(",")
            if len(parts) == 4:
                return parts
        else:
            return None
        raise ValueError(f"{self.key} must be {self.rule()}, got {excerpt(raw)}")

    def convert(self, raw: str) -> Any:
        """The value of ``raw``; ValueError naming the rule when it does not fit."""
        if self.choices:
            if raw.lower() not in self.choices:
                raise ValueError(f"{self.key} must be {self.rule()}, got {excerpt(raw)}")
            return raw.lower()
        if raw.lower() in self.words:
            return raw.lower()
        parts = self._parts(raw)
        if parts is not None:
            try:
                return collapse(tuple(self._convert_one(part) for part in parts))
            except ValueError:  # the whole value in the message, not the bad part
                raise ValueError(f"{self.key} must be {self.rule()}, got {excerpt(raw)}") \
                    from None
        return self._convert_one(raw)

    def _convert_one(self, raw: str) -> Any:
        # Only what docs/spec.md describes: ASCII digits, no sign, no '_', no nan/inf
        # (int() and float() alone would take '+3', '1_0' and other scripts' digits).
        number = _INTEGER if self.kind is int else _NUMBER
        if not number.fullmatch(raw):
            # a signed or infinite number is shown as it is ("got -1"), other text quoted
            signed = re.fullmatch(rf"[+-]?(?:{number.pattern}|inf|infinity|nan)", raw.lower())
            shown = raw if signed and raw.isascii() and len(raw) <= 30 else excerpt(raw)
            raise ValueError(f"{self.key} must be {self.rule()}, got {shown}")
        value = self.kind(raw)
        if self.kind is int and value > MAX_INT:
            raise ValueError(f"{self.key} must be ≤ {MAX_INT}, got {excerpt(raw, 30)}")
        self._check_range(value, raw)
        return value

    def _check_range(self, value: float, shown: object) -> None:
        """ValueError unless ``value`` is finite and within the bounds, also as the
        float32 the layers compute with (eps=1e-300 is 0 there, momentum=0.9999999999
        is 1 and eps=1e300 is inf)."""
        for x in (value, float32_value(value)) if self.kind is float else (value,):
            too_low = x <= self.low if self.low_open else x < self.low
            too_high = self.high is not None and x >= self.high
            if not math.isfinite(x) or too_low or too_high:
                in_float32 = f" ({x:g} in float32)" if x != value else ""
                raise ValueError(f"{self.key} must be {self.rule()}, got {shown}{in_float32}")

    def check(self, value: Any) -> Any:
        """A Python value for this option (a constructor argument): checked against the
        declaration and converted (ints to int, numbers to float, words lowered);
        ValueError naming the rule. ``None`` stands for an optional option left out."""
        if value is None:
            if self.default is None:
                return None
            raise ValueError(f"{self.key} must be {self.rule()}, got None")
        if self.choices:
            if not isinstance(value, str) or value.lower() not in self.choices:
                raise ValueError(f"{self.key} must be {self.rule()}, got {value!r}")
            return value.lower()
        if isinstance(value, str) and value.lower() in self.words:
            return value.lower()
        if (self.axes or self.sides) and isinstance(value, tuple | list):
            lengths = ((2,) if self.axes else ()) + ((4,) if self.sides else ())
            if len(value) not in lengths:
                raise ValueError(f"{self.key} must be {self.rule()}, got {value!r}")
            return collapse(tuple(self._check_one(v) for v in value))
        return self._check_one(value)

    def _check_one(self, value: Any) -> Any:
        if isinstance(value, bool | str) or not isinstance(value, int | float | np.number):
            raise ValueError(f"{self.key} must be {self.rule()}, got {value!r}")
        if self.kind is int:
            if float(value) != int(value):
                raise ValueError(f"{self.key} must be {self.rule()}, got {value!r}")
            value = int(value)
            if value > MAX_INT:
                raise ValueError(f"{self.key} must be ≤ {MAX_INT}, got {value}")
        else:
            value = float(value)
        self._check_range(value, value)
        return value


@dataclass(frozen=True)
class LayerSyntax:
    """How a layer is written: its spec name, options in order, and how many of the
    leading options may be given by position instead of ``key=value``."""

    name: str
    options: tuple[Option, ...] = ()
    positional: int = 0
    example: str = ""

    def option(self, key: str) -> Option | None:
        return next((o for o in self.options if o.key == key), None)

    @property
    def arguments(self) -> tuple[Option, ...]:
        """The options the layer's constructor takes: all but ``layer_after`` shorthand."""
        return tuple(o for o in self.options if not o.layer_after)

    def format(self, kwargs: dict[str, Any]) -> str:
        """Canonical spec text of a layer with these option values (None: left out)."""
        parts = [self.name]
        for index, opt in enumerate(self.options):
            value = kwargs.get(opt.key)
            if value is None or (opt.quiet_default and value == opt.default):
                continue
            parts.append(format_value(value) if index < self.positional
                         else f"{opt.key}={format_value(value)}")
        return " ".join(parts)

    def usage(self) -> str:
        """e.g. 'conv FILTERS SIZE [stride=1] [pad=0] [init=...] [activation=...]'."""
        parts = [self.name]
        for index, opt in enumerate(self.options):
            if index < self.positional:
                parts.append(opt.key.upper() if opt.required else f"[{opt.key.upper()}]")
            else:
                parts.append(f"{opt.key}=..." if opt.required else f"[{opt.key}=...]")
        return " ".join(parts)


def collapse(parts: tuple) -> Any:
    """Per-side values (top, left, bottom, right) → (height, width) when top = bottom
    and left = right; (height, width) → one number when they are equal."""
    if len(parts) == 4 and parts[:2] == parts[2:]:
        parts = parts[:2]
    if len(parts) == 2 and parts[0] == parts[1]:
        return parts[0]
    return parts


def format_value(value: Any) -> str:
    """A value as the spec writes it: floats as short as parses back exactly, a pair
    per axis as HxW, four sides as top,left,bottom,right."""
    if isinstance(value, tuple):
        return ("x" if len(value) == 2 else ",").join(format_value(v) for v in value)
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    if isinstance(value, tuple):  # a pair option's (h, w): 3x2
        return "x".join(str(v) for v in value)
    return str(value)


def int_option(key: str, default: Any = _REQUIRED, low: int = 1, axes: bool = False,
               quiet_default: bool = False) -> Option:
    """An integer option ≥ ``low``; required unless a default is given; ``axes``: it
    also takes HxW (one per axis)."""
    return Option(key, int, default, low, axes=axes, quiet_default=quiet_default)


def per_axis(value: int | tuple[int, int]) -> tuple[int, int]:
    """An ``axes`` option's value as (h, w): 3 → (3, 3)."""
    return value if isinstance(value, tuple) else (value, value)


def float_option(key: str, default: float, low: float = 0, low_open: bool = False,
                 high: float | None = None) -> Option:
    """A number option in [low, high) (or (low, …) when ``low_open``)."""
    return Option(key, float, default, low, low_open, high)


# Options several layers share. ``pad=same|valid`` is turned into a number by the layer
# that declares PAD (it knows its window size), in its ``derive_options``.
PAD = Option("pad", int, 0, words=("same", "valid"), axes=True, sides=True)
# How a window count that is not whole is rounded (numbacnn/geometry.py).
ROUND = Option("round", str, "exact", choices=("exact", "floor", "ceil"), quiet_default=True)
INIT = Option("init", str, None, choices=INITIALIZERS, hyperparameter=False)
ACTIVATION = Option("activation", str, None, choices=ACTIVATIONS, layer_after=True)
