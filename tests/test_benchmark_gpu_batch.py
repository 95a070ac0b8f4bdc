"""The GPU throughput benchmarks' choices that run without a GPU: the largest batch that fits (benchmarks/gpu_batch.py,
driven here by a fake training run that runs out of CUDA memory above a size) and the projected wall time of the
paper's ImageNet search (benchmarks/search_throughput.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # their `from results import record`, as `python <script>`
    import gpu_batch
    import search_throughput

    return gpu_batch, search_throughput


def _fits_up_to(limit: int, tried: list[int]):
    def run(batch: int) -> float:
        tried.append(batch)
        if batch > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")
        return 10.0 * batch  # "images per second"
    return run


@pytest.mark.parametrize("fits, expected", [(300, 256), (256, 256), (32, 32), (10**6, 8192)])
def test_largest_batch_doubles_until_out_of_memory(bench, fits, expected):
    tried: list[int] = []
    batch, ips = bench[0].largest_batch(_fits_up_to(fits, tried))
    assert (batch, ips) == (expected, 10.0 * expected)
    assert tried[0] == 32 and all(b == 2 * a for a, b in zip(tried, tried[1:]))  # 32, 64, ... doubling
    assert max(tried) <= max(2 * expected, 8192)  # stops at the first failure (or the limit)


def test_largest_batch_says_when_nothing_fits_and_raises_other_errors(bench):
    with pytest.raises(RuntimeError, match="not even a batch of 32"):
        bench[0].largest_batch(_fits_up_to(16, []))

    def broken(batch: int) -> float:
        raise ValueError("a bug, not the memory")

    with pytest.raises(ValueError, match="a bug"):
        bench[0].largest_batch(broken)


def test_projected_imagenet_search_is_8_warmup_and_2_search_epochs(bench):
    minutes = bench[1].imagenet_search_minutes(1000.0, 500.0)
    assert minutes == pytest.approx(1_281_167 * (8 / 1000.0 + 2 / 500.0) / 60, abs=0.05)  # 256.2 min
    assert bench[1].imagenet_search_minutes(1000.0, 1000.0) == pytest.approx(10 * 1_281_167 / 1000.0 / 60, abs=0.05)
