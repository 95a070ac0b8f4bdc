"""Checkpoints written so that a failed write never replaces a good one.

Lightning writes a checkpoint by opening the target and streaming into it: a full disk or a crash mid-write
leaves a truncated file where the previous good one was. ``AtomicCheckpointIO`` writes to a temp file in the
same directory, fsyncs it and renames it over the target; on any error the temp file is removed and the old
checkpoint stays. A Ctrl-C during the write is held until the file is complete, then delivered.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Optional

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from s3nas.utils.io import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO with temp-file + rename writes (local file systems)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with _deferred_interrupt():
            atomic_write(path, lambda handle: torch.save(checkpoint, handle))


@contextlib.contextmanager
def _deferred_interrupt():
    """Hold a Ctrl-C until the block is done (an interrupt inside torch.save corrupts its zip writer), then
    deliver it as the previous handler would have."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and callable(previous):
        previous(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt here
