"""Python threads that run one compiled part of a CPU driver each.

The chunked convolution (``cpu_conv.py``) splits the batch into one part per thread.
Its part passes are plain ``@njit(nogil=True)`` functions, started here on Python
threads, instead of one ``prange`` loop over the parts: numba compiles a ``prange``
loop as a separate parallel function (a "gufunc") and optimizes every function it
calls again inside it, which made the two convolution drivers the longest compile of
a first run (8.1 CPU s for fmnist's; 4.5 as plain functions, bench/RESULTS.md).

The helper threads wait on plain locks. A call's hand-off and join cost ~80 µs on the
2-core VM (mostly waking a sleeping thread; ``concurrent.futures`` was no faster),
against parts of milliseconds.
"""

from __future__ import annotations

import os
import threading
from typing import Any


class _PartThread:
    """A daemon thread that runs one part at a time: :meth:`start_part` hands it a call,
    :meth:`join_part` waits for it and raises its error."""

    def __init__(self) -> None:
        self._go = threading.Lock()
        self._done = threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._call: tuple[Any, tuple[Any, ...]] | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._loop, name="numbacnn-part", daemon=True).start()

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            function, args = self._call  # type: ignore[misc]
            try:
                function(*args)
            except BaseException as exc:  # handed to the caller by join_part
                self._error = exc
            # the arrays are the caller's: hold none of them between calls
            self._call = function = args = None
            self._done.release()

    def start_part(self, function: Any, args: tuple[Any, ...]) -> None:
        self._call = (function, args)
        self._go.release()

    def join_part(self) -> None:
        interrupted: BaseException | None = None
        while True:  # a Ctrl-C here still waits for the part (milliseconds): the next
            try:     # call must not find its done-lock released by this one
                self._done.acquire()
                break
            except BaseException as exc:
                interrupted = exc
        error, self._error = self._error, None
        if error is not None:
            raise error
        if interrupted is not None:
            raise interrupted


_threads: list[_PartThread] = []
_one_call = threading.Lock()  # callers on several threads take turns with the helpers
_threads_pid = -1  # the process that started them: a forked child needs its own


def _helpers(count: int) -> list[_PartThread]:
    global _threads, _threads_pid
    if _threads_pid != os.getpid():
        _threads, _threads_pid = [], os.getpid()
    while len(_threads) < count:
        _threads.append(_PartThread())
    return _threads[:count]


def run_parts(function: Any, parts: int, *args: Any) -> None:
    """``function(part, parts, *args)`` for part = 0 … parts − 1 at once: the last part
    on this thread, the others on helper threads; returns when all are done and raises
    the first error, if any. ``function`` must release the GIL (``nogil=True``)."""
    if parts <= 1:
        function(0, 1, *args)
        return
    with _one_call:
        helpers = _helpers(parts - 1)
        for part, helper in enumerate(helpers):
            helper.start_part(function, (part, parts, *args))
        try:
            function(parts - 1, parts, *args)
        finally:
            errors = []
            for helper in helpers:
                try:
                    helper.join_part()
                except BaseException as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]
