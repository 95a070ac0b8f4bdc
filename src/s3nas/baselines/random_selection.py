"""`python -m s3nas.baselines.random_selection latency=2.5ms`: the paper's random selection baseline (5.4.1).

Samples ``num_samples`` (20) architectures within +-2% of the target (simulated), trains every one with the full
recipe and keeps the best by validation accuracy (search_seconds includes all the trainings). A thin Hydra entry
point (conf/random_selection.yaml) around ``s3nas.baselines.random_baselines.run_random``.
"""

from __future__ import annotations

from s3nas.baselines.random_search import CHECK, TASK
from s3nas.runtime.entry import run

__all__ = ["cli"]


def cli() -> None:
    """Console script ``s3nas-random-selection`` (also ``python -m s3nas.baselines.random_selection``)."""
    run(TASK, "random_selection", check=CHECK)


if __name__ == "__main__":
    cli()
