"""Checkpoints written so that a failed write never replaces a good one.

Lightning writes a checkpoint by opening the target and streaming into it: a full disk or a crash mid-write
leaves a truncated file where the previous good one was. ``AtomicCheckpointIO`` writes to a temp file in the
same directory, fsyncs it and renames it over the target; on any error the temp file is removed and the old
checkpoint stays. A Ctrl-C, SIGTERM or SIGUSR1 during the write is held until the file is complete, then
delivered.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from s3nas.runtime.signals import held
from s3nas.utils.io import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO with temp-file + rename writes (local file systems); ``timings`` (a
    ``s3nas.runtime.timing.Timings``, optional) gets the seconds of every write as ``checkpoint_write``."""

    def __init__(self, timings: Any = None) -> None:
        super().__init__()
        self.timings = timings

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        started = time.perf_counter()
        with held():  # Ctrl-C / SIGTERM / SIGUSR1 wait for the complete file
            atomic_write(path, lambda handle: torch.save(checkpoint, handle))
        if self.timings is not None:
            self.timings.add("checkpoint_write", time.perf_counter() - started)

