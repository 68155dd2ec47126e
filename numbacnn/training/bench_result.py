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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from numbacnn.errors import NumbacnnError

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
    """The benchmark result saved in ``path``: a JSON object whose ``networks`` is a list
    of objects; BenchResultError when the file is missing, unreadable or not one."""
    path = Path(path)
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchResultError(f"{path}: no such file; give a saved benchmark result"
                               ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchResultError(f"{path}: not a numbacnn benchmark result ({exc}); give a "
                               "saved one (bench_result_text's JSON)") from None
    networks = result.get("networks") if isinstance(result, dict) else None
    if not isinstance(networks, list) or not all(isinstance(n, dict) for n in networks):
        raise BenchResultError(f"{path}: not a numbacnn benchmark result (no list of "
                               "networks); give a saved one (bench_result_text's JSON)")
    return result
