"""Ctrl-C during training: the first one asks the trainer to stop at the next batch
boundary (so the checkpoint it saves is consistent), a second one interrupts at once;
:class:`Interrupted` is raised once the trainer has stopped and saved."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after a checkpoint was saved; ``message`` says where,
    ``checkpoint`` is the file to resume from (None when nothing was saved)."""

    def __init__(self, message: str, checkpoint: Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.checkpoint = checkpoint


@contextlib.contextmanager
def deferred_interrupts(request_stop: Callable[[], None]) -> Iterator[None]:
    """Within the block, the first Ctrl-C (SIGINT) calls ``request_stop`` instead of
    raising; a second one raises KeyboardInterrupt at once. Outside the main thread
    (where no signal handler can be set) the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
