"""The largest training batch that fits in the GPU's memory, for the throughput benchmarks' GPU runs
(``--gpu-batch 0``: search_throughput.py, train_throughput.py)."""

from __future__ import annotations

from typing import Any, Callable


def largest_batch(run: Callable[[int], Any], start: int = 32, limit: int = 8192) -> tuple[int, Any]:
    """Double the batch from ``start`` while ``run(batch)`` (a few timed training steps) succeeds, up to ``limit``;
    return ``(batch, run's result)`` of the largest batch that ran: within a factor of 2 of the memory's limit. A CUDA
    out-of-memory error ends the doubling (the cache is emptied after every try); any other error is raised."""
    import torch

    best: tuple[int, Any] | None = None
    batch = start
    while batch <= limit:
        try:
            result = run(batch)
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        best = (batch, result)
        batch *= 2
    if best is None:
        raise RuntimeError(f"--gpu-batch 0: not even a batch of {start} fits in the GPU's memory; pass a smaller one")
    return best
