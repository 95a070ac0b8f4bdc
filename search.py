"""`python search.py latency=2.5ms`: latency-aware architecture search (S3NAS) on a simulated NPU.

A thin Hydra entry point (conf/search.yaml) around ``s3nas.search.run_search``; BASE's runner
(``s3nas.utils.entry.run``) composes the config, prints user errors as one line and finishes W&B.
"""

from __future__ import annotations


def check(cfg):
    """Every user error, before anything is printed or written (one line, exit 2, no run dir)."""
    from s3nas.search import check_search

    return check_search(cfg)


def main(cfg, checked=None):
    """Hydra task: run the search, return the sweeper objective(s) named by ``optimized_metric``."""
    from s3nas.search import objective, run_search

    summary = run_search(cfg, checked)
    return objective(summary, cfg.get("optimized_metric"))


if __name__ == "__main__":
    from s3nas.utils.entry import run

    run(main, "search", check=check)
