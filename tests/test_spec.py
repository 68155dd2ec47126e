"""Tests of numbacnn.spec: the spec text format, presets and canonical round trips.

Pure Python: nothing here runs a kernel.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numbacnn.layers
from numbacnn.errors import ShapeError, SpecError
from numbacnn.geometry import winograd_applies
from numbacnn.layers import LAYERS, Conv2D, Dense, Layer, MaxPool2D, ReLU, Tanh
from numbacnn.layers.base import register
from numbacnn.layers.syntax import ACTIVATIONS, LayerSyntax
from numbacnn.limits import float32_value
from numbacnn.spec import (
    SYNTAX,
    LayerEntry,
    Spec,
    format_layer,
    layer_kwargs,
    list_presets,
    load_spec,
    parse_input_size,
    parse_spec,
)

PRESETS = ("alexnet", "alexnet-groups", "cifar10", "fmnist", "lecture-example", "lenet")


def names(spec: Spec) -> list[str]:
    return [entry.name for entry in spec.layers]


# --- the format -------------------------------------------------------------------------

def test_positional_keys_and_defaults() -> None:
    spec = parse_spec("input 227x227x3\nconv 96 11 stride=4 pad=0\nmaxpool 3 stride=2\n"
                      "maxpool 2\nlrn\ndropout 0.5\nfc 4096\nleaky 0.1\nelu\nmaxout 2\nsoftmax")
    assert spec.input_shape == (3, 227, 227)
    assert [(e.name, e.kwargs) for e in spec.layers] == [
        ("conv", {"filters": 96, "size": 11, "stride": 4, "pad": 0, "init": None,
                  "algo": None}),
        ("maxpool", {"size": 3, "stride": 2}),
        ("maxpool", {"size": 2, "stride": 2}),
        ("lrn", {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}),
        ("dropout", {"p": 0.5}),
        ("fc", {"units": 4096, "init": None}),
        ("leaky", {"alpha": 0.1}),
        ("elu", {"alpha": 1.0}),
        ("maxout", {"pieces": 2}),
        ("softmax", {}),
    ]


def test_input_is_width_height_depth() -> None:
    assert parse_input_size("32x28x3") == (3, 28, 32)
    assert parse_input_size(" 7X7x1 ") == (1, 7, 7)
    assert parse_input_size("5×6×2") == (2, 6, 5)
    for bad in ("28x28", "axbxc", "0x3x3", "3x3x3x3", ""):
        with pytest.raises(SpecError, match="WxHxD|≥ 1"):
            parse_input_size(bad)


def test_comments_semicolons_and_line_numbers() -> None:
    text = "# header\n\ninput 8x8x1  # the input\nconv 2 3; relu # comment; not a layer\nfc 4\n"
    spec = parse_spec(text)
    assert names(spec) == ["conv", "relu", "fc"]
    assert [e.line for e in spec.layers] == [4, 5, 6]  # ';' counts as a line break
    assert spec.layers[0].text == "conv 2 3"


def test_keys_may_replace_positional_values_and_case_is_ignored() -> None:
    a = parse_spec("input 8x8x1; CONV filters=4 size=3 Stride=1 PAD=SAME init=HE")
    b = parse_spec("input 8x8x1; conv 4 3 pad=1 init=he")
    assert a == b


def test_activation_key_becomes_its_own_layer() -> None:
    spec = parse_spec("input 8x8x1; conv 4 3 activation=relu; fc 10 activation=tanh init=xavier")
    assert names(spec) == ["conv", "relu", "fc", "tanh"]
    assert spec.layers[1].line == spec.layers[0].line == 2
    layers = spec.make_layers()
    assert [type(layer) for layer in layers] == [Conv2D, ReLU, Dense, Tanh]
    assert layers[2].init == "xavier" and layers[0].init is None


def test_pad_same_and_valid() -> None:
    spec = parse_spec("input 9x9x1; conv 2 5 pad=same; conv 2 3 pad=valid; conv 2 1 pad=same")
    assert [e.kwargs["pad"] for e in spec.layers] == [2, 0, 0]
    with pytest.raises(SpecError, match=r"spec line 2 .*pad=same needs an odd size"):
        parse_spec("input 9x9x1; conv 2 4 pad=same")


def test_pool_stride_defaults_to_size() -> None:
    layer = parse_spec("input 8x8x1; avgpool 4").make_layers()[0]
    assert (layer.size, layer.stride) == (4, 4)


def test_constructors_take_what_the_spec_takes() -> None:
    """pad=same|valid and the pooling stride are worked out by the layer, so Python and
    the spec text give the same layer."""
    for text, layer in [("conv 8 3 pad=same", Conv2D(8, 3, pad="same")),
                        ("conv 8 5 pad=SAME stride=2", Conv2D(8, 5, stride=2, pad="SAME")),
                        ("conv 8 4 pad=valid", Conv2D(8, 4, pad="valid")),
                        ("maxpool 3", MaxPool2D(3))]:
        entry = parse_spec(text).layers[0]
        assert layer.arguments() == entry.kwargs, text
        assert layer.describe() == entry.make_layer().describe(), text
    assert Conv2D(8, 5, pad="same").pad == 2
    with pytest.raises(ShapeError, match=r"conv: pad=same needs an odd size, got size 4"):
        Conv2D(8, 4, pad="same")
    with pytest.raises(ShapeError, match="conv: pad must be an integer ≥ 0 or HxW or "
                                         "top,left,bottom,right or same or valid, "
                                         "got 'full'"):
        Conv2D(8, 3, pad="full")


class _Square(Layer):
    """A test activation: declared usable as activation=NAME, nothing else."""

    syntax = LayerSyntax("square")
    as_activation = True


class _Head(Layer):
    """A test layer that declares it must end the network."""

    syntax = LayerSyntax("head")
    must_be_last = "it is the test's end"


def test_layers_declare_what_the_spec_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """activation=NAME allows every registered activation, and "must be last" is the
    layer's declaration: a new layer needs no edit in spec.py."""
    monkeypatch.setattr(ACTIVATIONS, "_names", list(ACTIVATIONS))  # undone after the test
    registered = [name for name, cls in LAYERS.items() if cls.as_activation]
    assert {"relu", "leaky", "sigmoid", "tanh", "elu"} <= set(registered)
    for cls in (_Square, _Head):
        monkeypatch.setitem(LAYERS, cls.syntax.name, cls)
        register(cls)
    assert list(ACTIVATIONS) == [*registered, "square"]  # registration order, the new one last
    assert names(parse_spec("input 4x4x1; fc 3 activation=square")) == ["fc", "square"]
    with pytest.raises(SpecError, match=f"activation must be one of {', '.join(registered)}, "
                                        "square, got 'head'"):
        parse_spec("input 4x4x1; fc 3 activation=head")
    assert names(parse_spec("input 4x4x1; fc 3; head")) == ["fc", "head"]
    with pytest.raises(SpecError, match=r"line 2 \(`head`\): head must be the last layer "
                                        r"\(it is the test's end\)"):
        parse_spec("input 4x4x1; head; fc 3")


