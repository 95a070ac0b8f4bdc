"""`python -m s3nas.baselines.random_search latency=2.5ms`: the paper's random search baseline (5.4.1).

Samples ``num_samples`` (15) architectures of the search space within +-2% of the target (simulated), trains each
for ``short`` (1 epoch, cosine), retrains the best by validation accuracy with ``full`` (the recipe's schedule).
A thin Hydra entry point (conf/random_search.yaml) around ``s3nas.baselines.random_baselines.run_random``.
"""

from __future__ import annotations

from s3nas.baselines.random_baselines import check_random, run_random
from s3nas.runtime.entry import run


def check(cfg):
    """Every user error before anything is written (one line, exit 2, no run dir)."""
    return check_random(cfg)


def main(cfg, checked=None):
    """Hydra task: sample, train, select, retrain; returns the sweeper objective (test accuracy by default)."""
    summary = run_random(cfg, checked)
    metric = cfg.get("optimized_metric")
    return summary.get(metric) if metric else summary.get("test_acc")


def cli() -> None:
    """Console script ``s3nas-random-search`` (also ``python -m s3nas.baselines.random_search``)."""
    run(main, "random_search", check=check)


if __name__ == "__main__":
    cli()
