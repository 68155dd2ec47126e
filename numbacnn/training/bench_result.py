"""The benchmark result: the JSON that profiles of several networks are saved as, and
read back from (to plot their per-layer times).

    result = bench_result([profile_spec("fmnist", 64)], device="cpu", precision="fp32",
                          batch=64, iterations=10, warmup=2)
    path.write_text(bench_result_text(result) + "\\n")
    result = read_bench_result(path)

Layout (bench/README.md)::

    {"config": {"device", "precision", "batch", "iterations", "warmup"},
     "networks": [profile, ...]}         # each as profile_training() returns it

The benchmark suite (``bench/suite.py --json``) writes the same ``networks`` with more
keys (environment, memory, targets ...); :func:`read_bench_result` reads both.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from numbacnn.errors import NumbacnnError, excerpt, shown_path
from numbacnn.limits import (
    MAX_BENCH_NETWORKS,
    MAX_BENCH_NUMBER,
    MAX_BENCH_RESULT_BYTES,
    MAX_BENCH_ROWS,
    MAX_INT,
    check_regular_file,
    exists,
    human_bytes,
)

CONFIG_KEYS = ("device", "precision", "batch", "iterations", "warmup")
# the keys every network's profile holds (profile_training); "layers" only when timed
PROFILE_KEYS = ("spec", "framework", "device", "precision", "batch", "iterations", "warmup",
                "params", "gflop_per_image", "train", "warmup_times")


class BenchResultError(NumbacnnError):
    """A benchmark result file is missing, unreadable or not a benchmark result."""


def bench_result(networks: Iterable[dict[str, Any]], *, device: str, precision: str,
                 batch: int, iterations: int, warmup: int) -> dict[str, Any]:
    """The result of profiling ``networks`` (profile_training's dicts) with ``batch``
    images per step, ``warmup`` untimed and ``iterations`` timed steps on ``device``
    (``precision``: "fp32" or "tf32"), JSON-ready; BenchResultError when a profile
    lacks one of :data:`PROFILE_KEYS`."""
    result = {"config": {"device": device, "precision": precision, "batch": int(batch),
                         "iterations": int(iterations), "warmup": int(warmup)},
              "networks": list(networks)}
    for index, profile in enumerate(result["networks"]):
        missing = [key for key in PROFILE_KEYS if key not in profile]
        if missing:
            raise BenchResultError(f"network {index} of the benchmark result lacks "
                                   f"{', '.join(missing)}; give profiles as profile_training "
                                   "returns them")
    return result


def bench_result_text(result: dict[str, Any]) -> str:
    """``result`` as the JSON text that is printed and saved (2-space indent, no final
    newline)."""
    return json.dumps(result, indent=2)


def read_bench_result(path: str | Path) -> dict[str, Any]:
    """The benchmark result saved in ``path``, checked against :data:`SCHEMA` before it
    is used: a JSON object whose ``networks`` lists at most MAX_BENCH_NETWORKS profiles
    with MAX_BENCH_ROWS per-layer rows in all, every time a finite number of ms.
    BenchResultError (one line) when the file is missing, not a regular file, larger
    than MAX_BENCH_RESULT_BYTES, unreadable or not such a result."""
    path = Path(path)
    shown = shown_path(path)
    if not exists(path):
        raise BenchResultError(f"{shown}: no such file; give a saved benchmark result")
    check_regular_file(path, "benchmark result", BenchResultError,
                       "give a saved benchmark result")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BENCH_RESULT_BYTES + 1)
    except OSError as exc:
        raise BenchResultError(f"{shown}: cannot read it ({exc.strerror or exc}); check its "
                               "permissions") from None
    if len(raw) > MAX_BENCH_RESULT_BYTES:
        raise BenchResultError(f"{shown}: larger than {human_bytes(MAX_BENCH_RESULT_BYTES)}, "
                               "more than a benchmark result holds; give a saved one")
    try:
        result = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant,
                            parse_float=_finite_float)
    except RecursionError:
        raise BenchResultError(f"{shown}: not a numbacnn benchmark result (JSON nested too "
                               f"deeply); {_GIVE}") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        reason = excerpt(" ".join(str(exc).split()), 60).strip("'\"")
        raise BenchResultError(f"{shown}: not a numbacnn benchmark result ({reason}); "
                               f"{_GIVE}") from None
    problem = schema_problem(result)
    if problem:
        raise BenchResultError(f"{shown}: not a numbacnn benchmark result: {problem}; {_GIVE}")
    return result


_GIVE = "give a saved one (bench_result_text's JSON)"


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a benchmark writes")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:30]} is beyond the range of a float")
    return value


def _ms(description: str) -> dict[str, Any]:
    return {"type": "number", "minimum": 0, "maximum": MAX_BENCH_NUMBER,
            "description": description}


_TEXT = {"type": "string", "maxLength": 1000}
_TIMES = {"type": "object", "required": ["forward_ms", "backward_ms"],
          "properties": {"forward_ms": _ms("ms"), "backward_ms": _ms("ms")}}
_ROW = {"type": "object", "required": ["index", "layer", "forward_ms", "backward_ms"],
        "properties": {"index": {"type": "integer", "minimum": 0, "maximum": MAX_INT},
                       "layer": _TEXT, "forward_ms": _ms("ms"), "backward_ms": _ms("ms")}}
_LAYERS = {"type": "array", "maxItems": MAX_BENCH_ROWS, "items": _ROW}
# a profile with per-layer rows also has the loss's times, which plot bench draws last
_TIMED = {"if": {"required": ["layers"], "properties": {"layers": {"minItems": 1}}},
          "then": {"required": ["loss"]}}
_SIDE = {"type": "object", "properties": {"layers": _LAYERS, "loss": _TIMES,
                                          "skipped": _TEXT}, **_TIMED}
# What numbacnn reads of a benchmark result (plot bench); other keys are left as they are.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["networks"],
    "properties": {
        "config": {"type": "object", "properties": {"device": _TEXT}},
        "environment": {"type": "object", "properties": {"cpu": _TEXT}},
        "networks": {"type": "array", "maxItems": MAX_BENCH_NETWORKS, "items": {
            "type": "object",
            "properties": {"spec": _TEXT, "batch": {"type": "integer", "minimum": 1,
                                                    "maximum": MAX_INT},
                           "loss_name": _TEXT, "layers": _LAYERS, "loss": _TIMES,
                           "torch": _SIDE},
            **_TIMED}},
    },
}


def schema_problem(result: Any) -> str | None:
    """What makes ``result`` (parsed JSON) no benchmark result by :data:`SCHEMA`, in
    one line naming the place (``networks[0].layers[2].forward_ms``), or None."""
    try:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import best_match
    except ImportError:
        raise BenchResultError("reading a benchmark result needs jsonschema: pip install "
                               "'numbacnn[plot]' (or pip install jsonschema)") from None

    error = best_match(Draft202012Validator(SCHEMA).iter_errors(result))
    if error is not None:
        return _described(error)
    rows = sum(len(n.get("layers", [])) + len(n.get("torch", {}).get("layers", []))
               for n in result["networks"])
    if rows > MAX_BENCH_ROWS:
        return f"{rows} per-layer rows in all, more than the {MAX_BENCH_ROWS} it may hold"
    return None


_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
               int: "an integer", float: "a number", type(None): "null"}


def _number(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _described(error: Any) -> str:
    """A jsonschema ValidationError in one line that quotes at most 40 characters of
    the file (jsonschema's own message quotes the whole offending value)."""
    place = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    place = excerpt(place.lstrip(".") or "the top level", 60).strip("'\"")
    value, rule, bound = error.instance, error.validator, error.validator_value
    got = _JSON_TYPES.get(type(value), type(value).__name__)
    if rule == "type":
        wanted = {"object": "an object", "array": "a list", "string": "text",
                  "integer": "an integer", "number": "a number"}[bound]
        problem = f"{place} is {got}, expected {wanted}"
        return (f"no list of networks ({problem})" if list(error.absolute_path) in (
            [], ["networks"]) else problem)
    if rule == "required":
        missing = next(k for k in bound if k not in value)
        return "no list of networks" if missing == "networks" else f"{place} lacks {missing!r}"
    if rule in ("minimum", "maximum"):
        shown = f"{value:g}" if isinstance(value, float) else excerpt(str(value), 30)
        low, high = (_number(error.schema[k]) for k in ("minimum", "maximum"))
        return f"{place} is {shown.strip(chr(39))}, expected a number in [{low}, {high}]"
    if rule in ("maxItems", "minItems"):
        most = "at most" if rule == "maxItems" else "at least"
        return f"{place} has {len(value)} items, {most} {bound} allowed"
    if rule == "maxLength":
        return f"{place} is {len(value)} characters long, at most {bound} allowed"
    return f"{place}: {excerpt(error.message, 60)}"  # pragma: no cover - SCHEMA uses no other