def test_make_layers_gives_fresh_unbuilt_layers() -> None:
    spec = parse_spec("input 8x8x1; conv 4 3; maxpool 2; fc 3")
    first, second = spec.make_layers(), spec.make_layers()
    assert all(a is not b for a, b in zip(first, second, strict=True))
    assert all(layer.output_shape is None for layer in first)
    assert isinstance(first[1], MaxPool2D)


def test_build_names_the_line_of_a_layer_that_does_not_fit() -> None:
    spec = parse_spec("input 7x7x1\nconv 1 3 stride=1\nconv 1 2 stride=2 # oops")
    with pytest.raises(SpecError) as info:
        spec.build()
    message = str(info.value)
    assert message.startswith("spec line 3 (`conv 1 2 stride=2`): ")
    assert "(5 − 2 + 2·0)/2 + 1 = 2.50 is not whole; try stride=1" in message
    layers = spec.build((1, 8, 8))  # 8 → 6 → (6 − 2)/2 + 1 = 3 fits
    assert layers[-1].output_shape == (1, 3, 3)


def test_build_without_an_input_size() -> None:
    spec = parse_spec("conv 2 3; relu")
    assert spec.input_shape is None
    with pytest.raises(SpecError, match="no input size"):
        spec.build()
    assert spec.build((1, 5, 5))[-1].output_shape == (2, 3, 3)


