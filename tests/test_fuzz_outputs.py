"""Fuzz suite (issue 24): the writing policy (numbacnn.io.output_policy.plan_output) on
generated targets — every kind of existing file, link and special file, each mode, with
and without force — against an oracle of docs/reliability.md §3. Runs with the profile
of test_fuzz.py (NUMBACNN_FUZZ=long: 25 times the examples, random each time)."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest
from hostile import snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from numbacnn.io.atomic_file import WriteError
from numbacnn.io.output_policy import REFUSE, REPLACE, plan_output

LONG = os.environ.get("NUMBACNN_FUZZ", "").lower() == "long"
HDF5 = b"\x89HDF\r\n\x1a\n" + bytes(100)

# kind of the output path -> what the policy does: "new" (written, nothing replaced),
# "file" (an existing file: REFUSE needs force), "hdf5" (a model or dataset: needs force
# in both modes), or the fragment of the error that refuses it whatever the mode and force
KINDS = {
    "missing": "new", "dangling link": "new",
    "text": "file", "link to text": "file", "link to link to text": "file",
    "hdf5": "hdf5", "link to hdf5": "hdf5",
    "input": "is the source", "hard link to input": "is the source",
    "link to input": "is the source",
    "directory": "is a directory", "link to directory": "is a directory",
    "fifo": "is a FIFO", "socket": "is a socket", "link to /dev/null": "is a character device",
    "link loop": "cannot write there", "missing directory": "does not exist",
}


def make(kind: str, directory: Path) -> Path:
    """The output path of ``kind`` in ``directory`` (the command's input is input.npy)."""
    out, other = directory / "out.npy", directory / "other"
    (directory / "input.npy").write_bytes(b"the images")
    if kind in ("text", "link to text", "link to link to text"):
        other.write_bytes(b"old output")
    if kind in ("hdf5", "link to hdf5"):
        other.write_bytes(HDF5)
    if kind in ("directory", "link to directory"):
        other.mkdir()
    if kind.startswith("link to") or kind == "dangling link":
        target = {"link to input": directory / "input.npy", "link to /dev/null": Path(os.devnull),
                  "link to link to text": directory / "link"}.get(kind, other)
        if kind == "link to link to text":
            (directory / "link").symlink_to(other)
        out.symlink_to(target)
    elif kind in ("text", "hdf5", "directory"):
        other.rename(out)
    elif kind == "hard link to input":
        os.link(directory / "input.npy", out)
    elif kind == "input":
        out = directory / "input.npy"
    elif kind == "fifo":
        os.mkfifo(out)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(out))
        server.close()
    elif kind == "link loop":
        out.symlink_to(directory / "loop")
        (directory / "loop").symlink_to(out)
    elif kind == "missing directory":
        out = directory / "nowhere" / "out.npy"
    return out


@settings(max_examples=150 * (25 if LONG else 1), derandomize=not LONG, deadline=None,
          database=None)
@given(kind=st.sampled_from(sorted(KINDS)), existing=st.sampled_from([REFUSE, REPLACE]),
       force=st.booleans())
def test_plan_output_follows_the_policy(kind: str, existing: str, force: bool) -> None:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        out = make(kind, directory)
        before = snapshot(directory)
        expected = KINDS[kind]
        refused = (expected not in ("new", "file", "hdf5")
                   or (expected == "file" and existing == REFUSE and not force)
                   or (expected == "hdf5" and not force))
        if refused:
            with pytest.raises(WriteError) as caught:
                plan_output(out, inputs=[directory / "input.npy", "fashion-mnist"],
                            existing=existing, force=force)  # type: ignore[arg-type]
            message = str(caught.value)
            assert "\n" not in message and message.startswith(str(out)), message
            fragment = ("exists already" if existing == REFUSE and expected in ("file", "hdf5")
                        else {"hdf5": "holds an HDF5 file"}.get(expected, expected))
            assert fragment in message, message
        else:
            target = plan_output(out, inputs=[directory / "input.npy", "fashion-mnist"],
                                 existing=existing, force=force)  # type: ignore[arg-type]
            assert target.given == out and target.path == Path(os.path.realpath(out))
            assert target.replaces == (expected != "new")
        assert snapshot(directory) == before  # the plan writes nothing
