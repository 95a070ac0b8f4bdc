"""Where a run's wall time goes: named wall-clock buckets and a Lightning callback that fills them.

``Timings`` is a dict of seconds per part (``table_build``, ``train_step/warmup``, ``latency_term``...). Code
adds to it with ``with timings.part("name"):``; ``FitTimer`` times the parts of a Lightning fit that no module
code surrounds: every training step from its start hook to its end hook (forward, backward, optimizer step:
per phase), the time between two steps (fetching the next batch and the loop's own work), validation and
checkpoint writing (the trainer's checkpoint plugin reports its writes through ``Timings.add``). The search
reports the buckets as ``timings_s`` in summary.json; ``benchmarks/search_profile.py`` turns them into shares.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Callable, Iterator

import pytorch_lightning as pl


class Timings:
    """Accumulated wall-clock seconds per named part (``perf_counter``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, name: str, seconds: float, count: int = 1) -> None:
        self.seconds[name] += float(seconds)
        self.counts[name] += int(count)

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def as_dict(self, ndigits: int = 3) -> dict[str, float]:
        return {name: round(value, ndigits) for name, value in sorted(self.seconds.items())}


class FitTimer(pl.Callback):
    """Times a Lightning fit into ``timings``: ``train_step/<phase>``, ``between_steps`` (data loading and the
    loop), ``validation``. ``phase_of(pl_module)`` names the phase of a step (default: ``train``)."""

    def __init__(self, timings: Timings, phase_of: Callable[[pl.LightningModule], str] | None = None) -> None:
        self.timings = timings
        self.phase_of = phase_of or (lambda module: "train")
        self._step_started: float | None = None
        self._last_end: float | None = None
        self._validation_started: float | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._last_end = time.perf_counter()  # the first batch's fetch (and the loader's start) counts

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._last_end is not None:
            self.timings.add("between_steps", now - self._last_end)
        self._step_started = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._step_started is not None:
            self.timings.add(f"train_step/{self.phase_of(pl_module)}", now - self._step_started)
        self._step_started, self._last_end = None, now

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._last_end = None

    def on_validation_start(self, trainer, pl_module) -> None:
        self._validation_started = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._validation_started is not None:
            self.timings.add("validation", time.perf_counter() - self._validation_started)
        self._validation_started = None
        self._last_end = time.perf_counter() if self._last_end is not None else None
