"""A spec where a command takes a MODEL file: ``plot features SPEC`` draws an untrained
network (He-initialized from ``--seed``), ``evaluate SPEC`` says why it cannot score one.

MODEL is read as a spec (a preset, a .spec file or spec text, see docs/spec.md) when it
is not a model file: not named .h5/.hdf5, not an existing file other than a .spec, and
spec-like (spec text, a preset name, a .spec path, or text that starts with a layer).
Anything else stays a model path, so a mistyped model file still gets "no such model
file". numbacnn.spec and the network are imported inside the functions (no numba).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

MODEL_SUFFIXES = (".h5", ".hdf5")


def is_spec(source: str | Path) -> bool:
    """Whether a MODEL argument names a spec rather than a model file (module doc)."""
    from numbacnn.limits import exists
    from numbacnn.spec import keywords, list_presets

    text = str(source)
    path = Path(text)
    if path.suffix.lower() in MODEL_SUFFIXES:
        return False
    if "\n" in text or ";" in text or path.suffix.lower() == ".spec":
        return True
    if exists(path):  # a file: a model file of another name unless it ends in .spec
        return False
    words = text.split()
    return text.strip() in list_presets() or bool(words) and words[0].lower() in keywords()


def untrained_model(spec: str, seed: int, device: str | None = None) -> tuple[Any, Any]:
    """(network, ModelInfo) of ``spec`` with He-initialized weights drawn from ``seed``
    on ``device`` ("auto", "cpu" or "cuda"; None: the network's default):
    no class names, no training settings; its normalization (``mean``/``std``) is set by
    :func:`normalize_by_image` once the image to show is known."""
    from numbacnn.io.model_file import ModelInfo
    from numbacnn.network import Network

    net = Network.from_spec(spec).initialize(seed=seed, init="he", device=device)
    C = net.input_shape[0]
    info = ModelInfo(spec_text=net.spec_text or spec, input_shape=net.input_shape,
                     class_names=[], mean=np.zeros(C, np.float32),
                     std=np.ones(C, np.float32))
    return net, info


def normalize_by_image(info: Any, image: np.ndarray) -> None:
    """Set ``info``'s normalization to the per-channel mean and std of ``image`` (uint8
    C×H×W, units pixel/255; the training set's own computation): an untrained network
    sees a zero-mean, unit-variance input, as it would after training's normalization (a
    constant channel keeps std 1)."""
    from numbacnn.io.datasets import normalization

    info.mean, info.std = normalization(np.asarray(image)[None])


def refuse_spec_as_model(source: str | Path) -> None:
    """For a command that scores model files: nothing when ``source`` is no spec; else
    the network's own error when it ends in a volume (no class scores), or an error
    saying a spec must be trained first."""
    import shlex

    from numbacnn.errors import ModelFileError
    from numbacnn.network import Network

    if not is_spec(source):
        return
    net = Network.from_spec(str(source))
    net.require_scores()
    raise ModelFileError(f"{source}: is a spec, not a model file; train it first with "
                         f"numbacnn train {shlex.quote(str(source))} --out MODEL.h5")