@pytest.mark.parametrize(("text", "match"), [
    ("", "no layers"),
    ("# nothing\n\n", "no layers"),
    ("input 8x8x1", "no layers"),
    ("input 8x8x1; pool 2", "line 2 .*unknown layer 'pool'.*did you mean"),
    ("input 8x8x1; conv 4", "line 2 .*conv needs size"),
    ("input 8x8x1; fc", "line 2 .*fc needs units"),
    ("input 8x8x1; conv 4 3 sride=2", "no key 'sride'; did you mean 'stride'"),
    ("input 8x8x1; conv 4 3 stride=1.5", "stride must be an integer ≥ 1 or HxW, got '1.5'"),
    ("input 8x8x1; conv 4 3 pad=-1", "pad must be an integer ≥ 0 or HxW or top,left,bottom,right "
                                     "or same or valid, got -1"),
    ("input 8x8x1; leaky -0.1", "alpha must be a number ≥ 0, got -0.1"),
    ("input 8x8x1; dropout 1", r"p must be a number in \[0, 1\), got 1"),
    ("input 8x8x1; elu inf", "alpha must be a number ≥ 0, got inf"),
    ("input 8x8x1; relu x=1", "relu takes no arguments"),
    ("input 8x8x1; conv 4 3 stride=2 1", "follows a key=value"),
    ("input 8x8x1; maxpool 2 2", "maxpool takes 1 value without a key"),
    ("input 8x8x1; conv 4 3 init=glorot", "init must be one of"),
    ("input 8x8x1; fc 4 activation=maxout", "activation must be one of"),
    ("input 8x8x1; conv 4 3 pad=1 pad=2", "pad is given twice"),
    ("input 8x8x1; conv 4 3 size=3", "size is given twice"),
    ("input 8x8x1; conv 4 3 stride=", "stride= needs a value"),
    ("relu; input 8x8x1", "line 2 .*before the first layer"),
    ("input 8x8x1; input 8x8x1; relu", "given twice"),
    ("input 8x8x1 extra; relu", "input WxHxD"),
    ("input 8x8; relu", "line 1 .*not WxHxD"),
    ("input 8x8x1; fc 10; softmax; relu", "line 3 .*softmax must be the last layer"),
])
def test_malformed_specs(text: str, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        parse_spec(text)


def test_every_layer_is_built_from_its_own_declaration() -> None:
    """SYNTAX is read from the layer classes; each constructor takes exactly the declared
    options, with the declared defaults and ranges (one declaration, no copy to keep in
    step)."""
    assert set(SYNTAX) == set(LAYERS)
    for name, cls in LAYERS.items():
        assert cls.kind == name and SYNTAX[name] is cls.syntax
        required = {o.key: 3 for o in cls.syntax.options if o.required}
        layer = cls(**required)
        for opt in cls.syntax.options:
            if opt.key == "activation":
                assert not hasattr(layer, "activation"), name  # a layer of its own
            elif not opt.required and not (name.endswith("pool") and opt.key == "stride"):
                assert getattr(layer, opt.key) == opt.default, (name, opt.key)
        assert layer.describe() == cls.syntax.format(layer.hyperparameters()), name
        numbers = [o for o in cls.syntax.options if o.kind in (int, float) and not o.choices]
        for opt in numbers:  # a value outside the declared range is refused, naming the rule
            with pytest.raises(ShapeError, match=f"{name}: {opt.key} must be"):
                cls(**{**required, opt.key: -1})
    with pytest.raises(ShapeError, match="conv: no option 'filter'"):
        LAYERS["conv"](filter=3, size=3)
    with pytest.raises(ShapeError, match="conv: filters is required"):
        LAYERS["conv"](size=3)
    assert LAYERS["maxpool"](3).stride == 3  # the pooling stride defaults to the size


def test_every_layer_file_registers_itself() -> None:
    """numbacnn/layers/__init__.py imports every module of the package, and every public
    class there with its own ``syntax`` is registered and a name of numbacnn.layers: a
    new layer file needs no edit anywhere else."""
    folder = Path(numbacnn.layers.__file__).parent
    declared = []
    for path in sorted(folder.glob("*.py")):
        if path.stem == "__init__":
            continue
        module = sys.modules.get(f"numbacnn.layers.{path.stem}")
        assert module is not None, f"importing numbacnn.layers did not import {path.name}"
        declared += [cls for cls in vars(module).values()
                     if isinstance(cls, type) and issubclass(cls, Layer)
                     and cls.__module__ == module.__name__ and "syntax" in vars(cls)
                     and cls.syntax.name and not cls.__name__.startswith("_")]
    assert len(declared) >= 15  # the classes were found at all
    for cls in declared:
        assert LAYERS[cls.syntax.name] is cls, f"{cls.__name__} is not registered (@register)"
        assert getattr(numbacnn.layers, cls.__name__) is cls
        assert cls.__name__ in numbacnn.layers.__all__


def test_layer_kwargs_rebuild_the_layer() -> None:
    spec = parse_spec("input 8x8x2; conv 4 3 pad=1 init=zeros; lrn size=3 k=1.5; maxout 2; "
                      "dropout 0.25; elu 0.5; fc 3 init=normal")
    for entry, layer in zip(spec.layers, spec.make_layers(), strict=True):
        assert layer_kwargs(layer) == entry.kwargs
        assert format_layer(layer.kind, layer_kwargs(layer)) == entry.to_text()


# --- loading ----------------------------------------------------------------------------

def test_presets_are_listed_and_load() -> None:
    assert set(PRESETS) <= set(list_presets())
    for name in list_presets():
        spec = load_spec(name)
        assert spec.source == f"{name}.spec"
        assert spec.input_shape is not None
        spec.build()


def test_fmnist_preset_is_the_default_network() -> None:
    expected = parse_spec("input 28x28x1; conv 32 3 pad=same activation=relu; maxpool 2; "
                          "conv 64 3 pad=same activation=relu; maxpool 2; "
                          "fc 128 activation=relu; dropout 0.3; fc 10; softmax")
    assert load_spec("fmnist") == expected


def test_load_spec_takes_text_files_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "tiny.spec"
    path.write_text("# tiny\ninput 6x6x1\nconv 2 3\n", encoding="utf-8")
    expected = parse_spec("input 6x6x1; conv 2 3")
    assert load_spec(str(path)) == expected
    assert load_spec(path) == expected
    assert load_spec(str(path)).source == str(path)
    assert load_spec("input 6x6x1; conv 2 3") == expected
    assert names(load_spec("relu")) == ["relu"]  # starts with a layer name: inline
    assert names(load_spec("conv 2 3")) == ["conv"]


@pytest.mark.parametrize(("spec", "match"), [
    ("alexnett", "not a preset.*did you mean 'alexnet'"),
    ("nets/missing.spec", "spec file nets/missing.spec not found"),
    ("   ", "empty"),
])
def test_load_spec_errors(spec: str, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        load_spec(spec)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.spec"
    path.write_text("input 6x6x1\nconv 2 3 strde=1\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"bad\.spec line 2 \(`conv 2 3 strde=1`\)"):
        load_spec(str(path))
    with pytest.raises(SpecError, match="cannot read spec file"):
        load_spec(str(tmp_path))  # a directory


# --- canonical text ---------------------------------------------------------------------

@pytest.mark.parametrize("name", PRESETS)
def test_preset_round_trip(name: str) -> None:
    spec = load_spec(name)
    text = spec.to_text()
    again = parse_spec(text)
    assert again == spec
    assert again.to_text() == text


def test_canonical_text_is_explicit() -> None:
    spec = parse_spec("input 227x227x3; conv 96 11 stride=4; maxpool 3 stride=2; "
                      "lrn; fc 10 activation=relu init=he; dropout")
    assert spec.to_text() == ("input 227x227x3\nconv 96 11 stride=4 pad=0\nmaxpool 3 stride=2\n"
                              "lrn size=5 alpha=0.0001 beta=0.75 k=2\nfc 10 init=he\nrelu\n"
                              "dropout 0.5\n")


def _numbers(kind: type, low_open: bool, high: float | None) -> st.SearchStrategy:
    if kind is int:
        return st.integers(1, 64)
    return st.floats(0.0, 10.0 if high is None else high, exclude_min=low_open,
                     exclude_max=high is not None, allow_nan=False, allow_infinity=False,
                     ).filter(lambda x: _fits_float32(x, low_open, high))


def _fits_float32(x: float, low_open: bool, high: float | None) -> bool:
    """Within the bounds also as the float32 the layers compute with (a value > 0 may be
    0 there, one < 1 may be 1): those are refused, tested in test_fuzz_readers.py."""
    stored = float32_value(x)
    return (stored > 0 or not low_open) and (high is None or stored < high)


@st.composite
def layer_lines(draw: st.DrawFn) -> tuple[str, dict]:
    """One random layer: its text (shorthand and/or keys, any case) and expected kwargs."""
    name = draw(st.sampled_from([n for n in SYNTAX if n != "softmax"]))
    syntax = SYNTAX[name]
    words, kwargs, keyed = [name.upper() if draw(st.booleans()) else name], {}, False
    for index, opt in enumerate(syntax.options):
        if opt.key == "activation":
            continue
        if opt.key == "init":
            value = draw(st.sampled_from([None, "he", "xavier", "normal", "zeros"]))
        elif opt.key == "pad":
            value = draw(st.integers(0, 5))
        elif opt.key == "groups":  # must divide the filters
            value = draw(st.sampled_from([g for g in (1, 2, 3) if kwargs["filters"] % g == 0]))
        elif opt.key == "algo":  # winograd only where it computes (its refusal: test_winograd)
            fits = winograd_applies(kwargs["size"], kwargs["stride"], kwargs["dilation"],
                                    kwargs["groups"])
            value = draw(st.sampled_from([None, "auto", "im2col", *(["winograd"] * fits)]))
        elif opt.choices:
            value = draw(st.sampled_from(list(opt.choices)))
        else:
            value = draw(_numbers(opt.kind, opt.low_open, opt.high))
        if opt.axes and draw(st.booleans()):  # one per axis, HxW (one number when equal)
            value = (value, draw(st.integers(0 if opt.key == "pad" else 1, 64)))
        give = value is not None and (opt.required or draw(st.booleans()))
        kwargs[opt.key] = value if give else opt.default
        if opt.key == "stride" and kwargs["stride"] is None:
            kwargs["stride"] = kwargs["size"]  # pooling: stride defaults to the size
        if not give:
            keyed = keyed or index >= syntax.positional
            continue
        shown = repr(value) if isinstance(value, float) else str(value)
        if isinstance(value, tuple):
            shown = f"{value[0]}x{value[1]}"
            kwargs[opt.key] = value if value[0] != value[1] else value[0]
        if index < syntax.positional and not keyed and draw(st.booleans()):
            words.append(shown)
        else:
            keyed = True
            words.append(f"{opt.key}={shown}")
    # options added later (groups, dilation, round) are left out at their defaults
    kwargs = {key: value for key, value in kwargs.items()
              if not ((o := syntax.option(key)) and o.quiet_default and value == o.default)}
    return " ".join(words), kwargs


@settings(max_examples=60, deadline=None)
@given(st.lists(layer_lines(), min_size=1, max_size=6),
       st.one_of(st.none(), st.tuples(*[st.integers(1, 300)] * 3)),
       st.sampled_from(["\n", "; ", " ;\n# comment\n"]), st.booleans())
def test_random_specs_parse_and_round_trip(lines: list, size: tuple | None, separator: str,
                                           with_softmax: bool) -> None:
    texts = [text for text, _ in lines] + (["softmax"] if with_softmax else [])
    if size is not None:
        texts.insert(0, f"input {size[0]}x{size[1]}x{size[2]}")
    spec = parse_spec(separator.join(texts))
    expected = [LayerEntry(text.split()[0].lower(), kwargs) for text, kwargs in lines]
    expected += [LayerEntry("softmax", {})] if with_softmax else []
    assert spec.layers == expected
    assert spec.input_shape == (None if size is None else (size[2], size[1], size[0]))
    again = parse_spec(spec.to_text())
    assert again == spec and again.to_text() == spec.to_text()


# --- imports ----------------------------------------------------------------------------

def test_parsing_and_shapes_import_no_numba() -> None:
    code = ("import sys\n"
            "from numbacnn.spec import load_spec\n"
            "from numbacnn.shapes import format_table, shape_table\n"
            "spec = load_spec('alexnet')\n"
            "format_table(shape_table(spec, batch=4))\n"
            "spec.make_layers()\n"
            "print([m for m in sys.modules if m == 'numba' or m.startswith(('numba.', "
            "'numbacnn.kernels', 'numbacnn.backends.'))])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]", result.stdout
