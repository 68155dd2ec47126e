"""Typed reading of HDF5 files that may be damaged or hostile: every attribute and array
is checked before it is used.

Shared by the model files (:mod:`numbacnn.io.model_file`, and the checkpoint state that
:mod:`numbacnn.training.checkpoint` keeps in them) and the dataset files
(:mod:`numbacnn.io.dataset_files`). A structural problem raises :class:`Damaged`, which
the file's reader turns into its own one-line error naming the file; the values checked
are: types (an integer is not a float, a float not a complex, a bool neither), ranges,
an array's dtype, shape and size before it is read (so a tampered file cannot allocate
without bound), and NaN or infinity after.
"""

from __future__ import annotations

import json
from typing import Any

import h5py
import numpy as np

from numbacnn.errors import ModelFileError
from numbacnn.limits import array_bytes, check_memory

SIGNATURE = b"\x89HDF\r\n\x1a\n"  # the first 8 bytes of every HDF5 file


class Damaged(Exception):
    """A structural problem found while reading; its reader turns it into a
    NumbacnnError that names the file and the fix."""


class ChecksumMismatch(Damaged):
    """An array's data no longer matches its Fletcher-32 checksum (a flipped bit on the
    disk or in transfer); the message names the array."""


def group(parent: h5py.Group, name: str) -> h5py.Group:
    """The subgroup ``name`` of ``parent``; Damaged when it is missing or an array."""
    item = parent.get(name)
    if not isinstance(item, h5py.Group):
        raise Damaged(f"{parent.name.rstrip('/')}/{shown(name)} is not a group")
    return item


def is_int(value: Any) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def is_real(value: Any) -> bool:
    """An int or a float that is finite (not complex, not a bool, not NaN)."""
    return (isinstance(value, int | float | np.integer | np.floating)
            and not isinstance(value, bool | np.bool_) and bool(np.isfinite(value)))


def int_attr(attrs: h5py.AttributeManager, key: str, where: str) -> int:
    """The integer attribute ``key`` (``where``: its group, for the message)."""
    value = attrs.get(key)
    if not is_int(value):
        raise Damaged(f"{where}/@{key} is {shown(value)}, not an integer")
    return int(value)  # type: ignore[arg-type]


def float_attr(attrs: h5py.AttributeManager, key: str, where: str) -> float:
    """The finite number attribute ``key`` (an integer is taken too)."""
    value = attrs.get(key)
    if not is_real(value):
        raise Damaged(f"{where}/@{key} is {shown(value)}, not a finite number")
    return float(value)  # type: ignore[arg-type]


def string_attr(attrs: h5py.AttributeManager, key: str, default: str) -> str:
    """The UTF-8 text attribute ``key`` (``default`` when it is absent)."""
    value = attrs.get(key, default)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise Damaged(f"attribute {key} is {shown(value)}, not a string")
    check_utf8(value, key)
    return value


def json_object_attr(attrs: h5py.AttributeManager, key: str, where: str) -> dict[str, Any]:
    """The text attribute ``key`` parsed as a JSON object (a dict); text that is not
    JSON raises json.JSONDecodeError (the file's reader reports it as corrupt)."""
    value = json.loads(string_attr(attrs, key, ""))
    if not isinstance(value, dict):
        raise Damaged(f"{where}/@{key} is {shown(value)}, not a JSON object")
    return value


def check_utf8(value: str, where: str) -> None:
    """h5py decodes invalid UTF-8 into surrogates, which no output can print."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Damaged(f"attribute {where} is not valid UTF-8 text") from None


def strings(value: Any, key: str) -> list[str]:
    """An attribute holding an array of strings (such as class_names) as UTF-8 texts."""
    names = np.asarray(value).reshape(-1)
    if names.dtype.kind not in "OSU" or not all(isinstance(n, str | bytes) for n in names):
        raise Damaged(f"{key} is {shown(value)}, not strings")
    texts = [text(n) for n in names]
    for item in texts:
        check_utf8(item, key)
    return texts


def float_vector(attrs: h5py.AttributeManager, key: str, length: int) -> np.ndarray:
    """The float attribute ``key`` as ``length`` finite float32 values."""
    value = np.asarray(attrs[key])
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf
        as_float32 = value.astype(np.float32).reshape(-1) if value.dtype.kind == "f" else value
    if value.dtype.kind != "f" or value.size != length or not np.all(np.isfinite(as_float32)):
        raise Damaged(f"{key} is {shown(value)}, expected {length} finite float32"
                      f"{'' if length == 1 else 's'}")
    return as_float32


def read_floats(dataset: Any, shape: tuple[int, ...] | None, where: str = "",
                ndim: int | None = None, nan_ok: bool = False,
                label: str | None = None) -> np.ndarray:
    """A float array, checked for type, shape and size before it is read, against its
    checksum while it is read (when it was written with one: :func:`write_floats`) and
    for NaN and infinity after (``nan_ok``: NaN means "none", as in the history's
    validation columns when there is no validation split). ``label`` names the array
    for a checksum mismatch ("layer 1 (conv) weights"; :class:`ChecksumMismatch`)."""
    if not isinstance(dataset, h5py.Dataset):
        raise Damaged(f"{getattr(dataset, 'name', dataset)} is not an array")
    name = dataset.name
    if dataset.dtype.kind != "f":
        raise Damaged(f"{name} holds {dataset.dtype} values, expected float32")
    if shape is not None and tuple(dataset.shape) != shape:
        raise Damaged(f"{name} has shape {tuple(dataset.shape)} but {where or 'it'} needs "
                      f"{shape}")
    if ndim is not None and len(dataset.shape) != ndim:
        raise Damaged(f"{name} has shape {tuple(dataset.shape)}, expected {ndim} dimension")
    check_memory(array_bytes(dataset.shape, dataset.dtype.itemsize), name, ModelFileError,
                 "the file is damaged: use another copy")
    try:
        array = dataset[()]
    except OSError as exc:
        # the checksum is the only filter on these arrays: its failure is a mismatch
        if dataset.fletcher32 and "filter returned failure" in str(exc):
            raise ChecksumMismatch(f"{label} ({name.lstrip('/')})" if label
                                   else name.lstrip("/")) from None
        raise
    if not np.all(np.isfinite(array) | (nan_ok & np.isnan(array))):
        raise Damaged(f"{name} holds {'infinite' if nan_ok else 'NaN or infinite'} values")
    return array


def write_floats(group: h5py.Group, name: str, array: Any) -> None:
    """Store ``array`` (host or device) as float32 with a checksum (fletcher32)."""
    from numbacnn.device import to_host

    data = np.ascontiguousarray(to_host(array), dtype=np.float32)
    group.create_dataset(name, data=data, fletcher32=True)


def shown(value: Any, limit: int = 60) -> str:
    """A value for a message: repr, control characters escaped, at most ``limit`` chars."""
    if isinstance(value, np.generic):
        value = value.item()
    elif isinstance(value, np.ndarray):
        value = (value.tolist() if value.size <= 8
                 else f"<{value.dtype} array of shape {value.shape}>")
    text_ = " ".join(repr(value).split())
    return text_ if len(text_) <= limit else text_[:limit - 1] + "…"


def text(value: object) -> str:
    """An attribute's text: bytes decoded as UTF-8 (bad bytes replaced)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (h5py's run to pages), or its type."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
