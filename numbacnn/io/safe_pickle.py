"""Read a pickle of plain data and numpy arrays without running anything it names.

A pickle is a small program: its GLOBAL opcodes name any Python object (``os.system``)
and REDUCE calls it. :func:`safe_loads` runs that program with Python's own pure-Python
unpickler, but

* GLOBAL / STACK_GLOBAL (and the copyreg EXT codes, which go through the same lookup)
  resolve only the names in :data:`ALLOWED`: what numpy's own pickles of arrays,
  dtypes and scalars use, and ``_codecs.encode`` (how Python 3 writes bytes at
  protocol 2; called with the latin1 codec only); any other name raises
  :class:`UnsafePickleError` before it is imported;
* REDUCE calls only the functions of :data:`CALLABLE` (the ndarray class itself is
  never called: it only names the type ``_reconstruct`` builds);
* BUILD sets the state of numpy arrays and dtypes only; NEWOBJ, NEWOBJ_EX, INST, OBJ
  and persistent ids are refused outright.

So a tampered file whose pickle names ``os.system``, ``builtins.eval`` or a class with a
malicious ``__setstate__`` fails at that opcode, before anything has run. Plain data
(dicts, lists, tuples, str, bytes, numbers, None, booleans) needs no global at all.
Used by :mod:`numbacnn.io.cifar` for the python version of CIFAR-10 and CIFAR-100.
"""

from __future__ import annotations

import _codecs
import io
import pickle
from typing import Any

import numpy as np
from numpy._core import multiarray as _multiarray
from numpy._core import numeric as _numeric


class UnsafePickleError(Exception):
    """A pickle names, calls or builds something other than plain data and numpy arrays."""


ALLOWED: dict[tuple[str, str], Any] = {}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1 and 2 names
    ALLOWED[(_module, "_reconstruct")] = _multiarray._reconstruct
    ALLOWED[(_module, "scalar")] = _multiarray.scalar
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    ALLOWED[(_module, "_frombuffer")] = _numeric._frombuffer
ALLOWED[("numpy", "ndarray")] = np.ndarray
ALLOWED[("numpy", "dtype")] = np.dtype
ALLOWED[("_codecs", "encode")] = _codecs.encode
CALLABLE = (_multiarray._reconstruct, _multiarray.scalar, _numeric._frombuffer, np.dtype,
            _codecs.encode)

_BASE = pickle._Unpickler  # the pure-Python unpickler: its opcodes can be overridden


class _SafeUnpickler(_BASE):  # type: ignore[misc, valid-type]
    dispatch = dict(_BASE.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"the pickle names {module}.{name}, which is not plain "
                                    "data or a numpy array; nothing was run") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("the pickle refers to a persistent object; nothing was run")

    def load_reduce(self) -> None:
        stack = self.stack
        args = stack.pop()
        func = stack[-1]
        if not any(func is allowed for allowed in CALLABLE):
            raise UnsafePickleError(f"the pickle calls {_name(func)}, which does not make "
                                    "plain data or a numpy array; nothing was run")
        if func is _multiarray._reconstruct and (len(args) != 3 or args[0] is not np.ndarray):
            raise UnsafePickleError("the pickle rebuilds an array from a type other than "
                                    "numpy.ndarray; nothing was run")
        if func is _codecs.encode and (len(args) != 2 or args[1] != "latin1"):
            raise UnsafePickleError("the pickle encodes text with a codec other than latin1 "
                                    "(a codec lookup may import modules); nothing was run")
        stack[-1] = func(*args)

    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is not np.ndarray and not isinstance(inst, np.dtype):
            raise UnsafePickleError(f"the pickle sets the state of {_name(inst)}, which is not "
                                    "a numpy array; nothing was run")
        inst.__setstate__(state)

    dispatch[pickle.BUILD[0]] = load_build

    def refuse(self) -> None:
        raise UnsafePickleError("the pickle creates an object of a class (NEWOBJ/INST/OBJ), "
                                "which is not plain data; nothing was run")

    for _code in (pickle.NEWOBJ, pickle.NEWOBJ_EX, pickle.INST, pickle.OBJ):
        dispatch[_code[0]] = refuse


def _name(obj: Any) -> str:
    kind = obj if isinstance(obj, type) else type(obj)
    name = getattr(obj, "__qualname__", None) or kind.__qualname__
    return f"{getattr(obj, '__module__', None) or kind.__module__}.{name}"


def safe_loads(data: bytes) -> Any:
    """The object pickled in ``data`` (any protocol; Python 2 strings come back as bytes),
    built from plain data and numpy arrays only; UnsafePickleError for anything else,
    raised before it runs, and for a damaged pickle."""
    try:
        return _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafePickleError:
        raise
    except MemoryError:
        raise UnsafePickleError("the pickle asks for more memory than there is") from None
    except Exception as exc:  # a damaged pickle fails in many ways: all are one refusal
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise UnsafePickleError(f"not a readable pickle ({reason})") from None
