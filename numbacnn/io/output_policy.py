"""Where a command may write its file: one policy for every writer (docs/reliability.md,
"Nothing is overwritten by surprise").

Checked up front, before any work, by :func:`plan_output`:

1. Symlinks are followed: the rules apply to (and the write replaces) the file a link
   points to; the link stays.
2. Never a file that is not regular: a directory, a device (``/dev/null``), a FIFO, a
   socket (:func:`numbacnn.io.atomic_file.resolved_target`; the atomic writer checks
   it again at write time).
3. Never one of the command's own inputs (the same file: compared by device and inode,
   so hard links and symlinks count), not even when forced.
4. An existing file: with ``existing=REFUSE`` (models, checkpoints, datasets: work that
   took long to make) only when forced; with ``existing=REPLACE`` (pictures, ONNX
   graphs, probabilities, benchmark results: a command's derived output) it is
   replaced, unless it holds an HDF5 file (a numbacnn model or dataset), which again
   only when forced.

The caller writes to :attr:`OutputTarget.path` and says ``replaced FILE`` when
:attr:`OutputTarget.replaces`::

    target = plan_output(out, inputs=[model], existing=REPLACE, force=force, what="ONNX graph")
    export_onnx(net, info, target.path)
    if target.replaces: print(f"replaced {target.given}")
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from numbacnn.errors import NumbacnnError, shown_path
from numbacnn.io.atomic_file import WriteError, check_writable, resolved_target

REFUSE = "refuse"  # an existing file is replaced only when forced (models, datasets)
REPLACE = "replace"  # an existing file is replaced, except a model or dataset (HDF5)
Existing = Literal["refuse", "replace"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # as numbacnn.io.hdf5.SIGNATURE (which needs h5py)
FORCE_ADVICE = "pass --force to replace it, or choose another path"


@dataclass(frozen=True)
class OutputTarget:
    """Where a command writes: ``given`` as the user named it, ``path`` the file it
    replaces (symlinks followed), ``replaces`` whether a file is there now."""

    given: Path
    path: Path
    replaces: bool


def plan_output(path: str | Path, *, inputs: Iterable[str | Path] = (),
                existing: Existing = REFUSE, force: bool = False, what: str = "file",
                field: str | None = "out", error: type[NumbacnnError] = WriteError,
                example: str = "out", advice: str = FORCE_ADVICE) -> OutputTarget:
    """Check that the command may write ``path`` (the rules in the module docstring);
    raise ``error`` (one line, ``field``: the value that named the path) if not.

    ``inputs``: the files the command reads (names that are not files, such as a
    dataset name, are skipped); ``what`` names the content ("model", "picture");
    ``example``: a file name to suggest when ``path`` is a directory; ``advice``: how
    to go on when an existing file is refused (the CLI's option that forces).
    """
    given = Path(path)
    target = resolved_target(given, error, field)
    check_writable(target, field or "out", error, example)
    for source in inputs:
        if _same_file(target, source):
            raise error(f"{shown_path(given)}: is the source {shown_path(source)} itself, "
                        f"which this command reads; write the {what} to another file",
                        field=field)
    present = target.exists()
    if present and not force:
        if existing == REFUSE:
            raise error(f"{shown_path(given)}: exists already; {advice}", field=field)
        if _holds_hdf5(target):
            raise error(f"{shown_path(given)}: holds an HDF5 file (a model or a dataset), "
                        f"replaced only when forced; {advice}", field=field)
    return OutputTarget(given, target, present)


def _same_file(target: Path, source: str | Path) -> bool:
    try:
        return os.path.samefile(target, source)
    except (OSError, ValueError):  # not a file (a dataset name), or no such file
        return False


def _holds_hdf5(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE
    except OSError:
        return False
