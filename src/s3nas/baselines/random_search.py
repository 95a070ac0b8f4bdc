"""`python -m s3nas.baselines.random_search latency=2.5ms`: the paper's random search baseline (5.4.1).

Samples ``num_samples`` (15) architectures of the search space within +-2% of the target (simulated), trains each
for ``short`` (1 epoch, cosine), retrains the best by validation accuracy with ``full`` (the recipe's schedule).
A thin Hydra entry point (conf/random_search.yaml) around ``s3nas.baselines.random_baselines.run_random``.
"""

from __future__ import annotations

from s3nas.runtime.entry import run

#: the check and the task, named: torch and Lightning are imported only when the command runs them (not for --help,
#: --cfg or a config error, nor in the latency table's worker processes, which import this module as their main)
CHECK = "s3nas.baselines.random_baselines:check_random"
TASK = "s3nas.baselines.random_baselines:random_task"


def cli() -> None:
    """Console script ``s3nas-random-search`` (also ``python -m s3nas.baselines.random_search``)."""
    run(TASK, "random_search", check=CHECK)


if __name__ == "__main__":
    cli()
