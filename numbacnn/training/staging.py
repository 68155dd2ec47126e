"""Batch staging: host buffers a batch is gathered into, and their upload to the device.

On a GPU a batch goes host → device without an allocation or a wait: two page-locked
(pinned) host buffers take turns, each copied asynchronously on the default stream into
one device buffer that the training step reads. Before a host buffer is written again,
the host waits for the event recorded after its last copy (two batches ago, long
done). The device buffer itself needs no guard: the next copy is queued behind the
kernels that read it. A smaller batch (the last of an epoch) uses the first rows of
each buffer. On the CPU the host buffer is the batch; nothing is copied.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numbacnn.device import backend, resolve_device


class BatchStaging:
    """Reusable buffers for batches of ``shape[1:]`` items, up to ``shape[0]`` of them, for
    ``device`` ("cpu" or "cuda": the device of the network that reads them, ``net.device``)."""

    def __init__(self, shape: tuple[int, ...], dtype: type = np.float32, *,
                 device: str) -> None:
        self.backend = B = backend(resolve_device(device))
        self.on_device = not B.on_host
        turns = 2 if self.on_device else 1
        self.hosts = [B.pinned_empty(shape, dtype) for _ in range(turns)]
        self.events = [B.event() if self.on_device else None for _ in range(turns)]
        self.device = B.empty(shape, dtype) if self.on_device else None
        self._device_rows: dict[int, Any] = {}  # n → device[:n], a view made once
        self.turn = 0

    def host(self, n: int) -> np.ndarray:
        """The first ``n`` rows of the next host buffer, free to be written."""
        self.turn = (self.turn + 1) % len(self.hosts)
        event = self.events[self.turn]
        if event is not None:
            event.synchronize()  # its previous upload has been read
        return self.hosts[self.turn][:n]

    def upload(self, n: int) -> Any:
        """Queue the copy of the current host buffer's first ``n`` rows to the device and
        return the device array of them (the host array itself on the CPU)."""
        rows = self.hosts[self.turn][:n]
        if not self.on_device:
            return rows
        target = self._device_rows.get(n)
        if target is None:
            target = self._device_rows[n] = self.device[:n]
        out = self.backend.upload(rows, target, asynchronous=True)
        self.events[self.turn].record()
        return out
