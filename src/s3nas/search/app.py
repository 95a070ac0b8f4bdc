"""The search command (``s3nas-search``, ``python search.py``, ``python -m s3nas.search.app``).

A Hydra app on conf/search.yaml around ``s3nas.search.run_search``; ``s3nas.runtime.entry.run`` composes the
config, prints user errors as one line (exit 2) and finishes W&B.
"""

from __future__ import annotations

from typing import Any

from s3nas.runtime.entry import run
from s3nas.search import check_search, objective


def check(cfg: Any) -> Any:
    """Every user error, before anything is printed or written (one line, exit 2, no run dir)."""
    return check_search(cfg)


def task(cfg: Any, checked: Any = None) -> Any:
    """Hydra task: run the search, return the sweeper objective(s) named by ``optimized_metric``."""
    from s3nas.search.runner import run_search  # torch, Lightning: after the checks passed

    summary = run_search(cfg, checked)
    return objective(summary, cfg.optimized_metric)


def main() -> None:
    """Console script ``s3nas-search``: ``s3nas-search latency=2.5ms [key=value ...]``."""
    run(task, "search", check=check)


if __name__ == "__main__":
    main()
